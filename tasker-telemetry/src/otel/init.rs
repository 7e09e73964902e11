//! `init_from_env`: tracer and meter providers exporting over OTLP, configured by the standard
//! `OTEL_*` variables ([`OtlpSettings`]), and a guard that flushes and shuts them down.
//!
//! Nothing here may panic, whatever the variables say and wherever it is called: inside a
//! multi-thread or a current-thread Tokio runtime, or outside any. The gRPC exporter's own
//! runtime is therefore held by [`ExportRuntime`], which never blocks when dropped (dropping a
//! Tokio runtime inside an async context panics, and that is what an early `?` used to do).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use super::direct_export::DirectExport;
use super::export_errors::{
    CountingMetricExporter, CountingSpanExporter, ExportErrorCounts, ExportErrors,
};
use super::providers::{MeterProviderHandle, TracerProviderHandle};
use super::settings::{check_header, OtelInitError, OtlpProtocol, OtlpSettings};

/// The Tokio runtime that drives the gRPC exporter (none for HTTP), shut down without blocking
/// however it is dropped: on an error path of [`OtlpSettings::build`] or with the guard.
struct ExportRuntime(Option<tokio::runtime::Runtime>);

impl ExportRuntime {
    fn for_protocol(protocol: OtlpProtocol) -> Result<Self, OtelInitError> {
        match protocol {
            // tonic's channel lives on a Tokio runtime: use one of our own, so that neither the
            // application's runtime flavour nor its shutdown can stall an export.
            OtlpProtocol::Grpc => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("tasker-otlp")
                .enable_all()
                .build()
                .map(|runtime| ExportRuntime(Some(runtime)))
                .map_err(OtelInitError::Runtime),
            OtlpProtocol::HttpProtobuf => Ok(ExportRuntime(None)),
        }
    }

