//! Per-call cost of a tiny step against a plain function, `#[tracing::instrument]` and
//! `#[fastrace::trace]`, in matching states (DESIGN.md §6):
//!
//! - **off**: telemetry disabled / no `tracing` subscriber / no fastrace root span;
//! - **on**: one no-op custom adapter / a bare `tracing` registry / a fastrace root span with a
//!   reporter that drops spans;
//! - **logging**: the default logger adapter versus `#[instrument]` plus one `info!`, both
//!   through `tracing_subscriber::fmt` into a sink.
//!
//! Async variants are polled by the same minimal executor for every contender.
//!
//! `cargo bench --bench overhead` (OpenTelemetry: `benches/otel.rs`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};

mod common;
use common::*;

struct DropSpans;

impl fastrace::collector::Reporter for DropSpans {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        black_box(spans);
    }
}

/// Runs `iterations` calls inside a fresh fastrace root span, reporting it at the end, so that
/// spans do not pile up under one root for the whole benchmark.
fn in_fastrace_root(iterations: u64, mut call: impl FnMut()) -> Duration {
    let start = Instant::now();
    {
        let root = fastrace::Span::root("bench", fastrace::prelude::SpanContext::random());
        let _guard = root.set_local_parent();
        for _ in 0..iterations {
            call();
        }
    }
    let elapsed = start.elapsed();
    fastrace::flush();
    elapsed
}

fn off(group: &mut BenchmarkGroup<'_, WallTime>) {
    common::off();
    group.bench_function("off/sync/plain fn", |b| b.iter(|| plain(black_box(7))));
    group.bench_function("off/sync/tasker step, telemetry off", |b| {
        b.iter(|| tasker_step(black_box(7)))
    });
    group.bench_function("off/sync/tracing #[instrument], no subscriber", |b| {
        b.iter(|| tracing_step(black_box(7)))
    });
    group.bench_function("off/sync/fastrace #[trace], no root span", |b| {
        b.iter(|| fastrace_step(black_box(7)))
    });
    group.bench_function("off/async/plain async fn", |b| {
        b.iter(|| block_on(plain_async(black_box(7))))
    });
    group.bench_function("off/async/tasker step, telemetry off", |b| {
        b.iter(|| block_on(tasker_step_async(black_box(7))))
    });
    group.bench_function("off/async/tracing #[instrument], no subscriber", |b| {
        b.iter(|| block_on(tracing_step_async(black_box(7))))
    });
    group.bench_function("off/async/fastrace #[trace], no root span", |b| {
        b.iter(|| block_on(fastrace_step_async(black_box(7))))
    });
}

fn on(group: &mut BenchmarkGroup<'_, WallTime>) {
    noop_adapter();
    group.bench_function("on/sync/tasker step, one no-op adapter", |b| {
        b.iter(|| tasker_step(black_box(7)))
    });
    group.bench_function("on/async/tasker step, one no-op adapter", |b| {
        b.iter(|| block_on(tasker_step_async(black_box(7))))
    });
    common::off();

    tracing::subscriber::with_default(tracing_subscriber::registry(), || {
        group.bench_function("on/sync/tracing #[instrument], registry", |b| {
            b.iter(|| tracing_step(black_box(7)))
        });
        group.bench_function("on/async/tracing #[instrument], registry", |b| {
            b.iter(|| block_on(tracing_step_async(black_box(7))))
        });
    });

    fastrace::set_reporter(DropSpans, fastrace::collector::Config::default());
    group.bench_function("on/sync/fastrace #[trace], root span + reporter", |b| {
        b.iter_custom(|iterations| {
            in_fastrace_root(iterations, || {
                black_box(fastrace_step(black_box(7)));
            })
        })
    });
    group.bench_function("on/async/fastrace #[trace], root span + reporter", |b| {
        b.iter_custom(|iterations| {
            in_fastrace_root(iterations, || {
                black_box(block_on(fastrace_step_async(black_box(7))));
            })
        })
    });
}

fn logging(group: &mut BenchmarkGroup<'_, WallTime>) {
    tracing::subscriber::with_default(fmt_to_sink(), || {
        default_logger();
        group.bench_function("logging/sync/tasker step, default logger adapter", |b| {
            b.iter(|| tasker_step(black_box(7)))
        });
        common::off();
    });
    tracing::subscriber::with_default(fmt_to_sink(), || {
        group.bench_function("logging/sync/tracing #[instrument] + one info!", |b| {
            b.iter(|| tracing_step_logged(black_box(7)))
        });
    });
}

fn overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("overhead");
    off(&mut group);
    on(&mut group);
    logging(&mut group);
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
