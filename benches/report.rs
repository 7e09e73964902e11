//! Prints the README's benchmark table from criterion's latest estimates: each row with our
//! figure, the peer's, the ratio and the budget of DESIGN.md §6. Run after the benchmarks;
//! `bash benches/run.sh` runs everything in order.

use std::path::{Path, PathBuf};

/// Mean time of one iteration, in nanoseconds, from `target/criterion/<group>/<name>`.
fn mean_ns(group: &str, name: &str) -> Option<f64> {
    let path = criterion_dir()
        .join(group.replace('/', "_"))
        .join(name.replace('/', "_"))
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn criterion_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("criterion")
}

fn time(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else if ns >= 10.0 {
        format!("{ns:.0} ns")
    } else {
        format!("{ns:.1} ns")
    }
}

/// A difference, with its sign: `+0.3 ns`, `−0.2 ns`.
fn signed(ns: f64) -> String {
    if ns < 0.0 {
        format!("−{}", time(-ns))
    } else {
        format!("+{}", time(ns))
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**not met**"
    }
}

fn main() {
    let overhead = |name: &str| mean_ns("overhead", name);
    let mut rows = Vec::new();
    for (kind, budget) in [("sync", 1.0), ("async", 3.0)] {
        let plain = if kind == "sync" {
            "plain fn"
        } else {
            "plain async fn"
        };
        if let (Some(ours), Some(peer), Some(tracing)) = (
            overhead(&format!("off/{kind}/tasker step, telemetry off")),
            overhead(&format!("off/{kind}/{plain}")),
            overhead(&format!("off/{kind}/tracing #[instrument], no subscriber")),
        ) {
            rows.push(format!(
                "| telemetry off, {kind} | {} | {plain}: {}; tracing, no subscriber: {} | {} over plain | ≤ +{budget} ns: {} |",
                time(ours),
                time(peer),
                time(tracing),
                signed(ours - peer),
                verdict(ours - peer <= budget)
            ));
        }
    }
    for kind in ["sync", "async"] {
        if let (Some(ours), Some(tracing), Some(fastrace)) = (
            overhead(&format!("on/{kind}/tasker step, one no-op adapter")),
            overhead(&format!("on/{kind}/tracing #[instrument], registry")),
            overhead(&format!(
                "on/{kind}/fastrace #[trace], root span + reporter"
            )),
        ) {
            rows.push(format!(
                "| one no-op adapter, {kind} | {} | tracing, registry: {}; fastrace, root + reporter: {} | {:.2}× tracing | ≤ 60 ns: {} |",
                time(ours),
                time(tracing),
                time(fastrace),
                ours / tracing,
                verdict(ours <= 60.0)
            ));
        }
    }
    if let (Some(ours), Some(peer)) = (
        overhead("logging/sync/tasker step, default logger adapter"),
        overhead("logging/sync/tracing #[instrument] + one info!"),
    ) {
        rows.push(format!(
            "| default logger, fmt to a sink | {} | `#[instrument]` + one `info!`: {} | {:.2}× | ≤ 1×: {} |",
            time(ours),
            time(peer),
            ours / peer,
            verdict(ours <= peer)
        ));
    }
    let otel = |name: &str| mean_ns("opentelemetry/step call", name);
    if let (Some(ours), Some(tracing), Some(raw)) = (
        otel("tasker step, OpenTelemetry adapter"),
        otel("tracing #[instrument] + tracing-opentelemetry"),
        otel("OpenTelemetry SDK in_span"),
    ) {
        rows.push(format!(
            "| OpenTelemetry adapter, SDK + dropping exporter | {} | tracing + tracing-opentelemetry: {}; SDK `in_span`: {} | {:.2}× tracing | ≤ 0.33×: {} |",
            time(ours),
            time(tracing),
            time(raw),
            ours / tracing,
            verdict(ours <= tracing / 3.0)
        ));
    }
    let runtime = |name: &str| mean_ns("runtime/10-step task", name).map(|ns| ns / 200.0);
    if let (Some(ours), Some(peer)) = (
        runtime("tasker Runtime (queue + workers)"),
        runtime("hand-written Tokio loop"),
    ) {
        rows.push(format!(
            "| 10-step task through `Runtime`, per task | {} | hand-written Tokio loop: {} | {:.2}× | ≤ 2×: {} |",
            time(ours),
            time(peer),
            ours / peer,
            verdict(ours <= 2.0 * peer)
        ));
    }
    println!("| path (per step call unless noted) | tasker | peers | ratio | budget |");
    println!("|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
