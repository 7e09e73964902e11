#[tasker::task]
const fn fulfil(order: u32) -> u32 {
    order
}

fn main() {}
