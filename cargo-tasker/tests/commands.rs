//! `cargo tasker events` and `cargo tasker tasks`.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn cargo_tasker(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cargo-tasker"))
        .arg("tasker")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("cargo-tasker runs")
}

#[test]
fn events_lists_the_catalog_with_payload_keys() {
    let output = cargo_tasker(Path::new("."), &["events"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with(
        "Tasker lifecycle events (17). Every payload also has: event, timestamp, task_id, \
         task_name, task_version.\n"
    ));
    assert!(text.contains(
        "step.error                step_id, step_name, attempt, error_class, error_message, \
         retryable\n"
    ));
    let json = cargo_tasker(Path::new("."), &["events", "--json"]);
    let catalog: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(catalog.as_array().map(Vec::len), Some(17));
    assert_eq!(catalog[7]["event"], "task.complete");
    assert_eq!(catalog[7]["keys"], serde_json::json!(["duration_ms"]));
}

/// A stand-in program: a shell script that answers `TASKER_LIST_TASKS=1` like
/// `tasker::list_registered_and_exit_if_requested` does, or not at all. Both carry the bytes
/// that the function leaves in an executable that calls it (`tasker::listing::LINKED_MARKER`):
/// the silent one stands for a program that calls it too late.
#[cfg(unix)]
fn program(dir: &Path, answers: bool) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let answer = r#"{"tasker_registry":1,"tasks":[{"name":"checkout","version":"1.0.0","enqueueable":true,"function":"shop::checkout","file":"src/main.rs","line":30}],"steps":[{"name":"charge","function":"shop::charge","file":"src/main.rs","line":12,"max_attempts":3,"backoff_ms":50,"backoff_multiplier":2.0,"max_backoff_ms":60000,"jitter":0.1,"skippable":false,"timeout_ms":500},{"name":"gift_wrap","function":"shop::gift_wrap","file":"src/main.rs","line":20,"max_attempts":1,"backoff_ms":1000,"backoff_multiplier":2.0,"max_backoff_ms":60000,"jitter":0.1,"skippable":true,"timeout_ms":null}]}"#;
    let body = if answers {
        format!("#!/bin/sh\nif [ \"$TASKER_LIST_TASKS\" = 1 ]; then echo '{answer}'; exit 0; fi\necho running\n")
    } else {
        "#!/bin/sh\necho 'shop started' ; echo 'no registry here' >&2\n".to_owned()
    };
    let marker = String::from_utf8(tasker::listing::LINKED_MARKER.to_vec()).unwrap();
    let body = format!("{body}# {marker}\n");
    let path = dir.join(if answers { "shop" } else { "silent" });
    fs::write(&path, body).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[cfg(unix)]
#[test]
fn tasks_prints_what_the_program_registers() {
    let temp = tempfile::tempdir().unwrap();
    let shop = program(temp.path(), true);
    let output = cargo_tasker(temp.path(), &["tasks", shop.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "\
1 task
  checkout 1.0.0  enqueueable  src/main.rs:30
2 steps
  charge     max_attempts=3 backoff_ms=50 timeout_ms=500  src/main.rs:12
  gift_wrap  max_attempts=1 backoff_ms=1000 skippable  src/main.rs:20
"
    );
}

#[cfg(unix)]
#[test]
fn a_program_that_does_not_answer_is_told_what_to_call() {
    let temp = tempfile::tempdir().unwrap();
    let silent = program(temp.path(), false);
    let output = cargo_tasker(temp.path(), &["tasks", silent.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8(output.stderr).unwrap();
    assert!(
        message.starts_with(&format!(
            "error: {} did not list its tasks (exit status: 0); make \
             `tasker::list_registered_and_exit_if_requested();` the first line of its main, so \
             that it answers TASKER_LIST_TASKS=1; its stderr ended with:\nno registry here",
            silent.display()
        )),
        "{message}"
    );
}

/// A program that would run in full: it leaves `ran` behind when it is run.
#[cfg(unix)]
fn program_without_listing(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("oblivious");
    fs::write(
        &path,
        "#!/bin/sh\ntouch \"$(dirname \"$0\")/ran\"\nsleep 30\n",
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[cfg(unix)]
#[test]
fn a_program_that_does_not_call_the_listing_is_refused_before_it_runs() {
    let temp = tempfile::tempdir().unwrap();
    let oblivious = program_without_listing(temp.path());
    let output = cargo_tasker(temp.path(), &["tasks", oblivious.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        format!(
            "error: {path} does not call `tasker::list_registered_and_exit_if_requested()` (its \
             executable {path} does not contain it), so it cannot list its tasks and was not \
             run; make `tasker::list_registered_and_exit_if_requested();` the first line of its \
             main\n",
            path = oblivious.display()
        )
    );
    assert!(!temp.path().join("ran").exists(), "the program was not run");
}

/// `--bin` builds the program with cargo, checks it, and refuses it without running it.
#[test]
fn a_bin_that_does_not_call_the_listing_is_built_and_refused_unrun() {
    let temp = tempfile::tempdir().unwrap();
    fs::write(
        temp.path().join("Cargo.toml"),
        "[package]\nname = \"plain\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    fs::create_dir(temp.path().join("src")).unwrap();
    fs::write(
        temp.path().join("src/main.rs"),
        "fn main() { std::fs::write(\"ran\", \"\").unwrap(); }\n",
    )
    .unwrap();
    let output = cargo_tasker(temp.path(), &["tasks", "--bin", "plain"]);
    assert_eq!(output.status.code(), Some(2));
    let executable = temp.path().join("target/debug/plain");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.ends_with(&format!(
            "error: --bin plain does not call `tasker::list_registered_and_exit_if_requested()` \
             (its executable {} does not contain it), so it cannot list its tasks and was not \
             run; make `tasker::list_registered_and_exit_if_requested();` the first line of its \
             main\n",
            executable.display()
        )),
        "{stderr}"
    );
    assert!(!temp.path().join("ran").exists(), "the program was not run");
}

#[test]
fn an_unknown_command_prints_the_usage() {
    let output = cargo_tasker(Path::new("."), &["telemetry", "teardown"]);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8(output.stderr).unwrap();
    assert!(message.starts_with("error: unknown command `telemetry teardown`\n\ncargo tasker:"));
}
