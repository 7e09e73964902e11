//! Load: many tasks of five steps — seeded random failures, retries with a tiny backoff, skips,
//! a concurrent batch with `tasker::join!` — through a multi-threaded `Runtime`. A counting
//! adapter (configured in this binary alone) gets exactly the expected events, every task's
//! sequence follows the lifecycle grammar, no task or step body runs more often than planned,
//! and resident memory comes back to where it was.
//!
//! `TASKER_LOAD_TASKS` sets the number of tasks (default 100,000); the `#[ignore]`d
//! `one_million_tasks_under_load` runs a million (`cargo test --release --test reliability_load
//! -- --ignored`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tasker::telemetry::{Adapter, Event, EventKind};
use tasker::testing::{LifecycleValidator, Violation};
use tasker::{Runtime, TaskError, TaskRequest, TelemetryAdapter};

/// A task id as a number (the events' UUID, without naming the `uuid` crate).
type TaskId = u128;

/// Events of each lifecycle kind, in the order of `EventKind::ALL`.
static COUNTS: [AtomicU64; EventKind::ALL.len()] =
    [const { AtomicU64::new(0) }; EventKind::ALL.len()];

/// The custom adapter under load: counts every event by kind.
#[derive(Default)]
pub struct CountingAdapter;

impl Adapter for CountingAdapter {
    fn record(&self, event: &Event<'_>) {
        if let Some(kind) = event.kind() {
            COUNTS[kind as usize].fetch_add(1, Ordering::Relaxed);
        }
    }
}

tasker::register_adapter!(CountingAdapter);

/// What one task will do, drawn from the seed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Plan {
    id: u64,
    /// Failed attempts of `reserve` and `charge` before they succeed; 3 exhausts them.
    reserve_failures: u8,
    charge_failures: u8,
    gift: bool,
    /// `ship` fails with an error that is not retried.
    reject: bool,
}

/// splitmix64: a seeded stream of numbers, the same on every run.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn failures(roll: u64) -> u8 {
    match roll % 100 {
        0..=69 => 0,
        70..=84 => 1,
        85..=94 => 2,
        _ => 3,
    }
}

fn plan(seed: u64, id: u64) -> Plan {
    let roll = mix(seed ^ mix(id));
    Plan {
        id,
        reserve_failures: failures(roll),
        charge_failures: failures(roll >> 8),
        gift: (roll >> 16) % 2 == 0,
        reject: (roll >> 24) % 20 == 0,
    }
}

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("flaky dependency")]
    Flaky,
    #[error("order {0} rejected")]
    Rejected(u64),
}

fn retryable(error: &LoadError) -> bool {
    matches!(error, LoadError::Flaky)
}

fn no_gift(plan: &Plan) -> bool {
    !plan.gift
}

static BODY_RUNS: AtomicU64 = AtomicU64::new(0);
/// How many times each task body ran, by plan id.
static TASK_RUNS: OnceLock<Vec<AtomicU8>> = OnceLock::new();

#[tasker::step(max_attempts = 1)]
fn validate(plan: &Plan) -> Result<u64, LoadError> {
    BODY_RUNS.fetch_add(1, Ordering::Relaxed);
    Ok(plan.id)
}

fn flaky(failures: u8, tries: &AtomicU8, value: u64) -> Result<u64, LoadError> {
    BODY_RUNS.fetch_add(1, Ordering::Relaxed);
    if tries.fetch_add(1, Ordering::Relaxed) < failures {
        Err(LoadError::Flaky)
    } else {
        Ok(value)
    }
}

#[tasker::step(max_attempts = 3, backoff_ms = 1, max_backoff_ms = 1, jitter = 0.0, retry_if = retryable)]
async fn reserve(plan: &Plan, tries: &AtomicU8) -> Result<u64, LoadError> {
    tokio::task::yield_now().await;
    flaky(plan.reserve_failures, tries, 10)
}

#[tasker::step(max_attempts = 3, backoff_ms = 1, max_backoff_ms = 1, jitter = 0.0, retry_if = retryable)]
async fn charge(plan: &Plan, tries: &AtomicU8) -> Result<u64, LoadError> {
    flaky(plan.charge_failures, tries, 100)
}

