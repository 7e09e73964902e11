//! `SqliteQueue`: the shared queue behaviour, migrations, dead letters, and two runtimes (with
//! a queue each, as two processes would have) sharing one file.

#![cfg(feature = "sqlite")]

#[macro_use]
mod queue_suite;
mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tasker::queue::{
    BoxFuture, Counts, DeadLetter, Queue, QueueError, RetriedDeadLetters, SqliteQueue, TaskCounts,
};

/// A queue in a file of its own, removed with the fixture.
struct Fixture {
    queue: Arc<SqliteQueue>,
    dir: PathBuf,
}

impl Fixture {
    fn path(&self) -> PathBuf {
        self.dir.join("queue.db")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn new_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tasker-sqlite-queue-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn fresh() -> Option<Fixture> {
    let dir = new_dir();
    let queue = SqliteQueue::builder(dir.join("queue.db"))
        .max_deliveries(queue_suite::MAX_DELIVERIES)
        .poll_interval(Duration::from_millis(20))
        .open()
        .await
        .unwrap();
    Some(Fixture {
        queue: Arc::new(queue),
        dir,
    })
}

queue_suite!(fresh);

impl queue_suite::Table for Fixture {
    fn queue(&self) -> Arc<dyn Queue> {
        self.queue.clone()
    }

    fn insert<'a>(
        &'a self,
        task_id: &'a str,
        value: &'a queue_suite::Stored,
    ) -> BoxFuture<'a, bool> {
        use queue_suite::Stored;
        use rusqlite::types::Value;
        // Bytes that are not UTF-8 go in as a BLOB cast to text: SQLite keeps them unchecked.
        let (value, expression) = match value {
            Stored::Text(text) => (Value::Text(text.clone()), "?3"),
            Stored::Blob(bytes) => (Value::Blob(bytes.clone()), "?3"),
            Stored::InvalidUtf8(bytes) => (Value::Blob(bytes.clone()), "CAST(?3 AS TEXT)"),
        };
        let statement = format!(
            "INSERT INTO tasker_envelopes (queue, task_id, envelope, available_at_us, \
             enqueued_at_us) VALUES (?1, ?2, {expression}, ?4, ?4)"
        );
        let connection = rusqlite::Connection::open(self.path()).unwrap();
        connection.busy_timeout(Duration::from_secs(10)).unwrap();
        let now = tasker::queue::now_micros() as i64;
        connection
            .execute(
                &statement,
                rusqlite::params![self.queue.name(), task_id, value, now],
            )
            .unwrap();
        Box::pin(std::future::ready(true))
    }

    fn dead_letters(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, QueueError>> {
        Box::pin(self.queue.dead_letters())
    }

    fn dead_letters_page(
        &self,
        after_id: i64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<DeadLetter>, QueueError>> {
        Box::pin(self.queue.dead_letters_page(after_id, limit))
    }

    fn counts(&self) -> BoxFuture<'_, Counts> {
        Box::pin(async { self.queue.counts().await.unwrap() })
    }

    fn counts_by_task(&self) -> BoxFuture<'_, Result<Vec<TaskCounts>, QueueError>> {
        Box::pin(self.queue.counts_by_task())
    }

