//! [`OtlpSettings`]: where and how to export, read from the standard `OTEL_*` variables, every
//! value checked before anything is built.

use std::ffi::OsString;
use std::time::Duration;

use opentelemetry_sdk::trace::Sampler;

/// The variables [`OtlpSettings::from_env`] reads.
pub mod env {
    /// `http/protobuf` (default, as the OpenTelemetry specification recommends) or `grpc`.
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
    /// The ratio of the `traceidratio` samplers, 0 to 1 (default 1). Checked whenever it is set,
    /// even with a sampler that ignores it, so that a typo is not silently dropped.
    pub const TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
    /// Milliseconds between metric exports (default 60000).
    pub const METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";

    /// Every variable above, in the order they are documented.
    pub const ALL: [&str; 11] = [
        PROTOCOL,
        ENDPOINT,
        TRACES_ENDPOINT,
        METRICS_ENDPOINT,
        HEADERS,
        TIMEOUT,
        SERVICE_NAME,
        RESOURCE_ATTRIBUTES,
        TRACES_SAMPLER,
        TRACES_SAMPLER_ARG,
        METRIC_EXPORT_INTERVAL,
    ];
}

/// How spans and metrics travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (tonic), port 4317.
    Grpc,
    /// OTLP over HTTP with protobuf bodies, port 4318: the default, as the OpenTelemetry
    /// specification recommends.
    #[default]
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The value of `OTEL_EXPORTER_OTLP_PROTOCOL` that names it: `grpc` or `http/protobuf`.
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

