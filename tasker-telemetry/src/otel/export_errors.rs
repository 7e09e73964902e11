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

/// How many exports have failed since the exporters were built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportErrorCounts {
    /// Failed exports of span batches.
    pub spans: u64,
    /// Failed exports of metrics.
    pub metrics: u64,
}

/// The error counters shared by the exporters of one [`OtelGuard`](super::OtelGuard).
#[derive(Debug, Default)]
pub(crate) struct ExportErrors {
    spans: AtomicU64,
    metrics: AtomicU64,
    reported: AtomicBool,
}

impl ExportErrors {
    pub(crate) fn counts(&self) -> ExportErrorCounts {
        ExportErrorCounts {
            spans: self.spans.load(Ordering::Relaxed),
            metrics: self.metrics.load(Ordering::Relaxed),
        }
    }

    fn count(&self, counter: &AtomicU64, what: &str, result: &OTelSdkResult) {
        let Err(error) = result else { return };
        counter.fetch_add(1, Ordering::Relaxed);
        if !self.reported.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "tasker::otel",
                "exporting {what} over OTLP failed: {error}; tasks are not affected, and further \
                 export errors are counted (OtelGuard::export_errors) but not logged"
            );
        }
    }
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
        self.errors.count(&self.errors.spans, "spans", &result);
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
        self.errors.count(&self.errors.metrics, "metrics", &result);
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
