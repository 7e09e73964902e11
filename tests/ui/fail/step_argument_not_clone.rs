pub struct Order {
    pub id: u64,
}

#[tasker::step]
fn charge(order: Order, amount: u32) -> Result<u32, std::io::Error> {
    Ok(amount + order.id as u32)
}

fn main() {}
