//! Nothing is silent: a configuration that cannot do what it asks for says so once, with the fix,
//! through `tracing` (target `tasker`, WARN) when a subscriber takes it, else on standard error.
//!
//! One global subscriber takes WARN lines (and not INFO, so the default logger has nobody to
//! write to). Each warning is said once per process, so each test here is the only one that can
//! provoke its warning; it provokes it twice and finds exactly one line. Tests take turns, as the
//! configuration is process-wide.
#![cfg(feature = "opentelemetry")]

mod support;

use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use support::LogBuffer;
use tasker::{Configuration, TelemetryAdapter};

static LOCK: Mutex<()> = Mutex::new(());

/// Holds [`LOCK`]; restores the default configuration when dropped.
struct Exclusive {
    _lock: MutexGuard<'static, ()>,
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        tasker::configure(|config| *config = Configuration::default())
            .expect("the default configuration is valid");
    }
}

fn exclusive() -> Exclusive {
    Exclusive {
        _lock: LOCK.lock().unwrap_or_else(PoisonError::into_inner),
    }
}

/// Every WARN line of this binary, from every thread.
fn warnings() -> &'static LogBuffer {
    static WARNINGS: OnceLock<LogBuffer> = OnceLock::new();
    WARNINGS.get_or_init(|| {
        let buffer = LogBuffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .with_ansi(false)
            .without_time()
            .with_max_level(tracing::Level::WARN)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        buffer
    })
}

#[tasker::step(max_attempts = 1)]
fn weigh(grams: u32) -> u32 {
    grams
}

#[tasker::task(name = "parcel", version = "1.0.0")]
fn parcel(grams: u32) -> u32 {
    weigh(grams)
}

const ADAPTERS_OFF: &str = " WARN tasker: [Tasker] telemetry_adapters lists `console`, `custom` \
    but enable_telemetry is false, so no adapter receives any event; set \
    `config.enable_telemetry = true` in `configure` (or TASKER_ENABLE_TELEMETRY=true with \
    `Configuration::from_env`)";

#[test]
fn adapters_configured_while_telemetry_is_off_say_so_once() {
    let _exclusive = exclusive();
    let warnings = warnings();
    for _ in 0..2 {
        tasker::configure(|config| {
            config.telemetry_adapters = vec![TelemetryAdapter::Console, TelemetryAdapter::Custom];
            config.telemetry_adapter_classes = vec!["tasker_test_adapters::AuditAdapter".into()];
        })
        .expect("a valid configuration");
    }
    assert_eq!(
        warnings.lines_containing("enable_telemetry is false"),
        [ADAPTERS_OFF]
    );
}

tasker::use_adapters!(tasker_test_adapters);

/// The child-process half of [`without_a_subscriber_the_warning_goes_to_stderr`].
const CHILD: &str = "TASKER_NOTHING_SILENT_CHILD";

#[test]
fn without_a_subscriber_the_warning_goes_to_stderr() {
    if std::env::var_os(CHILD).is_some() {
        // No subscriber in this process: the warning has nowhere to go but standard error.
        for _ in 0..2 {
            tasker::configure(|config| {
                config.telemetry_adapters = vec![TelemetryAdapter::Console];
            })
            .expect("a valid configuration");
        }
        return;
    }
    let child = Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "--exact",
            "without_a_subscriber_the_warning_goes_to_stderr",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the child process starts");
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let output = finished
        .recv_timeout(support::DEADLINE)
        .expect("the child process ends within the deadline")
        .expect("its output");
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("[Tasker]"))
        .collect();
    assert_eq!(
        lines,
        ["[Tasker] warning: telemetry_adapters lists `console` but enable_telemetry is false, so \
          no adapter receives any event; set `config.enable_telemetry = true` in `configure` (or \
          TASKER_ENABLE_TELEMETRY=true with `Configuration::from_env`)"]
    );
}