impl std::fmt::Display for OtlpProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    pub(super) fn sampler(self) -> Sampler {
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
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum OtelInitError {
    /// A variable whose value cannot be used.
    #[error("{variable}={value:?} is not valid: {reason}")]
    InvalidEnvironment {
        /// The variable.
        variable: &'static str,
        /// Its value (header values are shown as `[FILTERED]`: they often hold credentials).
        value: String,
        /// What would be valid.
        reason: String,
    },
    /// A variable whose value is not valid UTF-8.
    #[error(
        "{variable} is not valid UTF-8 (its value, shown lossily: {value:?}); OpenTelemetry's \
         variables must be text"
    )]
    NotUnicode {
        /// The variable.
        variable: &'static str,
        /// Its value, invalid bytes replaced by U+FFFD.
        value: String,
    },
    /// The OTLP exporter refused its configuration.
    #[error("the OTLP {signal} exporter for {endpoint:?} could not be built: {source}")]
    Exporter {
        /// `span` or `metric`.
        signal: &'static str,
        /// The endpoint it was given.
        endpoint: String,
        /// The exporter's error.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// A header the exporter cannot send (set on [`OtlpSettings::headers`] directly; from the
    /// environment it is an [`InvalidEnvironment`](Self::InvalidEnvironment) error).
    #[error(
        "OTLP header `{name}` cannot be sent: {reason} (its value is not shown: headers often \
         hold credentials)"
    )]
    InvalidHeader {
        /// The header's name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The runtime that drives the gRPC exporter could not start.
    #[error("the runtime of the OTLP gRPC exporter could not start: {0}")]
    Runtime(#[source] std::io::Error),
    /// The direct export of Tasker's spans could not start.
    #[error("{0}")]
    DirectExport(#[source] super::direct_export::DirectExportError),
}

crate::__debug_shows_message!(OtelInitError {
    InvalidEnvironment,
    NotUnicode,
    Exporter,
    InvalidHeader,
    Runtime,
    DirectExport
});

/// Where and how to export, as the standard `OTEL_*` variables say (see [`env`](mod@env)).
///
/// Read them with [`from_env`](Self::from_env) (or [`from_lookup`](Self::from_lookup) in tests
/// and embedders), adjust the fields, then [`build`](Self::build) the providers. Every value is
/// checked here, so a bad one is an error naming its variable, before anything is built.
///
/// ```
/// use tasker::telemetry::otel::{OtlpProtocol, OtlpSettings};
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
    /// HTTP/protobuf (port 4318) or gRPC (port 4317). Default: HTTP/protobuf, as the
    /// OpenTelemetry specification recommends.
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

/// The longest export timeout and metric interval accepted: a day. Longer values are typos, and
/// durations near `u64::MAX` milliseconds overflow the clocks of the exporters' timers.
const MAX_MILLIS: u64 = 86_400_000;

const ENDPOINT_FORMAT: &str =
    "expected an http:// URL with a host and an optional port, such as http://localhost:4317";

impl OtlpSettings {
    /// The settings the process's `OTEL_*` variables give. A variable that is not valid UTF-8
    /// is an error, not "unset".
    pub fn from_env() -> Result<Self, OtelInitError> {
        Self::from_os_lookup(|name| std::env::var_os(name))
    }

    /// [`OtlpSettings::from_env`] reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, OtelInitError> {
        Self::from_os_lookup(|name| lookup(name).map(OsString::from))
    }

    /// [`OtlpSettings::from_env`] reading variables through `lookup`, as the operating system
    /// stores them (so a value that is not UTF-8 can be tested).
    pub fn from_os_lookup(
        lookup: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Self, OtelInitError> {
        // Blank counts as unset, as the OpenTelemetry specification says.
        let lookup = |variable: &'static str| -> Result<Option<String>, OtelInitError> {
            match lookup(variable).map(OsString::into_string) {
                None => Ok(None),
                Some(Ok(value)) if value.trim().is_empty() => Ok(None),
                Some(Ok(value)) => Ok(Some(value)),
                Some(Err(raw)) => Err(OtelInitError::NotUnicode {
                    variable,
                    value: raw.to_string_lossy().into_owned(),
                }),
            }
        };
        let protocol = match lookup(env::PROTOCOL)? {
            None => OtlpProtocol::default(),
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
        let base = lookup(env::ENDPOINT)?
            .map(|base| check_endpoint(env::ENDPOINT, &base).map(|()| base))
            .transpose()?;
        let signal_endpoint = |signal_variable: &'static str, path: &str| {
            if let Some(endpoint) = lookup(signal_variable)? {
                check_endpoint(signal_variable, &endpoint)?;
                return Ok::<_, OtelInitError>(endpoint);
            }
            Ok(match (protocol, &base) {
                (OtlpProtocol::Grpc, Some(base)) => base.clone(),
                (OtlpProtocol::Grpc, None) => "http://localhost:4317".to_owned(),
                (OtlpProtocol::HttpProtobuf, Some(base)) => {
                    format!("{}{path}", base.trim_end_matches('/'))
                }
                (OtlpProtocol::HttpProtobuf, None) => format!("http://localhost:4318{path}"),
            })
        };
        let traces_endpoint = signal_endpoint(env::TRACES_ENDPOINT, "/v1/traces")?;
        let metrics_endpoint = signal_endpoint(env::METRICS_ENDPOINT, "/v1/metrics")?;
        let headers = match lookup(env::HEADERS)? {
            Some(value) => parse_headers(&value)?,
            None => Vec::new(),
        };
        let millis = |variable: &'static str, default: u64| -> Result<Duration, OtelInitError> {
            match lookup(variable)? {
                None => Ok(Duration::from_millis(default)),
                Some(value) => value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|millis| (1..=MAX_MILLIS).contains(millis))
                    .map(Duration::from_millis)
                    .ok_or_else(|| {
                        invalid(
                            variable,
                            &value,
                            "expected a whole number of milliseconds from 1 to 86400000 (a day)",
                        )
                    }),
            }
        };
        let mut resource_attributes = match lookup(env::RESOURCE_ATTRIBUTES)? {
            Some(value) => parse_pairs(env::RESOURCE_ATTRIBUTES, &value)?,
            None => Vec::new(),
        };
        let named_in_attributes = resource_attributes
            .iter()
            .position(|(key, _)| key == "service.name")
            .map(|index| resource_attributes.remove(index).1);
        let service_name = lookup(env::SERVICE_NAME)?
            .or(named_in_attributes)
            .unwrap_or_else(|| "unknown_service".to_owned());
        let sampler = parse_sampler(
            lookup(env::TRACES_SAMPLER)?,
            lookup(env::TRACES_SAMPLER_ARG)?,
        )?;
        Ok(Self {
            protocol,
            traces_endpoint,
            metrics_endpoint,
            headers,
            timeout: millis(env::TIMEOUT, 10_000)?,
            service_name,
            resource_attributes,
            sampler,
            metric_export_interval: millis(env::METRIC_EXPORT_INTERVAL, 60_000)?,
            shutdown_timeout: Duration::from_secs(5),
        })
    }
}

