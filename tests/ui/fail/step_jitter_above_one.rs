#[tasker::step(jitter = 1.5)]
fn charge(amount: u32) -> u32 {
    amount
}

fn main() {}
