//! Export errors: counted, and reported once through `tracing`, never passed on to tasks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use super::settings::{OtlpProtocol, OtlpSettings};
use crate::notice::say;

/// How many exports have failed since the exporters were built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportErrorCounts {
    /// Failed exports of span batches.
    pub spans: u64,
    /// Failed exports of metrics.
    pub metrics: u64,
}

/// The error counters shared by the exporters of one [`OtelGuard`](super::OtelGuard).
#[derive(Debug)]
pub(crate) struct ExportErrors {
    spans: AtomicU64,
    metrics: AtomicU64,
    reported: AtomicBool,
    /// Named in the first error's report, so that a wrong port or protocol is plain to see.
    protocol: OtlpProtocol,
    traces_endpoint: String,
    metrics_endpoint: String,
}

impl ExportErrors {
    pub(crate) fn new(settings: &OtlpSettings) -> Self {
        Self {
            spans: AtomicU64::new(0),
            metrics: AtomicU64::new(0),
            reported: AtomicBool::new(false),
            protocol: settings.protocol,
            traces_endpoint: settings.traces_endpoint.clone(),
            metrics_endpoint: settings.metrics_endpoint.clone(),
        }
    }

    pub(crate) fn counts(&self) -> ExportErrorCounts {
        ExportErrorCounts {
            spans: self.spans.load(Ordering::Relaxed),
            metrics: self.metrics.load(Ordering::Relaxed),
        }
    }

    fn count(&self, counter: &AtomicU64, what: &str, endpoint: &str, result: &OTelSdkResult) {
        let Err(error) = result else { return };
        counter.fetch_add(1, Ordering::Relaxed);
        if !self.reported.swap(true, Ordering::Relaxed) {
            say(&export_failed_message(what, endpoint, self.protocol, error));
        }
    }
}

/// The report of the first failed export: where, how, and the variable that picks the protocol
/// (an exporter speaking the wrong one is the usual cause).
pub(crate) fn export_failed_message(
    what: &str,
    endpoint: &str,
    protocol: OtlpProtocol,
    error: &dyn std::fmt::Display,
) -> String {
    format!(
        "exporting {what} over OTLP to {endpoint} with protocol {protocol} failed: {error}; check \
         that a collector listens there and speaks {protocol}, or set \
         OTEL_EXPORTER_OTLP_PROTOCOL (`http/protobuf`, usually port 4318, or `grpc`, usually \
         port 4317) and OTEL_EXPORTER_OTLP_ENDPOINT to match it; tasks are not affected, and \
         further export errors are counted (OtelGuard::export_errors) but not logged"
    )
}

/// A span exporter that counts the failures of the one it wraps.
#[derive(Debug)]
pub(crate) struct CountingSpanExporter<E> {
    pub(crate) inner: E,
    pub(crate) errors: Arc<ExportErrors>,
}

impl<E: SpanExporter> SpanExporter for CountingSpanExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        let errors = &*self.errors;
        errors.count(&errors.spans, "spans", &errors.traces_endpoint, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A metric exporter that counts the failures of the one it wraps.
#[derive(Debug)]
pub(crate) struct CountingMetricExporter<E> {
    pub(crate) inner: E,
    pub(crate) errors: Arc<ExportErrors>,
}

impl<E: PushMetricExporter> PushMetricExporter for CountingMetricExporter<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        let errors = &*self.errors;
        errors.count(
            &errors.metrics,
            "metrics",
            &errors.metrics_endpoint,
            &result,
        );
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}
