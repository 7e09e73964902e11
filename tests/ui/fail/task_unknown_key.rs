#[tasker::task(name = "fulfil", max_attempts = 3)]
fn fulfil(order: u32) -> u32 {
    order
}

fn main() {}
