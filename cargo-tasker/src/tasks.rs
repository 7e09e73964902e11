//! `cargo tasker tasks`: the tasks and steps a program registers.
//!
//! Registrations happen at link time, so only the program knows them: the command runs it with
//! `TASKER_LIST_TASKS=1`, and the program answers if its `main` first calls
//! `tasker::list_registered_and_exit_if_requested()`, which prints one line of JSON
//! (`tasker::listing::to_json`) and exits.
//!
//! A program that does not call it would run in full instead, so its executable is checked first
//! (`--bin` and `--example` are built, not run, by cargo): the function leaves
//! [`listing::LINKED_MARKER`] in every executable that calls it, and one without is refused
//! without being run.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;
use tasker::listing;

/// The program to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A built executable.
    Path(PathBuf),
    /// `cargo run --bin <name>` in the current package.
    Bin(String),
    /// `cargo run --example <name>` in the current package.
    Example(String),
}

/// Why the program's registry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TasksError {
    /// The program did not start.
    #[error("could not run {program}: {source}")]
    Spawn {
        /// What was run.
        program: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The program could not be built.
    #[error("could not build {program} ({status}); cargo's messages are above")]
    Build {
        /// What was built.
        program: String,
        /// cargo's exit status.
        status: String,
    },
    /// cargo built no executable for the target.
    #[error("cargo built no executable for {program}; check the name of the target")]
    NoExecutable {
        /// What was built.
        program: String,
    },
    /// The executable could not be read.
    #[error("could not read the executable {path} of {program}: {source}")]
    Read {
        /// What was to be run.
        program: String,
        /// Its executable.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The program does not call `list_registered_and_exit_if_requested`, so it would run in
    /// full instead of answering: it was not run.
    #[error(
        "{program} does not call `tasker::list_registered_and_exit_if_requested()` (its \
         executable {path} does not contain it), so it cannot list its tasks and was not run; \
         make `tasker::list_registered_and_exit_if_requested();` the first line of its main"
    )]
    NotListing {
        /// What was to be run.
        program: String,
        /// Its executable.
        path: String,
    },
    /// The program printed no registry.
    #[error(
        "{program} did not list its tasks ({status}); make `tasker::list_registered_and_exit_if_requested();` \
         the first line of its main, so that it answers {env}=1{stderr}"
    )]
    NoAnswer {
        /// What was run.
        program: String,
        /// Its exit status.
        status: String,
        /// The variable it was given.
        env: &'static str,
        /// The end of its standard error, if any.
        stderr: String,
    },
}

/// The registry JSON of `target`, from its executable run with `TASKER_LIST_TASKS=1`, once
/// that executable is known to answer.
pub fn registry(target: &Target) -> Result<Value, TasksError> {
    let (path, program) = match target {
        Target::Path(path) => (path.clone(), path.display().to_string()),
        Target::Bin(name) => (build("--bin", name)?, format!("--bin {name}")),
        Target::Example(name) => (build("--example", name)?, format!("--example {name}")),
    };
    let executable = std::fs::read(&path).map_err(|source| TasksError::Read {
        program: program.clone(),
        path: path.display().to_string(),
        source,
    })?;
    if !contains(&executable, listing::LINKED_MARKER) {
        return Err(TasksError::NotListing {
            program,
            path: path.display().to_string(),
        });
    }
    let mut command = Command::new(&path);
    let output = command
        .env(listing::ENV, "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| TasksError::Spawn {
            program: program.clone(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answer = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|value| value.get("tasker_registry").is_some());
    answer.ok_or_else(|| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        TasksError::NoAnswer {
            program,
            status: output.status.to_string(),
            env: listing::ENV,
            stderr: if tail.is_empty() {
                String::new()
            } else {
                format!(
                    "; its stderr ended with:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            },
        }
    })
}

/// Builds `--bin name` or `--example name` of the current package (cargo's own messages go to
/// standard error) and returns its executable's path.
fn build(kind: &str, name: &str) -> Result<PathBuf, TasksError> {
    let program = format!("{kind} {name}");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--message-format=json-render-diagnostics",
            kind,
            name,
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| TasksError::Spawn {
            program: format!("cargo build {program}"),
            source,
        })?;
    if !output.status.success() {
        return Err(TasksError::Build {
            program,
            status: output.status.to_string(),
        });
    }
    // The last artifact with an executable is the target asked for (its dependencies come
    // first).
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter_map(|message| message["executable"].as_str().map(PathBuf::from))
        .next_back()
        .ok_or(TasksError::NoExecutable { program })
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    haystack
        .iter()
        .enumerate()
        .filter(|(_, byte)| **byte == first)
        .any(|(at, _)| haystack[at + 1..].starts_with(rest))
}

/// The registry as text: tasks, then steps with their policies.
pub fn render_text(registry: &Value) -> String {
    let empty = Vec::new();
    let tasks = registry["tasks"].as_array().unwrap_or(&empty);
    let steps = registry["steps"].as_array().unwrap_or(&empty);
    let mut out = format!("{} task{}\n", tasks.len(), plural(tasks.len()));
    for task in tasks {
        out.push_str(&format!(
            "  {} {}{}  {}:{}\n",
            text(&task["name"]),
            text(&task["version"]),
            if task["enqueueable"] == true {
                "  enqueueable"
            } else {
                ""
            },
            text(&task["file"]),
            task["line"],
        ));
    }
    out.push_str(&format!("{} step{}\n", steps.len(), plural(steps.len())));
    let width = steps
        .iter()
        .map(|step| text(&step["name"]).len())
        .max()
        .unwrap_or(0);
    for step in steps {
        let mut policy = format!(
            "max_attempts={} backoff_ms={}",
            step["max_attempts"], step["backoff_ms"]
        );
        if step["skippable"] == true {
            policy.push_str(" skippable");
        }
        if let Some(timeout) = step["timeout_ms"].as_u64() {
            policy.push_str(&format!(" timeout_ms={timeout}"));
        }
        out.push_str(&format!(
            "  {:<width$}  {policy}  {}:{}\n",
            text(&step["name"]),
            text(&step["file"]),
            step["line"],
        ));
    }
    out
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("?")
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}
