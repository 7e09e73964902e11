#[derive(serde::Serialize)]
struct Order {
    id: u64,
}

#[tasker::task(name = "fulfill", version = "1.0.0")]
fn fulfill(order: Order) -> u64 {
    order.id
}

async fn enqueue(runtime: &tasker::Runtime) {
    let _ = runtime.enqueue(fulfill::request(Order { id: 1 })).await;
}

fn main() {}
