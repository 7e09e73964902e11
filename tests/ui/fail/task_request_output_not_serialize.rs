#[derive(Debug)]
struct Shipment {
    id: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("no shipment")]
struct NoShipment;

#[tasker::task(name = "fulfill", version = "1.0.0")]
async fn fulfill(id: u64) -> Result<Shipment, NoShipment> {
    Ok(Shipment { id })
}

async fn enqueue(runtime: &tasker::Runtime) {
    let _ = runtime.enqueue(fulfill::request(7)).await;
}

fn main() {}
