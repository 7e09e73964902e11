//! A producer and workers in separate processes, connected only by envelopes.
//!
//! `cargo run --example worker` starts the producer, which spawns this same program with
//! `--worker` as a child process. The producer enqueues orders by name (emitting
//! `task.initialize` and `task.enqueue`), drains its queue and writes each envelope as one JSON
//! line to the worker's standard input. The worker decodes the envelopes into its own queue and
//! runs them with a `tasker::Runtime`, continuing the producer's task ids; both processes print
//! the events they see, tagged with their role, so the hop is visible.
//!
//! With a durable queue the producer and each worker are separate invocations sharing one
//! database, and there is no pipe:
//!
//! ```sh
//! # PostgreSQL (feature `postgres`); `--schema` picks the schema (default `tasker`)
//! cargo run --example worker --features postgres -- produce --queue postgres://postgres@127.0.0.1:5432/test --tasks 20
//! cargo run --example worker --features postgres -- work --queue postgres://postgres@127.0.0.1:5432/test --workers 2 --until-empty
//! # SQLite (feature `sqlite`): one file, processes on one machine
//! cargo run --example worker --features sqlite -- produce --queue sqlite:/tmp/tasks.db --tasks 20
//! cargo run --example worker --features sqlite -- work --queue sqlite:/tmp/tasks.db --until-empty
//! ```
//!
//! `produce` enqueues `--tasks` orders (every tenth one empty, so its task fails; every
//! seventh one's reservation fails once, so that step is retried) and exits. `work` runs
//! `--workers` workers (default 2) with `Runtime::run_until_signal` until SIGINT or SIGTERM
//! (then running tasks get `--grace-ms`, default 10 s, to finish before they are handed back)
//! or, with `--until-empty`, with `Runtime::run_until_drained` until the queue has nothing
//! ready, delayed or leased left; `--lease-ms` sets the lease (default 30 s, so a
//! killed worker's tasks wait that long before another worker takes them), `--step-ms` makes
//! each step take that long, and `--stall-after N` makes the `label` step of every task started
//! after this process finished N tasks wait for ever — a worker stuck mid-task, holding leases,
//! for a test to kill. `produce --poison N` makes order N a poison one: its task aborts the
//! process that runs it (`std::process::abort`); `--max-deliveries` sets the queue's limit
//! (default 10); `--slow-terminal-ms` makes the printer wait that long before printing each
//! `task.complete`/`task.error`, widening the moment between a completion's commit and its event
//! for a test's kills to land in.
//!
//! Every event is printed as one line, `<role> <event> <task id> [<step> [<reason>]]`, written
//! out as it happens: a process killed with SIGKILL has printed every event it emitted. A
//! queued task's `task.complete`/`task.error` ends with `event_id=<id>`: a process that emits it
//! again (its worker died before marking it reported) prints the same id. `--until-empty` also
//! waits until every completion's terminal event has been reported.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tasker::queue::{Envelope, MemoryQueue, Queue};
use tasker::telemetry::{Details, Event};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Order {
    id: u64,
    items: Vec<String>,
    /// A poison order: its task aborts the process that runs it (`produce --poison`).
    #[serde(default)]
    poison: bool,
}

#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error("order {0} is empty")]
    Empty(u64),
    #[error("the warehouse is busy with order {0}; try again")]
    Busy(u64),
}

/// How long each step takes (`--step-ms`).
static STEP_TIME: OnceLock<Duration> = OnceLock::new();
/// After how many finished tasks `label` stalls (`--stall-after`).
static STALL_AFTER: OnceLock<u64> = OnceLock::new();
/// How long the printer waits before printing a terminal event (`--slow-terminal-ms`).
static SLOW_TERMINAL: OnceLock<Duration> = OnceLock::new();
/// Tasks this process finished (`task.complete` or `task.error`).
static FINISHED: AtomicU64 = AtomicU64::new(0);
/// Orders whose reservation already failed once in this process.
static BUSY_ONCE: Mutex<Option<HashSet<u64>>> = Mutex::new(None);

