#[derive(Debug)]
pub enum ChargeError {
    Declined,
}

#[tasker::step(timeout_ms = 100)]
async fn charge(amount: u32) -> Result<u32, ChargeError> {
    if amount == 0 {
        return Err(ChargeError::Declined);
    }
    Ok(amount)
}

fn main() {}