    fn retry_dead_letter(&self, id: i64) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(self.queue.retry_dead_letter(id))
    }

    fn retry_dead_letters(&self) -> BoxFuture<'_, Result<RetriedDeadLetters, QueueError>> {
        Box::pin(self.queue.retry_dead_letters())
    }

    fn purge_dead_letters(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
        Box::pin(self.queue.purge_dead_letters())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_create_the_tables_in_a_new_file_and_rerun_as_no_ops() {
    let dir = new_dir();
    let path = dir.join("queue.db");
    assert!(SqliteQueue::migration_sql().contains("-- migration 1: envelopes"));
    // Opening a file that does not exist yet creates it and applies every migration.
    let queue = SqliteQueue::open(&path).await.unwrap();
    assert_eq!(queue.migrate().await.unwrap(), 0, "open() migrated");
    queue.push(queue_suite::envelope("a")).await.unwrap();
    drop(queue);
    let reopened = SqliteQueue::open(&path).await.unwrap();
    assert_eq!(reopened.migrate().await.unwrap(), 0);
    assert_eq!(
        reopened.counts().await.unwrap(),
        Counts {
            ready: 1,
            ..Counts::default()
        },
        "the envelope outlived its queue"
    );
    drop(reopened);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs `script` as the sqlite3 CLI does: statement by statement, going on after one fails.
/// Returns the messages of the statements that failed.
fn run_like_the_cli(connection: &rusqlite::Connection, script: &str) -> Vec<String> {
    script
        .split(";\n")
        .filter(|statement| !statement.trim().is_empty())
        .filter_map(|statement| connection.execute_batch(statement).err())
        .map(|error| error.to_string())
        .collect()
}

/// The printed script, run by hand over a file that is already migrated, twice, leaves every
/// row as it was: migration 5's `ALTER`s fail (their columns exist) and its `UPDATE` does not
/// run again (it would reset the counted deliveries of every envelope).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerunning_the_migration_script_changes_no_row() {
    let fixture = fresh().await.unwrap();
    fixture
        .queue
        .push(queue_suite::envelope("a"))
        .await
        .unwrap();
    let claim = fixture
        .queue
        .claim(queue_suite::LEASE, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    // Handed back uncounted: delivery 2, one counted delivery.
    fixture.queue.release(claim.lease).await.unwrap();
    let connection = rusqlite::Connection::open(fixture.path()).unwrap();
    let deliveries = |connection: &rusqlite::Connection| -> (i64, i64) {
        connection
            .query_row(
                "SELECT delivery_attempt, counted_deliveries FROM tasker_envelopes",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap()
    };
    assert_eq!(deliveries(&connection), (2, 1));
    for _ in 0..2 {
        let failed = run_like_the_cli(&connection, &SqliteQueue::migration_sql());
        assert_eq!(
            failed,
            [
                "duplicate column name: counted_deliveries",
                "duplicate column name: alone",
            ]
        );
        assert_eq!(deliveries(&connection), (2, 1));
    }
    let versions: i64 = connection
        .query_row("SELECT count(*) FROM tasker_migrations", [], |row| {
            row.get(0)
        })
        .unwrap();
    let migrations = SqliteQueue::migration_sql()
        .matches("-- migration ")
        .count();
    assert_eq!(usize::try_from(versions).unwrap(), migrations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_keep_the_envelope_and_its_deliveries() {
    let fixture = fresh().await.unwrap();
    let queue = &fixture.queue;
    let doomed = queue_suite::envelope("doomed");
    queue.push(doomed.clone()).await.unwrap();
    for _ in 0..queue_suite::MAX_DELIVERIES {
        let claim = queue
            .claim(queue_suite::LEASE, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        queue.requeue(claim.lease, Duration::ZERO).await.unwrap();
    }
    let dead = queue.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    let kept = dead[0].envelope.as_ref().unwrap();
    assert_eq!(kept.task_id, doomed.task_id);
    assert_eq!(kept.delivery_attempt, queue_suite::MAX_DELIVERIES + 1);
    assert_eq!(dead[0].delivery_attempt, queue_suite::MAX_DELIVERIES + 1);
    assert_eq!(
        queue.counts().await.unwrap(),
        Counts {
            dead: 1,
            ..Counts::default()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_through_another_connection_reaches_a_waiting_claim_by_polling() {
    let fixture = fresh().await.unwrap();
    let other = SqliteQueue::builder(fixture.path())
        .poll_interval(Duration::from_millis(20))
        .open()
        .await
        .unwrap();
    let waiter = tokio::spawn(async move {
        other
            .claim(queue_suite::LEASE, Duration::from_secs(5))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    fixture
        .queue
        .push(queue_suite::envelope("polled"))
        .await
        .unwrap();
    let claim = waiter.await.unwrap().unwrap().unwrap();
    assert_eq!(claim.envelope.task_name, "polled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_on_one_file_run_every_task_once() {
    let fixture = fresh().await.unwrap();
    let second = SqliteQueue::builder(fixture.path())
        .poll_interval(Duration::from_millis(20))
        .open()
        .await
        .unwrap();
    let queue = fixture.queue.clone();
    queue_suite::two_runtimes_on_one_database_run_every_task_once(
        fixture.queue.clone(),
        Arc::new(second),
        || {
            let queue = queue.clone();
            async move { queue.counts().await.unwrap() }
        },
    )
    .await;
}

/// Renames the checkpoints table of the queue in `path` away (`true`) or back, from a
/// connection of its own.
fn checkpoint_outage(path: PathBuf) -> queue_suite::Outage {
    Arc::new(move |broken: bool| {
        let path = path.clone();
        Box::pin(async move {
            let (from, to) = if broken {
                ("tasker_checkpoints", "tasker_checkpoints_away")
            } else {
                ("tasker_checkpoints_away", "tasker_checkpoints")
            };
            tokio::task::spawn_blocking(move || {
                let connection = rusqlite::Connection::open(path).unwrap();
                connection.busy_timeout(Duration::from_secs(10)).unwrap();
                connection
                    .execute_batch(&format!("ALTER TABLE {from} RENAME TO {to}"))
                    .unwrap();
            })
            .await
            .unwrap();
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_write_that_fails_briefly_is_retried_before_its_step_completes() {
    let fixture = fresh().await.unwrap();
    queue_suite::a_checkpoint_write_that_fails_briefly_is_retried_before_its_step_completes(
        fixture.queue.clone(),
        checkpoint_outage(fixture.path()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_that_cannot_be_written_within_the_lease_stops_the_run() {
    let fixture = fresh().await.unwrap();
    queue_suite::a_checkpoint_that_cannot_be_written_within_the_lease_stops_the_run(
        fixture.queue.clone(),
        checkpoint_outage(fixture.path()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_queued_attempt_is_delivered_again_and_replays_its_steps() {
    let fixture = fresh().await.unwrap();
    queue_suite::a_failed_queued_attempt_is_delivered_again_and_replays_its_steps(
        fixture.queue.clone(),
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_task_that_times_out_in_every_attempt_ends_with_a_timeout() {
    let fixture = fresh().await.unwrap();
    queue_suite::a_queued_task_that_times_out_in_every_attempt_ends_with_a_timeout(
        fixture.queue.clone(),
    )
    .await;
}

/// Another connection to the fixture's file, as another process would open it.
async fn reopen(fixture: &Fixture) -> Arc<dyn Queue> {
    Arc::new(
        SqliteQueue::builder(fixture.path())
            .poll_interval(Duration::from_millis(20))
            .open()
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreported_completion_is_emitted_once_by_another_runtime() {
    let fixture = fresh().await.unwrap();
    let queues: [Arc<dyn Queue>; 3] = [
        fixture.queue.clone(),
        reopen(&fixture).await,
        reopen(&fixture).await,
    ];
    queue_suite::terminal::an_unreported_completion_is_emitted_once_by_another_runtime(queues)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_terminal_event_is_not_emitted_again() {
    let fixture = fresh().await.unwrap();
    let queues: [Arc<dyn Queue>; 2] = [fixture.queue.clone(), reopen(&fixture).await];
    queue_suite::terminal::a_reported_terminal_event_is_not_emitted_again(queues).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtimes_looking_at_once_emit_each_unreported_event_once() {
    let fixture = fresh().await.unwrap();
    let queues: [Arc<dyn Queue>; 2] = [fixture.queue.clone(), reopen(&fixture).await];
    queue_suite::terminal::runtimes_looking_at_once_emit_each_unreported_event_once(queues).await;
}

/// A first delivery's checkpoints are not read (no earlier delivery recorded any): with the
/// checkpoints table gone, where any read fails, delivery 1 still gets its recorder; delivery
/// 2 reads, and says what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_delivery_reads_no_checkpoints() {
    let fixture = fresh().await.unwrap();
    let queue = &fixture.queue;
    queue.push(queue_suite::envelope("first")).await.unwrap();
    let claim = queue
        .claim(queue_suite::LEASE, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.envelope.delivery_attempt, 1);
    let connection = rusqlite::Connection::open(fixture.path()).unwrap();
    connection
        .execute_batch("ALTER TABLE tasker_checkpoints RENAME TO tasker_checkpoints_moved")
        .unwrap();
    let task_id = claim.envelope.task_id;
    let checkpoints = queue
        .delivery_checkpoints(task_id, claim.lease, 1)
        .await
        .expect("a first delivery reads nothing")
        .expect("a durable queue keeps checkpoints");
    assert_eq!(checkpoints.recorded(0), None);
    assert_eq!(
        queue
            .delivery_checkpoints(task_id, claim.lease, 2)
            .await
            .err(),
        Some(QueueError::Backend(
            "SQLite: no such table: tasker_checkpoints".to_owned()
        ))
    );
}

/// Not a test: the cost of one claim with 1,000 and with 100,000 ready rows, printed (the
/// claim walks an index, so both should be about the same).
///
/// `cargo test --release --all-features --test queue_sqlite -- --ignored --nocapture claim_cost`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: run it with --ignored --nocapture"]
async fn claim_cost_at_1_000_and_100_000_ready_rows() {
    const CLAIMS: u32 = 500;
    for ready in [1_000_i64, 100_000] {
        let fixture = fresh().await.unwrap();
        let text = String::from_utf8(queue_suite::envelope("measured").encode()).unwrap();
        let mut connection = rusqlite::Connection::open(fixture.path()).unwrap();
        let transaction = connection.transaction().unwrap();
        transaction
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
                 INSERT INTO tasker_envelopes (queue, task_id, envelope, available_at_us,
                    enqueued_at_us)
                 SELECT ?2, 'task-' || i, ?3, i, i FROM n",
                rusqlite::params![ready, fixture.queue.name(), text],
            )
            .unwrap();
        transaction.commit().unwrap();
        // The insert's pages out of the WAL, and the claim's pages warm: the claims alone.
        connection
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        for _ in 0..50 {
            let claim = fixture
                .queue
                .claim(queue_suite::LEASE, Duration::ZERO)
                .await
                .unwrap();
            assert!(claim.is_some());
        }
        let started = std::time::Instant::now();
        for _ in 0..CLAIMS {
            let claim = fixture
                .queue
                .claim(queue_suite::LEASE, Duration::ZERO)
                .await
                .unwrap();
            assert!(claim.is_some());
        }
        let each = started.elapsed() / CLAIMS;
        println!("SQLite claim with {ready} ready rows: {each:?} per claim ({CLAIMS} claims)");
    }
}

/// Writes `event` into the file's terminal events as a worker's completion does.
fn insert_terminal(path: &std::path::Path, task_id: &str, event: rusqlite::types::Value) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute(
            "INSERT INTO tasker_terminal_events (task_id, queue, event, completed_at_us)
             VALUES (?1, 'default', ?2, 0)",
            rusqlite::params![task_id, event],
        )
        .unwrap();
}

/// A terminal-event row that does not hold text (a BLOB, not UTF-8) is warned about and
/// removed; the good row beside it is emitted, and the next look finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_terminal_event_row_is_removed_and_recovery_goes_on() {
    let fixture = fresh().await.unwrap();
    let good = queue_suite::terminal::stored_terminal(1);
    insert_terminal(&fixture.path(), "bad", vec![0x00, 0xff].into());
    insert_terminal(
        &fixture.path(),
        &good.task_id.to_string(),
        good.encode().into(),
    );
    let (emit, emitted) = queue_suite::terminal::recording_emitter(Duration::ZERO);
    let first = fixture
        .queue
        .report_unreported(Duration::from_millis(1), 10, emit.clone())
        .await;
    let second = fixture
        .queue
        .report_unreported(Duration::from_millis(1), 10, emit)
        .await;
    assert_eq!((first, second), (Ok(2), Ok(0)));
    assert_eq!(*emitted.lock().unwrap(), [good.event_id]);
    assert_eq!(fixture.queue.unreported().await, Ok(0));
}

/// Re-emitting unreported events holds no write lock while adapters run: another process's
/// push, with a 300 ms busy timeout, goes through while 20 events take 50 ms each, and each
/// is emitted once, in completion order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_holds_no_write_lock_while_it_emits() {
    let fixture = fresh().await.unwrap();
    let stored: Vec<_> = (1..=20)
        .map(queue_suite::terminal::stored_terminal)
        .collect();
    for event in &stored {
        insert_terminal(
            &fixture.path(),
            &event.task_id.to_string(),
            event.encode().into(),
        );
    }
    let other = SqliteQueue::builder(fixture.path())
        .busy_timeout(Duration::from_millis(300))
        .open()
        .await
        .unwrap();
    let (emit, emitted) = queue_suite::terminal::recording_emitter(Duration::from_millis(50));
    let queue = fixture.queue.clone();
    let recovery = tokio::spawn(async move {
        queue
            .report_unreported(Duration::from_secs(30), 100, emit)
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pushed = other.push(queue_suite::envelope("meanwhile")).await;
    // Taken by the first look until its grace ends: a second process skips them meanwhile.
    let (skip, skipped) = queue_suite::terminal::recording_emitter(Duration::ZERO);
    let second_look = other.report_unreported(Duration::ZERO, 100, skip).await;
    let recovered = tokio::time::timeout(Duration::from_secs(10), recovery)
        .await
        .expect("recovery ends within 10 s")
        .unwrap();
    assert_eq!(pushed, Ok(()));
    assert_eq!((recovered, second_look), (Ok(20), Ok(0)));
    assert!(skipped.lock().unwrap().is_empty());
    let ids: Vec<_> = stored.iter().map(|event| event.event_id).collect();
    assert_eq!(*emitted.lock().unwrap(), ids);
    assert_eq!(fixture.queue.unreported().await, Ok(0));
}
