//! `Runtime::run_until_signal` and `Runtime::run_until_drained`.
//!
//! The signal test runs a worker in a child process (this test binary, re-invoked with
//! `TASKER_RUN_LOOP_CHILD` naming a SQLite file) and sends it a real SIGTERM while it runs two
//! tasks: one that finishes within the stop deadline and one that never would.

#![cfg(feature = "sqlite")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tasker::queue::{MemoryQueue, Queue, SqliteQueue};
use tasker::telemetry::Event;

/// The variable that makes the child test run the worker, on the SQLite file it names.
const CHILD: &str = "TASKER_RUN_LOOP_CHILD";
/// The variable that gives the child its grace period, in milliseconds.
const GRACE_MS: &str = "TASKER_RUN_LOOP_GRACE_MS";
/// How long the child's running tasks get after the signal.
const GRACE: Duration = Duration::from_millis(1500);
/// How long the quick task takes: well inside the grace period.
const QUICK_MS: u64 = 300;

#[tasker::task(name = "run_loop.quick", version = "1")]
async fn quick(millis: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    millis
}

#[tasker::task(name = "run_loop.stuck", version = "1")]
async fn stuck(label: String) -> String {
    std::future::pending::<()>().await;
    label
}

#[tasker::task(name = "run_loop.double", version = "1")]
async fn double(n: u64) -> u64 {
    n * 2
}

/// The child: enqueues a quick and a stuck task, prints every event as
/// `EVENT <name> <task name> <task id>`, runs two workers until a signal and prints the summary.
#[test]
fn run_loop_child() {
    let Some(path) = std::env::var_os(CHILD) else {
        return; // run as a child only
    };
    let grace = std::env::var(GRACE_MS)
        .ok()
        .and_then(|millis| millis.parse().ok())
        .map_or(GRACE, Duration::from_millis);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(async move {
        let _events = tasker::events::subscribe(|event: &Event<'_>| {
            println!(
                "EVENT {} {} {}",
                event.name(),
                event.task_name().unwrap_or_default(),
                event.task_id().map(|id| id.to_string()).unwrap_or_default()
            );
        });
        let queue = SqliteQueue::builder(&path)
            .max_deliveries(1)
            .poll_interval(Duration::from_millis(20))
            .open()
            .await
            .expect("the queue opens");
        // One clone of the queue enqueues, another runs: no `Arc` to share.
        let producer = tasker::Runtime::builder()
            .workers(0)
            .queue(queue.clone())
            .build()
            .expect("a producer");
        let worker = tasker::Runtime::builder()
            .workers(2)
            .queue(queue.clone())
            .build()
            .expect("a worker");
        let enqueue = async {
            producer
                .enqueue(tasker::TaskRequest::new("run_loop.quick", &QUICK_MS).unwrap())
                .await
                .unwrap();
            producer
                .enqueue(tasker::TaskRequest::new("run_loop.stuck", &"s").unwrap())
                .await
                .unwrap();
        };
        // The run loop is polled first, so its signal handlers are in place before any task runs.
        let (summary, ()) = tokio::join!(worker.run_until_signal(grace), enqueue);
        let summary = summary.expect("the run loop runs");
        println!(
            "SUMMARY signal={:?} finished={} handed_back={}",
            summary.signal, summary.finished, summary.handed_back
        );
    });
}

