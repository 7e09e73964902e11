#[tasker::step(retries = 3)]
fn charge(amount: u32) -> u32 {
    amount
}

fn main() {}
