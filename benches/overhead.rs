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

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use tasker::telemetry::{Adapter, Event};
use tasker::TelemetryAdapter;

/// Polls a future to completion with a no-op waker: the same executor for every contender.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

#[inline(never)]
fn plain(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

#[inline(never)]
async fn plain_async(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

#[tasker::step(max_attempts = 1)]
fn tasker_step(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

#[tasker::step(max_attempts = 1)]
async fn tasker_step_async(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

#[tracing::instrument]
fn tracing_step(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

#[tracing::instrument]
async fn tracing_step_async(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

#[tracing::instrument]
fn tracing_step_logged(value: u64) -> u64 {
    tracing::info!(value, "step ran");
    black_box(value).wrapping_mul(31)
}

#[fastrace::trace]
fn fastrace_step(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

#[fastrace::trace]
async fn fastrace_step_async(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

/// A custom adapter that does nothing: the cost of telemetry itself.
#[derive(Default)]
pub struct NoopAdapter;

impl Adapter for NoopAdapter {
    fn record(&self, event: &Event<'_>) {
        black_box(event);
    }
}

tasker::register_adapter!("bench-noop", NoopAdapter::default);

struct DropSpans;

impl fastrace::collector::Reporter for DropSpans {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        black_box(spans);
    }
}

fn configure(adapters: &[TelemetryAdapter], classes: &[&str], enable: bool) {
    tasker::configure(|config| {
        config.enable_telemetry = enable;
        config.telemetry_adapters = adapters.to_vec();
        config.telemetry_adapter_classes = classes.iter().map(|c| c.to_string()).collect();
    })
    .expect("a valid configuration");
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
    configure(&[TelemetryAdapter::Default], &[], false);
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
    configure(&[TelemetryAdapter::Custom], &["bench-noop"], true);
    group.bench_function("on/sync/tasker step, one no-op adapter", |b| {
        b.iter(|| tasker_step(black_box(7)))
    });
    group.bench_function("on/async/tasker step, one no-op adapter", |b| {
        b.iter(|| block_on(tasker_step_async(black_box(7))))
    });
    configure(&[TelemetryAdapter::Default], &[], false);

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
    let subscriber = || {
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_ansi(false)
            .finish()
    };
    tracing::subscriber::with_default(subscriber(), || {
        configure(&[TelemetryAdapter::Default], &[], true);
        group.bench_function("logging/sync/tasker step, default logger adapter", |b| {
            b.iter(|| tasker_step(black_box(7)))
        });
        configure(&[TelemetryAdapter::Default], &[], false);
    });
    tracing::subscriber::with_default(subscriber(), || {
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
