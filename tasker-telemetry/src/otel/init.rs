//! `init_from_env`: tracer and meter providers exporting over OTLP, configured by the standard
//! `OTEL_*` variables, and a guard that flushes and shuts them down.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use super::export_errors::{
    CountingMetricExporter, CountingSpanExporter, ExportErrorCounts, ExportErrors,
};
use super::providers::{MeterProviderHandle, TracerProviderHandle};

/// The variables [`OtlpSettings::from_env`] reads.
pub mod env {
    /// `grpc` (default) or `http/protobuf`.
    pub const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
    /// Base URL of the collector: used as is for gRPC (default `http://localhost:4317`); for
    /// HTTP `/v1/traces` and `/v1/metrics` are appended (default `http://localhost:4318`).
    pub const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    /// Full URL for spans, used as is; wins over `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
    /// Full URL for metrics, used as is; wins over `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub const METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
    /// `key=value,key2=value2` (values percent-decoded), sent with every export.
    pub const HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
    /// Milliseconds one export may take (default 10000).
    pub const TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
    /// `service.name` of the resource; wins over the one in `OTEL_RESOURCE_ATTRIBUTES`.
    pub const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
    /// `key=value,…` resource attributes (values percent-decoded).
    pub const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
    /// `always_on`, `always_off`, `traceidratio`, `parentbased_always_on` (default),
    /// `parentbased_always_off`, `parentbased_traceidratio`.
    pub const TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
    /// The ratio of the `traceidratio` samplers, 0 to 1 (default 1).
    pub const TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
    /// Milliseconds between metric exports (default 60000).
    pub const METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
}

/// How spans and metrics travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (tonic), port 4317.
    Grpc,
    /// OTLP over HTTP with protobuf bodies, port 4318.
    HttpProtobuf,
}

/// The trace sampler, as `OTEL_TRACES_SAMPLER` names it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerSetting {
    /// Every trace.
    AlwaysOn,
    /// No trace.
    AlwaysOff,
    /// This fraction of traces, by trace id.
    TraceIdRatio(f64),
    /// The parent's decision, else every trace (the default).
    ParentBasedAlwaysOn,
    /// The parent's decision, else no trace.
    ParentBasedAlwaysOff,
    /// The parent's decision, else this fraction of traces.
    ParentBasedTraceIdRatio(f64),
}

impl SamplerSetting {
    fn sampler(self) -> Sampler {
        match self {
            SamplerSetting::AlwaysOn => Sampler::AlwaysOn,
            SamplerSetting::AlwaysOff => Sampler::AlwaysOff,
            SamplerSetting::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
            SamplerSetting::ParentBasedAlwaysOn => {
                Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
            }
            SamplerSetting::ParentBasedAlwaysOff => {
                Sampler::ParentBased(Box::new(Sampler::AlwaysOff))
            }
            SamplerSetting::ParentBasedTraceIdRatio(ratio) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
            }
        }
    }
}

/// Why the OTLP providers could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelInitError {
    /// A variable whose value cannot be used.
    #[error("{variable}={value:?} is not valid: {reason}")]
    InvalidEnvironment {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What would be valid.
        reason: String,
    },
    /// The OTLP exporter refused its configuration.
    #[error("the OTLP {signal} exporter could not be built: {source}")]
    Exporter {
        /// `span` or `metric`.
        signal: &'static str,
        /// The exporter's error.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The runtime that drives the gRPC exporter could not start.
    #[error("the runtime of the OTLP gRPC exporter could not start: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Where and how to export, as the standard `OTEL_*` variables say (see [`env`](mod@env)).
///
/// Read them with [`from_env`](Self::from_env) (or [`from_lookup`](Self::from_lookup) in tests
/// and embedders), adjust the fields, then [`build`](Self::build) the providers.
///
/// ```
/// use tasker_telemetry::otel::{OtlpProtocol, OtlpSettings};
/// let settings = OtlpSettings::from_lookup(|name| match name {
///     "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("http/protobuf".into()),
///     "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://collector:4318".into()),
///     "OTEL_SERVICE_NAME" => Some("orders".into()),
///     _ => None,
/// })
/// .unwrap();
/// assert_eq!(settings.protocol, OtlpProtocol::HttpProtobuf);
/// assert_eq!(settings.traces_endpoint, "http://collector:4318/v1/traces");
/// assert_eq!(settings.metrics_endpoint, "http://collector:4318/v1/metrics");
/// assert_eq!(settings.service_name, "orders");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OtlpSettings {
    /// gRPC or HTTP/protobuf. Default: gRPC, the port (4317) Jaeger and the Collector listen on.
    pub protocol: OtlpProtocol,
    /// Where spans go.
    pub traces_endpoint: String,
    /// Where metrics go.
    pub metrics_endpoint: String,
    /// Headers (gRPC metadata) sent with every export, such as an API key.
    pub headers: Vec<(String, String)>,
    /// How long one export may take.
    pub timeout: Duration,
    /// `service.name`. Default: `unknown_service`.
    pub service_name: String,
    /// Other resource attributes.
    pub resource_attributes: Vec<(String, String)>,
    /// Which traces are recorded.
    pub sampler: SamplerSetting,
    /// Time between metric exports.
    pub metric_export_interval: Duration,
    /// How long dropping the guard waits for the last exports, per signal.
    pub shutdown_timeout: Duration,
}

