//! `cargo tasker telemetry setup`: the counterpart of Tasker's `rake tasker:telemetry:setup`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use crate::manifest::{self, FeatureEdit, ManifestError};

/// The initializer the command writes to `src/telemetry.rs`.
pub const TEMPLATE: &str = include_str!("../templates/telemetry.rs");

/// The feature the command enables.
pub const FEATURE: &str = "opentelemetry";

/// What to set up, and where.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// The package's `Cargo.toml`; `None`: the nearest one from the current directory up.
    pub manifest_path: Option<PathBuf>,
    /// Overwrite a `src/telemetry.rs` that differs from the template.
    pub force: bool,
}

/// What the command did, for its report; `refused` makes the exit status non-zero.
#[derive(Debug, Default)]
pub struct SetupReport {
    /// One line per thing done or left alone.
    pub lines: Vec<String>,
    /// The next steps for the user.
    pub next_steps: Vec<String>,
    /// A file was left unchanged because the user changed it and `--force` was not given.
    pub refused: bool,
}

/// Runs the setup from `current_dir`.
pub fn run(options: &SetupOptions, current_dir: &Path) -> Result<SetupReport, ManifestError> {
    let manifest_path = match &options.manifest_path {
        Some(path) => path.clone(),
        None => manifest::find(current_dir)?,
    };
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| ManifestError::Io { path, source }
    };
    let text = fs::read_to_string(&manifest_path).map_err(io_error(&manifest_path))?;
    // Checked before anything is written: a manifest we cannot edit changes nothing.
    let edit = manifest::enable_feature(&manifest_path, &text, FEATURE)?;
    let package_dir = manifest_path
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default();
    let shown = |path: &Path| {
        path.strip_prefix(&package_dir)
            .unwrap_or(path)
            .display()
            .to_string()
    };

    let mut report = SetupReport::default();
    match edit {
        FeatureEdit::Added(new_text) => {
            fs::write(&manifest_path, new_text).map_err(io_error(&manifest_path))?;
            report.lines.push(format!(
                "Cargo.toml: enabled the `{FEATURE}` feature of the `tasker` dependency"
            ));
        }
        FeatureEdit::AlreadyEnabled => report.lines.push(format!(
            "Cargo.toml: the `{FEATURE}` feature is already enabled; unchanged"
        )),
    }

    let initializer = package_dir.join("src").join("telemetry.rs");
    let existing = match fs::read_to_string(&initializer) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(io_error(&initializer)(error)),
    };
    match existing {
        Some(text) if text == TEMPLATE => report.lines.push(format!(
            "{}: already Tasker's initializer; unchanged",
            shown(&initializer)
        )),
        Some(_) if !options.force => {
            report.refused = true;
            report.lines.push(format!(
                "{}: exists and differs from Tasker's initializer; left unchanged (run again \
                 with --force to replace it, or see the template with \
                 `cargo tasker telemetry setup --print`)",
                shown(&initializer)
            ));
        }
        existing => {
            if let Some(parent) = initializer.parent() {
                fs::create_dir_all(parent).map_err(io_error(parent))?;
            }
            fs::write(&initializer, TEMPLATE).map_err(io_error(&initializer))?;
            report.lines.push(format!(
                "{}: {}",
                shown(&initializer),
                if existing.is_some() {
                    "replaced with Tasker's initializer (--force)"
                } else {
                    "written (OTLP export via init_from_env, the adapters, every knob commented)"
                }
            ));
        }
    }

    let root = if package_dir.join("src/main.rs").is_file() {
        "src/main.rs"
    } else {
        "src/lib.rs"
    };
    let mut declare = String::new();
    let _ = write!(
        declare,
        "declare the module in {root}: `{}mod telemetry;`",
        if root == "src/lib.rs" { "pub " } else { "" }
    );
    report.next_steps = vec![
        declare,
        "call it first in main and keep the guard: `let _telemetry = telemetry::init()?;`"
            .to_owned(),
        "start a collector, e.g. Jaeger: `docker run --rm -p 16686:16686 -p 4318:4318 \
         jaegertracing/all-in-one`"
            .to_owned(),
        "run with `OTEL_SERVICE_NAME=my-service cargo run` and open http://localhost:16686"
            .to_owned(),
    ];
    Ok(report)
}