    fn enter(&self) -> Option<tokio::runtime::EnterGuard<'_>> {
        self.0.as_ref().map(tokio::runtime::Runtime::enter)
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl OtlpSettings {
    /// Builds the tracer and meter providers, exporting in the background (batched spans,
    /// periodic metrics), without installing them anywhere.
    ///
    /// Give them to the adapter with [`OtelGuard::configure`] (or the configuration's
    /// `tracer_provider` and `meter_provider`); [`init_from_env`] also installs them globally.
    pub fn build(self) -> Result<OtelGuard, OtelInitError> {
        // Headers first: a bad one is refused before any thread or runtime exists.
        for (name, value) in &self.headers {
            check_header(name, value).map_err(|reason| OtelInitError::InvalidHeader {
                name: name.clone(),
                reason,
            })?;
        }
        let runtime = ExportRuntime::for_protocol(self.protocol)?;
        // Every exporter before any provider, so that an error leaves no batch thread behind.
        // Tasker's own spans go through a direct export with an exporter of its own; the
        // provider carries the application's other spans.
        let (span_exporter, direct_span_exporter, metric_exporter) = {
            let _entered = runtime.enter();
            (
                self.span_exporter()?,
                self.span_exporter()?,
                self.metric_exporter()?,
            )
        };
        let errors = Arc::new(ExportErrors::new(&self));
        let resource = Resource::builder_empty()
            .with_detector(Box::new(TelemetryResourceDetector))
            .with_service_name(self.service_name.clone())
            .with_attributes(
                self.resource_attributes
                    .iter()
                    .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
            )
            .build();

        let tracer_provider = SdkTracerProvider::builder()
            .with_span_processor(
                BatchSpanProcessor::builder(CountingSpanExporter {
                    inner: span_exporter,
                    errors: errors.clone(),
                })
                .build(),
            )
            .with_sampler(self.sampler.sampler())
            .with_resource(resource.clone())
            .build();

        let direct_export = DirectExport::builder(CountingSpanExporter {
            inner: direct_span_exporter,
            errors: errors.clone(),
        })
        .with_resource(resource.clone())
        .with_sampler(self.sampler)
        .with_flush_timeout(self.shutdown_timeout)
        .build()
        .map_err(OtelInitError::DirectExport)?;

        let meter_provider = SdkMeterProvider::builder()
            .with_reader(
                PeriodicReader::builder(CountingMetricExporter {
                    inner: metric_exporter,
                    errors: errors.clone(),
                })
                .with_interval(self.metric_export_interval)
                .build(),
            )
            .with_resource(resource)
            .build();

        GUARDS_ALIVE.fetch_add(1, Ordering::Relaxed);
        Ok(OtelGuard {
            tracer_provider,
            direct_export,
            meter_provider,
            errors,
            shutdown_timeout: self.shutdown_timeout,
            _runtime: runtime,
        })
    }

    fn span_exporter(&self) -> Result<opentelemetry_otlp::SpanExporter, OtelInitError> {
        let builder = opentelemetry_otlp::SpanExporter::builder();
        match self.protocol {
            OtlpProtocol::Grpc => builder
                .with_tonic()
                .with_endpoint(&self.traces_endpoint)
                .with_timeout(self.timeout)
                .with_metadata(self.metadata())
                .build(),
            OtlpProtocol::HttpProtobuf => builder
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(&self.traces_endpoint)
                .with_timeout(self.timeout)
                .with_headers(self.header_map())
                .build(),
        }
        .map_err(|source| OtelInitError::Exporter {
            signal: "span",
            endpoint: self.traces_endpoint.clone(),
            source,
        })
    }

    fn metric_exporter(&self) -> Result<opentelemetry_otlp::MetricExporter, OtelInitError> {
        let builder = opentelemetry_otlp::MetricExporter::builder();
        match self.protocol {
            OtlpProtocol::Grpc => builder
                .with_tonic()
                .with_endpoint(&self.metrics_endpoint)
                .with_timeout(self.timeout)
                .with_metadata(self.metadata())
                .build(),
            OtlpProtocol::HttpProtobuf => builder
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(&self.metrics_endpoint)
                .with_timeout(self.timeout)
                .with_headers(self.header_map())
                .build(),
        }
        .map_err(|source| OtelInitError::Exporter {
            signal: "metric",
            endpoint: self.metrics_endpoint.clone(),
            source,
        })
    }

    fn header_map(&self) -> HashMap<String, String> {
        self.headers.iter().cloned().collect()
    }

    /// The headers as gRPC metadata; [`build`](Self::build) checked them all.
    fn metadata(&self) -> opentelemetry_otlp::tonic_types::metadata::MetadataMap {
        let mut headers = http::HeaderMap::new();
        for (key, value) in &self.headers {
            let name = http::HeaderName::from_bytes(key.to_ascii_lowercase().as_bytes());
            if let (Ok(name), Ok(value)) = (name, http::HeaderValue::from_str(value)) {
                headers.insert(name, value);
            }
        }
        opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers)
    }
}

/// The OTLP tracer and meter providers; dropping it flushes what is pending and shuts them down
/// (waiting at most [`OtlpSettings::shutdown_timeout`] per signal, so an unreachable collector
/// cannot hang the program's exit).
pub struct OtelGuard {
    tracer_provider: SdkTracerProvider,
    /// Tasker's spans, built at their end and exported off the caller's thread.
    direct_export: DirectExport,
    meter_provider: SdkMeterProvider,
    errors: Arc<ExportErrors>,
    shutdown_timeout: Duration,
    /// Declared last: dropped after the providers' shutdown, which may still export.
    _runtime: ExportRuntime,
}

impl fmt::Debug for OtelGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelGuard")
            .field("export_errors", &self.export_errors())
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

impl OtelGuard {
    /// The tracer provider.
    pub fn tracer_provider(&self) -> &SdkTracerProvider {
        &self.tracer_provider
    }

    /// The meter provider.
    pub fn meter_provider(&self) -> &SdkMeterProvider {
        &self.meter_provider
    }

    /// The direct export the adapter's spans go through when configured by
    /// [`configure`](Self::configure).
    pub fn direct_export(&self) -> &DirectExport {
        &self.direct_export
    }

    /// Failed exports so far (the first one is also reported through `tracing`).
    pub fn export_errors(&self) -> ExportErrorCounts {
        self.errors.counts()
    }