async fn take_step_time() {
    if let Some(time) = STEP_TIME.get().filter(|time| !time.is_zero()) {
        tokio::time::sleep(*time).await;
    }
}

#[tasker::step(max_attempts = 1)]
async fn pack(order: &Order) -> Result<usize, OrderError> {
    take_step_time().await;
    if order.items.is_empty() {
        return Err(OrderError::Empty(order.id));
    }
    Ok(order.items.len())
}

#[tasker::step(max_attempts = 3, backoff_ms = 5)]
async fn reserve(order: &Order) -> Result<String, OrderError> {
    take_step_time().await;
    // Every seventh order finds the warehouse busy once: its next attempt succeeds.
    if order.id % 7 == 0
        && BUSY_ONCE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(order.id)
    {
        return Err(OrderError::Busy(order.id));
    }
    Ok(format!("SHELF-{}", order.id % 13))
}

#[tasker::step(max_attempts = 1)]
async fn label(order: &Order, parcels: usize, shelf: String) -> String {
    take_step_time().await;
    if order.poison {
        // In the last step, so that the tasks claimed with it have started too.
        eprintln!("worker example: order {} is poison: aborting", order.id);
        std::process::abort();
    }
    if STALL_AFTER
        .get()
        .is_some_and(|after| FINISHED.load(Ordering::SeqCst) >= *after)
    {
        // A worker stuck mid-task: it keeps renewing its lease until it is killed.
        std::future::pending::<()>().await;
    }
    format!("ORDER-{}-{parcels}-{shelf}", order.id)
}

#[tasker::task(name = "ship", version = "1.0.0")]
async fn ship(order: Order) -> Result<String, OrderError> {
    let parcels = pack(&order).await?;
    let shelf = reserve(&order).await?;
    Ok(label(&order, parcels, shelf).await)
}

/// Prints every event of this process as `<role> <event> <task id> [<step> [<reason>]]`, one
/// line at a time: standard output is line-buffered, so each line is written as the event
/// happens (and stays written if the process is killed the next instant).
fn print_events(role: &'static str) -> tasker::events::Subscription {
    tasker::events::subscribe(move |event: &Event<'_>| {
        let task = event.task_id().map(|id| id.to_string()).unwrap_or_default();
        let step = event.step_name().unwrap_or_default();
        let reason = match event.details() {
            Details::StepSkip { reason } => reason.as_ref(),
            _ => "",
        };
        // A queued task's terminal event carries an id, the same if another process emits it
        // again (its worker died before marking it reported).
        let id = event
            .event_id()
            .map(|id| format!(" event_id={id}"))
            .unwrap_or_default();
        let line = format!("{role:<8} {:<16} {task} {step} {reason}", event.name());
        let line = format!("{}{id}", line.trim_end());
        let terminal = matches!(
            event.details(),
            Details::TaskComplete { .. } | Details::TaskError { .. }
        );
        if let Some(wait) = SLOW_TERMINAL.get().filter(|_| terminal) {
            // Observers run as the event is emitted: a kill now falls after the completion's
            // commit and before the event is out, the window a recovery must cover.
            std::thread::sleep(*wait);
        }
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", line.trim_end());
        let _ = stdout.flush();
        if terminal {
            FINISHED.fetch_add(1, Ordering::SeqCst);
        }
    })
}

