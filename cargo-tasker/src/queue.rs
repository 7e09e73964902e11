//! `cargo tasker queue`: an operator's view of a durable queue (PostgreSQL or SQLite): counts,
//! dead letters, retries, purges and results, as text or `--json`.
//!
//! Exit status: 0 done; 1 the queue said no (it cannot be reached, no such dead letter, a dead
//! letter that cannot be retried, no result yet); 2 the command line is wrong (nothing was
//! asked of the queue).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tasker::queue::{
    Completion, Counts, DeadLetter, PostgresQueue, QueueError, RetriedDeadLetters, SqliteQueue,
    TaskCounts,
};

/// `cargo tasker queue --help`.
pub const USAGE: &str = "\
cargo tasker queue: look after a durable queue (PostgreSQL or SQLite)

USAGE:
    cargo tasker queue --url URL [--schema NAME] [--queue NAME] [--json] COMMAND

OPTIONS:
    --url URL        sqlite:PATH (a SQLite file a SqliteQueue made) or
                     postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE
    --schema NAME    the PostgreSQL schema that holds the queue's tables (default `tasker`)
    --queue NAME     the queue's name within the database (default `default`)
    --json           machine-readable output on stdout

COMMANDS:
    status                       envelopes by state and by task name, and how long the oldest
                                 ready one has waited
    dead-letters [ID]            the dead letters, or one in full
    retry (ID | --all)           dead letters back to ready
    purge dead-letters [ID] --yes
                                 remove dead letters for good
    result TASK_ID               how a completed task ended

Each command takes --help. Exit status: 0 done; 1 the queue said no (unreachable, no such
dead letter, one that cannot be retried, no result yet); 2 a command line error.
";

const STATUS_HELP: &str = "\
cargo tasker queue --url URL status [--json]

How many envelopes of the queue are ready (available now), delayed (requeued with a delay that
has not passed), leased (claimed by a worker) and dead, in all and by task name (rows whose
envelope names no task that can be read are counted as `(unreadable)`), and how long the oldest
ready envelope has been available without a worker taking it.
";

const DEAD_LETTERS_HELP: &str = "\
cargo tasker queue --url URL dead-letters [ID] [--json]

Without ID, one line per dead letter, oldest first: its id, task name, the delivery it died on,
when, its task id and why. With ID, that dead letter in full: its envelope, or — for a row no
worker could read — the first KiB of what is stored.
";

const RETRY_HELP: &str = "\
cargo tasker queue --url URL retry (ID | --all) [--json]

Makes dead letter ID (or every dead letter, with --all) ready again, now. Its counted
deliveries — what counts toward max_deliveries — start again from one, so it gets as many
deliveries as a new task; its checkpoints stay, so the steps it completed are replayed rather
than run again. A dead letter whose envelope cannot be decoded cannot be retried (no worker
could run it): retry ID refuses it (exit status 1), retry --all leaves it dead and lists it;
purge it instead.
";

const PURGE_HELP: &str = "\
cargo tasker queue --url URL purge dead-letters [ID] --yes [--json]

Removes dead letter ID, or every dead letter of the queue, for good, with their tasks'
checkpoints. Dead letters are the only scope: ready, delayed and leased envelopes are never
purged. Without --yes nothing is removed (exit status 2).
";

const RESULT_HELP: &str = "\
cargo tasker queue --url URL result TASK_ID [--json]

How task TASK_ID (a UUID, as TaskHandle::task_id() and the events' task_id give it) ended: its
output, or its error. Exit status 1 if there is no result yet: the task has not completed, or
it did not run on this database.
";

/// What the command line asks, checked before anything is asked of the queue.
#[derive(Debug, PartialEq)]
struct Invocation {
    url: QueueUrl,
    schema: Option<String>,
    queue: String,
    json: bool,
    command: Command,
}

#[derive(Debug, PartialEq)]
enum QueueUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, PartialEq)]
enum Command {
    Status,
    DeadLetters(Option<i64>),
    Retry(Scope),
    Purge(Scope),
    Result(uuid::Uuid),
}

/// One dead letter, or all of them.
#[derive(Debug, PartialEq)]
enum Scope {
    One(i64),
    All,
}