    /// Sets the direct export (the adapter's spans, built at their end and exported in batches
    /// off the caller's thread, with the same resource and sampler as the tracer provider) and
    /// the meter provider as the configuration's `tracer_provider` and `meter_provider`, for
    /// use inside a [`configure`](crate::configure) closure.
    pub fn configure(&self, config: &mut crate::Configuration) {
        config.tracer_provider = Some(TracerProviderHandle::from(self.direct_export.clone()));
        config.meter_provider = Some(MeterProviderHandle::from(self.meter_provider.clone()));
    }

    /// Installs the providers and the W3C TraceContext propagator as OpenTelemetry's globals.
    /// The adapter then uses this guard's direct export when the configuration names no
    /// tracer provider (until the guard is dropped).
    pub fn install_global(&self) {
        super::providers::set_global_direct(Some(self.direct_export.clone()));
        opentelemetry::global::set_tracer_provider(self.tracer_provider.clone());
        opentelemetry::global::set_meter_provider(self.meter_provider.clone());
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }

    /// Exports what is pending now, waiting for the spans (at most the shutdown timeout).
    pub fn flush(&self) {
        self.direct_export.flush();
        let _ = self.tracer_provider.force_flush();
        let _ = self.meter_provider.force_flush();
    }
}

/// [`OtelGuard`]s not dropped yet: while one is, dropping the OpenTelemetry adapter from the
/// configuration loses what it would export, which `configure` says.
static GUARDS_ALIVE: AtomicUsize = AtomicUsize::new(0);

/// Whether an [`OtelGuard`] is alive.
pub(crate) fn guards_alive() -> bool {
    GUARDS_ALIVE.load(Ordering::Relaxed) > 0
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        // Events still on their way to the adapters become spans before the providers shut.
        let _ = crate::collector::flush_timeout(self.shutdown_timeout);
        GUARDS_ALIVE.fetch_sub(1, Ordering::Relaxed);
        // The adapter may still hold the direct export: drain it here, within the timeout.
        super::providers::clear_global_direct(&self.direct_export);
        self.direct_export.flush();
        let _ = self
            .tracer_provider
            .shutdown_with_timeout(self.shutdown_timeout);
        let _ = self
            .meter_provider
            .shutdown_with_timeout(self.shutdown_timeout);
    }
}

/// Builds OTLP tracer and meter providers from the standard `OTEL_*` variables (see
/// [`OtlpSettings`]), installs them and the W3C TraceContext propagator as OpenTelemetry's
/// globals, and returns the guard that flushes and shuts them down when dropped.
///
/// Call it before [`configure`](crate::configure) lists the OpenTelemetry adapter (which takes
/// the global providers when the configuration names none), or pass the providers explicitly
/// with [`OtelGuard::configure`]. An unreachable collector never slows or fails tasks: exports
/// run in the background and their errors are counted ([`OtelGuard::export_errors`]).
///
/// A bad value is an error naming its variable ([`OtelInitError`]), never a panic, inside a
/// Tokio runtime (either flavour) or outside one.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let _otel = tasker::telemetry::otel::init_from_env()?;
/// tasker::configure(|config| {
///     config.enable_telemetry = true;
///     config.telemetry_adapters = vec![tasker::TelemetryAdapter::OpenTelemetry];
/// })?;
/// # Ok(())
/// # }
/// ```
pub fn init_from_env() -> Result<OtelGuard, OtelInitError> {
    let guard = OtlpSettings::from_env()?.build()?;
    guard.install_global();
    Ok(guard)
}

