//! Durable queue throughput, in tasks per second: enqueue (`push`) and claim + acknowledge, for
//! `SqliteQueue` and `PostgresQueue`, with 1 and 8 concurrent producers or claimers.
//!
//! Each row works in a fresh SQLite file or PostgreSQL schema, removed afterwards. SQLite's
//! producers and claimers each open their own connection to the file, as separate processes
//! would; PostgreSQL's share one queue whose pool has a connection for each. An iteration
//! enqueues (or, after enqueueing untimed, claims and acknowledges) `TASKS` envelopes. The
//! PostgreSQL rows need `TASKER_TEST_DATABASE_URL` (for example
//! postgres://postgres@127.0.0.1:5432/test); without it they are skipped with a message.
//!
//! `cargo bench --all-features --bench queues`

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use tasker::queue::{Envelope, PostgresQueue, Queue, SqliteQueue};

/// Envelopes per iteration.
const TASKS: u64 = 200;
/// Concurrent producers or claimers.
const CONCURRENCY: [usize; 2] = [1, 8];
/// Longer than any iteration: no lease expires during a measurement.
const LEASE: Duration = Duration::from_secs(300);

/// Where one row's queue lives.
enum Store {
    Postgres { url: String, schema: String },
    Sqlite { dir: PathBuf },
}

impl Store {
    fn fresh(backend: &str, url: Option<&str>) -> Store {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = format!(
            "{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        match (backend, url) {
            ("postgres", Some(url)) => Store::Postgres {
                url: url.to_string(),
                schema: format!("tasker_bench_{unique}"),
            },
            _ => {
                let dir = std::env::temp_dir().join(format!("tasker-bench-queue-{unique}"));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).expect("a temporary directory");
                Store::Sqlite { dir }
            }
        }
    }

    /// `n` handles on the store's queue: one per producer or claimer.
    async fn queues(&self, n: usize) -> Vec<Arc<dyn Queue>> {
        match self {
            Store::Postgres { url, schema } => {
                let queue = PostgresQueue::builder(url.as_str())
                    .schema(schema.as_str())
                    .pool_size(n)
                    .connect()
                    .await
                    .expect("PostgreSQL at TASKER_TEST_DATABASE_URL accepts connections");
                queue.migrate().await.expect("migrations apply");
                let queue: Arc<dyn Queue> = Arc::new(queue);
                vec![queue; n]
            }
            Store::Sqlite { dir } => {
                let mut queues: Vec<Arc<dyn Queue>> = Vec::with_capacity(n);
                for _ in 0..n {
                    let queue = SqliteQueue::open(dir.join("queue.db"))
                        .await
                        .expect("the SQLite file opens");
                    queues.push(Arc::new(queue));
                }
                queues
            }
        }
    }

    async fn remove(self) {
        match self {
            Store::Postgres { url, schema } => {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .expect("PostgreSQL accepts connections");
                let driver = tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await
                    .expect("the benchmark's schema drops");
                drop(client);
                let _ = driver.await;
            }
            Store::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// `TASKS` envelopes split between `n` producers.
fn batches(n: usize) -> Vec<Vec<Envelope>> {
    (0..n)
        .map(|producer| {
            (producer as u64..TASKS)
                .step_by(n)
                .map(|k| Envelope::new("bench", "1.0.0", serde_json::json!({ "n": k })))
                .collect()
        })
        .collect()
}

/// Pushes the batches, one producer per queue handle, concurrently.
async fn push_all(queues: &[Arc<dyn Queue>], batches: Vec<Vec<Envelope>>) {
    let producers: Vec<_> = queues
        .iter()
        .cloned()
        .zip(batches)
        .map(|(queue, batch)| {
            tokio::spawn(async move {
                for envelope in batch {
                    queue.push(envelope).await.expect("push");
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.expect("a producer");
    }
}

/// Claims and acknowledges until the queue is empty, one claimer per queue handle; returns how
/// many envelopes were claimed.
async fn drain(queues: &[Arc<dyn Queue>]) -> u64 {
    let claimers: Vec<_> = queues
        .iter()
        .cloned()
        .map(|queue| {
            tokio::spawn(async move {
                let mut claimed = 0;
                while let Some(claim) = queue.claim(LEASE, Duration::ZERO).await.expect("claim") {
                    queue.acknowledge(claim.lease).await.expect("acknowledge");
                    claimed += 1;
                }
                claimed
            })
        })
        .collect();
    let mut claimed = 0;
    for claimer in claimers {
        claimed += claimer.await.expect("a claimer");
    }
    claimed
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn queues(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let url = std::env::var("TASKER_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty());
    let mut backends = vec!["sqlite"];
    if url.is_some() {
        backends.push("postgres");
    } else {
        eprintln!(
            "skipping the PostgreSQL rows: set TASKER_TEST_DATABASE_URL (for example \
             postgres://postgres@127.0.0.1:5432/test) to measure them"
        );
    }

    let mut group = c.benchmark_group("queues/enqueue");
    group.throughput(Throughput::Elements(TASKS));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    for &backend in &backends {
        for n in CONCURRENCY {
            let store = Store::fresh(backend, url.as_deref());
            let handles = runtime.block_on(store.queues(n));
            group.bench_function(format!("{backend}/{}", plural(n, "producer")), |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let batches = batches(n);
                            let start = Instant::now();
                            push_all(&handles, batches).await;
                            total += start.elapsed();
                        }
                        total
                    })
                })
            });
            runtime.block_on(async {
                drop(handles);
                store.remove().await;
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("queues/claim+acknowledge");
    group.throughput(Throughput::Elements(TASKS));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    for &backend in &backends {
        for n in CONCURRENCY {
            let store = Store::fresh(backend, url.as_deref());
            let handles = runtime.block_on(store.queues(n));
            group.bench_function(format!("{backend}/{}", plural(n, "claimer")), |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            push_all(&handles[..1], batches(1)).await;
                            let start = Instant::now();
                            let claimed = drain(&handles).await;
                            total += start.elapsed();
                            assert_eq!(claimed, TASKS, "every envelope is claimed once");
                        }
                        total
                    })
                })
            });
            runtime.block_on(async {
                drop(handles);
                store.remove().await;
            });
        }
    }
    group.finish();
}

criterion_group!(benches, queues);
criterion_main!(benches);
