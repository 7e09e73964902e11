//! The tracer and meter providers a configuration names: small handles that compare by pointer,
//! so that `Configuration` stays `Clone + PartialEq + Eq + Debug`.

use std::fmt;
use std::sync::Arc;

use opentelemetry::global::{self, BoxedTracer, ObjectSafeTracerProvider};
use opentelemetry::metrics::{Meter, MeterProvider};
use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId,
    TraceState, Tracer, TracerProvider,
};
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use super::direct_export::DirectExport;
use crate::notice::Notice;

/// The instrumentation scope of everything Tasker records: `tasker` and the crate's version.
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("tasker")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// A tracer provider for [`Configuration::tracer_provider`](crate::Configuration): a
/// [`DirectExport`] (the fast path: spans are built once, at their end, and exported in batches
/// off the caller's thread), the SDK's provider (spans are SDK spans while they run, through its
/// processors: every processor and exporter of the provider sees them), or any other
/// implementation (spans are boxed).
///
/// Two handles are equal when they are clones of the same handle.
///
/// ```
/// use opentelemetry_sdk::trace::SdkTracerProvider;
/// use tasker::telemetry::otel::TracerProviderHandle;
///
/// let provider = SdkTracerProvider::builder().build();
/// let handle = TracerProviderHandle::from(provider);
/// assert_eq!(handle, handle.clone());
/// assert_ne!(handle, TracerProviderHandle::from(SdkTracerProvider::builder().build()));
/// ```
#[derive(Clone)]
pub struct TracerProviderHandle(Arc<TracerSource>);

enum TracerSource {
    Sdk(SdkTracerProvider),
    Other(Box<dyn ObjectSafeTracerProvider + Send + Sync>),
    Direct(DirectExport),
}

impl TracerProviderHandle {
    /// A handle on any tracer provider; its spans are boxed. Prefer `From<SdkTracerProvider>`.
    pub fn new<P, T, S>(provider: P) -> Self
    where
        S: opentelemetry::trace::Span + Send + Sync + 'static,
        T: Tracer<Span = S> + Send + Sync + 'static,
        P: TracerProvider<Tracer = T> + Send + Sync + 'static,
    {
        Self(Arc::new(TracerSource::Other(Box::new(provider))))
    }

    /// The SDK provider, when this handle holds one.
    pub fn as_sdk(&self) -> Option<&SdkTracerProvider> {
        match &*self.0 {
            TracerSource::Sdk(provider) => Some(provider),
            TracerSource::Other(_) | TracerSource::Direct(_) => None,
        }
    }

    /// The direct export, when this handle holds one.
    pub fn as_direct(&self) -> Option<&DirectExport> {
        match &*self.0 {
            TracerSource::Direct(export) => Some(export),
            TracerSource::Sdk(_) | TracerSource::Other(_) => None,
        }
    }
}

/// The adapter's fast path: spans built once at their end and exported in batches by the
/// export's own thread, without SDK spans on the caller's thread.
impl From<DirectExport> for TracerProviderHandle {
    fn from(export: DirectExport) -> Self {
        Self(Arc::new(TracerSource::Direct(export)))
    }
}

impl From<SdkTracerProvider> for TracerProviderHandle {
    fn from(provider: SdkTracerProvider) -> Self {
        Self(Arc::new(TracerSource::Sdk(provider)))
    }
}

impl PartialEq for TracerProviderHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TracerProviderHandle {}

impl fmt::Debug for TracerProviderHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &*self.0 {
            TracerSource::Sdk(_) => "sdk",
            TracerSource::Other(_) => "other",
            TracerSource::Direct(_) => "direct",
        };
        write!(
            f,
            "TracerProviderHandle({kind} @ {:p})",
            Arc::as_ptr(&self.0)
        )
    }
}

/// A meter provider for [`Configuration::meter_provider`](crate::Configuration).
///
/// Two handles are equal when they are clones of the same handle.
#[derive(Clone)]
pub struct MeterProviderHandle(Arc<dyn MeterProvider + Send + Sync>);

impl MeterProviderHandle {
    /// A handle on any meter provider.
    pub fn new(provider: impl MeterProvider + Send + Sync + 'static) -> Self {
        Self(Arc::new(provider))
    }

    pub(crate) fn meter(&self) -> Meter {
        self.0.meter_with_scope(scope())
    }
}

impl From<SdkMeterProvider> for MeterProviderHandle {
    fn from(provider: SdkMeterProvider) -> Self {
        Self::new(provider)
    }
}

