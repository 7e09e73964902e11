//! The metrics of the OpenTelemetry adapter: `tasker.task.duration`, `tasker.step.duration`,
//! `tasker.step.attempts` and `tasker.step.retries`, with their attributes, from the same events
//! as the spans.
#![cfg(feature = "opentelemetry")]

mod otel_support;

use std::collections::BTreeMap;

use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use otel_support::{value, Otel};
use tasker::telemetry::otel::MeterProviderHandle;

#[derive(Debug, thiserror::Error)]
#[error("card declined")]
struct CardDeclined;

#[tasker::step(max_attempts = 1)]
fn validate(order_id: u64) -> Result<u64, CardDeclined> {
    Ok(order_id)
}

#[tasker::step(max_attempts = 3, backoff_ms = 1, jitter = 0.0)]
async fn charge(declined: bool) -> Result<u64, CardDeclined> {
    if declined {
        return Err(CardDeclined);
    }
    Ok(1999)
}

fn always(_declined: &bool) -> bool {
    true
}

#[tasker::step(skip_if = always)]
async fn gift_wrap(declined: bool) -> Result<(), CardDeclined> {
    let _ = declined;
    Ok(())
}

#[tasker::task(name = "checkout", version = "1.0.0")]
async fn checkout(declined: bool) -> Result<u64, CardDeclined> {
    validate(7)?;
    gift_wrap(declined).await?;
    charge(declined).await
}

/// One line per data point: `metric {attributes} = value` (histograms: `count=…`), sorted.
fn data_points(metrics: &[ResourceMetrics]) -> Vec<String> {
    let last = metrics.last().expect("an export happened");
    let mut lines = Vec::new();
    for scope in last.scope_metrics() {
        assert_eq!(scope.scope().name(), "tasker");
        for metric in scope.metrics() {
            let name = metric.name();
            match metric.data() {
                AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
                    assert_eq!(metric.unit(), "s", "{name} is in seconds");
                    for point in histogram.data_points() {
                        assert!(point.sum() >= 0.0);
                        lines.push(format!(
                            "{name} {} count={}",
                            attributes(point.attributes()),
                            point.count()
                        ));
                    }
                }
                AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                    assert!(sum.is_monotonic(), "{name} is a counter");
                    for point in sum.data_points() {
                        lines.push(format!(
                            "{name} {} = {}",
                            attributes(point.attributes()),
                            point.value()
                        ));
                    }
                }
                _ => panic!("unexpected instrument {name}"),
            }
        }
    }
    lines.sort();
    lines
}

fn attributes<'a>(attributes: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> String {
    let sorted: BTreeMap<&str, String> = attributes
        .map(|attribute| (attribute.key.as_str(), value(&attribute.value)))
        .collect();
    let pairs: Vec<String> = sorted
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    format!("{{{}}}", pairs.join(" "))
}

#[test]
fn durations_attempts_and_retries_are_recorded_with_their_outcome() {
    let exporter = InMemoryMetricExporter::default();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let _otel = Otel::with_meter(Some(MeterProviderHandle::from(meter_provider.clone())));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    assert_eq!(runtime.block_on(checkout(false)).unwrap(), 1999);
    assert!(runtime.block_on(checkout(true)).is_err());
    meter_provider.force_flush().expect("metrics flushed");

    let task = "tasker.task.name=\"checkout\"";
    let failed = "error.type=\"otel_metrics::CardDeclined\"";
    assert_eq!(
        data_points(&exporter.get_finished_metrics().expect("metrics")),
        [
            format!("tasker.step.attempts {{tasker.step.name=\"charge\" {task}}} = 4"),
            format!("tasker.step.attempts {{tasker.step.name=\"validate\" {task}}} = 2"),
            format!("tasker.step.duration {{{failed} tasker.step.name=\"charge\" tasker.step.result=\"failure\" {task}}} count=1"),
            format!("tasker.step.duration {{tasker.step.name=\"charge\" tasker.step.result=\"success\" {task}}} count=1"),
            format!("tasker.step.duration {{tasker.step.name=\"gift_wrap\" tasker.step.result=\"skip\" {task}}} count=2"),
            format!("tasker.step.duration {{tasker.step.name=\"validate\" tasker.step.result=\"success\" {task}}} count=2"),
            format!("tasker.step.retries {{tasker.step.name=\"charge\" {task}}} = 2"),
            format!("tasker.task.duration {{{failed} {task} tasker.task.result=\"failure\"}} count=1"),
            format!("tasker.task.duration {{{task} tasker.task.result=\"success\"}} count=1"),
        ]
    );
}

#[test]
fn metrics_switched_off_record_nothing_while_spans_are_still_exported() {
    let exporter = InMemoryMetricExporter::default();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let otel = Otel::with_meter(Some(MeterProviderHandle::from(meter_provider.clone())));
    tasker::configure(|config| config.otel_metrics = false).expect("configured");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    assert_eq!(runtime.block_on(checkout(false)).unwrap(), 1999);
    meter_provider.force_flush().expect("metrics flushed");

    let points: usize = exporter
        .get_finished_metrics()
        .expect("metrics")
        .iter()
        .flat_map(|resource| resource.scope_metrics())
        .map(|scope| scope.metrics().count())
        .sum();
    assert_eq!(points, 0, "no instrument recorded anything");
    let mut names: Vec<String> = otel
        .spans()
        .iter()
        .map(|span| span.name.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "step.charge",
            "step.gift_wrap",
            "step.validate",
            "task.checkout"
        ]
    );
}
