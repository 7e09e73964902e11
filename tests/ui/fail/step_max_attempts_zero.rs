#[tasker::step(max_attempts = 0)]
fn charge(amount: u32) -> u32 {
    amount
}

fn main() {}
