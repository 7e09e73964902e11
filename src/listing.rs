//! What a program registers — its tasks and steps — as JSON, for `cargo tasker tasks`.
//!
//! Tasks and steps are registered at link time, so only the program itself can list them:
//! `cargo tasker tasks` runs it with [`ENV`] set, and
//! [`list_registered_and_exit_if_requested`],
//! called first in `main`, answers by printing [`to_json`] and exiting.

use serde_json::{json, Value};

/// The variable that asks a program for its registry: `TASKER_LIST_TASKS=1`.
pub const ENV: &str = "TASKER_LIST_TASKS";

/// Bytes found in a program's executable exactly when it calls
/// [`list_registered_and_exit_if_requested`] (the linker drops the function, and them with it,
/// from a program that does not), so `cargo tasker tasks` can tell before running a program
/// whether it would answer.
pub const LINKED_MARKER: &[u8] = b"tasker-listing-v1:this-program-answers-TASKER_LIST_TASKS=1";

/// The version of the JSON layout, under the key `tasker_registry`.
pub const FORMAT_VERSION: u32 = 1;

/// Every task and step linked into this program, as JSON:
///
/// ```json
/// { "tasker_registry": 1,
///   "tasks": [{ "name": "checkout", "version": "1.0.0", "enqueueable": true,
///               "function": "shop::checkout", "file": "src/main.rs", "line": 12 }],
///   "steps": [{ "name": "charge", "function": "shop::charge", "file": "src/main.rs", "line": 5,
///               "max_attempts": 3, "backoff_ms": 1000, "backoff_multiplier": 2.0,
///               "max_backoff_ms": 60000, "jitter": 0.1, "skippable": false,
///               "timeout_ms": null }] }
/// ```
///
/// Tasks are sorted by name and version, steps by name (see [`tasks`](crate::tasks) and
/// [`steps`](crate::steps)); `enqueueable` says whether a `TaskRequest` can name the task.
///
/// ```
/// #[tasker::step]
/// fn audit() {}
///
/// let registry = tasker::listing::to_json();
/// assert_eq!(registry["tasker_registry"], 1);
/// assert!(registry["steps"].as_array().unwrap().iter().any(|step| step["name"] == "audit"));
/// ```
pub fn to_json() -> Value {
    let enqueueable: Vec<(&str, &str)> =
        tasker_telemetry::__private::inventory::iter::<tasker_runtime::__private::TaskRegistration>
            .into_iter()
            .filter(|registration| registration.runner().is_some())
            .map(|registration| {
                let task = registration.descriptor();
                (task.name, task.version)
            })
            .collect();
    let tasks: Vec<Value> = crate::tasks()
        .into_iter()
        .map(|task| {
            json!({
                "name": task.name,
                "version": task.version,
                "enqueueable": enqueueable.contains(&(task.name, task.version)),
                "function": task.source.function,
                "file": task.source.file,
                "line": task.source.line,
            })
        })
        .collect();
    let steps: Vec<Value> = crate::steps()
        .into_iter()
        .map(|step| {
            json!({
                "name": step.name,
                "function": step.source.function,
                "file": step.source.file,
                "line": step.source.line,
                "max_attempts": step.policy.max_attempts,
                "backoff_ms": step.policy.backoff_ms,
                "backoff_multiplier": step.policy.backoff_multiplier,
                "max_backoff_ms": step.policy.max_backoff_ms,
                "jitter": step.policy.jitter,
                "skippable": step.skippable,
                "timeout_ms": step.timeout.map(|timeout| timeout.as_millis() as u64),
            })
        })
        .collect();
    json!({ "tasker_registry": FORMAT_VERSION, "tasks": tasks, "steps": steps })
}

/// Answers `cargo tasker tasks`: if `TASKER_LIST_TASKS` is set to `1` (or `true`), prints this
/// program's tasks and steps as one line of JSON ([`listing::to_json`](to_json)) on standard
/// output and exits with status 0; otherwise returns and does nothing.
///
/// Call it first in `main`, before the program does anything else — `cargo tasker tasks` runs
/// the program, and whatever happens before this call happens then too.
///
/// ```no_run
/// # async fn run_the_program() {}
/// #[tokio::main]
/// async fn main() {
///     tasker::list_registered_and_exit_if_requested(); // first: nothing runs before it
///     run_the_program().await;
/// }
/// ```
pub fn list_registered_and_exit_if_requested() {
    // Keeps the marker's bytes in every executable that calls this function, and only there.
    std::hint::black_box(LINKED_MARKER);
    let requested = std::env::var(ENV).is_ok_and(|value| {
        let value = value.trim();
        value == "1" || value.eq_ignore_ascii_case("true")
    });
    if requested {
        println!("{}", to_json());
        std::process::exit(0);
    }
}
