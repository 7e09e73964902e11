//! Memory stays bounded: one million 10-step tasks through `tasker::Runtime` (telemetry on, one
//! no-op adapter), resident memory sampled every 100,000 tasks. Fails if it grows by more than
//! 10 % (plus 8 MiB of slack for allocator noise) after the first 100,000 (warm-up).
//!
//! `cargo bench --bench memory` (add `-- 200000` for a shorter run).

use std::hint::black_box;

use tasker::telemetry::{Adapter, Event};
use tasker::TelemetryAdapter;

#[tasker::step(max_attempts = 1)]
async fn work(value: u64) -> u64 {
    black_box(value).wrapping_mul(31).wrapping_add(7)
}

#[tasker::task(name = "memory_ten_steps", version = "1.0.0")]
async fn ten_steps(seed: u64) -> u64 {
    let mut value = seed;
    for _ in 0..10 {
        value = work(value).await;
    }
    value
}

#[derive(Default)]
pub struct NoopAdapter;

impl Adapter for NoopAdapter {
    fn record(&self, event: &Event<'_>) {
        black_box(event);
    }
}

tasker::register_adapter!("memory-noop", NoopAdapter::default);

/// Resident set size in bytes, from /proc/self/statm (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: u64 = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    tasker::configure(|config| {
        config.enable_telemetry = true;
        config.telemetry_adapters = vec![TelemetryAdapter::Custom];
        config.telemetry_adapter_classes = vec!["memory-noop".into()];
    })?;
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let (warm, end) = runtime.block_on(async {
        let tasker = tasker::Runtime::builder().workers(2).build()?;
        let batch = 10_000;
        let mut warm = 0;
        let mut done = 0;
        while done < total {
            let mut handles = Vec::with_capacity(batch as usize);
            for seed in done..done + batch {
                handles.push(
                    tasker
                        .enqueue(tasker::TaskRequest::new("memory_ten_steps", &seed)?)
                        .await?,
                );
            }
            for handle in handles {
                black_box(handle.wait().await?);
            }
            done += batch;
            if done % 100_000 == 0 {
                let now = rss();
                println!("{done:>9} tasks: RSS {:.1} MiB", mib(now));
                if done == 100_000 {
                    warm = now;
                }
            }
        }
        tasker.shutdown().await;
        Ok::<_, Box<dyn std::error::Error>>((warm.max(1), rss()))
    })?;
    let growth = end as f64 / warm as f64 - 1.0;
    println!(
        "RSS after warm-up {:.1} MiB, at the end {:.1} MiB: {:+.1} %",
        mib(warm),
        mib(end),
        growth * 100.0
    );
    if end > warm + warm / 10 + 8 * 1024 * 1024 {
        return Err(format!("resident memory grew by {:.1} %", growth * 100.0).into());
    }
    Ok(())
}