/// [`init_from_env`] reading the variables through `lookup` (as
/// [`OtlpSettings::from_lookup`]), for tests and embedders whose settings are not in the
/// process environment. The exporters still read the signal-specific variables they know
/// themselves (such as `OTEL_EXPORTER_OTLP_TRACES_HEADERS` or `…_COMPRESSION`).
///
/// ```
/// let error = tasker::telemetry::otel::init_from_lookup(|name| {
///     (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "collector:4317".to_owned())
/// })
/// .unwrap_err();
/// assert!(error.to_string().starts_with("OTEL_EXPORTER_OTLP_ENDPOINT=\"collector:4317\""));
/// ```
pub fn init_from_lookup(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<OtelGuard, OtelInitError> {
    let guard = OtlpSettings::from_lookup(lookup)?.build()?;
    guard.install_global();
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otel::env;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    /// Where `init` may be called from.
    #[derive(Debug, Clone, Copy)]
    enum Caller {
        MultiThreadTokio,
        CurrentThreadTokio,
        NoRuntime,
    }

    const CALLERS: [Caller; 3] = [
        Caller::MultiThreadTokio,
        Caller::CurrentThreadTokio,
        Caller::NoRuntime,
    ];

    /// Runs `work` as `caller` would, on a thread with a deadline, and returns its result, or a
    /// description of its panic or hang.
    fn call_as<T: Send + 'static>(
        caller: Caller,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let outcome = catch_unwind(AssertUnwindSafe(|| match caller {
                Caller::MultiThreadTokio => tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|error| error.to_string())
                    .map(|runtime| runtime.block_on(async { work() })),
                Caller::CurrentThreadTokio => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|error| error.to_string())
                    .map(|runtime| runtime.block_on(async { work() })),
                Caller::NoRuntime => Ok(work()),
            }));
            let _ = sender.send(
                outcome.map_err(|payload| format!("panicked: {}", crate::panic_message(&*payload))),
            );
        });
        match receiver.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => Err(panic),
            Err(_) => Err("did not return within 30 s".to_owned()),
        }
    }

    /// Garbage for every variable `init` reads, each with the variable its error must name.
    fn garbage() -> Vec<(&'static str, &'static str)> {
        let endpoints = [
            "not a url",
            "collector:4317",
            "http://exa mple:4317",
            "ftp://collector:4317",
            "http://",
            "://collector",
            "https://collector:4317",
            "http://collector:99999999",
        ];
        let mut cases = vec![
            (env::PROTOCOL, "http/json"),
            (env::PROTOCOL, "grpcc"),
            (env::HEADERS, "novalue"),
            (env::HEADERS, "=x"),
            (env::HEADERS, "bad key=v"),
            (env::HEADERS, "api-key=line%0Abreak"),
            (env::HEADERS, "api-key=\u{7f}"),
            (env::HEADERS, "x-ok=1,é=2"),
            (env::TIMEOUT, "ten"),
            (env::TIMEOUT, "-5"),
            (env::TIMEOUT, "0"),
            (env::TIMEOUT, "1.5"),
            (env::TIMEOUT, "18446744073709551615"),
            (env::TIMEOUT, "99999999999999999999999"),
            (env::TRACES_SAMPLER, "sometimes"),
            (env::TRACES_SAMPLER_ARG, "2"),
            (env::TRACES_SAMPLER_ARG, "-0.1"),
            (env::TRACES_SAMPLER_ARG, "NaN"),
            (env::TRACES_SAMPLER_ARG, "half"),
            (env::RESOURCE_ATTRIBUTES, "novalue"),
            (env::RESOURCE_ATTRIBUTES, "=x"),
            (env::RESOURCE_ATTRIBUTES, "a=1,,b"),
            (env::METRIC_EXPORT_INTERVAL, "0"),
            (env::METRIC_EXPORT_INTERVAL, "soon"),
            (env::METRIC_EXPORT_INTERVAL, "-1"),
            (env::METRIC_EXPORT_INTERVAL, "18446744073709551615"),
        ];
        for variable in [env::ENDPOINT, env::TRACES_ENDPOINT, env::METRICS_ENDPOINT] {
            cases.extend(endpoints.iter().map(|value| (variable, *value)));
        }
        cases
    }

    #[test]
    fn every_garbage_value_is_an_error_naming_its_variable_in_every_caller() {
        let mut failures = Vec::new();
        for (variable, value) in garbage() {
            for protocol in ["grpc", "http/protobuf"] {
                for sampler in [None, Some("traceidratio")] {
                    for caller in CALLERS {
                        let lookup = move |name: &str| {
                            if name == variable {
                                Some(value.to_owned())
                            } else if name == env::PROTOCOL {
                                Some(protocol.to_owned())
                            } else if name == env::TRACES_SAMPLER {
                                sampler.map(str::to_owned)
                            } else {
                                None
                            }
                        };
                        let case = format!("{variable}={value:?} ({protocol}, {caller:?})");
                        match call_as(caller, move || {
                            init_from_lookup(lookup)
                                .map(drop)
                                .map_err(|e| e.to_string())
                        }) {
                            Ok(Ok(())) => failures.push(format!("{case}: accepted")),
                            Ok(Err(message)) if message.starts_with(variable) => {}
                            Ok(Err(message)) => failures.push(format!("{case}: {message}")),
                            Err(panic) => failures.push(format!("{case}: {panic}")),
                        }
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn every_variable_the_settings_read_is_in_the_garbage_matrix() {
        let covered: std::collections::HashSet<_> = garbage()
            .into_iter()
            .map(|(variable, _)| variable)
            .collect();
        // OTEL_SERVICE_NAME takes any text; only a non-UTF-8 value is refused (tested below).
        let free_text = [env::SERVICE_NAME];
        for variable in env::ALL {
            assert!(
                covered.contains(variable) || free_text.contains(&variable),
                "{variable} has no garbage case"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_non_utf8_value_of_any_variable_is_an_error_naming_it_in_every_caller() {
        use std::os::unix::ffi::OsStringExt;
        for variable in env::ALL {
            for caller in CALLERS {
                let outcome = call_as(caller, move || {
                    OtlpSettings::from_os_lookup(|name| {
                        (name == variable).then(|| std::ffi::OsString::from_vec(b"a\xffb".to_vec()))
                    })
                    .and_then(OtlpSettings::build)
                    .map(drop)
                    .map_err(|e| e.to_string())
                });
                assert_eq!(
                    outcome,
                    Ok(Err(format!(
                        "{variable} is not valid UTF-8 (its value, shown lossily: \"a\u{fffd}b\"); \
                         OpenTelemetry's variables must be text"
                    ))),
                    "{caller:?}"
                );
            }
        }
    }

    /// Fields set in code skip the environment's checks; `build` must still refuse them without
    /// a panic (dropping the gRPC exporter's runtime inside Tokio used to panic here).
    #[test]
    fn build_refuses_bad_fields_without_panicking_in_every_caller() {
        type Spoil = fn(&mut OtlpSettings);
        let spoilers: [(&str, Spoil); 4] = [
            ("traces endpoint", |s| {
                s.traces_endpoint = "http://exa mple".into()
            }),
            ("metrics endpoint", |s| {
                s.metrics_endpoint = "http://[::1".into()
            }),
            ("header value", |s| {
                s.headers = vec![("api-key".into(), "a\nb".into())]
            }),
            ("header name", |s| {
                s.headers = vec![("bad key".into(), "v".into())]
            }),
        ];
        for protocol in ["grpc", "http/protobuf"] {
            for (what, spoil) in spoilers {
                for caller in CALLERS {
                    let outcome = call_as(caller, move || {
                        let mut settings = OtlpSettings::from_lookup(|name| {
                            (name == env::PROTOCOL).then(|| protocol.to_owned())
                        })
                        .map_err(|e| e.to_string())?;
                        spoil(&mut settings);
                        settings.build().map(drop).map_err(|e| e.to_string())
                    });
                    let expected_start = match what {
                        "traces endpoint" => "the OTLP span exporter for \"http://exa mple\"",
                        "metrics endpoint" => "the OTLP metric exporter for \"http://[::1\"",
                        "header value" => "OTLP header `api-key` cannot be sent",
                        _ => "OTLP header `bad key` cannot be sent",
                    };
                    assert!(
                        matches!(&outcome, Ok(Err(message)) if message.starts_with(expected_start)),
                        "{what} ({protocol}, {caller:?}): {outcome:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn valid_settings_build_in_every_caller_and_the_guard_drops_there_too() {
        for protocol in ["grpc", "http/protobuf"] {
            for caller in CALLERS {
                let outcome = call_as(caller, move || {
                    let mut settings = OtlpSettings::from_lookup(|name| {
                        (name == env::PROTOCOL).then(|| protocol.to_owned())
                    })
                    .map_err(|e| e.to_string())?;
                    settings.shutdown_timeout = Duration::from_millis(200);
                    settings.build().map(drop).map_err(|e| e.to_string())
                });
                assert_eq!(outcome, Ok(Ok(())), "{protocol}, {caller:?}");
            }
        }
    }
}
