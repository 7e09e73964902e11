//! Telemetry of this program: Tasker's events exported to OpenTelemetry over OTLP.
//!
//! Written by `cargo tasker telemetry setup`; edit it freely (the command will not overwrite a
//! changed file without `--force`). Call `telemetry::init()` first in `main` and keep the guard
//! it returns alive until the program ends: dropping it flushes the spans and metrics still
//! buffered and shuts the exporters down.
//!
//! ```ignore
//! mod telemetry;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let _telemetry = telemetry::init()?;
//!     // … your tasks …
//!     Ok(())
//! }
//! ```

use tasker::telemetry::otel::{init_from_env, OtelGuard};
use tasker::TelemetryAdapter;

/// Starts OTLP export and turns Tasker's telemetry on; returns the guard that flushes on drop.
pub fn init() -> Result<OtelGuard, Box<dyn std::error::Error>> {
    // Builds the OTLP span and metric exporters from the standard OpenTelemetry variables and
    // installs them as the global providers, with the W3C trace-context propagator:
    //   OTEL_SERVICE_NAME              the service name your backend shows (Jaeger, Tempo, …)
    //   OTEL_EXPORTER_OTLP_PROTOCOL    `http/protobuf` (default, port 4318) or `grpc` (4317)
    //   OTEL_EXPORTER_OTLP_ENDPOINT    the collector, e.g. http://localhost:4318
    //   OTEL_EXPORTER_OTLP_HEADERS     `key=value,…` sent with every export (API keys)
    //   OTEL_EXPORTER_OTLP_TIMEOUT     milliseconds one export may take (default 10000)
    //   OTEL_RESOURCE_ATTRIBUTES       `deployment.environment=prod,…`
    //   OTEL_TRACES_SAMPLER(_ARG)      e.g. `parentbased_traceidratio` and `0.1`
    //   OTEL_METRIC_EXPORT_INTERVAL    milliseconds between metric exports (default 60000)
    // Exports run in the background: an unreachable collector never slows or fails a task.
    let guard = init_from_env()?;

    tasker::configure(|config| {
        // Off by default, as in Tasker; while off, instrumented calls cost one atomic load.
        config.enable_telemetry = true;

        // Where every event goes, in this order:
        //   OpenTelemetry  a trace per task, a span per step call, metrics (this file's point)
        //   Default        one `tracing` line per event (needs a tracing subscriber)
        //   Console        each task's tree printed when it ends (for development)
        //   Custom         an adapter registered with `tasker::register_adapter!`, named below
        config.telemetry_adapters = vec![TelemetryAdapter::OpenTelemetry];

        // One registered adapter name per `Custom` entry above, in order, e.g.
        // vec!["my_app::AuditAdapter".into()].
        config.telemetry_adapter_classes = vec![];

        // Payload keys containing any of these (ignoring case) are sent as `[FILTERED]`.
        // The defaults cover passw, secret, token, _key, crypt, salt, certificate, otp, ssn and
        // email; add your own:
        // config.filter_parameters.push("iban".into());

        // Explicit providers instead of the global ones that `init_from_env` installed:
        // config.tracer_provider = Some(my_sdk_tracer_provider.clone().into());
        // config.meter_provider = Some(my_sdk_meter_provider.clone().into());
    })?;
    // The same settings can come from the environment instead, with
    // `tasker::Configuration::from_env()` (TASKER_ENABLE_TELEMETRY, TASKER_TELEMETRY_ADAPTERS,
    // TASKER_TELEMETRY_ADAPTER_CLASSES, TASKER_FILTER_PARAMETERS, TASKER_CONSOLE_COLOR).

    Ok(guard)
}
