#[tasker::task(name = "double", version = "1.0.0")]
fn double(n: u64) -> u64 {
    n * 2
}

async fn enqueue(runtime: &tasker::Runtime) {
    let _ = runtime.enqueue(double::request("seven")).await;
}

fn main() {}
