#[tasker::step(skippable = true)]
fn charge(amount: u32) -> u32 {
    amount
}

fn main() {}
