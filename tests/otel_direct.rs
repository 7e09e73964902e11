//! The OpenTelemetry adapter's direct export: the sampler decision it makes itself, and what it
//! counts. The span trees themselves are checked by `otel_spans.rs`, `otel_queue.rs` and
//! `otel_export.rs`, which run on this path.
#![cfg(feature = "opentelemetry")]

use std::sync::Mutex;

use opentelemetry_sdk::trace::InMemorySpanExporter;
use tasker::telemetry::otel::{DirectExport, DirectExportStats, SamplerSetting};
use tasker::TelemetryAdapter;

/// The adapter is configured process-wide: the tests of this binary take turns.
static TURN: Mutex<()> = Mutex::new(());

#[tasker::step(max_attempts = 1)]
fn validate(order_id: u64) -> u64 {
    order_id
}

#[tasker::task(name = "direct_checkout", version = "1.0.0")]
fn checkout(order_id: u64) -> u64 {
    validate(order_id) + validate(order_id + 1)
}

/// Runs `tasks` checkouts with the adapter exporting through a direct export with `sampler`;
/// returns the exported spans' names (sorted) and the export's counts.
fn run_with(sampler: SamplerSetting, tasks: u64) -> (Vec<String>, DirectExportStats) {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let exporter = InMemorySpanExporter::default();
    let export = DirectExport::builder(exporter.clone())
        .with_sampler(sampler)
        .build()
        .expect("the direct export starts");
    tasker::configure(|config| {
        config.enable_telemetry = true;
        config.telemetry_adapters = vec![TelemetryAdapter::OpenTelemetry];
        config.tracer_provider = Some(export.clone().into());
    })
    .expect("configured");
    for order_id in 0..tasks {
        assert_eq!(checkout(order_id * 10), order_id * 20 + 1);
    }
    tasker::configure(|config| {
        config.enable_telemetry = false;
        config.tracer_provider = None;
    })
    .expect("telemetry turns off");
    assert!(export.flush(), "flushed within the timeout");
    let mut names: Vec<String> = exporter
        .get_finished_spans()
        .expect("readable")
        .iter()
        .map(|span| span.name.to_string())
        .collect();
    names.sort();
    (names, export.stats())
}

#[test]
fn a_sampled_task_exports_its_span_and_its_steps() {
    let (names, stats) = run_with(SamplerSetting::ParentBasedAlwaysOn, 1);
    assert_eq!(
        names,
        ["step.validate", "step.validate", "task.direct_checkout"]
    );
    assert_eq!(
        stats,
        DirectExportStats {
            exported: 3,
            dropped: 0,
            unsampled: 0
        }
    );
}

#[test]
fn an_unsampled_root_leaves_its_whole_trace_unexported_and_counted() {
    let (names, stats) = run_with(SamplerSetting::ParentBasedAlwaysOff, 2);
    assert!(names.is_empty(), "{names:?}");
    assert_eq!(
        stats,
        DirectExportStats {
            exported: 0,
            dropped: 0,
            unsampled: 6
        }
    );
}

#[test]
fn a_ratio_sampler_keeps_or_drops_whole_traces() {
    let (names, stats) = run_with(SamplerSetting::ParentBasedTraceIdRatio(0.5), 400);
    let tasks = names
        .iter()
        .filter(|name| *name == "task.direct_checkout")
        .count();
    // Children follow their task's decision: two steps per exported task, none without it.
    assert_eq!(names.len(), tasks * 3);
    assert_eq!(stats.exported as usize, tasks * 3);
    assert_eq!(stats.unsampled as usize, (400 - tasks) * 3);
    assert!((120..280).contains(&tasks), "{tasks} of 400 traces at 0.5");
}