impl OtlpSettings {
    /// The settings the process's `OTEL_*` variables give.
    pub fn from_env() -> Result<Self, OtelInitError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`OtlpSettings::from_env`] reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, OtelInitError> {
        let lookup = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let protocol = match lookup(env::PROTOCOL) {
            None => OtlpProtocol::Grpc,
            Some(value) => match value.trim() {
                "grpc" => OtlpProtocol::Grpc,
                "http/protobuf" => OtlpProtocol::HttpProtobuf,
                _ => {
                    return Err(invalid(
                        env::PROTOCOL,
                        &value,
                        "expected `grpc` or `http/protobuf`",
                    ))
                }
            },
        };
        let base = lookup(env::ENDPOINT);
        let signal_endpoint = |signal_variable: &str, path: &str| {
            lookup(signal_variable).unwrap_or_else(|| match (protocol, &base) {
                (OtlpProtocol::Grpc, Some(base)) => base.clone(),
                (OtlpProtocol::Grpc, None) => "http://localhost:4317".to_owned(),
                (OtlpProtocol::HttpProtobuf, Some(base)) => {
                    format!("{}{path}", base.trim_end_matches('/'))
                }
                (OtlpProtocol::HttpProtobuf, None) => format!("http://localhost:4318{path}"),
            })
        };
        let traces_endpoint = signal_endpoint(env::TRACES_ENDPOINT, "/v1/traces");
        let metrics_endpoint = signal_endpoint(env::METRICS_ENDPOINT, "/v1/metrics");
        let headers = match lookup(env::HEADERS) {
            Some(value) => parse_pairs(env::HEADERS, &value)?,
            None => Vec::new(),
        };
        let millis = |variable: &'static str, default: u64| -> Result<Duration, OtelInitError> {
            match lookup(variable) {
                None => Ok(Duration::from_millis(default)),
                Some(value) => value
                    .trim()
                    .parse()
                    .map(Duration::from_millis)
                    .map_err(|_| {
                        invalid(variable, &value, "expected a whole number of milliseconds")
                    }),
            }
        };
        let mut resource_attributes = match lookup(env::RESOURCE_ATTRIBUTES) {
            Some(value) => parse_pairs(env::RESOURCE_ATTRIBUTES, &value)?,
            None => Vec::new(),
        };
        let named_in_attributes = resource_attributes
            .iter()
            .position(|(key, _)| key == "service.name")
            .map(|index| resource_attributes.remove(index).1);
        let service_name = lookup(env::SERVICE_NAME)
            .or(named_in_attributes)
            .unwrap_or_else(|| "unknown_service".to_owned());
        Ok(Self {
            protocol,
            traces_endpoint,
            metrics_endpoint,
            headers,
            timeout: millis(env::TIMEOUT, 10_000)?,
            service_name,
            resource_attributes,
            sampler: parse_sampler(&lookup)?,
            metric_export_interval: millis(env::METRIC_EXPORT_INTERVAL, 60_000)?,
            shutdown_timeout: Duration::from_secs(5),
        })
    }

    /// Builds the tracer and meter providers, exporting in the background (batched spans,
    /// periodic metrics), without installing them anywhere.
    ///
    /// Give them to the adapter with [`OtelGuard::configure`] (or the configuration's
    /// `tracer_provider` and `meter_provider`); [`init_from_env`] also installs them globally.
    pub fn build(self) -> Result<OtelGuard, OtelInitError> {
        let runtime = match self.protocol {
            // tonic's channel lives on a Tokio runtime: use one of our own, so that neither the
            // application's runtime flavour nor its shutdown can stall an export.
            OtlpProtocol::Grpc => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("tasker-otlp")
                    .enable_all()
                    .build()
                    .map_err(OtelInitError::Runtime)?,
            ),
            OtlpProtocol::HttpProtobuf => None,
        };
        let _entered = runtime.as_ref().map(tokio::runtime::Runtime::enter);
        let errors = Arc::new(ExportErrors::default());
        let resource = Resource::builder_empty()
            .with_detector(Box::new(TelemetryResourceDetector))
            .with_service_name(self.service_name.clone())
            .with_attributes(
                self.resource_attributes
                    .iter()
                    .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
            )
            .build();

        let span_exporter = self.span_exporter()?;
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

        let metric_exporter = self.metric_exporter()?;
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

        Ok(OtelGuard {
            tracer_provider,
            meter_provider,
            errors,
            shutdown_timeout: self.shutdown_timeout,
            runtime,
        })
    }

    fn span_exporter(&self) -> Result<opentelemetry_otlp::SpanExporter, OtelInitError> {
        let builder = opentelemetry_otlp::SpanExporter::builder();
        match self.protocol {
            OtlpProtocol::Grpc => builder
                .with_tonic()
                .with_endpoint(&self.traces_endpoint)
                .with_timeout(self.timeout)
                .with_metadata(self.metadata()?)
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
                .with_metadata(self.metadata()?)
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
            source,
        })
    }

    fn header_map(&self) -> HashMap<String, String> {
        self.headers.iter().cloned().collect()
    }

    fn metadata(
        &self,
    ) -> Result<opentelemetry_otlp::tonic_types::metadata::MetadataMap, OtelInitError> {
        let mut headers = http::HeaderMap::new();
        for (key, value) in &self.headers {
            let bad = |reason: &str| invalid(env::HEADERS, &format!("{key}={value}"), reason);
            let name = http::HeaderName::from_bytes(key.to_ascii_lowercase().as_bytes())
                .map_err(|_| bad("not a valid header name"))?;
            let value =
                http::HeaderValue::from_str(value).map_err(|_| bad("not a valid header value"))?;
            headers.insert(name, value);
        }
        Ok(opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers))
    }
}

