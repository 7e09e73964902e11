struct Order {
    id: u32,
}

#[tasker::task(name = "fulfill", version = "1.0.0", max_attempts = 2)]
async fn fulfill(order: Order) -> Result<u32, String> {
    Ok(order.id)
}

fn main() {}
