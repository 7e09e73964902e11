#[tasker::step(jitter = -0.2)]
fn charge(amount: u32) -> u32 {
    amount
}

fn main() {}
