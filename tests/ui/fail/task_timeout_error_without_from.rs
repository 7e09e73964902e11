#[derive(Debug)]
struct ChargeError;

#[tasker::task(name = "charge", version = "1.0.0", timeout_ms = 100)]
async fn charge(amount: u32) -> Result<u32, ChargeError> {
    Ok(amount)
}

fn main() {}
