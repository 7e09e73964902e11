#[tasker::task(name = "slow", timeout_ms = 100)]
fn slow(order: u32) -> u32 {
    order
}

fn main() {}