fn invalid(variable: &'static str, value: &str, reason: &str) -> OtelInitError {
    OtelInitError::InvalidEnvironment {
        variable,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

fn parse_sampler(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<SamplerSetting, OtelInitError> {
    let ratio = || -> Result<f64, OtelInitError> {
        match lookup(env::TRACES_SAMPLER_ARG) {
            None => Ok(1.0),
            Some(value) => value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|ratio| (0.0..=1.0).contains(ratio))
                .ok_or_else(|| {
                    invalid(
                        env::TRACES_SAMPLER_ARG,
                        &value,
                        "expected a ratio from 0 to 1",
                    )
                }),
        }
    };
    let Some(value) = lookup(env::TRACES_SAMPLER) else {
        return Ok(SamplerSetting::ParentBasedAlwaysOn);
    };
    Ok(match value.trim() {
        "always_on" => SamplerSetting::AlwaysOn,
        "always_off" => SamplerSetting::AlwaysOff,
        "traceidratio" => SamplerSetting::TraceIdRatio(ratio()?),
        "parentbased_always_on" => SamplerSetting::ParentBasedAlwaysOn,
        "parentbased_always_off" => SamplerSetting::ParentBasedAlwaysOff,
        "parentbased_traceidratio" => SamplerSetting::ParentBasedTraceIdRatio(ratio()?),
        _ => {
            return Err(invalid(
                env::TRACES_SAMPLER,
                &value,
                "expected always_on, always_off, traceidratio, parentbased_always_on, \
                 parentbased_always_off or parentbased_traceidratio",
            ))
        }
    })
}

/// `key=value,key2=value2`, values percent-decoded, as OpenTelemetry's variables write them.
fn parse_pairs(
    variable: &'static str,
    value: &str,
) -> Result<Vec<(String, String)>, OtelInitError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, item) = pair
                .split_once('=')
                .filter(|(key, _)| !key.trim().is_empty())
                .ok_or_else(|| {
                    invalid(
                        variable,
                        value,
                        "expected key=value pairs separated by commas",
                    )
                })?;
            Ok((key.trim().to_owned(), percent_decode(item.trim())))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match (bytes[index], hex(index + 1), hex(index + 2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                index += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The OTLP tracer and meter providers; dropping it flushes what is pending and shuts them down
/// (waiting at most [`OtlpSettings::shutdown_timeout`] per signal, so an unreachable collector
/// cannot hang the program's exit).
pub struct OtelGuard {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    errors: Arc<ExportErrors>,
    shutdown_timeout: Duration,
    runtime: Option<tokio::runtime::Runtime>,
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

    /// Failed exports so far (the first one is also reported through `tracing`).
    pub fn export_errors(&self) -> ExportErrorCounts {
        self.errors.counts()
    }

    /// Sets these providers as the configuration's `tracer_provider` and `meter_provider`, for
    /// use inside a [`configure`](crate::configure) closure.
    pub fn configure(&self, config: &mut crate::Configuration) {
        config.tracer_provider = Some(TracerProviderHandle::from(self.tracer_provider.clone()));
        config.meter_provider = Some(MeterProviderHandle::from(self.meter_provider.clone()));
    }

    /// Installs the providers and the W3C TraceContext propagator as OpenTelemetry's globals.
    pub fn install_global(&self) {
        opentelemetry::global::set_tracer_provider(self.tracer_provider.clone());
        opentelemetry::global::set_meter_provider(self.meter_provider.clone());
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }

    /// Exports what is pending now, waiting for the spans (at most the shutdown timeout).
    pub fn flush(&self) {
        let _ = self.tracer_provider.force_flush();
        let _ = self.meter_provider.force_flush();
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        let _ = self
            .tracer_provider
            .shutdown_with_timeout(self.shutdown_timeout);
        let _ = self
            .meter_provider
            .shutdown_with_timeout(self.shutdown_timeout);
        if let Some(runtime) = self.runtime.take() {
            // Never blocks, so the guard may be dropped inside an async context.
            runtime.shutdown_background();
        }
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
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let _otel = tasker_telemetry::otel::init_from_env()?;
/// tasker_telemetry::configure(|config| {
///     config.enable_telemetry = true;
///     config.telemetry_adapters = vec![tasker_telemetry::TelemetryAdapter::OpenTelemetry];
/// })?;
/// # Ok(())
/// # }
/// ```
pub fn init_from_env() -> Result<OtelGuard, OtelInitError> {
    let guard = OtlpSettings::from_env()?.build()?;
    guard.install_global();
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn defaults_are_grpc_to_localhost_4317() {
        let settings = OtlpSettings::from_lookup(lookup(&[])).unwrap();
        assert_eq!(settings.protocol, OtlpProtocol::Grpc);
        assert_eq!(settings.traces_endpoint, "http://localhost:4317");
        assert_eq!(settings.metrics_endpoint, "http://localhost:4317");
        assert_eq!(settings.service_name, "unknown_service");
        assert_eq!(settings.sampler, SamplerSetting::ParentBasedAlwaysOn);
        assert_eq!(settings.timeout, Duration::from_secs(10));
        assert_eq!(settings.metric_export_interval, Duration::from_secs(60));
    }

    #[test]
    fn signal_endpoints_win_and_are_used_verbatim() {
        let settings = OtlpSettings::from_lookup(lookup(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
        ]))
        .unwrap();
        assert_eq!(settings.traces_endpoint, "http://traces:9999/custom");
        assert_eq!(
            settings.metrics_endpoint,
            "http://collector:4318/v1/metrics"
        );
    }

    #[test]
    fn headers_resource_and_sampler_are_parsed() {
        let settings = OtlpSettings::from_lookup(lookup(&[
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=s%3Dcret, x-team = orders",
            ),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attributes,deployment.environment.name=prod%20eu",
            ),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]))
        .unwrap();
        assert_eq!(
            settings.headers,
            [
                ("api-key".to_owned(), "s=cret".to_owned()),
                ("x-team".to_owned(), "orders".to_owned())
            ]
        );
        assert_eq!(settings.service_name, "from-attributes");
        assert_eq!(
            settings.resource_attributes,
            [(
                "deployment.environment.name".to_owned(),
                "prod eu".to_owned()
            )]
        );
        assert_eq!(
            settings.sampler,
            SamplerSetting::ParentBasedTraceIdRatio(0.25)
        );
    }

    #[test]
    fn service_name_variable_wins_over_the_resource_attribute() {
        let settings = OtlpSettings::from_lookup(lookup(&[
            ("OTEL_SERVICE_NAME", "orders"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=other"),
        ]))
        .unwrap();
        assert_eq!(settings.service_name, "orders");
        assert!(settings.resource_attributes.is_empty());
    }

    #[test]
    fn bad_values_name_the_variable_and_what_is_valid() {
        let error =
            OtlpSettings::from_lookup(lookup(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]))
                .unwrap_err();
        assert_eq!(
            error.to_string(),
            "OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\" is not valid: expected `grpc` or \
             `http/protobuf`"
        );
        let error =
            OtlpSettings::from_lookup(lookup(&[("OTEL_TRACES_SAMPLER", "sometimes")])).unwrap_err();
        assert!(error
            .to_string()
            .starts_with("OTEL_TRACES_SAMPLER=\"sometimes\" is not valid: expected always_on"));
        let error = OtlpSettings::from_lookup(lookup(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ]))
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "OTEL_TRACES_SAMPLER_ARG=\"2\" is not valid: expected a ratio from 0 to 1"
        );
        let error = OtlpSettings::from_lookup(lookup(&[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "OTEL_EXPORTER_OTLP_HEADERS=\"novalue\" is not valid: expected key=value pairs \
             separated by commas"
        );
    }
}