fn invalid(variable: &'static str, value: &str, reason: &str) -> OtelInitError {
    OtelInitError::InvalidEnvironment {
        variable,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

/// An endpoint both exporters accept: an `http` URL with a host. `https` is refused because this
/// build's exporters have no TLS (the `tls-*` features of `opentelemetry-otlp` are off): gRPC
/// would fail to build and HTTP would fail every export.
fn check_endpoint(variable: &'static str, value: &str) -> Result<(), OtelInitError> {
    let uri: http::Uri = value
        .trim()
        .parse()
        .map_err(|_| invalid(variable, value, ENDPOINT_FORMAT))?;
    match uri.scheme_str() {
        Some("http") if uri.host().is_some_and(|host| !host.is_empty()) && port_is_valid(&uri) => {
            Ok(())
        }
        Some("https") => Err(invalid(
            variable,
            value,
            "https needs TLS, which this build of the OTLP exporter does not include; use an \
             http:// URL (a local collector can forward over TLS)",
        )),
        _ => Err(invalid(variable, value, ENDPOINT_FORMAT)),
    }
}

/// Whether the URL's port, if it has one, is a number from 0 to 65535 (`http::Uri` accepts any
/// digits there).
fn port_is_valid(uri: &http::Uri) -> bool {
    let authority = uri.authority().map_or("", |authority| authority.as_str());
    let host_and_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, rest)| rest);
    match host_and_port.rsplit_once(':') {
        Some((_, port)) if !port.ends_with(']') => port.parse::<u16>().is_ok(),
        _ => true,
    }
}