/// What went wrong, and so the exit status.
#[derive(Debug)]
pub enum Failure {
    /// The command line is wrong: status 2, with the usage to read.
    Usage(String),
    /// Help was asked for: printed on stdout, status 0.
    Help(&'static str),
    /// The queue said no: status 1.
    Operation(String),
}

/// Runs `cargo tasker queue ARGS`.
pub fn run(args: &[&str]) -> ExitCode {
    let outcome = parse(args).and_then(|invocation| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| Failure::Operation(format!("could not start Tokio: {error}")))?;
        runtime.block_on(execute(&invocation))
    });
    match outcome {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(Failure::Help(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Operation(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

fn parse(args: &[&str]) -> Result<Invocation, Failure> {
    let usage = |message: String| Failure::Usage(message);
    let (mut url, mut schema, mut queue) = (None, None, None);
    let (mut json, mut yes, mut all, mut help) = (false, false, false, false);
    let mut words = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
            _ => (*arg, None),
        };
        let mut value = |slot: &mut Option<String>| -> Result<(), Failure> {
            let value = match inline {
                Some(value) => value,
                None => rest
                    .next()
                    .copied()
                    .ok_or_else(|| usage(format!("{flag} needs a value")))?,
            };
            if slot.replace(value.to_owned()).is_some() {
                return Err(usage(format!("{flag} is given twice")));
            }
            Ok(())
        };
        match flag {
            "--url" => value(&mut url)?,
            "--schema" => value(&mut schema)?,
            "--queue" => value(&mut queue)?,
            "--json" => json = true,
            "--yes" => yes = true,
            "--all" => all = true,
            "--help" | "-h" => help = true,
            other if other.starts_with('-') => {
                return Err(usage(format!("unexpected option `{other}`")))
            }
            word => words.push(word),
        }
    }
    let (name, operands) = match words.split_first() {
        Some((name, operands)) => (Some(*name), operands),
        None => (None, &[][..]),
    };
    if help {
        return Err(Failure::Help(match name {
            Some("status") => STATUS_HELP,
            Some("dead-letters") => DEAD_LETTERS_HELP,
            Some("retry") => RETRY_HELP,
            Some("purge") => PURGE_HELP,
            Some("result") => RESULT_HELP,
            _ => USAGE,
        }));
    }
    let Some(name) = name else {
        return Err(usage(
            "which command? one of status, dead-letters, retry, purge, result".to_owned(),
        ));
    };
    let refuse = |flag: &str, given: bool| match given {
        true => Err(usage(format!("{flag} does not apply to `{name}`"))),
        false => Ok(()),
    };
    let extra = |operands: &[&str]| match operands {
        [] => Ok(()),
        [first, ..] => Err(usage(format!("unexpected argument `{first}` to `{name}`"))),
    };
    if name != "purge" {
        refuse("--yes", yes)?;
    }
    if name != "retry" {
        refuse("--all", all)?;
    }
    let command = match name {
        "status" => {
            extra(operands)?;
            Command::Status
        }
        "dead-letters" => match operands {
            [] => Command::DeadLetters(None),
            [id, rest @ ..] => {
                extra(rest)?;
                Command::DeadLetters(Some(dead_letter_id(id)?))
            }
        },
        "retry" => match (operands, all) {
            ([], true) => Command::Retry(Scope::All),
            ([id], false) => Command::Retry(Scope::One(dead_letter_id(id)?)),
            ([], false) => {
                return Err(usage(
                    "retry which dead letters? give an ID (see `dead-letters`) or --all".to_owned(),
                ))
            }
            ([_], true) => return Err(usage("retry takes an ID or --all, not both".to_owned())),
            ([_, second, ..], _) => {
                return Err(usage(format!("unexpected argument `{second}` to `retry`")))
            }
        },
        "purge" => {
            let scope =
                match operands {
                    ["dead-letters"] => Scope::All,
                    ["dead-letters", id] => Scope::One(dead_letter_id(id)?),
                    ["dead-letters", _, third, ..] => {
                        return Err(usage(format!("unexpected argument `{third}` to `purge`")))
                    }
                    [] => return Err(usage(
                        "purge what? the one scope is dead letters: `purge dead-letters --yes` \
                         removes them all, `purge dead-letters ID --yes` one; ready, delayed and \
                         leased envelopes are never purged"
                            .to_owned(),
                    )),
                    [other, ..] => {
                        return Err(usage(format!(
                        "cannot purge `{other}`: the one scope is `dead-letters` (ready, delayed \
                         and leased envelopes are never purged)"
                    )))
                    }
                };
            if !yes {
                return Err(usage(
                    "purge removes dead letters for good: add --yes to confirm (nothing was \
                     removed; `dead-letters` lists what it would remove)"
                        .to_owned(),
                ));
            }
            Command::Purge(scope)
        }
        "result" => match operands {
            [task_id] => Command::Result(uuid::Uuid::parse_str(task_id).map_err(|_| {
                usage(format!(
                    "`{task_id}` is not a task id: task ids are UUIDs, such as \
                     0192f3c4-7b1e-7a70-8d5e-2f5c3e1a9b01 (TaskHandle::task_id(), the events' \
                     task_id)"
                ))
            })?),
            [] => return Err(usage("result needs a task id (a UUID)".to_owned())),
            [_, second, ..] => {
                return Err(usage(format!("unexpected argument `{second}` to `result`")))
            }
        },
        other => {
            return Err(usage(format!(
                "unknown queue command `{other}`: the commands are status, dead-letters, retry, \
                 purge, result"
            )))
        }
    };
    let Some(url) = url else {
        return Err(usage(
            "which queue? give --url sqlite:PATH or --url postgres://USER@HOST/DATABASE".to_owned(),
        ));
    };
    let url = queue_url(&url)?;
    if schema.is_some() && matches!(url, QueueUrl::Sqlite(_)) {
        return Err(usage(
            "--schema applies to PostgreSQL only: a SQLite queue's tables have fixed names"
                .to_owned(),
        ));
    }
    Ok(Invocation {
        url,
        schema,
        queue: queue.unwrap_or_else(|| "default".to_owned()),
        json,
        command,
    })
}

fn dead_letter_id(text: &str) -> Result<i64, Failure> {
    text.parse().map_err(|_| {
        Failure::Usage(format!(
            "`{text}` is not a dead-letter id: ids are the integers `dead-letters` lists"
        ))
    })
}

fn queue_url(url: &str) -> Result<QueueUrl, Failure> {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        // `sqlite:PATH`, `sqlite://PATH` (relative) and `sqlite:///PATH` (absolute) all work.
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(Failure::Usage(format!(
                "`{url}` names no file: give sqlite:PATH, such as sqlite:tasks.db"
            )));
        }
        return Ok(QueueUrl::Sqlite(PathBuf::from(path)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(QueueUrl::Postgres(url.to_owned()));
    }
    Err(Failure::Usage(format!(
        "`{url}` is not a queue URL: give sqlite:PATH (a SQLite queue's file) or \
         postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
    )))
}

/// A queue on either backend, with the operator's methods both have.
enum Backend {
    Sqlite(SqliteQueue),
    Postgres(Box<PostgresQueue>),
}

/// Calls the same method on whichever queue it is.
macro_rules! each {
    ($backend:expr, $queue:ident => $call:expr) => {
        match $backend {
            Backend::Sqlite($queue) => $call,
            Backend::Postgres($queue) => $call,
        }
    };
}

fn operation(error: QueueError) -> Failure {
    Failure::Operation(error.to_string())
}

async fn open(invocation: &Invocation) -> Result<Backend, Failure> {
    match &invocation.url {
        QueueUrl::Sqlite(path) => {
            check_sqlite_queue(path)?;
            let queue = SqliteQueue::builder(path)
                .name(invocation.queue.clone())
                .open()
                .await
                .map_err(operation)?;
            Ok(Backend::Sqlite(queue))
        }
        QueueUrl::Postgres(url) => {
            let mut builder = PostgresQueue::builder(url.clone())
                .name(invocation.queue.clone())
                .pool_size(1)
                .listen(false);
            if let Some(schema) = &invocation.schema {
                builder = builder.schema(schema.clone());
            }
            let queue = builder.connect().await.map_err(operation)?;
            Ok(Backend::Postgres(Box::new(queue)))
        }
    }
}

/// Refuses a path that holds no SQLite queue: opening a queue creates the file and its tables,
/// which a mistyped path must not do.
fn check_sqlite_queue(path: &Path) -> Result<(), Failure> {
    if !path.is_file() {
        return Err(Failure::Operation(format!(
            "there is no file at {}: give the path of the file your SqliteQueue opens",
            path.display()
        )));
    }
    let not_a_queue = |why: String| {
        Failure::Operation(format!(
            "{} is not a Tasker queue ({why}): give the path of the file your SqliteQueue opens",
            path.display()
        ))
    };
    let connection =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|error| not_a_queue(error.to_string()))?;
    let tables: i64 = connection
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'tasker_envelopes'",
            [],
            |row| row.get(0),
        )
        .map_err(|error| not_a_queue(error.to_string()))?;
    match tables {
        0 => Err(not_a_queue("it has no tasker_envelopes table".to_owned())),
        _ => Ok(()),
    }
}

