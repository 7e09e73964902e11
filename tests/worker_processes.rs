//! `examples/worker.rs` on a durable queue, on the same SQLite file (and PostgreSQL schema, when
//! `TASKER_TEST_DATABASE_URL` is set), every process's events read from the lines it prints:
//!
//! - one producer process, then two worker processes: every task the producer enqueued finishes
//!   exactly once across the two workers;
//! - one producer and three worker processes, 2,000 tasks with retries and failures, one worker
//!   killed with SIGKILL while it holds leases: every task still finishes exactly once across
//!   the three (the killed one included), no completed step runs twice, and the tasks the killed
//!   worker left unfinished finish elsewhere, replaying the steps it had completed;
//! - a poison task that aborts its process, enqueued with good ones, worker processes of three
//!   workers restarted after each crash: every good task completes once, none is dead-lettered,
//!   and the poison task is dead-lettered after its lone deliveries, having taken no other task
//!   down after its first crash.
//!   killed with SIGKILL while it holds leases: every task still finishes across the three (the
//!   killed one included; twice only in the README's window, with one event id), no completed step runs twice, and the tasks the killed
//!   worker left unfinished finish elsewhere, replaying the steps it had completed;
//! - a producer of 300 tasks and worker processes killed with SIGKILL at random moments (a
//!   seeded schedule) and replaced, many times, until the work is done: every task has its
//!   completion row and every completion at least one terminal event in some process's output;
//!   a task that ended twice did so with one event id, in the window the README names.

#![cfg(feature = "sqlite")]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
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