fn parse_sampler(
    sampler: Option<String>,
    argument: Option<String>,
) -> Result<SamplerSetting, OtelInitError> {
    let ratio = match argument {
        None => 1.0,
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
            })?,
    };
    let Some(value) = sampler else {
        return Ok(SamplerSetting::ParentBasedAlwaysOn);
    };
    Ok(match value.trim() {
        "always_on" => SamplerSetting::AlwaysOn,
        "always_off" => SamplerSetting::AlwaysOff,
        "traceidratio" => SamplerSetting::TraceIdRatio(ratio),
        "parentbased_always_on" => SamplerSetting::ParentBasedAlwaysOn,
        "parentbased_always_off" => SamplerSetting::ParentBasedAlwaysOff,
        "parentbased_traceidratio" => SamplerSetting::ParentBasedTraceIdRatio(ratio),
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

/// `OTEL_EXPORTER_OTLP_HEADERS`: pairs whose names and values HTTP and gRPC can carry. Errors
/// about a value do not echo it: headers often hold credentials.
fn parse_headers(value: &str) -> Result<Vec<(String, String)>, OtelInitError> {
    let headers = parse_pairs(env::HEADERS, value)?;
    for (name, header_value) in &headers {
        if let Err(reason) = check_header(name, header_value) {
            return Err(invalid(
                env::HEADERS,
                &format!("{name}=[FILTERED]"),
                &format!("header `{name}`: {reason}"),
            ));
        }
    }
    Ok(headers)
}

/// Whether `name: value` can be sent as an HTTP header and as gRPC metadata.
pub(super) fn check_header(name: &str, value: &str) -> Result<(), &'static str> {
    http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| "not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)")?;
    http::HeaderValue::from_str(value)
        .map_err(|_| "the value is not a valid header value (visible ASCII and spaces only)")?;
    Ok(())
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
    fn defaults_are_http_protobuf_to_localhost_4318() {
        let settings = OtlpSettings::from_lookup(lookup(&[])).unwrap();
        assert_eq!(settings.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(settings.traces_endpoint, "http://localhost:4318/v1/traces");
        assert_eq!(
            settings.metrics_endpoint,
            "http://localhost:4318/v1/metrics"
        );
        assert_eq!(settings.service_name, "unknown_service");
        assert_eq!(settings.sampler, SamplerSetting::ParentBasedAlwaysOn);
        assert_eq!(settings.timeout, Duration::from_secs(10));
        assert_eq!(settings.metric_export_interval, Duration::from_secs(60));
    }

    #[test]
    fn grpc_defaults_to_localhost_4317() {
        let settings =
            OtlpSettings::from_lookup(lookup(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).unwrap();
        assert_eq!(settings.protocol, OtlpProtocol::Grpc);
        assert_eq!(settings.traces_endpoint, "http://localhost:4317");
        assert_eq!(settings.metrics_endpoint, "http://localhost:4317");
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

    #[test]
    fn a_bad_endpoint_names_its_variable_and_the_form_expected() {
        let error = OtlpSettings::from_lookup(lookup(&[(
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "collector:4317",
        )]))
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=\"collector:4317\" is not valid: expected an \
             http:// URL with a host and an optional port, such as http://localhost:4317"
        );
        let error =
            OtlpSettings::from_lookup(lookup(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4317")]))
                .unwrap_err();
        assert_eq!(
            error.to_string(),
            "OTEL_EXPORTER_OTLP_ENDPOINT=\"https://c:4317\" is not valid: https needs TLS, which \
             this build of the OTLP exporter does not include; use an http:// URL (a local \
             collector can forward over TLS)"
        );
    }

    #[test]
    fn a_bad_header_value_is_refused_without_echoing_it() {
        let error = OtlpSettings::from_lookup(lookup(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-team=orders,api-key=s3cret%0A",
        )]))
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "OTEL_EXPORTER_OTLP_HEADERS=\"api-key=[FILTERED]\" is not valid: header `api-key`: \
             the value is not a valid header value (visible ASCII and spaces only)"
        );
        assert!(!format!("{error:?}").contains("s3cret"));
    }

    #[test]
    fn timeouts_and_intervals_must_be_from_one_millisecond_to_a_day() {
        for (variable, value) in [
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "86400001"),
        ] {
            let error = OtlpSettings::from_lookup(lookup_owned(variable, value)).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "{variable}=\"{value}\" is not valid: expected a whole number of \
                     milliseconds from 1 to 86400000 (a day)"
                )
            );
        }
        let settings =
            OtlpSettings::from_lookup(lookup(&[("OTEL_METRIC_EXPORT_INTERVAL", "86400000")]))
                .unwrap();
        assert_eq!(settings.metric_export_interval, Duration::from_secs(86_400));
    }

    #[test]
    fn a_sampler_argument_is_checked_even_when_the_sampler_ignores_it() {
        let error = OtlpSettings::from_lookup(lookup(&[
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_TRACES_SAMPLER_ARG", "half"),
        ]))
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "OTEL_TRACES_SAMPLER_ARG=\"half\" is not valid: expected a ratio from 0 to 1"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_non_utf8_value_is_an_error_not_unset() {
        use std::os::unix::ffi::OsStringExt;
        let error = OtlpSettings::from_os_lookup(|name| {
            (name == "OTEL_SERVICE_NAME").then(|| OsString::from_vec(b"orders\xff".to_vec()))
        })
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "OTEL_SERVICE_NAME is not valid UTF-8 (its value, shown lossily: \"orders\u{fffd}\"); \
             OpenTelemetry's variables must be text"
        );
    }

    fn lookup_owned(
        variable: &'static str,
        value: &'static str,
    ) -> impl Fn(&str) -> Option<String> {
        move |name| (name == variable).then(|| value.to_owned())
    }
}