async fn producer() -> Result<(), Box<dyn std::error::Error>> {
    let _events = print_events("producer");
    // A queue is a cheap handle: one clone for the runtime, one to read the envelopes back.
    let queue = MemoryQueue::named("stdin-pipe");
    let runtime = tasker::Runtime::builder()
        .workers(0)
        .queue(queue.clone())
        .build()?;
    for (id, items) in [(1, vec!["lamp"]), (2, vec!["desk", "chair"]), (3, vec![])] {
        let order = Order {
            id,
            items: items.into_iter().map(String::from).collect(),
            poison: false,
        };
        runtime
            .enqueue(tasker::TaskRequest::new("ship", &order)?)
            .await?;
    }

    let mut worker = Command::new(std::env::current_exe()?)
        .arg("--worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut pipe = worker.stdin.take().ok_or("worker has no stdin")?;
    while let Some(claim) = queue.claim(Duration::from_secs(30), Duration::ZERO).await? {
        pipe.write_all(&claim.envelope.encode())?;
        pipe.write_all(b"\n")?;
        queue.acknowledge(claim.lease).await?;
    }
    drop(pipe); // end of input: the worker finishes what it has and exits
    let output = worker.stdout.take().ok_or("worker has no stdout")?;
    // Relay the worker's lines; if our own reader has gone (`| head`), keep draining the pipe so
    // the worker never blocks on it, and say nothing more.
    let mut stdout = std::io::stdout().lock();
    for line in BufReader::new(output).lines() {
        let _ = writeln!(stdout, "{}", line?);
    }
    drop(stdout);
    let status = worker.wait()?;
    runtime.shutdown().await;
    if !status.success() {
        return Err(format!("worker exited with {status}").into());
    }
    Ok(())
}

async fn worker() -> Result<(), Box<dyn std::error::Error>> {
    let _events = print_events("worker");
    let queue = MemoryQueue::named("stdin-pipe");
    let runtime = tasker::Runtime::builder()
        .workers(2)
        .queue(queue.clone())
        .build()?;
    let lines = tokio::task::spawn_blocking(|| {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    for line in lines {
        match Envelope::decode(line.as_bytes()) {
            Ok(envelope) => queue.push(envelope).await?,
            Err(error) => eprintln!("worker: skipping a line that is not an envelope: {error}"),
        }
    }
    runtime.run_until_drained().await?;
    Ok(())
}

/// A durable queue of either backend.
enum Durable {
    #[cfg(feature = "postgres")]
    Postgres(tasker::queue::PostgresQueue),
    #[cfg(feature = "sqlite")]
    Sqlite(tasker::queue::SqliteQueue),
}

impl Durable {
    /// Opens `postgres://…` (or `postgresql://…`) or `sqlite:<path>`, applying migrations.
    async fn open(
        url: &str,
        schema: &str,
        max_deliveries: u32,
    ) -> Result<Durable, Box<dyn std::error::Error>> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            {
                let queue = tasker::queue::PostgresQueue::builder(url)
                    .schema(schema)
                    .poll_interval(Duration::from_millis(200))
                    .max_deliveries(max_deliveries)
                    .connect()
                    .await?;
                queue.migrate().await?;
                return Ok(Durable::Postgres(queue));
            }
            #[cfg(not(feature = "postgres"))]
            {
                let _ = (schema, max_deliveries);
                return Err(format!(
                    "`--queue {url}` needs PostgreSQL support: run the example with \
                     `--features postgres`"
                )
                .into());
            }
        }
        if let Some(path) = url.strip_prefix("sqlite:") {
            #[cfg(feature = "sqlite")]
            {
                let queue = tasker::queue::SqliteQueue::builder(path)
                    .poll_interval(Duration::from_millis(50))
                    .max_deliveries(max_deliveries)
                    .open()
                    .await?;
                return Ok(Durable::Sqlite(queue));
            }
            #[cfg(not(feature = "sqlite"))]
            {
                let _ = path;
                return Err(format!(
                    "`--queue {url}` needs SQLite support: run the example with `--features sqlite`"
                )
                .into());
            }
        }
        Err(format!("unknown queue `{url}`: use postgres://… or sqlite:<path>").into())
    }

    /// `builder` running on this queue.
    fn attach(self, builder: tasker::RuntimeBuilder) -> tasker::RuntimeBuilder {
        match self {
            #[cfg(feature = "postgres")]
            Durable::Postgres(queue) => builder.queue(queue),
            #[cfg(feature = "sqlite")]
            Durable::Sqlite(queue) => builder.queue(queue),
        }
    }
}

/// `produce`: enqueues `tasks` orders on the durable queue (order `poison` aborting the process
/// that runs it) and exits.
async fn produce(
    queue: Durable,
    tasks: u64,
    poison: Option<u64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let _events = print_events("producer");
    let runtime = queue
        .attach(tasker::Runtime::builder().workers(0))
        .build()?;
    for id in 1..=tasks {
        let items = if id % 10 == 0 {
            Vec::new() // fails in `pack`: an empty order
        } else {
            (0..id % 3 + 1).map(|n| format!("item-{id}-{n}")).collect()
        };
        runtime
            .enqueue(tasker::TaskRequest::new(
                "ship",
                &Order {
                    id,
                    items,
                    poison: poison == Some(id),
                },
            )?)
            .await?;
    }
    runtime.shutdown().await;
    Ok(())
}

/// `work`: runs `workers` workers on the durable queue, until killed or, with `until_empty`,
/// until no work is left in the queue and every completion's terminal event was reported.
async fn work(
    queue: Durable,
    workers: usize,
    until_empty: bool,
    lease: Duration,
    grace: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let _events = print_events("worker");
    let runtime = queue
        .attach(tasker::Runtime::builder().workers(workers).lease(lease))
        .build()?;
    // A task's envelope stays leased until its task finished and was acknowledged, so a drained
    // queue means every task ran, in this process or another.
    let summary = if until_empty {
        runtime.run_until_drained().await?
    } else {
        runtime.run_until_signal(grace).await?
    };
    eprintln!("worker example: {summary}");
    Ok(())
}

const USAGE: &str = "usage: worker                      a producer and a worker joined by a pipe
       worker produce --queue <url> [--tasks N] [--poison N] [--schema S]
       worker work --queue <url> [--workers N] [--until-empty] [--schema S]
                   [--lease-ms MS] [--step-ms MS] [--stall-after N] [--max-deliveries N]
                   [--slow-terminal-ms MS] [--grace-ms MS]
<url>: postgres://… (feature `postgres`) or sqlite:<path> (feature `sqlite`)";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("worker example: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.first().map(String::as_str) {
        None => return producer().await,
        Some("--worker") => return worker().await,
        Some(mode @ ("produce" | "work")) => mode,
        Some(_) => return Err(USAGE.into()),
    };
    let (mut url, mut schema, mut tasks, mut workers, mut until_empty) =
        (None, "tasker".to_string(), 20_u64, 2_usize, false);
    let mut lease = Duration::from_secs(30);
    let mut grace = Duration::from_secs(10);
    let (mut poison, mut max_deliveries) = (None, 10_u32);
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        let mut value = || {
            rest.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--queue" => url = Some(value()?.clone()),
            "--schema" => schema = value()?.clone(),
            "--tasks" => tasks = value()?.parse()?,
            "--workers" => workers = value()?.parse()?,
            "--until-empty" => until_empty = true,
            "--lease-ms" => lease = Duration::from_millis(value()?.parse()?),
            "--grace-ms" => grace = Duration::from_millis(value()?.parse()?),
            "--step-ms" => {
                let _ = STEP_TIME.set(Duration::from_millis(value()?.parse()?));
            }
            "--poison" => poison = Some(value()?.parse()?),
            "--max-deliveries" => max_deliveries = value()?.parse()?,
            "--stall-after" => {
                let _ = STALL_AFTER.set(value()?.parse()?);
            }
            "--slow-terminal-ms" => {
                let _ = SLOW_TERMINAL.set(Duration::from_millis(value()?.parse()?));
            }
            _ => return Err(format!("unknown argument `{arg}`\n{USAGE}").into()),
        }
    }
    let url = url.ok_or_else(|| format!("{mode} needs --queue <url>\n{USAGE}"))?;
    let queue = Durable::open(&url, &schema, max_deliveries).await?;
    if mode == "produce" {
        produce(queue, tasks, poison).await
    } else {
        work(queue, workers, until_empty, lease, grace).await
    }
}
