#[tasker::task(name = "measure", version = "1.0.0")]
fn measure(text: &str) -> usize {
    text.len()
}

async fn enqueue(runtime: &tasker::Runtime) {
    let _ = runtime.enqueue(measure::request("abc")).await;
}

fn main() {}