#[tasker::step(max_attempts = 1, skip_if = no_gift)]
async fn gift_wrap(plan: &Plan) -> Result<(), LoadError> {
    let _ = plan;
    BODY_RUNS.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

#[tasker::step(max_attempts = 3, backoff_ms = 1, max_backoff_ms = 1, jitter = 0.0, retry_if = retryable)]
async fn ship(plan: &Plan) -> Result<u64, LoadError> {
    BODY_RUNS.fetch_add(1, Ordering::Relaxed);
    if plan.reject {
        return Err(LoadError::Rejected(plan.id));
    }
    Ok(1000)
}

#[tasker::task(name = "load_order", version = "1.0.0")]
async fn load_order(plan: Plan) -> Result<u64, LoadError> {
    if let Some(runs) = TASK_RUNS.get().and_then(|runs| runs.get(plan.id as usize)) {
        runs.fetch_add(1, Ordering::Relaxed);
    }
    let id = validate(&plan)?;
    let (reserve_tries, charge_tries) = (AtomicU8::new(0), AtomicU8::new(0));
    let (reserved, charged) =
        tasker::join!(reserve(&plan, &reserve_tries), charge(&plan, &charge_tries));
    let (reserved, charged) = (reserved?, charged?);
    gift_wrap(&plan).await?;
    let shipped = ship(&plan).await?;
    Ok(id + reserved + charged + shipped)
}

/// Events of each kind, and step bodies run, that `plan` must give.
fn expected(plan: &Plan) -> ([u64; EventKind::ALL.len()], u64) {
    let mut counts = [0u64; EventKind::ALL.len()];
    let mut add = |kind: EventKind, count: u64| counts[kind as usize] += count;
    let mut bodies = 1;
    add(EventKind::TaskInitialize, 1);
    add(EventKind::TaskEnqueue, 1);
    add(EventKind::TaskStart, 1);
    add(EventKind::TaskHandle, 1);
    add(EventKind::TaskFinalize, 1);
    add(EventKind::StepHandle, 1); // validate
    add(EventKind::StepComplete, 1);
    add(EventKind::StepFindViable, 1);
    let mut failed = false;
    for failures in [plan.reserve_failures, plan.charge_failures] {
        let failures = u64::from(failures);
        if failures < 3 {
            add(EventKind::StepHandle, failures + 1);
            add(EventKind::StepError, failures);
            add(EventKind::StepRetry, failures);
            add(EventKind::StepBackoff, failures);
            add(EventKind::StepComplete, 1);
            bodies += failures + 1;
        } else {
            add(EventKind::StepHandle, 3);
            add(EventKind::StepError, 3);
            add(EventKind::StepRetry, 2);
            add(EventKind::StepBackoff, 2);
            add(EventKind::StepMaxRetriesReached, 1);
            bodies += 3;
            failed = true;
        }
    }
    if !failed {
        if plan.gift {
            add(EventKind::StepHandle, 1);
            add(EventKind::StepComplete, 1);
            bodies += 1;
        } else {
            add(EventKind::StepSkip, 1);
        }
        add(EventKind::StepHandle, 1);
        bodies += 1;
        if plan.reject {
            add(EventKind::StepError, 1);
            failed = true;
        } else {
            add(EventKind::StepComplete, 1);
        }
    }
    add(
        if failed {
            EventKind::TaskError
        } else {
            EventKind::TaskComplete
        },
        1,
    );
    (counts, bodies)
}

fn expected_result(plan: &Plan) -> Result<serde_json::Value, &'static str> {
    if plan.reserve_failures >= 3 || plan.charge_failures >= 3 || plan.reject {
        Err("reliability_load::LoadError")
    } else {
        Ok(serde_json::json!(plan.id + 10 + 100 + 1000))
    }
}

/// Checks each task's events as they are fired, keeping only open tasks.
#[derive(Default)]
struct Validators {
    shards: [Mutex<HashMap<TaskId, LifecycleValidator>>; 16],
    validated: AtomicU64,
    first_violation: Mutex<Option<(TaskId, Violation)>>,
}

