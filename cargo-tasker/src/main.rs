//! `cargo tasker`: Tasker's developer commands.
//!
//! ```text
//! cargo install --path cargo-tasker
//! cargo tasker telemetry setup [--force] [--manifest-path PATH] [--print]
//! cargo tasker events [--json]
//! cargo tasker tasks (PATH | --bin NAME | --example NAME) [--json]
//! cargo tasker queue --url URL [--schema NAME] [--queue NAME] [--json] COMMAND
//! ```
//!
//! `queue` has exit statuses of its own: 0 done, 1 the queue said no, 2 a command line error
//! (see `queue.rs`).
//!
//! Exit status: 0 done; 1 done except a file the user changed, which was left alone (setup
//! without `--force`); 2 an error (no cargo project, no `tasker` dependency, bad arguments, a
//! program that does not list its tasks).

mod events;
mod manifest;
mod queue;
mod setup;
mod tasks;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
cargo tasker: Tasker's developer commands

USAGE:
    cargo tasker telemetry setup [--force] [--manifest-path PATH] [--print]
        Enables the `opentelemetry` feature of your `tasker` dependency and writes
        src/telemetry.rs (OTLP export via init_from_env, the adapters, every knob
        commented). Idempotent; a src/telemetry.rs you changed is left alone unless
        --force. --print writes the initializer to stdout and changes nothing.
    cargo tasker events [--json]
        The lifecycle-event catalog with each payload's keys.
    cargo tasker tasks (PATH | --bin NAME | --example NAME) [--json]
        The tasks and steps a program registers. The program (--bin and --example are
        built first) is run with TASKER_LIST_TASKS=1 and must call
        tasker::list_registered_and_exit_if_requested() first in its main; one that does
        not call it is refused before it runs.
    cargo tasker queue --url (sqlite:PATH | postgres://…) [--json] COMMAND
        Look after a durable queue: status, dead-letters, retry, purge, result.
        See `cargo tasker queue --help`.
";

/// What went wrong with the arguments.
#[derive(Debug)]
struct UsageError(String);

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo tasker …` runs `cargo-tasker tasker …`.
    if args.first().map(String::as_str) == Some("tasker") {
        args.remove(0);
    }
    match run(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] | ["help" | "--help" | "-h", ..] => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        ["telemetry", "setup", rest @ ..] => telemetry_setup(rest),
        ["events", rest @ ..] => {
            let json = flags(rest, &["--json"]).map_err(usage)?.contains(&"--json");
            if json {
                println!("{:#}", events::render_json());
            } else {
                print!("{}", events::render_text());
            }
            Ok(ExitCode::SUCCESS)
        }
        ["tasks", rest @ ..] => list_tasks(rest),
        ["queue", rest @ ..] => Ok(queue::run(rest)),
        _ => Err(usage(UsageError(format!(
            "unknown command `{}`",
            words.join(" ")
        )))),
    }
}

fn usage(error: UsageError) -> String {
    format!("{}\n\n{USAGE}", error.0)
}

/// Checks that `args` are among `known` flags, and returns them.
fn flags<'a>(args: &[&'a str], known: &[&str]) -> Result<Vec<&'a str>, UsageError> {
    for arg in args {
        if !known.contains(arg) {
            return Err(UsageError(format!("unexpected argument `{arg}`")));
        }
    }
    Ok(args.to_vec())
}

fn telemetry_setup(args: &[&str]) -> Result<ExitCode, String> {
    let mut options = setup::SetupOptions {
        manifest_path: None,
        force: false,
    };
    let mut print = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match *arg {
            "--force" => options.force = true,
            "--print" => print = true,
            "--manifest-path" => {
                let path = rest
                    .next()
                    .ok_or_else(|| usage(UsageError("--manifest-path needs a path".to_owned())))?;
                options.manifest_path = Some(PathBuf::from(path));
            }
            other => return Err(usage(UsageError(format!("unexpected argument `{other}`")))),
        }
    }
    if print {
        print!("{}", setup::TEMPLATE);
        return Ok(ExitCode::SUCCESS);
    }
    let current_dir = std::env::current_dir().map_err(|error| error.to_string())?;
    let report = setup::run(&options, &current_dir).map_err(|error| error.to_string())?;
    for line in &report.lines {
        println!("{line}");
    }
    if report.refused {
        eprintln!("error: a file you changed was left as it is; nothing else is pending");
        return Ok(ExitCode::from(1));
    }
    println!("\nNext steps:");
    for (number, step) in report.next_steps.iter().enumerate() {
        println!("  {}. {step}", number + 1);
    }
    Ok(ExitCode::SUCCESS)
}

fn list_tasks(args: &[&str]) -> Result<ExitCode, String> {
    let mut target = None;
    let mut json = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match *arg {
            "--json" => json = true,
            "--bin" | "--example" => {
                let name = rest
                    .next()
                    .ok_or_else(|| usage(UsageError(format!("{arg} needs a name"))))?;
                target = Some(if *arg == "--bin" {
                    tasks::Target::Bin((*name).to_owned())
                } else {
                    tasks::Target::Example((*name).to_owned())
                });
            }
            path if !path.starts_with('-') && target.is_none() => {
                target = Some(tasks::Target::Path(PathBuf::from(path)));
            }
            other => return Err(usage(UsageError(format!("unexpected argument `{other}`")))),
        }
    }
    let target = target.ok_or_else(|| {
        usage(UsageError(
            "which program? give a path to it, --bin NAME or --example NAME".to_owned(),
        ))
    })?;
    let registry = tasks::registry(&target).map_err(|error| error.to_string())?;
    if json {
        println!("{registry:#}");
    } else {
        print!("{}", tasks::render_text(&registry));
    }
    Ok(ExitCode::SUCCESS)
}