#[test]
fn the_default_logger_with_no_subscriber_taking_info_says_so_once() {
    let _exclusive = exclusive();
    let warnings = warnings();
    tasker::configure(|config| {
        config.enable_telemetry = true;
        config.telemetry_adapters = vec![TelemetryAdapter::Default];
    })
    .expect("a valid configuration");
    assert_eq!(parcel(250), 250);
    assert_eq!(parcel(500), 500);
    assert_eq!(
        warnings.lines_containing("the default logger"),
        [
            " WARN tasker: [Tasker] the default logger writes its lines through `tracing` (target \
          `tasker`, level INFO), and no subscriber takes them, so they are lost; install one \
          first in `main`, e.g. `tracing_subscriber::fmt().init()` (with \
          `RUST_LOG=tasker=info` if you filter), or list `TelemetryAdapter::Console` instead of \
          `Default` for a view without a subscriber"
        ]
    );
}

#[test]
fn the_opentelemetry_adapter_on_the_noop_global_provider_says_so_once() {
    let _exclusive = exclusive();
    let warnings = warnings();
    for _ in 0..2 {
        tasker::configure(|config| {
            config.enable_telemetry = true;
            config.telemetry_adapters = vec![TelemetryAdapter::OpenTelemetry];
        })
        .expect("a valid configuration");
    }
    assert_eq!(
        warnings.lines_containing("no tracer provider"),
        [
            " WARN tasker: [Tasker] the OpenTelemetry adapter has no tracer provider: \
          `config.tracer_provider` is unset and no global provider is installed, so every span \
          goes to OpenTelemetry's no-op provider and is lost; call \
          `tasker::telemetry::otel::init_from_env()` before `configure` (or \
          `opentelemetry::global::set_tracer_provider` with your SDK provider), or set \
          `config.tracer_provider`"
        ]
    );
}

#[test]
fn a_configure_that_drops_the_adapter_of_a_live_otel_guard_says_so_once() {
    let _exclusive = exclusive();
    let warnings = warnings();
    // What `telemetry::init()` of `cargo tasker telemetry setup` does, without the globals. The
    // collector is never reached: nothing is exported before the guard is dropped.
    let guard = tasker::telemetry::otel::OtlpSettings::from_lookup(|_| None)
        .expect("the defaults")
        .build()
        .expect("OTLP providers");
    for _ in 0..2 {
        tasker::configure(|config| {
            config.enable_telemetry = true;
            config.telemetry_adapters = vec![TelemetryAdapter::OpenTelemetry];
            guard.configure(config);
        })
        .expect("a valid configuration");
        // The user's own configure, replacing the list instead of adding to it.
        tasker::configure(|config| {
            config.telemetry_adapters = vec![TelemetryAdapter::Console];
        })
        .expect("a valid configuration");
    }
    assert_eq!(
        warnings.lines_containing("removed the OpenTelemetry adapter"),
        [
            " WARN tasker: [Tasker] this `configure` call removed the OpenTelemetry adapter \
          (telemetry_adapters is now `console`) while an OtelGuard (from `init_from_env`, e.g. \
          in `telemetry::init()`) is alive, so no span or metric is exported any more; change \
          the configuration `configure` hands you instead of replacing it, e.g. \
          `config.telemetry_adapters.push(TelemetryAdapter::Default)`"
        ]
    );
    drop(guard);
}

#[test]
fn a_step_outside_any_task_in_the_console_view_says_so_once() {
    let _exclusive = exclusive();
    let warnings = warnings();
    tasker::configure(|config| {
        config.enable_telemetry = true;
        config.telemetry_adapters = vec![TelemetryAdapter::Console];
    })
    .expect("a valid configuration");
    assert_eq!(weigh(1), 1);
    assert_eq!(weigh(2), 2);
    assert_eq!(
        warnings.lines_containing("console view"),
        [
            " WARN tasker: [Tasker] the console view shows each task's tree when the task ends; \
          step `weigh` ran outside any task, so it is not shown (nor are other steps outside a \
          task): call it from a `#[tasker::task]` function"
        ]
    );
}
