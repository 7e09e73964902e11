#[tasker::step(timeout_ms = 0)]
async fn charge(amount: u32) -> Result<u32, std::io::Error> {
    Ok(amount)
}

fn main() {}