/// Runs the producer on `queue` for `tasks` orders; the task ids it enqueued, in order (the
/// first is order 1).
fn produce(queue: &[&str], tasks: usize) -> Vec<String> {
    let produced = Command::new(example())
        .arg("produce")
        .args(queue)
        .args(["--tasks", &tasks.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .expect("the producer starts");
    assert!(
        produced.status.success(),
        "the producer exited with {}",
        produced.status
    );
    let enqueued: Vec<String> = ids(
        std::str::from_utf8(&produced.stdout).unwrap(),
        "task.enqueue",
    )
    .collect();
    assert_eq!(enqueued.len(), tasks, "the producer enqueued every order");
    enqueued
}

/// Runs the producer, then two worker processes, on `queue` (`--queue` and any extra options),
/// and checks that each enqueued task finished once.
fn producer_and_two_workers(queue: &[&str]) {
    let example = example();
    let enqueued: BTreeSet<String> = produce(queue, TASKS).into_iter().collect();

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

/// Orders the crash test's producer enqueues: every tenth is empty (its task fails), every
/// seventh has its reservation retried once.
const CRASH_TASKS: usize = 2_000;
/// Workers in each worker process of the crash test.
const WORKERS_PER_PROCESS: usize = 2;
/// The crash test's lease: a killed worker's tasks go to another worker at most this long after
/// its death; renewals every third of it keep the living workers' leases.
const CRASH_LEASE_MS: &str = "2000";
/// The worker to be killed stalls (its `label` steps wait for ever) once it has finished this
/// many tasks, so that it dies holding the leases of tasks with completed steps.
const STALL_AFTER: usize = 20;
/// How long the crash test may take, at most, before it fails.
const CRASH_DEADLINE: Duration = Duration::from_secs(120);

/// A worker process whose output is read line by line as it prints it.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Whether the test killed it.
    killed: bool,
}

impl Running {
    fn start(queue: &[&str], extra: &[&str]) -> Running {
        let workers = WORKERS_PER_PROCESS.to_string();
        let mut options = vec!["--workers", &workers, "--until-empty"];
        options.extend(["--lease-ms", CRASH_LEASE_MS]);
        options.extend(extra);
        Running::work(queue, &options)
    }

    /// Runs `work` on `queue` with `options`.
    fn work(queue: &[&str], options: &[&str]) -> Running {
        let child = Command::new(example())
            .arg("work")
            .args(queue)
            .args(options)
            .stdout(Stdio::piped())
            .spawn()
            .expect("a worker starts");
        Running::read(child)
    }

    /// Runs `work` on `queue` with leases of `lease_ms` and `extra` options.
    fn with_lease(queue: &[&str], lease_ms: &str, extra: &[&str]) -> Running {
        let workers = WORKERS_PER_PROCESS.to_string();
        let mut options = vec![
            "--workers",
            &workers,
            "--until-empty",
            "--lease-ms",
            lease_ms,
        ];
        options.extend(extra);
        Running::work(queue, &options)
    }

    /// Reads `child`'s output line by line as it prints it.
    fn read(mut child: Child) -> Running {
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = std::thread::spawn({
            let lines = lines.clone();
            move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            }
        });
        Running {
            child,
            lines,
            reader: Some(reader),
            killed: false,
        }
    }

    fn events(&self) -> Vec<Line> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| Line::parse(l))
            .collect()
    }

    /// Waits for the process to exit by itself, successfully, before `deadline`.
    fn exit(&mut self, deadline: Instant, role: &str) {
        loop {
            if let Some(status) = self.child.try_wait().expect("the child's status") {
                assert!(status.success(), "the {role} exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the {role} did not finish within {CRASH_DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit by itself before `deadline`, however it ends.
    fn ended(&mut self, deadline: Instant, role: &str) -> std::process::ExitStatus {
        loop {
            if let Some(status) = self.child.try_wait().expect("the child's status") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the {role} did not finish in time"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL reaches the worker");
        self.child.wait().expect("the killed worker is reaped");
        self.killed = true;
    }

    /// Whether the process exited by itself (successfully: anything else fails the test).
    fn exited(&mut self, role: &str) -> bool {
        match self.child.try_wait().expect("the child's status") {
            Some(status) => {
                assert!(status.success(), "the {role} exited with {status}");
                true
            }
            None => false,
        }
    }

    /// Every event the process printed, once its output has ended.
    fn output(mut self) -> Vec<Line> {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the reader thread");
        }
        self.events()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed test leaves no process behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One printed event: `<role> <event> <task id> [<step> [<reason>]] [event_id=<id>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    event: String,
    task: String,
    step: Option<String>,
    reason: Option<String>,
    /// The event's id, printed for a queued task's terminal event.
    event_id: Option<String>,
}

impl Line {
    fn parse(line: &str) -> Option<Line> {
        let mut fields = line.split_whitespace();
        let (_role, event, task) = (fields.next()?, fields.next()?, fields.next()?);
        let (mut rest, mut event_id) = (Vec::new(), None);
        for field in fields {
            match field.strip_prefix("event_id=") {
                Some(id) => event_id = Some(id.to_owned()),
                None => rest.push(field.to_owned()),
            }
        }
        let mut rest = rest.into_iter();
        Some(Line {
            event: event.to_owned(),
            task: task.to_owned(),
            step: rest.next(),
            reason: rest.next(),
            event_id,
        })
    }

    fn is(&self, event: &str, step: &str) -> bool {
        self.event == event && self.step.as_deref() == Some(step)
    }

    fn is_terminal(&self) -> bool {
        self.event == "task.complete" || self.event == "task.error"
    }
}

/// The tasks a process started and has not finished, and of those the ones waiting in `label`.
fn unfinished(events: &[Line]) -> (BTreeSet<String>, BTreeSet<String>) {
    let ended: BTreeSet<&str> = events
        .iter()
        .filter(|line| line.is_terminal())
        .map(|line| line.task.as_str())
        .collect();
    let started: BTreeSet<String> = events
        .iter()
        .filter(|line| line.event == "task.start" && !ended.contains(line.task.as_str()))
        .map(|line| line.task.clone())
        .collect();
    let labelled: BTreeSet<&str> = events
        .iter()
        .filter(|line| line.is("step.complete", "label"))
        .map(|line| line.task.as_str())
        .collect();
    let in_label = events
        .iter()
        .filter(|line| {
            line.is("step.handle", "label")
                && started.contains(&line.task)
                && !labelled.contains(line.task.as_str())
        })
        .map(|line| line.task.clone())
        .collect();
    (started, in_label)
}

/// One producer and three worker processes on `queue`; the first worker is killed with
/// SIGKILL once it has finished some tasks and each of its workers is in the middle of one.
fn three_workers_one_killed(queue: &[&str]) {
    example();
    let started = Instant::now();
    let enqueued = produce(queue, CRASH_TASKS);
    let produced = started.elapsed();
    let deadline = Instant::now() + CRASH_DEADLINE;
    let mut victim = Running::start(queue, &["--stall-after", &STALL_AFTER.to_string()]);
    let mut others: Vec<Running> = (0..2).map(|_| Running::start(queue, &[])).collect();

    // Kill it once it has finished its share and holds the leases of tasks it is in the middle
    // of (with steps completed: `pack` and `reserve` come before `label`).
    loop {
        let events = victim.events();
        let finished = events.iter().filter(|line| line.is_terminal()).count();
        let (_, in_label) = unfinished(&events);
        if finished >= STALL_AFTER && in_label.len() >= WORKERS_PER_PROCESS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker to kill never stalled: {finished} tasks finished, {} in `label`",
            in_label.len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    victim.kill();
    let killed_at = started.elapsed();
    for (n, other) in others.iter_mut().enumerate() {
        other.exit(deadline, &format!("surviving worker {n}"));
    }
    let outputs: Vec<Vec<Line>> = std::iter::once(victim)
        .chain(others)
        .map(Running::output)
        .collect();
    eprintln!(
        "{CRASH_TASKS} tasks: produced in {produced:?}, worker killed at {killed_at:?}, all \
         finished at {:?}",
        started.elapsed()
    );

    // Every task ended, across all three processes, the killed one included; more than once
    // only in the window the README names, with one event id.
    let killed: Vec<bool> = (0..outputs.len()).map(|process| process == 0).collect();
    let ends = terminal_events(&outputs, &killed);
    assert_eq!(
        ends.keys().copied().collect::<BTreeSet<_>>(),
        enqueued.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        "every task ended"
    );
    // Failures and retries where the orders call for them.
    for (index, task) in enqueued.iter().enumerate() {
        let order = index + 1;
        let expected = if order % 10 == 0 {
            "task.error"
        } else {
            "task.complete"
        };
        assert_eq!(ends[task.as_str()][0].1, expected, "order {order}");
        if order % 7 == 0 && order % 10 != 0 {
            assert!(
                outputs
                    .iter()
                    .flatten()
                    .any(|line| line.task == *task && line.is("step.retry", "reserve")),
                "order {order}'s reservation was retried"
            );
        }
    }

    // No completed step ran twice: one `step.complete` per task and step, in all the output.
    let mut completions: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for line in outputs.iter().flatten() {
        if let (Some(step), "step.complete") = (&line.step, line.event.as_str()) {
            *completions.entry((&line.task, step)).or_default() += 1;
        }
    }
    let again: Vec<_> = completions
        .iter()
        .filter(|(_, count)| **count > 1)
        .collect();
    assert!(
        again.is_empty(),
        "steps completed more than once: {again:?}"
    );

    // The killed worker's unfinished tasks finished elsewhere, replaying its completed steps.
    let victim_events = &outputs[0];
    assert!(
        victim_events
            .iter()
            .filter(|line| line.is_terminal())
            .count()
            >= STALL_AFTER,
        "the killed worker finished tasks before it died"
    );
    let (left, in_label) = unfinished(victim_events);
    // Each of its workers stalled in one (more only if a lease of its was lost under load).
    assert!(in_label.len() >= WORKERS_PER_PROCESS, "{in_label:?}");
    let mut replays = 0;
    for task in &left {
        let (process, _) = ends[task.as_str()][0];
        assert_ne!(
            process, 0,
            "task {task} finished after its worker was killed"
        );
        let finisher = &outputs[process];
        let completed_before: Vec<&str> = victim_events
            .iter()
            .filter(|line| line.task == *task && line.event == "step.complete")
            .filter_map(|line| line.step.as_deref())
            .collect();
        for step in &completed_before {
            assert!(
                finisher.iter().any(|line| line.task == *task
                    && line.is("step.skip", step)
                    && line.reason.as_deref() == Some("replayed")),
                "task {task}: step `{step}`, completed by the killed worker, was replayed"
            );
            replays += 1;
        }
        if in_label.contains(task) {
            assert_eq!(completed_before, ["pack", "reserve"], "task {task}");
            assert!(
                finisher
                    .iter()
                    .any(|line| line.task == *task && line.is("step.complete", "label")),
                "task {task}: `label` ran in the process that finished it"
            );
        }
    }
    assert!(replays >= 2 * WORKERS_PER_PROCESS, "{replays} replays");
}

/// Orders the poison test's producer enqueues; order [`POISON`] aborts the process that runs it.
const POISON_TASKS: usize = 9;
/// The poison order: enqueued after three good ones, so that its first delivery runs beside
/// others.
const POISON: usize = 4;
/// The queue's `max_deliveries` in the poison test.
const POISON_MAX_DELIVERIES: u32 = 3;
/// Worker processes restarted after a crash, at most, before the poison test fails.
const MAX_RESTARTS: usize = 10;
/// How long the poison test may take, at most.
const POISON_DEADLINE: Duration = Duration::from_secs(120);

/// Runs the producer with a poison order, then worker processes of three workers one after
/// another, each restarted after it crashed, until one finds the queue drained; returns each
/// worker process's events and whether it crashed, and the enqueued task ids.
fn run_with_poison(queue: &[&str]) -> (Vec<(Vec<Line>, bool)>, Vec<String>) {
    example();
    let poison = POISON.to_string();
    let mut producer = queue.to_vec();
    producer.extend(["--poison", &poison]);
    let enqueued = produce(&producer, POISON_TASKS);
    let deadline = Instant::now() + POISON_DEADLINE;
    let max_deliveries = POISON_MAX_DELIVERIES.to_string();
    let options = [
        "--workers",
        "3",
        "--until-empty",
        "--lease-ms",
        "1000",
        "--step-ms",
        "100",
        "--max-deliveries",
        &max_deliveries,
    ];
    let mut processes = Vec::new();
    loop {
        let mut worker = Running::work(queue, &options);
        let status = worker.ended(deadline, &format!("worker process {}", processes.len()));
        let crashed = !status.success();
        processes.push((worker.output(), crashed));
        if !crashed {
            break;
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                status.signal(),
                Some(6),
                "a worker process ended with {status}, not the poison's SIGABRT"
            );
        }
        assert!(
            processes.len() <= MAX_RESTARTS,
            "still crashing after {MAX_RESTARTS} restarts"
        );
    }
    (processes, enqueued)
}

/// The dead letters as `(task id, deliveries)`, once the queue is drained.
type DeadLetters = Vec<(String, u32)>;

/// Checks the poison test's outcome: `dead` the queue's dead letters afterwards.
fn poison_task_is_dead_lettered_alone(queue: &[&str], dead: impl FnOnce() -> DeadLetters) {
    let (processes, enqueued) = run_with_poison(queue);
    let poison = &enqueued[POISON - 1];

    // Every good task completed, once — or again with the same event id, only in the window the
    // README names (its process crashed after emitting and before marking it reported, and a
    // later process emitted it again); the poison never ended.
    let outputs: Vec<Vec<Line>> = processes.iter().map(|(events, _)| events.clone()).collect();
    let crashed: Vec<bool> = processes.iter().map(|(_, crashed)| *crashed).collect();
    let ends = terminal_events(&outputs, &crashed);
    let good: BTreeSet<&str> = enqueued
        .iter()
        .map(String::as_str)
        .filter(|task| *task != poison)
        .collect();
    assert_eq!(
        ends.keys().copied().collect::<BTreeSet<_>>(),
        good,
        "every good task ended and the poison did not (a good task missing here was \
         dead-lettered for the poison's crashes)"
    );
    for (task, emissions) in &ends {
        assert!(
            emissions.iter().all(|(_, event)| *event == "task.complete"),
            "task {task}: {emissions:?}"
        );
    }
    assert_eq!(
        dead(),
        [(poison.clone(), POISON_MAX_DELIVERIES + 1)],
        "only the poison is dead-lettered, after its one shared and {POISON_MAX_DELIVERIES} \
         lone deliveries"
    );

    let crashes: Vec<&Vec<Line>> = processes
        .iter()
        .filter(|(_, crashed)| *crashed)
        .map(|(events, _)| events)
        .collect();
    // One crash per delivery of the poison: the first beside others (not counted), then
    // `max_deliveries` alone.
    assert_eq!(crashes.len(), POISON_MAX_DELIVERIES as usize + 1);
    let (first, _) = unfinished(crashes[0]);
    assert!(first.contains(poison), "the first crash ran the poison");
    assert!(
        first.len() > 1,
        "good tasks ran beside the poison's first delivery: {first:?}"
    );
    for (n, events) in crashes.iter().enumerate().skip(1) {
        let (left, _) = unfinished(events);
        assert_eq!(
            left,
            BTreeSet::from([poison.clone()]),
            "crash {n}: the poison ran alone and took no other task down"
        );
    }
}

/// Orders the repeated-kill test's producer enqueues.
const KILL_TASKS: usize = 300;
/// Worker processes running at once in the repeated-kill test; each killed one is replaced.
const KILL_PROCESSES: usize = 3;
/// Kills at most; the test stops killing earlier once the work is done.
const MAX_KILLS: usize = 40;
/// The repeated-kill test's lease: a killed worker's tasks wait this long for another worker,
/// and terminal events left unreported this long are emitted again by a living process.
const KILL_LEASE_MS: &str = "1000";
/// How long each step takes there, so that kills land in the middle of tasks.
const KILL_STEP_MS: &str = "10";
/// How long its printers wait before each terminal event's line: kills land there often, after
/// a completion's commit and before its event is out — the moment a recovery must cover.
const KILL_SLOW_TERMINAL_MS: &str = "10";
/// How long the repeated-kill test may take, at most, before it fails.
const KILL_DEADLINE: Duration = Duration::from_secs(90);

/// A small seeded generator (SplitMix64): the kill schedule is repeatable from the seed.
struct Rng(u64);

impl Rng {
    /// The seed of `TASKER_KILL_SEED`, else one from the clock; printed either way.
    fn from_env() -> Rng {
        let seed = std::env::var("TASKER_KILL_SEED")
            .ok()
            .and_then(|seed| seed.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |now| now.as_nanos() as u64)
            });
        eprintln!("kill schedule seed {seed} (TASKER_KILL_SEED={seed} repeats it)");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `low..high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

/// One producer, then worker processes on `queue` killed with SIGKILL at random moments and
/// replaced, again and again, until the work is done; `completions` reads each task's
/// completion row (`Some(succeeded)`) from the database. Every task has its completion, every
/// completion at least one terminal event in some process's output, and a task with two has
/// them with one id, in the window the README names.
fn repeatedly_killed_workers(queue: &[&str], completions: impl Fn(&[String]) -> Vec<Option<bool>>) {
    example();
    let mut rng = Rng::from_env();
    let started = Instant::now();
    let enqueued = produce(queue, KILL_TASKS);
    let deadline = Instant::now() + KILL_DEADLINE;
    let start = || {
        Running::with_lease(
            queue,
            KILL_LEASE_MS,
            &[
                "--step-ms",
                KILL_STEP_MS,
                "--slow-terminal-ms",
                KILL_SLOW_TERMINAL_MS,
            ],
        )
    };
    let mut live: Vec<Running> = (0..KILL_PROCESSES).map(|_| start()).collect();
    let mut ended: Vec<Running> = Vec::new();
    let mut kills = 0;
    'killing: while kills < MAX_KILLS {
        std::thread::sleep(Duration::from_millis(rng.between(10, 150)));
        // A process that exits by itself found the work done: stop killing.
        for process in &mut live {
            if process.exited("worker") {
                break 'killing;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the work was not done within {KILL_DEADLINE:?} ({kills} kills)"
        );
        let index = rng.between(0, live.len() as u64) as usize;
        let mut victim = live.swap_remove(index);
        victim.kill();
        ended.push(victim);
        live.push(start());
        kills += 1;
    }
    for (n, process) in live.iter_mut().enumerate() {
        process.exit(deadline, &format!("worker {n}"));
    }
    ended.extend(live);
    let killed: Vec<bool> = ended.iter().map(|process| process.killed).collect();
    let outputs: Vec<Vec<Line>> = ended.into_iter().map(Running::output).collect();

    let ends = terminal_events(&outputs, &killed);
    let rows = completions(&enqueued);
    for (index, (task, row)) in enqueued.iter().zip(&rows).enumerate() {
        let order = index + 1;
        let succeeded = order % 10 != 0;
        assert_eq!(*row, Some(succeeded), "order {order}'s completion row");
        let expected = if succeeded {
            "task.complete"
        } else {
            "task.error"
        };
        let emitted = ends
            .get(task.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(
            !emitted.is_empty(),
            "order {order} (task {task}) has a completion and no terminal event"
        );
        assert!(
            emitted.iter().all(|(_, event)| *event == expected),
            "order {order}: {emitted:?}"
        );
    }
    assert_eq!(
        ends.len(),
        KILL_TASKS,
        "terminal events of tasks never enqueued"
    );
    let repeated = ends.values().filter(|emitted| emitted.len() > 1).count();
    // Tasks whose terminal event only a recovery emitted: the process that ran them to their
    // end (printing `task.finalize`) was killed before the event's line.
    let rescued = enqueued
        .iter()
        .filter(|task| {
            ends.get(task.as_str()).is_some_and(|emitted| {
                emitted.iter().all(|(process, _)| {
                    !outputs[*process]
                        .iter()
                        .any(|line| line.task == **task && line.event == "task.finalize")
                })
            })
        })
        .count();
    let interrupted = outputs
        .iter()
        .zip(&killed)
        .filter(|(_, killed)| **killed)
        .map(|(events, _)| unfinished(events).0.len())
        .sum::<usize>();
    eprintln!(
        "{KILL_TASKS} tasks, {kills} kills ({interrupted} task runs cut short), {repeated} \
         terminal events emitted again, {rescued} emitted only by a recovery, done in {:?}",
        started.elapsed()
    );
    assert!(kills >= 10, "only {kills} kills before the work was done");
    assert!(
        rescued > 0,
        "no kill fell between a completion's commit and its event: the test proved nothing"
    );
}

/// The terminal events of every task in `outputs` (one per process; `killed[n]` says whether
/// the test killed process `n`), as `(process, event)` per task, checked against the README's
/// promise: a task ends more than once only when a process that emitted its terminal event was
/// killed before marking it reported (or before committing the re-emission it was making), so
/// that another process emitted it again — every emission of it with the same event id, the
/// same event, at most one in each process, and at most one in a process the test did not kill.
fn terminal_events<'a>(
    outputs: &'a [Vec<Line>],
    killed: &[bool],
) -> BTreeMap<&'a str, Vec<(usize, &'a str)>> {
    let mut ends: BTreeMap<&str, Vec<(usize, &Line)>> = BTreeMap::new();
    for (process, events) in outputs.iter().enumerate() {
        for line in events.iter().filter(|line| line.is_terminal()) {
            assert!(
                line.event_id.is_some(),
                "a terminal event without an id: {line:?}"
            );
            ends.entry(&line.task).or_default().push((process, line));
        }
    }
    for (task, emissions) in ends.iter().filter(|(_, emissions)| emissions.len() > 1) {
        let (_, first) = emissions[0];
        for (process, line) in emissions {
            assert_eq!(
                (&line.event, &line.event_id),
                (&first.event, &first.event_id),
                "task {task} ended twice with different events or ids: {emissions:?}"
            );
            assert_eq!(
                emissions
                    .iter()
                    .filter(|(other, _)| other == process)
                    .count(),
                1,
                "task {task} ended twice in process {process}: {emissions:?}"
            );
        }
        let survivors = emissions
            .iter()
            .filter(|(process, _)| !killed[*process])
            .count();
        assert!(
            survivors <= 1,
            "task {task} ended in {survivors} processes that were not killed, outside the \
             window the README names: {emissions:?} (killed: {killed:?})"
        );
    }
    ends.into_iter()
        .map(|(task, emissions)| {
            let emissions = emissions
                .into_iter()
                .map(|(process, line)| (process, line.event.as_str()))
                .collect();
            (task, emissions)
        })
        .collect()
}

/// A directory of its own, removed with the value.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tasker-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn sqlite_url(&self) -> String {
        format!("sqlite:{}", self.0.join("queue.db").display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn sqlite_producer_and_two_worker_processes_finish_every_task_once() {
    let dir = TempDir::new("worker-processes");
    producer_and_two_workers(&["--queue", &dir.sqlite_url()]);
}

#[test]
fn sqlite_three_worker_processes_one_killed_finish_every_task_once() {
    let dir = TempDir::new("worker-crash");
    three_workers_one_killed(&["--queue", &dir.sqlite_url()]);
}

#[test]
fn sqlite_a_poison_task_is_dead_lettered_alone_and_good_tasks_complete() {
    let dir = TempDir::new("worker-poison");
    let url = dir.sqlite_url();
    poison_task_is_dead_lettered_alone(&["--queue", &url], || {
        on_tokio(async {
            let queue = tasker::queue::SqliteQueue::open(dir.0.join("queue.db"))
                .await
                .unwrap();
            let counts = queue.counts().await.unwrap();
            assert_eq!((counts.ready, counts.delayed, counts.leased), (0, 0, 0));
            let dead = queue.dead_letters().await.unwrap();
            dead.iter()
                .map(|envelope| (envelope.task_id.to_string(), envelope.delivery_attempt))
                .collect()
        })
    });
}

#[test]
fn sqlite_worker_processes_killed_again_and_again_lose_no_terminal_event() {
    let dir = TempDir::new("worker-kills");
    let url = dir.sqlite_url();
    let path = dir.0.join("queue.db");
    repeatedly_killed_workers(&["--queue", &url], |tasks| {
        on_tokio(async {
            let queue = tasker::queue::SqliteQueue::open(&path).await.unwrap();
            let mut rows = Vec::new();
            for task in tasks {
                let result = queue.result(task.parse().unwrap()).await.unwrap();
                rows.push(result.map(|completion| completion.succeeded));
            }
            rows
        })
    });
}

/// Runs `future` to its end on a runtime of its own.
fn on_tokio<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// The database URL, or `None` (after saying how to enable the test) when none is set.
#[cfg(feature = "postgres")]
fn database_url() -> Option<String> {
    match std::env::var("TASKER_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipping the PostgreSQL worker processes test: set TASKER_TEST_DATABASE_URL \
                 (for example postgres://postgres@127.0.0.1:5432/test, as .ci/run does) to run it"
            );
            None
        }
    }
}

/// Drops a test's schema, even when the test fails.
#[cfg(feature = "postgres")]
struct DropSchema(String, String);

#[cfg(feature = "postgres")]
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

#[cfg(feature = "postgres")]
#[test]
fn postgres_producer_and_two_worker_processes_finish_every_task_once() {
    let Some(url) = database_url() else { return };
    let schema = format!("tasker_worker_processes_{}", std::process::id());
    let _drop = DropSchema(url.clone(), schema.clone());
    producer_and_two_workers(&["--queue", &url, "--schema", &schema]);
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_three_worker_processes_one_killed_finish_every_task_once() {
    let Some(url) = database_url() else { return };
    let schema = format!("tasker_worker_crash_{}", std::process::id());
    let _drop = DropSchema(url.clone(), schema.clone());
    three_workers_one_killed(&["--queue", &url, "--schema", &schema]);
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_a_poison_task_is_dead_lettered_alone_and_good_tasks_complete() {
    let Some(url) = database_url() else { return };
    let schema = format!("tasker_worker_poison_{}", std::process::id());
    let _drop = DropSchema(url.clone(), schema.clone());
    poison_task_is_dead_lettered_alone(&["--queue", &url, "--schema", &schema], || {
        on_tokio(async {
            let queue = tasker::queue::PostgresQueue::builder(&url)
                .schema(&schema)
                .listen(false)
                .connect()
                .await
                .unwrap();
            let counts = queue.counts().await.unwrap();
            assert_eq!((counts.ready, counts.delayed, counts.leased), (0, 0, 0));
            let dead = queue.dead_letters().await.unwrap();
            dead.iter()
                .map(|envelope| (envelope.task_id.to_string(), envelope.delivery_attempt))
                .collect()
        })
    });
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_worker_processes_killed_again_and_again_lose_no_terminal_event() {
    let Some(url) = database_url() else { return };
    let schema = format!("tasker_worker_kills_{}", std::process::id());
    let _drop = DropSchema(url.clone(), schema.clone());
    repeatedly_killed_workers(&["--queue", &url, "--schema", &schema], |tasks| {
        on_tokio(async {
            let queue = tasker::queue::PostgresQueue::builder(&url)
                .schema(&schema)
                .pool_size(1)
                .listen(false)
                .connect()
                .await
                .unwrap();
            let mut rows = Vec::new();
            for task in tasks {
                let result = queue.result(task.parse().unwrap()).await.unwrap();
                rows.push(result.map(|completion| completion.succeeded));
            }
            rows
        })
    });
}
