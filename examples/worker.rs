//! A producer and a worker in two separate processes, connected only by envelopes.
//!
//! `cargo run --example worker` starts the producer, which spawns this same program with
//! `--worker` as a child process. The producer enqueues orders by name (emitting
//! `task.initialize` and `task.enqueue`), drains its queue and writes each envelope as one JSON
//! line to the worker's standard input. The worker decodes the envelopes into its own queue and
//! runs them with a `tasker::Runtime`, continuing the producer's task ids; both processes print
//! the events they see, tagged with their role, so the hop is visible.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tasker::queue::{Envelope, MemoryQueue, Queue};
use tasker::telemetry::Event;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Order {
    id: u64,
    items: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("order {0} is empty")]
struct EmptyOrder(u64);

#[tasker::step(max_attempts = 1)]
async fn pack(order: &Order) -> Result<usize, EmptyOrder> {
    if order.items.is_empty() {
        return Err(EmptyOrder(order.id));
    }
    Ok(order.items.len())
}

#[tasker::step(max_attempts = 1)]
async fn label(order: &Order, parcels: usize) -> String {
    format!("ORDER-{}-{parcels}", order.id)
}

#[tasker::task(name = "ship", version = "1.0.0")]
async fn ship(order: Order) -> Result<String, EmptyOrder> {
    let parcels = pack(&order).await?;
    Ok(label(&order, parcels).await)
}

/// Prints every event of this process as `<role> <event> <task id> [<step>]`.
fn print_events(role: &'static str) -> tasker::events::Subscription {
    tasker::events::subscribe(move |event: &Event<'_>| {
        let task = event.task_id().map(|id| id.to_string()).unwrap_or_default();
        let step = event.step_name().unwrap_or_default();
        println!("{role:<8} {:<16} {task} {step}", event.name());
    })
}

async fn producer() -> Result<(), Box<dyn std::error::Error>> {
    let _events = print_events("producer");
    let queue = Arc::new(MemoryQueue::named("stdin-pipe"));
    let runtime = tasker::Runtime::builder()
        .workers(0)
        .shared_queue(queue.clone())
        .build()?;
    for (id, items) in [(1, vec!["lamp"]), (2, vec!["desk", "chair"]), (3, vec![])] {
        let order = Order {
            id,
            items: items.into_iter().map(String::from).collect(),
        };
        runtime
            .enqueue(tasker::TaskRequest::new("ship", &order)?)
            .await?;
    }

    let mut worker = Command::new(std::env::current_exe()?)
        .arg("--worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut pipe = worker.stdin.take().ok_or("worker has no stdin")?;
    while let Some(claim) = queue.claim(Duration::from_secs(30), Duration::ZERO).await? {
        pipe.write_all(&claim.envelope.encode())?;
        pipe.write_all(b"\n")?;
        queue.acknowledge(claim.lease).await?;
    }
    drop(pipe); // end of input: the worker finishes what it has and exits
    let output = worker.stdout.take().ok_or("worker has no stdout")?;
    for line in BufReader::new(output).lines() {
        println!("{}", line?);
    }
    let status = worker.wait()?;
    runtime.shutdown().await;
    if !status.success() {
        return Err(format!("worker exited with {status}").into());
    }
    Ok(())
}

async fn worker() -> Result<(), Box<dyn std::error::Error>> {
    let _events = print_events("worker");
    let queue = Arc::new(MemoryQueue::named("stdin-pipe"));
    let runtime = tasker::Runtime::builder()
        .workers(2)
        .shared_queue(queue.clone())
        .build()?;
    let lines = tokio::task::spawn_blocking(|| {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    for line in lines {
        match Envelope::decode(line.as_bytes()) {
            Ok(envelope) => queue.push(envelope).await?,
            Err(error) => eprintln!("worker: skipping a line that is not an envelope: {error}"),
        }
    }
    while !queue.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    runtime.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|arg| arg == "--worker") {
        worker().await
    } else {
        producer().await
    }
}
