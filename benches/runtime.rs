//! End-to-end throughput: a 10-step task through `tasker::Runtime` (queue, workers, JSON in and
//! out) against a hand-written Tokio loop doing the same work (a channel, the same number of
//! worker tasks, a oneshot per result). Telemetry is off, as by default.
//!
//! `cargo bench --bench runtime`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::sync::{mpsc, oneshot};

const TASKS: u64 = 200;
const WORKERS: usize = 2;

#[tasker::step(max_attempts = 1)]
async fn tasker_step(value: u64) -> u64 {
    black_box(value).wrapping_mul(31).wrapping_add(7)
}

#[tasker::task(name = "ten_steps", version = "1.0.0")]
async fn ten_steps(seed: u64) -> u64 {
    let mut value = seed;
    for _ in 0..10 {
        value = tasker_step(value).await;
    }
    value
}

async fn plain_step(value: u64) -> u64 {
    black_box(value).wrapping_mul(31).wrapping_add(7)
}

async fn plain_ten_steps(seed: u64) -> u64 {
    let mut value = seed;
    for _ in 0..10 {
        value = plain_step(value).await;
    }
    value
}

type Job = (u64, oneshot::Sender<u64>);

fn hand_written_pool(runtime: &tokio::runtime::Runtime) -> mpsc::Sender<Job> {
    let (sender, receiver) = mpsc::channel::<Job>(1024);
    let receiver = std::sync::Arc::new(tokio::sync::Mutex::new(receiver));
    for _ in 0..WORKERS {
        let receiver = receiver.clone();
        runtime.spawn(async move {
            loop {
                let job = receiver.lock().await.recv().await;
                let Some((seed, reply)) = job else { return };
                let _ = reply.send(plain_ten_steps(seed).await);
            }
        });
    }
    sender
}

fn throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let tasker = runtime
        .block_on(async { tasker::Runtime::builder().workers(WORKERS).build() })
        .expect("the tasker runtime starts");
    let pool = hand_written_pool(&runtime);

    let mut group = c.benchmark_group("runtime/10-step task");
    group.throughput(Throughput::Elements(TASKS));
    group.bench_function("tasker Runtime (queue + workers)", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut handles = Vec::with_capacity(TASKS as usize);
                for seed in 0..TASKS {
                    let request = tasker::TaskRequest::new("ten_steps", &seed).expect("serializes");
                    handles.push(tasker.enqueue(request).await.expect("enqueued"));
                }
                for handle in handles {
                    black_box(handle.wait().await.expect("runs"));
                }
            })
        })
    });
    group.bench_function("hand-written Tokio loop", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut replies = Vec::with_capacity(TASKS as usize);
                for seed in 0..TASKS {
                    let (reply, result) = oneshot::channel();
                    pool.send((seed, reply)).await.expect("pool is running");
                    replies.push(result);
                }
                for reply in replies {
                    black_box(reply.await.expect("runs"));
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
