#[tasker::task(name = "add", version = "1.0.0")]
fn add(a: u32, b: u32) -> u32 {
    a + b
}

async fn enqueue(runtime: &tasker::Runtime) {
    let _ = runtime.enqueue(add::request((1, 2))).await;
}

fn main() {}
