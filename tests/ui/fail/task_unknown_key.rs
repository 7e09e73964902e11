#[tasker::task(name = "fulfil", retries = 3)]
fn fulfil(order: u32) -> u32 {
    order
}

fn main() {}