impl Validators {
    fn observe(&self, event: &Event<'_>) {
        let Some(task_id) = event.task_id() else {
            return;
        };
        let key = task_id.as_u128();
        let mut shard = self.shards[(key % 16) as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let validator = shard.entry(key).or_default();
        let result = validator.push(event);
        let ended = validator.is_ended();
        if ended {
            shard.remove(&key);
            self.validated.fetch_add(1, Ordering::Relaxed);
        }
        drop(shard);
        if let Err(violation) = result {
            self.first_violation
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert((key, violation));
        }
    }

    fn open(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

/// Resident memory, from `/proc/self/statm` (pages of 4 KiB).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

const MIB: u64 = 1024 * 1024;

async fn run_load(tasks: u64, seed: u64) {
    let runs: Vec<AtomicU8> = (0..tasks).map(|_| AtomicU8::new(0)).collect();
    assert!(TASK_RUNS.set(runs).is_ok(), "one load run per process");
    tasker::configure(|config| {
        config.enable_telemetry = true;
        config.telemetry_adapters = vec![TelemetryAdapter::Custom];
        config.telemetry_adapter_classes = vec!["reliability_load::CountingAdapter".into()];
    })
    .expect("the counting adapter is registered in this binary");
    let validators = std::sync::Arc::new(Validators::default());
    let _subscription = tasker::events::subscribe({
        let validators = validators.clone();
        move |event: &Event<'_>| validators.observe(event)
    });

    let runtime = Runtime::builder().workers(32).build().expect("a runtime");
    let started = Instant::now();
    let wave = 2_000u64;
    let warm_up = (tasks / 10).max(wave).min(tasks);
    let mut baseline = 0;
    let mut peak = 0;
    let mut expected_counts = [0u64; EventKind::ALL.len()];
    let mut expected_bodies = 0;
    let mut first = 0;
    while first < tasks {
        let last = (first + wave).min(tasks);
        let mut handles = Vec::with_capacity(wave as usize);
        for id in first..last {
            let plan = plan(seed, id);
            let (counts, bodies) = expected(&plan);
            for (total, count) in expected_counts.iter_mut().zip(counts) {
                *total += count;
            }
            expected_bodies += bodies;
            let request = TaskRequest::new("load_order", &plan).expect("a serializable plan");
            handles.push((plan, runtime.enqueue(request).await.expect("enqueued")));
        }
        for (plan, handle) in handles {
            // Generous under load, but bounded: a lost task fails the test instead of hanging it.
            let result = tokio::time::timeout(std::time::Duration::from_secs(120), handle.wait())
                .await
                .unwrap_or_else(|_| panic!("{plan:?} did not end within 120 s"));
            match (expected_result(&plan), result) {
                (Ok(value), Ok(got)) => assert_eq!(got, value, "{plan:?}"),
                (Err(class), Err(TaskError::Failed { class: got, .. })) => {
                    assert_eq!(got, class, "{plan:?}")
                }
                (expected, got) => panic!("{plan:?}: expected {expected:?}, got {got:?}"),
            }
        }
        first = last;
        let resident = resident_bytes();
        if first == warm_up {
            baseline = resident;
        }
        peak = peak.max(resident);
    }
    let took = started.elapsed();
    runtime.shutdown().await;
    let end = resident_bytes();
    eprintln!(
        "{tasks} tasks in {took:?}; resident memory after warm-up {} MiB, peak {} MiB, end {} MiB",
        baseline / MIB,
        peak / MIB,
        end / MIB
    );

    if let Some((task_id, violation)) = validators
        .first_violation
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        panic!("task {task_id:x}: {violation}");
    }
    assert_eq!(validators.validated.load(Ordering::Relaxed), tasks);
    assert_eq!(validators.open(), 0, "every task's sequence ended");
    let counts: Vec<u64> = COUNTS
        .iter()
        .map(|count| count.load(Ordering::Relaxed))
        .collect();
    let named = |counts: &[u64]| -> Vec<(&'static str, u64)> {
        EventKind::ALL
            .iter()
            .map(|kind| kind.name())
            .zip(counts.iter().copied())
            .collect()
    };
    assert_eq!(
        tasker::telemetry::collector::stats().dropped,
        0,
        "no event dropped by the collector's bounded buffers"
    );
    assert_eq!(named(&counts), named(&expected_counts), "events by kind");
    assert_eq!(BODY_RUNS.load(Ordering::Relaxed), expected_bodies);
    let runs = TASK_RUNS.get().expect("set above");
    let not_once: Vec<usize> = runs
        .iter()
        .enumerate()
        .filter(|(_, count)| count.load(Ordering::Relaxed) != 1)
        .map(|(id, _)| id)
        .take(10)
        .collect();
    assert!(
        not_once.is_empty(),
        "tasks not run exactly once: {not_once:?}"
    );
    if baseline > 0 {
        assert!(
            end.saturating_sub(baseline) < 24 * MIB,
            "resident memory grew from {} MiB after warm-up to {} MiB",
            baseline / MIB,
            end / MIB
        );
    }
}

fn tasks_from_env(default: u64) -> u64 {
    std::env::var("TASKER_LOAD_TASKS")
        .ok()
        .and_then(|value| value.trim().replace('_', "").parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_under_load_keep_every_promise() {
    run_load(tasks_from_env(100_000), 0x7A5C_E500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a million tasks: minutes in release, long in debug; run by hand"]
async fn one_million_tasks_under_load() {
    run_load(tasks_from_env(1_000_000), 0x7A5C_E501).await;
}
