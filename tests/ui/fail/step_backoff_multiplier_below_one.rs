#[tasker::step(backoff_multiplier = 0.5)]
fn charge(amount: u32) -> u32 {
    amount
}

fn main() {}