/// Dead letters one query of `dead-letters` reads.
const DEAD_LETTER_PAGE: usize = 500;

async fn execute(invocation: &Invocation) -> Result<String, Failure> {
    let backend = open(invocation).await?;
    let (queue, json) = (invocation.queue.as_str(), invocation.json);
    match &invocation.command {
        Command::Status => {
            let counts = each!(&backend, q => q.counts().await).map_err(operation)?;
            let by_task = each!(&backend, q => q.counts_by_task().await).map_err(operation)?;
            let oldest = each!(&backend, q => q.oldest_ready_age().await).map_err(operation)?;
            Ok(match json {
                true => lines(&status_json(queue, &counts, &by_task, oldest)),
                false => status_text(queue, &counts, &by_task, oldest),
            })
        }
        Command::DeadLetters(id) => {
            match id {
                None => {
                    // A page at a time: each row read is bounded, not each whole envelope.
                    let mut dead = Vec::new();
                    loop {
                        let after = dead.last().map_or(0, |last: &DeadLetter| last.id);
                        let page =
                            each!(&backend, q => q.dead_letters_page(after, DEAD_LETTER_PAGE).await)
                                .map_err(operation)?;
                        let full = page.len() == DEAD_LETTER_PAGE;
                        dead.extend(page);
                        if !full {
                            break;
                        }
                    }
                    Ok(match json {
                        true => lines(&Value::Array(dead.iter().map(dead_letter_json).collect())),
                        false => dead_letters_text(queue, &dead),
                    })
                }
                Some(id) => {
                    let dead =
                        each!(&backend, q => q.dead_letters_page(id.saturating_sub(1), 1).await)
                            .map_err(operation)?;
                    let Some(dead) = dead.iter().find(|dead| dead.id == *id) else {
                        return Err(operation(QueueError::NoSuchDeadLetter {
                            queue: queue.to_owned(),
                            id: *id,
                        }));
                    };
                    Ok(match json {
                        true => lines(&dead_letter_in_full_json(dead)),
                        false => dead_letter_text(queue, dead),
                    })
                }
            }
        }
        Command::Retry(Scope::One(id)) => {
            each!(&backend, q => q.retry_dead_letter(*id).await).map_err(operation)?;
            Ok(match json {
                true => lines(&json!({"retried": [id], "unreadable": []})),
                false => format!(
                    "dead letter {id} is ready again; its deliveries count toward max_deliveries \
                     from one\n"
                ),
            })
        }
        Command::Retry(Scope::All) => {
            let report = each!(&backend, q => q.retry_dead_letters().await).map_err(operation)?;
            Ok(match json {
                true => lines(&retried_json(&report)),
                false => retried_text(queue, &report),
            })
        }
        Command::Purge(Scope::One(id)) => {
            each!(&backend, q => q.purge_dead_letter(*id).await).map_err(operation)?;
            Ok(match json {
                true => lines(&json!({"purged": 1})),
                false => format!("removed dead letter {id} of queue `{queue}`\n"),
            })
        }
        Command::Purge(Scope::All) => {
            let purged = each!(&backend, q => q.purge_dead_letters().await).map_err(operation)?;
            Ok(match json {
                true => lines(&json!({ "purged": purged })),
                false => format!(
                    "removed {purged} dead letter{} of queue `{queue}`\n",
                    plural(purged)
                ),
            })
        }
        Command::Result(task_id) => {
            let completion = each!(&backend, q => q.result(*task_id).await).map_err(operation)?;
            let Some(completion) = completion else {
                return Err(Failure::Operation(format!(
                    "no result for task {task_id}: it has not completed yet, or it did not run \
                     on this database (`status` shows what is still queued)"
                )));
            };
            Ok(match json {
                true => lines(&result_json(task_id, &completion)),
                false => result_text(task_id, &completion),
            })
        }
    }
}

