//! Instructions per step call, counted by `valgrind --tool=callgrind`: repeatable where
//! wall-clock time is not (a shared 2-core machine varies by ±20 % between runs).
//!
//! `bash benches/instructions.sh` runs this binary under callgrind once per contender, counting
//! only the instructions of `measured` (the calls, after a warm-up) and dividing by the number of
//! calls. Run directly: `instructions <contender> <calls>`.

use std::hint::black_box;

mod common;
use common::*;

/// The calls callgrind counts (`--toggle-collect=*measured*`): nothing else is.
#[inline(never)]
fn measured(call: &dyn Fn(u64) -> u64, calls: u64) {
    for i in 0..calls {
        black_box(call(black_box(i)));
    }
}

fn run(contender: &str, calls: u64) -> Result<(), String> {
    let repeat = |call: &dyn Fn(u64) -> u64| {
        // Warm-up, not counted: lazy initialisation, thread-locals, first registrations.
        for i in 0..1000 {
            black_box(call(black_box(i)));
        }
        measured(call, calls);
    };
    match contender {
        "plain" => repeat(&plain),
        "plain-async" => repeat(&|v| block_on(plain_async(v))),
        "tracing-off" => repeat(&tracing_step),
        "tracing-off-async" => repeat(&|v| block_on(tracing_step_async(v))),
        "off" => {
            off();
            repeat(&tasker_step)
        }
        "off-async" => {
            off();
            repeat(&|v| block_on(tasker_step_async(v)))
        }
        "off-retrying" => {
            off();
            repeat(&tasker_step_retrying)
        }
        "noop" => {
            noop_adapter();
            repeat(&tasker_step)
        }
        "noop-async" => {
            noop_adapter();
            repeat(&|v| block_on(tasker_step_async(v)))
        }
        "tracing-registry" => {
            tracing::subscriber::with_default(tracing_subscriber::registry(), || {
                repeat(&tracing_step)
            })
        }
        "logger" => tracing::subscriber::with_default(fmt_to_sink(), || {
            default_logger();
            repeat(&tasker_step)
        }),
        "tracing-logged" => {
            tracing::subscriber::with_default(fmt_to_sink(), || repeat(&tracing_step_logged))
        }
        #[cfg(feature = "opentelemetry")]
        "otel" => {
            otel::adapter();
            repeat(&tasker_step)
        }
        #[cfg(feature = "opentelemetry")]
        "otel-direct" => {
            let export = otel::direct_adapter();
            // Spans of the warm-up are exported before the count starts, the rest after it:
            // counting the exporter's thread (TOGGLE='*Worker*run*') covers warm-up + calls.
            for i in 0..1000 {
                black_box(tasker_step(black_box(i)));
            }
            export.flush();
            measured(&tasker_step, calls);
            export.flush();
            let stats = export.stats();
            if stats.dropped > 0 {
                return Err(format!("{} spans dropped", stats.dropped));
            }
        }
        #[cfg(feature = "opentelemetry")]
        "otel-in-span-batch" => {
            use opentelemetry::trace::{Tracer, TracerProvider as _};
            let provider = otel::batch_provider();
            let tracer = provider.tracer("bench");
            repeat(&|v| tracer.in_span("step", |_| plain(v)));
            let _ = provider.force_flush();
        }
        #[cfg(feature = "opentelemetry")]
        "tracing-otel" => {
            tracing::subscriber::with_default(otel::tracing_subscriber(), || repeat(&tracing_step))
        }
        #[cfg(feature = "opentelemetry")]
        "otel-in-span" => {
            use opentelemetry::trace::{Tracer, TracerProvider as _};
            let provider = otel::provider();
            let tracer = provider.tracer("bench");
            repeat(&|v| tracer.in_span("step", |_| plain(v)))
        }
        other => return Err(format!("unknown contender `{other}`")),
    }
    Ok(())
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use std::hint::black_box;

    use opentelemetry::trace::TracerProvider as _;
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

    /// The SDK setup of every OpenTelemetry contender: the simple processor, spans dropped.
    pub fn provider() -> SdkTracerProvider {
        SdkTracerProvider::builder()
            .with_simple_exporter(DropSpans)
            .build()
    }

    /// The SDK's batch processor, spans dropped: the peer of the direct export.
    pub fn batch_provider() -> SdkTracerProvider {
        SdkTracerProvider::builder()
            .with_batch_exporter(DropSpans)
            .build()
    }

    /// The adapter with its direct export (spans built at their end on the export's thread).
    pub fn direct_adapter() -> DirectExport {
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
        export
    }

    pub fn adapter() {
        tasker::configure(|config| {
            config.enable_telemetry = true;
            config.telemetry_adapters = vec![TelemetryAdapter::OpenTelemetry];
            config.tracer_provider = Some(TracerProviderHandle::from(provider()));
        })
        .expect("the OpenTelemetry adapter is available");
    }

    pub fn tracing_subscriber() -> impl tracing::Subscriber + Send + Sync {
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider().tracer("bench")))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(contender), Some(calls)) = (args.next(), args.next()) else {
        eprintln!("usage: instructions <contender> <calls>");
        std::process::exit(2);
    };
    let calls: u64 = match calls.parse() {
        Ok(calls) => calls,
        Err(_) => {
            eprintln!("`{calls}` is not a number of calls");
            std::process::exit(2);
        }
    };
    if let Err(message) = run(&contender, calls) {
        eprintln!("{message}");
        std::process::exit(2);
    }
}
