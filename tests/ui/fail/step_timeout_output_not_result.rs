#[tasker::step(timeout_ms = 100)]
async fn charge(amount: u32) -> u32 {
    amount
}

fn main() {}
