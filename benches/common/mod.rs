//! The contenders shared by `overhead.rs` (wall-clock, criterion) and `instructions.rs`
//! (instruction counts under callgrind): the same tiny step in every form, one executor.

#![allow(dead_code)] // each benchmark uses its own subset

// Every contender is `#[inline(never)]`, like the plain function: each pays one call, and none is
// folded into the benchmark loop.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use tasker::telemetry::{Adapter, Event};
use tasker::TelemetryAdapter;

/// Polls a future to completion with a no-op waker: the same executor for every contender.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

#[inline(never)]
pub fn plain(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

#[inline(never)]
pub async fn plain_async(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

#[tasker::step(max_attempts = 1)]
#[inline(never)]
pub fn tasker_step(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

#[tasker::step(max_attempts = 1)]
#[inline(never)]
pub async fn tasker_step_async(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

/// The same step with the default policy (three attempts), whose arguments are kept for a retry.
#[tasker::step]
#[inline(never)]
pub fn tasker_step_retrying(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

#[tracing::instrument]
#[inline(never)]
pub fn tracing_step(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

#[tracing::instrument]
#[inline(never)]
pub async fn tracing_step_async(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

#[tracing::instrument]
#[inline(never)]
pub fn tracing_step_logged(value: u64) -> u64 {
    tracing::info!(value, "step ran");
    black_box(value).wrapping_mul(31)
}

#[fastrace::trace]
#[inline(never)]
pub fn fastrace_step(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

#[fastrace::trace]
#[inline(never)]
pub async fn fastrace_step_async(value: u64) -> u64 {
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

/// Sets Tasker's configuration for a benchmark state.
pub fn configure(adapters: &[TelemetryAdapter], classes: &[&str], enable: bool) {
    tasker::configure(|config| {
        config.enable_telemetry = enable;
        config.telemetry_adapters = adapters.to_vec();
        config.telemetry_adapter_classes = classes.iter().map(|c| c.to_string()).collect();
    })
    .expect("a valid configuration");
}

/// Telemetry off.
pub fn off() {
    configure(&[TelemetryAdapter::Default], &[], false);
}

/// Telemetry on with one no-op custom adapter.
pub fn noop_adapter() {
    configure(&[TelemetryAdapter::Custom], &["bench-noop"], true);
}

/// Telemetry on with the default logger adapter.
pub fn default_logger() {
    configure(&[TelemetryAdapter::Default], &[], true);
}

/// The `tracing` subscriber of the logging rows: `fmt` into a sink.
pub fn fmt_to_sink() -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_ansi(false)
        .finish()
}
