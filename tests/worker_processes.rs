//! `examples/worker.rs` on a durable queue: one producer process, then two worker processes on
//! the same SQLite file (and PostgreSQL schema, when `TASKER_TEST_DATABASE_URL` is set); every
//! task the producer enqueued finishes exactly once across the two workers, counted from the
//! `task.complete` and `task.error` lines they print. No process is killed: re-delivery after a
//! crash needs exactly-once completion, tested once it exists.

#![cfg(feature = "sqlite")]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Orders the producer enqueues; every tenth is empty, so its task fails.
const TASKS: usize = 40;
/// How long the two workers may take to empty the queue.
const DEADLINE: Duration = Duration::from_secs(120);

/// The worker example's binary, built in this test's target directory and profile with the
/// workspace and all features, as `.ci/run`'s `cargo test --workspace --all-features` builds it
/// (so there it is a no-op; run alone, it builds the example once).
fn example() -> &'static PathBuf {
    static EXAMPLE: OnceLock<PathBuf> = OnceLock::new();
    EXAMPLE.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's own path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("tests run from <target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("a target directory");
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--quiet", "--workspace", "--all-features"])
            .args(["--example", "worker"])
            .arg("--target-dir")
            .arg(target_dir);
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the worker example failed");
        profile_dir
            .join("examples")
            .join(format!("worker{}", std::env::consts::EXE_SUFFIX))
    })
}

/// Waits for `child` until `deadline`, killing it then; returns its standard output.
fn finish(mut child: Child, deadline: Instant, role: &str) -> String {
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    loop {
        if let Some(status) = child.try_wait().expect("the child's status") {
            assert!(status.success(), "the {role} exited with {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the {role} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    reader
        .join()
        .expect("the reader thread")
        .expect("utf-8 output")
}

/// The task ids of `event` lines (`<role> <event> <task id> [<step>]`) in `output`.
fn ids<'a>(output: &'a str, event: &'a str) -> impl Iterator<Item = String> + 'a {
    output.lines().filter_map(move |line| {
        let mut fields = line.split_whitespace();
        let (_role, name, id) = (fields.next()?, fields.next()?, fields.next()?);
        (name == event).then(|| id.to_string())
    })
}

/// Runs the producer, then two worker processes, on `queue` (`--queue` and any extra options),
/// and checks that each enqueued task finished once.
fn producer_and_two_workers(queue: &[&str]) {
    let example = example();
    let produced = Command::new(example)
        .arg("produce")
        .args(queue)
        .args(["--tasks", &TASKS.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .expect("the producer starts");
    assert!(
        produced.status.success(),
        "the producer exited with {}",
        produced.status
    );
    let enqueued: BTreeSet<String> = ids(
        std::str::from_utf8(&produced.stdout).unwrap(),
        "task.enqueue",
    )
    .collect();
    assert_eq!(enqueued.len(), TASKS, "the producer enqueued every order");

    let deadline = Instant::now() + DEADLINE;
    let workers: Vec<Child> = (0..2)
        .map(|_| {
            Command::new(example)
                .arg("work")
                .args(queue)
                .args(["--workers", "2", "--until-empty"])
                .stdout(Stdio::piped())
                .spawn()
                .expect("a worker starts")
        })
        .collect();
    let outputs: Vec<String> = workers
        .into_iter()
        .enumerate()
        .map(|(n, child)| finish(child, deadline, &format!("worker {n}")))
        .collect();

    let mut finished: BTreeMap<String, Vec<(usize, &str)>> = BTreeMap::new();
    for (worker, output) in outputs.iter().enumerate() {
        for event in ["task.complete", "task.error"] {
            for id in ids(output, event) {
                finished.entry(id).or_default().push((worker, event));
            }
        }
    }
    let twice: Vec<_> = finished.iter().filter(|(_, ends)| ends.len() > 1).collect();
    assert!(twice.is_empty(), "tasks finished more than once: {twice:?}");
    let ids: BTreeSet<String> = finished.keys().cloned().collect();
    assert_eq!(
        ids, enqueued,
        "the workers finished exactly the tasks the producer enqueued"
    );
    let errors = finished
        .values()
        .filter(|ends| ends[0].1 == "task.error")
        .count();
    assert_eq!(errors, TASKS / 10, "every tenth order is empty and fails");
    let per_worker: Vec<usize> = (0..2)
        .map(|worker| finished.values().filter(|ends| ends[0].0 == worker).count())
        .collect();
    eprintln!("tasks finished by each worker process: {per_worker:?}");
}

#[test]
fn sqlite_producer_and_two_worker_processes_finish_every_task_once() {
    let dir = std::env::temp_dir().join(format!("tasker-worker-processes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _remove = Remove(dir.clone());
    let url = format!("sqlite:{}", dir.join("queue.db").display());
    producer_and_two_workers(&["--queue", &url]);
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_producer_and_two_worker_processes_finish_every_task_once() {
    let url = match std::env::var("TASKER_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            eprintln!(
                "skipping the PostgreSQL worker processes test: set TASKER_TEST_DATABASE_URL \
                 (for example postgres://postgres@127.0.0.1:5432/test, as .ci/run does) to run it"
            );
            return;
        }
    };
    let schema = format!("tasker_worker_processes_{}", std::process::id());
    /// Drops the test's schema, even when the test fails.
    struct DropSchema(String, String);
    impl Drop for DropSchema {
        fn drop(&mut self) {
            let (url, schema) = (self.0.clone(), self.1.clone());
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    if let Ok((client, connection)) =
                        tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                    {
                        let driver = tokio::spawn(connection);
                        let _ = client
                            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                            .await;
                        drop(client);
                        let _ = driver.await;
                    }
                });
        }
    }
    let _drop = DropSchema(url.clone(), schema.clone());
    producer_and_two_workers(&["--queue", &url, "--schema", &schema]);
}
