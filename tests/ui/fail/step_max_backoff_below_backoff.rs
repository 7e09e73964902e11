#[tasker::step(backoff_ms = 500, max_backoff_ms = 100)]
fn charge(amount: u32) -> u32 {
    amount
}

fn main() {}
