//! Cost of one step call exported as an OpenTelemetry span, on the same SDK setup for every
//! contender: a `SdkTracerProvider` with the simple processor and an exporter that drops spans.
//!
//! - tasker: `#[tasker::step]` with the OpenTelemetry adapter (metrics to the global no-op meter);
//! - tracing: `#[tracing::instrument]` through `tracing-opentelemetry` on a registry;
//! - raw SDK: `tracer.in_span(..)` around the same body;
//! - tasker with the adapter's direct export (spans built at their end on the export's thread),
//!   and its peer, the SDK's `in_span` with the batch processor.
//!
//! `cargo bench --features opentelemetry --bench otel`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::trace::{Tracer, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tasker::telemetry::otel::{DirectExport, TracerProviderHandle};
use tasker::TelemetryAdapter;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug)]
struct DropSpans;

impl SpanExporter for DropSpans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

fn provider() -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_simple_exporter(DropSpans)
        .build()
}

#[tasker::step(max_attempts = 1)]
#[inline(never)]
fn tasker_step(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

#[tracing::instrument]
#[inline(never)]
fn tracing_step(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

#[inline(never)]
fn plain_step(value: u64) -> u64 {
    black_box(value).wrapping_mul(31)
}

fn per_step_call(c: &mut Criterion) {
    let mut group = c.benchmark_group("opentelemetry/step call");

    let tasker_provider = provider();
    tasker::configure(|config| {
        config.enable_telemetry = true;
        config.telemetry_adapters = vec![TelemetryAdapter::OpenTelemetry];
        config.tracer_provider = Some(TracerProviderHandle::from(tasker_provider.clone()));
    })
    .expect("the OpenTelemetry adapter is available");
    group.bench_function("tasker step, OpenTelemetry adapter", |b| {
        b.iter(|| tasker_step(black_box(7)))
    });
    tasker::configure(|config| {
        config.enable_telemetry = false;
        config.tracer_provider = None;
    })
    .expect("telemetry turns off");

    // The adapter's direct export: spans built at their end on the export's own thread.
    let export = DirectExport::builder(DropSpans)
        .with_max_queue_size(1 << 16)
        .build()
        .expect("the direct export starts");
    tasker::configure(|config| {
        config.enable_telemetry = true;
        config.telemetry_adapters = vec![TelemetryAdapter::OpenTelemetry];
        config.tracer_provider = Some(TracerProviderHandle::from(export.clone()));
    })
    .expect("the OpenTelemetry adapter is available");
    group.bench_function("tasker step, OpenTelemetry adapter, direct export", |b| {
        b.iter(|| tasker_step(black_box(7)))
    });
    tasker::configure(|config| {
        config.enable_telemetry = false;
        config.tracer_provider = None;
    })
    .expect("telemetry turns off");
    export.flush();
    println!("direct export: {:?}", export.stats());

    let tracing_provider = provider();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracing_provider.tracer("bench")));
    tracing::subscriber::with_default(subscriber, || {
        group.bench_function("tracing #[instrument] + tracing-opentelemetry", |b| {
            b.iter(|| tracing_step(black_box(7)))
        });
    });

    let raw_provider = provider();
    let tracer = raw_provider.tracer("bench");
    group.bench_function("OpenTelemetry SDK in_span", |b| {
        b.iter(|| tracer.in_span("step", |_| plain_step(black_box(7))))
    });
    let batch_provider = SdkTracerProvider::builder()
        .with_batch_exporter(DropSpans)
        .build();
    let batch_tracer = batch_provider.tracer("bench");
    group.bench_function("OpenTelemetry SDK in_span, batch processor", |b| {
        b.iter(|| batch_tracer.in_span("step", |_| plain_step(black_box(7))))
    });
    group.finish();
}

criterion_group!(benches, per_step_call);
criterion_main!(benches);
