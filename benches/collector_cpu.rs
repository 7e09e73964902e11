//! CPU per step call on the caller's thread and on the collector thread, side by side, so that
//! moving work to another thread is never counted as saving it (DESIGN.md §6): Tasker with one
//! no-op custom adapter (delivered by its collector) against fastrace's enabled path (a root
//! span with a reporter, delivered by fastrace's own collector thread).
//!
//! Thread CPU comes from `/proc/self/task/<tid>/schedstat` (nanoseconds on the CPU), read for the
//! calling thread and for the collector threads by name. Run:
//! `cargo bench --all-features --bench collector_cpu`.

use std::hint::black_box;
use std::time::{Duration, Instant};

mod common;
use common::*;

/// Nanoseconds on the CPU of every thread of this process whose name starts with `prefix`.
fn threads_cpu(prefix: &str) -> Duration {
    let mut total = 0u64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if name.trim_end().starts_with(prefix) {
            total += schedstat(&path.join("schedstat"));
        }
    }
    Duration::from_nanos(total)
}

fn schedstat(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The calling thread's CPU time.
fn own_cpu() -> Duration {
    Duration::from_nanos(schedstat(std::path::Path::new(
        "/proc/thread-self/schedstat",
    )))
}

#[tasker::task(name = "bench_collector_task", version = "1")]
fn many_steps(calls: u64) -> u64 {
    let mut sum = 0u64;
    for i in 0..calls {
        sum = sum.wrapping_add(tasker_step(black_box(i)));
    }
    sum
}

struct DropSpans;

impl fastrace::collector::Reporter for DropSpans {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        black_box(spans);
    }
}

const CALLS: u64 = 4_000;
const ROUNDS: u64 = 100;

fn main() {
    noop_adapter();
    // Warm-up: the collector thread, buffers, pools.
    black_box(many_steps(CALLS));
    assert!(tasker::telemetry::flush());

    let dropped = tasker::telemetry::collector::stats().dropped;
    let (caller_before, collector_before) = (own_cpu(), threads_cpu("tasker-collect"));
    let started = Instant::now();
    for _ in 0..ROUNDS {
        black_box(many_steps(black_box(CALLS)));
        // Waits (off the CPU) until the collector delivered the round: bounded buffers.
        assert!(tasker::telemetry::flush());
    }
    let wall = started.elapsed();
    let caller = own_cpu() - caller_before;
    let collector = threads_cpu("tasker-collect") - collector_before;
    let dropped = tasker::telemetry::collector::stats().dropped - dropped;
    let calls = (CALLS * ROUNDS) as f64;
    let events = calls * 2.0 + ROUNDS as f64 * 5.0;
    println!(
        "tasker, one no-op adapter: caller {:.1} ns/call, collector {:.1} ns/call, total {:.1} \
         ns/call; collector {:.2} M events/s of its CPU; dropped {dropped}; wall {wall:?}",
        caller.as_nanos() as f64 / calls,
        collector.as_nanos() as f64 / calls,
        (caller + collector).as_nanos() as f64 / calls,
        events / collector.as_secs_f64() / 1e6,
    );
    off();

    fastrace::set_reporter(DropSpans, fastrace::collector::Config::default());
    let run_fastrace = || {
        let root = fastrace::Span::root("bench", fastrace::prelude::SpanContext::random());
        let _guard = root.set_local_parent();
        for i in 0..CALLS {
            black_box(fastrace_step(black_box(i)));
        }
    };
    run_fastrace();
    fastrace::flush();
    let (caller_before, collector_before) = (own_cpu(), threads_cpu("fastrace"));
    for _ in 0..ROUNDS {
        run_fastrace();
        fastrace::flush();
    }
    let caller = own_cpu() - caller_before;
    let collector = threads_cpu("fastrace") - collector_before;
    println!(
        "fastrace #[trace], root span + reporter: caller {:.1} ns/call, collector {:.1} ns/call, \
         total {:.1} ns/call",
        caller.as_nanos() as f64 / calls,
        collector.as_nanos() as f64 / calls,
        (caller + collector).as_nanos() as f64 / calls,
    );
}