#[test]
fn sigterm_finishes_running_tasks_within_the_deadline_and_hands_back_the_rest() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let mut child = Child::start("grace", GRACE);
    // Both tasks running: then the signal.
    child.wait_for("both tasks started", |output| {
        output
            .iter()
            .filter(|line| line.contains("EVENT task.handle "))
            .count()
            == 2
    });
    let signalled = child.signal();
    // It exits on its own, 0, after the grace period (with slack for a loaded machine).
    let exited = child.exit(signalled, GRACE + Duration::from_secs(20));
    assert!(
        exited >= GRACE,
        "the stuck task was given its grace period: exited after {exited:?}"
    );
    let (output, path, dir) = (child.output, child.path, child.dir);

    // Per task, exactly its events: the quick one ran to its end after the signal, the stuck
    // one stopped after `task.handle`, with no terminal event (another delivery will end it).
    let mut events: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    // libtest's `test run_loop_child ... ` may begin the child's first line.
    for line in output
        .iter()
        .filter_map(|line| line.split_once("EVENT ").map(|(_, event)| event))
    {
        let mut fields = line.split(' ');
        let (name, task, id) = (fields.next(), fields.next(), fields.next());
        let (Some(name), Some(task), Some(id)) = (name, task, id) else {
            panic!("a malformed line: {line}");
        };
        events
            .entry(task.to_owned())
            .or_default()
            .push(name.to_owned());
        ids.insert(task.to_owned(), id.to_owned());
    }
    let lifecycle = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(
        events,
        BTreeMap::from([
            (
                "run_loop.quick".to_owned(),
                lifecycle(&[
                    "task.initialize",
                    "task.enqueue",
                    "task.start",
                    "task.handle",
                    "task.finalize",
                    "task.complete"
                ])
            ),
            (
                "run_loop.stuck".to_owned(),
                lifecycle(&[
                    "task.initialize",
                    "task.enqueue",
                    "task.start",
                    "task.handle"
                ])
            ),
        ]),
        "{output:#?}"
    );
    let summaries: Vec<&String> = output
        .iter()
        .filter(|line| line.starts_with("SUMMARY "))
        .collect();
    assert_eq!(
        summaries,
        ["SUMMARY signal=Some(Terminate) finished=1 handed_back=1"]
    );

    // In the queue: the quick task's completion; the stuck one ready again for another worker,
    // its lease released, and the hand-back not counted as a delivery.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let queue = SqliteQueue::builder(&path)
            .max_deliveries(1)
            .open()
            .await
            .unwrap();
        let quick_id: uuid::Uuid = ids["run_loop.quick"].parse().unwrap();
        let completion = queue.result(quick_id).await.unwrap().unwrap();
        assert!(completion.succeeded);
        assert_eq!(completion.output, Some(serde_json::json!(QUICK_MS)));
        // With `max_deliveries(1)`, a hand-back counted as a delivery (a `requeue`) would have
        // dead-lettered the stuck task.
        let counts = queue.counts().await.unwrap();
        assert_eq!(
            (counts.ready, counts.delayed, counts.leased, counts.dead),
            (1, 0, 0, 0)
        );
        let claim = queue
            .claim(Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap()
            .expect("the stuck task, claimable at once");
        assert_eq!(claim.envelope.task_name, "run_loop.stuck");
        assert_eq!(claim.envelope.task_id.to_string(), ids["run_loop.stuck"]);
        assert_eq!(claim.envelope.delivery_attempt, 2);
        // This delivery is the one `max_deliveries(1)` allows: a requeue now counts, as always.
        queue.requeue(claim.lease, Duration::ZERO).await.unwrap();
        let counts = queue.counts().await.unwrap();
        assert_eq!((counts.ready, counts.dead), (0, 1));
    });
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_sigterm_hands_running_tasks_back_at_once() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let long = Duration::from_secs(600);
    let mut child = Child::start("second", long);
    child.wait_for("both tasks started", |output| {
        output
            .iter()
            .filter(|line| line.contains("EVENT task.handle "))
            .count()
            == 2
    });
    child.signal();
    // The quick task ends within the grace period; the second signal then cuts it short.
    child.wait_for("the quick task's end", |output| {
        output
            .iter()
            .any(|line| line.contains("EVENT task.complete run_loop.quick "))
    });
    let signalled = child.signal();
    let exited = child.exit(signalled, Duration::from_secs(20));
    assert!(exited < long, "exited after {exited:?}");
    let summaries: Vec<&String> = child
        .output
        .iter()
        .filter(|line| line.starts_with("SUMMARY "))
        .collect();
    assert_eq!(
        summaries,
        ["SUMMARY signal=Some(Terminate) finished=1 handed_back=1"]
    );
    let _ = std::fs::remove_dir_all(&child.dir);
}

/// This test binary, re-invoked as the worker child on a SQLite file of its own, its standard
/// output read line by line.
struct Child {
    process: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    output: Vec<String>,
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
}

impl Child {
    fn start(name: &str, grace: Duration) -> Child {
        let dir =
            std::env::temp_dir().join(format!("tasker-run-loop-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("queue.db");
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "run_loop_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, &path)
            .env(GRACE_MS, grace.as_millis().to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the child starts");
        let stdout = process.stdout.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Child {
            process,
            lines,
            output: Vec::new(),
            dir,
            path,
        }
    }

    /// Reads lines until `done` holds of them, for at most 60 s.
    fn wait_for(&mut self, what: &str, done: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(&self.output) {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.output.push(line),
                Err(_) => {
                    let _ = self.process.kill();
                    panic!("no {what} within 60 s: {:#?}", self.output);
                }
            }
        }
    }

    /// Sends SIGTERM; returns when.
    fn signal(&mut self) -> Instant {
        let sent = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.process.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        sent
    }

    /// Waits for the child to exit 0 by `within` after `signalled` (killing it and failing
    /// otherwise), reads the rest of its output, and returns how long after `signalled` it
    /// exited.
    fn exit(&mut self, signalled: Instant, within: Duration) -> Duration {
        let deadline = signalled + within;
        let status = loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.process.kill();
                panic!("the child did not exit within its deadline");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let exited = signalled.elapsed();
        assert!(status.success(), "the child exited with {status}");
        let rest = Instant::now() + Duration::from_secs(10);
        while let Ok(line) = self
            .lines
            .recv_timeout(rest.saturating_duration_since(Instant::now()))
        {
            self.output.push(line);
        }
        exited
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_drained_returns_once_every_task_ran() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let queue = MemoryQueue::named("drained");
    let runtime = tasker::Runtime::builder()
        .workers(2)
        .queue(queue.clone())
        .build()
        .unwrap();
    let mut handles = Vec::new();
    for n in 1..=3_u64 {
        handles.push(
            runtime
                .enqueue(tasker::TaskRequest::new("run_loop.double", &n).unwrap())
                .await
                .unwrap(),
        );
    }
    let summary = tokio::time::timeout(Duration::from_secs(30), runtime.run_until_drained())
        .await
        .expect("drained within 30 s")
        .unwrap();
    assert_eq!(
        (summary.signal, summary.finished, summary.handed_back),
        (None, 3, 0)
    );
    assert_eq!(queue.len(), 0);
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.wait().await.unwrap());
    }
    assert_eq!(
        outputs,
        [
            serde_json::json!(2),
            serde_json::json!(4),
            serde_json::json!(6)
        ]
    );
}

#[tokio::test]
async fn run_until_drained_without_workers_is_an_error() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let runtime = tasker::Runtime::builder()
        .workers(0)
        .queue(MemoryQueue::named("producer-only"))
        .build()
        .unwrap();
    let error = runtime.run_until_drained().await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "this runtime has no workers (`workers(0)`), so it would wait for ever for queue \
         `producer-only` to drain; give it workers, or let other processes drain the queue"
    );
}