impl PartialEq for MeterProviderHandle {
    fn eq(&self, other: &Self) -> bool {
        // Compare the data pointers only: vtable pointers of one type may differ between
        // codegen units.
        std::ptr::addr_eq(Arc::as_ptr(&self.0), Arc::as_ptr(&other.0))
    }
}

impl Eq for MeterProviderHandle {}

impl fmt::Debug for MeterProviderHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeterProviderHandle({:p})", Arc::as_ptr(&self.0))
    }
}

/// The tracer the adapter uses: its own direct export, else the SDK's tracer type when it can,
/// else a boxed one.
pub(crate) enum ChosenTracer {
    Direct(DirectExport),
    Sdk(SdkTracer),
    Boxed(BoxedTracer),
}

/// The direct export of the guard whose providers
/// [`OtelGuard::install_global`](super::OtelGuard::install_global) installed as OpenTelemetry's
/// globals: the adapter's path when the configuration names no provider.
static GLOBAL_DIRECT: std::sync::Mutex<Option<DirectExport>> = std::sync::Mutex::new(None);

/// Makes `export` (or nothing) the adapter's path when no provider is configured.
pub(crate) fn set_global_direct(export: Option<DirectExport>) {
    *GLOBAL_DIRECT.lock().unwrap_or_else(|e| e.into_inner()) = export;
}

/// Forgets the global direct export if it is `export` (a guard being dropped).
pub(crate) fn clear_global_direct(export: &DirectExport) {
    let mut global = GLOBAL_DIRECT.lock().unwrap_or_else(|e| e.into_inner());
    if global
        .as_ref()
        .is_some_and(|installed| installed.same_as(export))
    {
        *global = None;
    }
}

/// The configured provider's tracer, else the direct export installed with the global
/// providers by [`init_from_env`](super::init_from_env), else the global provider's (as
/// installed when `configure` runs).
pub(crate) fn choose_tracer(configured: Option<&TracerProviderHandle>) -> ChosenTracer {
    if configured.is_none() {
        let global = GLOBAL_DIRECT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(export) = global {
            return ChosenTracer::Direct(export);
        }
    }
    match configured.map(|handle| &*handle.0) {
        Some(TracerSource::Sdk(provider)) => ChosenTracer::Sdk(provider.tracer_with_scope(scope())),
        Some(TracerSource::Other(provider)) => {
            ChosenTracer::Boxed(BoxedTracer::new(provider.boxed_tracer(scope())))
        }
        Some(TracerSource::Direct(export)) => ChosenTracer::Direct(export.clone()),
        None => {
            let tracer = global::tracer_provider().tracer_with_scope(scope());
            if is_noop(&tracer) {
                NO_TRACER_PROVIDER.say(|| NO_TRACER_PROVIDER_MESSAGE.to_owned());
            }
            ChosenTracer::Boxed(tracer)
        }
    }
}

/// Said when the adapter falls back on OpenTelemetry's no-op global provider.
static NO_TRACER_PROVIDER: Notice = Notice::new();

const NO_TRACER_PROVIDER_MESSAGE: &str =
    "the OpenTelemetry adapter has no tracer provider: `config.tracer_provider` is unset and no \
     global provider is installed, so every span goes to OpenTelemetry's no-op provider and is \
     lost; call `tasker::telemetry::otel::init_from_env()` before `configure` (or \
     `opentelemetry::global::set_tracer_provider` with your SDK provider), or set \
     `config.tracer_provider`";

/// Whether `tracer` is OpenTelemetry's no-op one, the global default until a provider is
/// installed. A no-op tracer hands back its parent's span context whatever the context says; an
/// SDK tracer builds nothing under a context whose telemetry is suppressed, so the probe is
/// never recorded nor exported.
fn is_noop(tracer: &BoxedTracer) -> bool {
    let probe = SpanContext::new(
        TraceId::from_bytes([0x7a; 16]),
        SpanId::from_bytes([0x7a; 8]),
        TraceFlags::default(),
        true,
        TraceState::default(),
    );
    let parent = opentelemetry::Context::new()
        .with_remote_span_context(probe.clone())
        .with_telemetry_suppressed();
    let span = tracer.build_with_context(SpanBuilder::from_name("tasker.probe"), &parent);
    *span.span_context() == probe
}

/// The configured provider's meter, else the global provider's.
pub(crate) fn choose_meter(configured: Option<&MeterProviderHandle>) -> Meter {
    match configured {
        Some(handle) => handle.meter(),
        None => global::meter_provider().meter_with_scope(scope()),
    }
}
