#[tasker::step(max_attempts = 2, backoff_ms = 10, max_attempts = 5)]
fn charge(amount: u32) -> u32 {
    amount
}

fn main() {}