fn lines(value: &Value) -> String {
    format!("{value:#}\n")
}

fn plural(count: u64) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

/// An age as an operator reads it: seconds under a minute, then the two largest units.
fn age(age: Duration) -> String {
    let seconds = age.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m {}s", seconds / 60, seconds % 60),
        3600..86_400 => format!("{}h {}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d {}h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn counts_json(counts: &Counts) -> Value {
    json!({
        "ready": counts.ready,
        "delayed": counts.delayed,
        "leased": counts.leased,
        "dead": counts.dead,
    })
}

fn status_json(
    queue: &str,
    counts: &Counts,
    by_task: &[TaskCounts],
    oldest: Option<Duration>,
) -> Value {
    json!({
        "queue": queue,
        "counts": counts_json(counts),
        "oldest_ready_age_ms": oldest.map(millis),
        "by_task": by_task.iter().map(|group| {
            let mut entry = counts_json(&group.counts);
            entry["task_name"] = json!(group.task_name);
            entry
        }).collect::<Vec<_>>(),
    })
}

fn status_text(
    queue: &str,
    counts: &Counts,
    by_task: &[TaskCounts],
    oldest: Option<Duration>,
) -> String {
    let mut text = format!(
        "queue `{queue}`: {} ready, {} delayed, {} leased, {} dead\n",
        counts.ready, counts.delayed, counts.leased, counts.dead
    );
    text.push_str(&match oldest {
        Some(oldest) => format!("oldest ready envelope: available for {}\n", age(oldest)),
        None => "oldest ready envelope: none is ready\n".to_owned(),
    });
    if by_task.is_empty() {
        return text;
    }
    let names: Vec<&str> = by_task
        .iter()
        .map(|group| group.task_name.as_deref().unwrap_or("(unreadable)"))
        .collect();
    let width = names
        .iter()
        .map(|name| name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    text.push_str(&format!(
        "\n{:width$}  {:>7}  {:>7}  {:>7}  {:>7}\n",
        "task", "ready", "delayed", "leased", "dead"
    ));
    for (name, group) in names.iter().zip(by_task) {
        let counts = &group.counts;
        text.push_str(&format!(
            "{name:width$}  {:>7}  {:>7}  {:>7}  {:>7}\n",
            counts.ready, counts.delayed, counts.leased, counts.dead
        ));
    }
    text
}

fn timestamp(time: Option<SystemTime>) -> Option<String> {
    time.map(|time| humantime::format_rfc3339_seconds(time).to_string())
}

fn dead_letter_json(dead: &DeadLetter) -> Value {
    json!({
        "id": dead.id,
        "task_id": dead.task_id,
        "task_name": dead.task_name,
        "delivery_attempt": dead.delivery_attempt,
        "dead_at": timestamp(dead.dead_at),
        "reason": dead.reason,
        "size": dead.size,
        "readable": dead.envelope.is_some(),
    })
}

fn dead_letter_in_full_json(dead: &DeadLetter) -> Value {
    let mut value = dead_letter_json(dead);
    value["envelope"] = dead
        .envelope
        .as_ref()
        .and_then(|envelope| serde_json::to_value(envelope).ok())
        .unwrap_or(Value::Null);
    value["raw"] = json!(String::from_utf8_lossy(&dead.raw));
    value
}

fn dead_letters_text(queue: &str, dead: &[DeadLetter]) -> String {
    if dead.is_empty() {
        return format!("no dead letters in queue `{queue}`\n");
    }
    let count = u64::try_from(dead.len()).unwrap_or(u64::MAX);
    let rows: Vec<[String; 6]> = dead
        .iter()
        .map(|dead| {
            [
                dead.id.to_string(),
                dead.task_name.clone().unwrap_or_else(|| "?".to_owned()),
                dead.delivery_attempt.to_string(),
                timestamp(dead.dead_at).unwrap_or_else(|| "?".to_owned()),
                dead.task_id.clone(),
                dead.reason.clone(),
            ]
        })
        .collect();
    let header = ["id", "task", "delivery", "died at", "task id", "reason"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let [id, task, delivery, died, task_id, reason] = cells;
        format!(
            "{id:>w0$}  {task:w1$}  {delivery:>w2$}  {died:w3$}  {task_id:w4$}  {reason}\n",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
        )
    };
    let mut text = format!(
        "{count} dead letter{} in queue `{queue}`\n\n",
        plural(count)
    );
    text.push_str(&line(header));
    for row in &rows {
        text.push_str(&line(row.each_ref().map(String::as_str)));
    }
    text
}

fn dead_letter_text(queue: &str, dead: &DeadLetter) -> String {
    let mut text = format!(
        "dead letter {} of queue `{queue}`\n\
         task id:   {}\n\
         task name: {}\n\
         delivery:  {}\n\
         died at:   {}\n\
         reason:    {}\n\
         size:      {} bytes\n",
        dead.id,
        dead.task_id,
        dead.task_name.as_deref().unwrap_or("?"),
        dead.delivery_attempt,
        timestamp(dead.dead_at).as_deref().unwrap_or("?"),
        dead.reason,
        dead.size,
    );
    match dead
        .envelope
        .as_ref()
        .and_then(|envelope| serde_json::to_value(envelope).ok())
    {
        Some(envelope) => text.push_str(&format!("envelope:\n{envelope:#}\n")),
        None => text.push_str(&format!(
            "stored (the first {} of {} bytes; it does not decode, so it cannot be retried):\n\
             {:?}\n",
            dead.raw.len(),
            dead.size,
            String::from_utf8_lossy(&dead.raw)
        )),
    }
    text
}

fn retried_json(report: &RetriedDeadLetters) -> Value {
    json!({
        "retried": report.retried,
        "unreadable": report.unreadable.iter().map(|(id, reason)| {
            json!({"id": id, "reason": reason})
        }).collect::<Vec<_>>(),
    })
}

fn retried_text(queue: &str, report: &RetriedDeadLetters) -> String {
    let count = u64::try_from(report.retried.len()).unwrap_or(u64::MAX);
    let ids: Vec<String> = report.retried.iter().map(ToString::to_string).collect();
    let mut text = format!(
        "{count} dead letter{} of queue `{queue}` ready again{}; their deliveries count toward \
         max_deliveries from one\n",
        plural(count),
        match ids.is_empty() {
            true => String::new(),
            false => format!(" (ids {})", ids.join(", ")),
        }
    );
    if !report.unreadable.is_empty() {
        text.push_str(&format!(
            "{} left dead: its envelope does not decode, so no worker could run it (purge it \
             instead)\n",
            report.unreadable.len()
        ));
        for (id, reason) in &report.unreadable {
            text.push_str(&format!("  {id}: {reason}\n"));
        }
    }
    text
}

fn result_json(task_id: &uuid::Uuid, completion: &Completion) -> Value {
    json!({
        "task_id": task_id.to_string(),
        "succeeded": completion.succeeded,
        "output": completion.output,
        "error": completion.error,
    })
}

fn result_text(task_id: &uuid::Uuid, completion: &Completion) -> String {
    match completion.succeeded {
        true => format!(
            "task {task_id} succeeded\noutput: {}\n",
            completion.output.as_ref().unwrap_or(&Value::Null)
        ),
        false => format!(
            "task {task_id} failed: {}\n",
            completion
                .error
                .as_deref()
                .unwrap_or("no error was recorded")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<Invocation, String> {
        parse(args).map_err(|failure| match failure {
            Failure::Usage(message) | Failure::Operation(message) => message,
            Failure::Help(text) => text.to_owned(),
        })
    }

    #[test]
    fn sqlite_urls_take_a_relative_or_absolute_path() {
        for (url, path) in [
            ("sqlite:tasks.db", "tasks.db"),
            ("sqlite://tasks.db", "tasks.db"),
            ("sqlite:///var/tasks.db", "/var/tasks.db"),
        ] {
            let invocation = parsed(&["--url", url, "status"]).unwrap();
            assert_eq!(invocation.url, QueueUrl::Sqlite(PathBuf::from(path)));
        }
    }

    #[test]
    fn options_go_anywhere_and_in_either_form() {
        let invocation = parsed(&[
            "retry",
            "--all",
            "--url=postgres://u@h/db",
            "--schema",
            "ops",
            "--queue=mail",
            "--json",
        ])
        .unwrap();
        assert_eq!(
            invocation,
            Invocation {
                url: QueueUrl::Postgres("postgres://u@h/db".to_owned()),
                schema: Some("ops".to_owned()),
                queue: "mail".to_owned(),
                json: true,
                command: Command::Retry(Scope::All),
            }
        );
    }

    #[test]
    fn ages_read_in_their_two_largest_units() {
        assert_eq!(age(Duration::from_millis(59_999)), "59s");
        assert_eq!(age(Duration::from_secs(61)), "1m 1s");
        assert_eq!(age(Duration::from_secs(3_661)), "1h 1m");
        assert_eq!(age(Duration::from_secs(90_000)), "1d 1h");
    }

    #[test]
    fn a_flag_given_twice_or_out_of_place_is_refused() {
        assert_eq!(
            parsed(&["--url", "sqlite:a", "--url", "sqlite:b", "status"]).unwrap_err(),
            "--url is given twice"
        );
        assert_eq!(
            parsed(&["--url", "sqlite:a", "status", "--yes"]).unwrap_err(),
            "--yes does not apply to `status`"
        );
        assert_eq!(
            parsed(&["--url", "sqlite:a", "retry", "3", "--all"]).unwrap_err(),
            "retry takes an ID or --all, not both"
        );
    }
}
