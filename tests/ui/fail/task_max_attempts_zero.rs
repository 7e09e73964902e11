#[tasker::task(name = "charge", version = "1.0.0", max_attempts = 0)]
async fn charge(amount: u32) -> Result<u32, String> {
    Ok(amount)
}

fn main() {}
