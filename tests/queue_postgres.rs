//! `PostgresQueue` against the machine's PostgreSQL: the shared queue behaviour, migrations,
//! dead letters, notifications, and two runtimes sharing one database.
//!
//! Needs `TASKER_TEST_DATABASE_URL` (`.ci/run` sets it to postgres://postgres@127.0.0.1:5432/test);
//! without it every test here passes after saying how to enable it. Each test works in a schema
//! of its own, dropped afterwards, so they run in parallel.

#![cfg(feature = "postgres")]

#[macro_use]
mod queue_suite;
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tasker::queue::{
    BoxFuture, Counts, DeadLetter, PostgresQueue, Queue, QueueError, RetriedDeadLetters, TaskCounts,
};

fn database_url() -> Option<String> {
    match std::env::var("TASKER_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipping the PostgreSQL queue test: set TASKER_TEST_DATABASE_URL (for example \
                 postgres://postgres@127.0.0.1:5432/test, as .ci/run does) to run it"
            );
            None
        }
    }
}

/// A queue in a schema of its own, dropped with the fixture (even when the test fails).
struct Fixture {
    queue: Arc<PostgresQueue>,
    url: String,
    schema: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Dropped inside a Tokio runtime: drop the schema from a thread with its own.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(drop_schema(&url, &schema))
        })
        .join();
    }
}

async fn drop_schema(url: &str, schema: &str) {
    if let Ok((client, connection)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        let driver = tokio::spawn(connection);
        let _ = client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                schema.replace('"', "\"\"")
            ))
            .await;
        drop(client);
        let _ = driver.await;
    }
}

fn new_schema() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "tasker_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        fastrand_suffix()
    )
}

fn fastrand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos())
}

async fn fixture_in(schema: String) -> Option<Fixture> {
    let url = database_url()?;
    let queue = PostgresQueue::builder(&url)
        .schema(&schema)
        .pool_size(4)
        .max_deliveries(queue_suite::MAX_DELIVERIES)
        .connect()
        .await
        .unwrap();
    Some(Fixture {
        queue: Arc::new(queue),
        url,
        schema,
    })
}

/// A migrated queue in a new schema.
async fn fresh() -> Option<Fixture> {
    let fixture = fixture_in(new_schema()).await?;
    fixture.queue.migrate().await.unwrap();
    Some(fixture)
}

queue_suite!(fresh);

/// Runs `statement` on the fixture's database in a connection of its own.
async fn execute(
    url: &str,
    statement: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    client.execute(statement, params).await.unwrap();
    drop(client);
    let _ = driver.await;
}

fn quoted(schema: &str) -> String {
    format!("\"{}\"", schema.replace('"', "\"\""))
}

impl queue_suite::Table for Fixture {
    fn queue(&self) -> Arc<dyn Queue> {
        self.queue.clone()
    }

    fn insert<'a>(
        &'a self,
        task_id: &'a str,
        value: &'a queue_suite::Stored,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            // A text column holds only UTF-8 text.
            let queue_suite::Stored::Text(text) = value else {
                return false;
            };
            let statement = format!(
                "INSERT INTO {}.envelopes (queue, task_id, envelope) VALUES ($1, $2, $3)",
                quoted(&self.schema)
            );
            execute(&self.url, &statement, &[&self.queue.name(), &task_id, text]).await;
            true
        })
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
async fn migrations_create_the_schema_from_nothing_and_rerun_as_no_ops() {
    let Some(fixture) = fixture_in(new_schema()).await else {
        return;
    };
    let queue = &fixture.queue;
    let error = queue
        .push(queue_suite::envelope("a"))
        .await
        .expect_err("no table before the migrations ran");
    let QueueError::Backend(message) = error else {
        panic!("{error:?}")
    };
    assert!(
        message.contains("does not exist") && message.contains("migrate()"),
        "{message}"
    );
    assert_eq!(queue.migrate().await.unwrap(), 7);
    assert_eq!(queue.migrate().await.unwrap(), 0);
    // Several processes migrating at once take turns.
    let concurrent: Vec<_> = (0..3)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move { queue.migrate().await })
        })
        .collect();
    for migration in concurrent {
        assert_eq!(migration.await.unwrap(), Ok(0));
    }
    queue.push(queue_suite::envelope("a")).await.unwrap();
    assert_eq!(
        queue.counts().await.unwrap(),
        Counts {
            ready: 1,
            ..Counts::default()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_migration_script_is_what_migrate_applies() {
    let Some(fixture) = fixture_in(new_schema()).await else {
        return;
    };
    let script = PostgresQueue::migration_sql(&fixture.schema);
    assert!(script.contains("-- migration 1: envelopes"), "{script}");
    let (client, connection) = tokio_postgres::connect(&fixture.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    client.batch_execute(&script).await.unwrap();
    client.batch_execute(&script).await.unwrap();
    drop(client);
    let _ = driver.await;
    assert_eq!(
        fixture.queue.migrate().await.unwrap(),
        0,
        "the script recorded its migrations"
    );
    fixture
        .queue
        .push(queue_suite::envelope("a"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_name_with_quotes_and_spaces_is_quoted_not_injected() {
    let schema = format!("{} \"odd\"; DROP TABLE x", new_schema());
    let Some(fixture) = fixture_in(schema).await else {
        return;
    };
    assert_eq!(fixture.queue.migrate().await.unwrap(), 7);
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
    fixture.queue.acknowledge(claim.lease).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_keep_the_envelope_and_its_deliveries() {
    let Some(fixture) = fresh().await else { return };
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
async fn a_push_from_another_process_wakes_a_waiting_claim_by_notification() {
    let Some(fixture) = fresh().await else { return };
    let url = fixture.url.clone();
    // Polling once a minute: only the notification can wake the claim in time.
    let waiting = PostgresQueue::builder(&url)
        .schema(&fixture.schema)
        .poll_interval(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let claim = waiting
            .claim(queue_suite::LEASE, Duration::from_secs(20))
            .await;
        (claim, started.elapsed())
    });
    // Let the waiter start listening.
    tokio::time::sleep(Duration::from_millis(500)).await;
    fixture
        .queue
        .push(queue_suite::envelope("notified"))
        .await
        .unwrap();
    let (claim, waited) = waiter.await.unwrap();
    assert_eq!(claim.unwrap().unwrap().envelope.task_name, "notified");
    assert!(waited < Duration::from_secs(10), "woke after {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_is_a_backend_error_with_the_reason() {
    if database_url().is_none() {
        return;
    }
    let error = PostgresQueue::connect("postgres://postgres@127.0.0.1:1/none")
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(error, QueueError::Backend(_)), "{error:?}");
    assert!(error.to_string().contains("PostgreSQL"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_on_one_database_run_every_task_once() {
    let Some(fixture) = fresh().await else { return };
    let second = PostgresQueue::builder(&fixture.url)
        .schema(&fixture.schema)
        .pool_size(4)
        .connect()
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

/// Renames the checkpoints table of the fixture's schema away (`true`) or back, from a
/// connection of its own.
fn checkpoint_outage(url: String, schema: String) -> queue_suite::Outage {
    Arc::new(move |broken: bool| {
        let (url, schema) = (url.clone(), schema.replace('"', "\"\""));
        Box::pin(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            let driver = tokio::spawn(connection);
            let (from, to) = if broken {
                ("checkpoints", "checkpoints_away")
            } else {
                ("checkpoints_away", "checkpoints")
            };
            client
                .batch_execute(&format!("ALTER TABLE \"{schema}\".{from} RENAME TO {to}"))
                .await
                .unwrap();
            drop(client);
            let _ = driver.await;
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_write_that_fails_briefly_is_retried_before_its_step_completes() {
    let Some(fixture) = fresh().await else { return };
    let outage = checkpoint_outage(fixture.url.clone(), fixture.schema.clone());
    queue_suite::a_checkpoint_write_that_fails_briefly_is_retried_before_its_step_completes(
        fixture.queue.clone(),
        outage,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_that_cannot_be_written_within_the_lease_stops_the_run() {
    let Some(fixture) = fresh().await else { return };
    let outage = checkpoint_outage(fixture.url.clone(), fixture.schema.clone());
    queue_suite::a_checkpoint_that_cannot_be_written_within_the_lease_stops_the_run(
        fixture.queue.clone(),
        outage,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_queued_attempt_is_delivered_again_and_replays_its_steps() {
    let Some(fixture) = fresh().await else { return };
    queue_suite::a_failed_queued_attempt_is_delivered_again_and_replays_its_steps(
        fixture.queue.clone(),
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_task_that_times_out_in_every_attempt_ends_with_a_timeout() {
    let Some(fixture) = fresh().await else { return };
    queue_suite::a_queued_task_that_times_out_in_every_attempt_ends_with_a_timeout(
        fixture.queue.clone(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_name_longer_than_postgres_keeps_is_refused_naming_it() {
    let schema = format!("tasker_{}", "s".repeat(57));
    assert_eq!(schema.len(), 64);
    let error = PostgresQueue::builder("postgres://postgres@127.0.0.1:1/none")
        .schema(&schema)
        .connect()
        .await
        .expect_err("64 bytes is one too many");
    assert_eq!(
        error,
        QueueError::SchemaNameTooLong {
            schema: schema.clone(),
            length: 64,
            limit: 63,
        }
    );
    assert_eq!(
        error.to_string(),
        format!(
            "the PostgreSQL schema name `{schema}` is 64 bytes long; PostgreSQL keeps at most 63 \
             bytes of a name (it would silently cut it short): choose a shorter one"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_name_is_measured_in_bytes_and_63_are_accepted() {
    let two_byte = "é".repeat(32);
    let error = PostgresQueue::builder("postgres://postgres@127.0.0.1:1/none")
        .schema(&two_byte)
        .connect()
        .await
        .expect_err("32 two-byte characters are 64 bytes");
    assert_eq!(
        error,
        QueueError::SchemaNameTooLong {
            schema: two_byte,
            length: 64,
            limit: 63,
        }
    );
    let longest = format!("{}x", "é".repeat(31));
    assert_eq!(longest.len(), 63);
    let Some(fixture) = fixture_in(longest).await else {
        return;
    };
    assert_eq!(fixture.queue.migrate().await.unwrap(), 7);
    fixture
        .queue
        .push(queue_suite::envelope("a"))
        .await
        .unwrap();
}

/// An envelope column a DBA made `bytea`: each claimed row is buried saying what the column
/// holds (no panic, no error for every claim), and `dead_letters()` lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_column_altered_to_bytea_buries_rows_instead_of_panicking() {
    let Some(fixture) = fresh().await else { return };
    let queue = &fixture.queue;
    let sent = queue_suite::envelope("altered");
    queue.push(sent.clone()).await.unwrap();
    execute(
        &fixture.url,
        &format!(
            "ALTER TABLE {}.envelopes ALTER COLUMN envelope TYPE bytea \
             USING convert_to(envelope, 'UTF8')",
            quoted(&fixture.schema)
        ),
        &[],
    )
    .await;
    assert!(queue
        .claim(queue_suite::LEASE, Duration::ZERO)
        .await
        .unwrap()
        .is_none());
    let dead = queue.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    let encoded = sent.encode();
    assert_eq!(
        dead[0].reason,
        "unreadable envelope: the `envelope` column holds a value of type bytea, not text"
    );
    assert_eq!(dead[0].task_id, sent.task_id.to_string());
    assert_eq!(
        (dead[0].raw.clone(), dead[0].size),
        (encoded.clone(), encoded.len())
    );
    assert_eq!(dead[0].envelope, None);
}

/// An envelope column a DBA made `jsonb` still holds envelopes: claims go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_column_altered_to_jsonb_is_still_read() {
    let Some(fixture) = fresh().await else { return };
    let queue = &fixture.queue;
    let sent = queue_suite::envelope("jsonb");
    queue.push(sent.clone()).await.unwrap();
    execute(
        &fixture.url,
        &format!(
            "ALTER TABLE {}.envelopes ALTER COLUMN envelope TYPE jsonb USING envelope::jsonb",
            quoted(&fixture.schema)
        ),
        &[],
    )
    .await;
    let claim = queue
        .claim(queue_suite::LEASE, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.envelope, sent);
    queue.acknowledge(claim.lease).await.unwrap();
}

/// A result column a DBA altered is a backend error naming the column, not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_column_of_another_type_is_an_error_naming_it() {
    let Some(fixture) = fresh().await else { return };
    let queue = &fixture.queue;
    let sent = queue_suite::envelope("altered");
    queue.push(sent.clone()).await.unwrap();
    let claim = queue
        .claim(queue_suite::LEASE, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let done = tasker::queue::Completion {
        succeeded: true,
        output: Some(serde_json::json!(7)),
        error: None,
    };
    queue.complete(claim.lease, &done).await.unwrap();
    execute(
        &fixture.url,
        &format!(
            "ALTER TABLE {}.results ALTER COLUMN succeeded TYPE integer \
             USING succeeded::integer",
            quoted(&fixture.schema)
        ),
        &[],
    )
    .await;
    let error = queue.result(sent.task_id).await.unwrap_err();
    assert_eq!(
        error,
        QueueError::Backend(
            "cannot read column `results.succeeded`: PostgreSQL: error deserializing column 0: \
             cannot convert between the Rust type `bool` and the Postgres type `int4`"
                .to_owned()
        )
    );
}

/// Rows enqueued before migration 5 keep their count: their deliveries so far count toward
/// `max_deliveries`, and a lease a worker of the older version held counts as a lone run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_from_before_the_isolation_migration_keep_their_deliveries() {
    let Some(fixture) = fresh().await else { return };
    let queue = &fixture.queue;
    let old = queue_suite::envelope("old");
    queue.push(old.clone()).await.unwrap();
    let (client, connection) = tokio_postgres::connect(&fixture.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    // The schema as migration 4 left it, with the envelope delivered for the last time by a
    // worker whose lease expired.
    let schema = format!("\"{}\"", fixture.schema);
    client
        .batch_execute(&format!(
            "ALTER TABLE {schema}.envelopes DROP COLUMN counted_deliveries, DROP COLUMN alone;
             DELETE FROM {schema}.migrations WHERE version = 5;
             UPDATE {schema}.envelopes SET state = 'leased', delivery_attempt = {},
                lease_id = 'old', lease_until = now() - interval '1 second'",
            queue_suite::MAX_DELIVERIES
        ))
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    assert_eq!(queue.migrate().await.unwrap(), 1);
    assert!(
        !queue.suspects_waiting().await.unwrap(),
        "its last delivery counted: nothing waits"
    );
    assert!(queue
        .claim_isolated(
            queue_suite::LEASE,
            Duration::ZERO,
            tasker::queue::Isolation::Alone
        )
        .await
        .unwrap()
        .is_none());
    let dead = queue.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].task_id, old.task_id.to_string());
    assert_eq!(dead[0].delivery_attempt, queue_suite::MAX_DELIVERIES);
}

/// Another connection pool to the fixture's schema, as another process would open it.
async fn reconnect(fixture: &Fixture) -> Arc<dyn Queue> {
    Arc::new(
        PostgresQueue::builder(&fixture.url)
            .schema(&fixture.schema)
            .pool_size(2)
            .connect()
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreported_completion_is_emitted_once_by_another_runtime() {
    let Some(fixture) = fresh().await else { return };
    let queues: [Arc<dyn Queue>; 3] = [
        fixture.queue.clone(),
        reconnect(&fixture).await,
        reconnect(&fixture).await,
    ];
    queue_suite::terminal::an_unreported_completion_is_emitted_once_by_another_runtime(queues)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_terminal_event_is_not_emitted_again() {
    let Some(fixture) = fresh().await else { return };
    let queues: [Arc<dyn Queue>; 2] = [fixture.queue.clone(), reconnect(&fixture).await];
    queue_suite::terminal::a_reported_terminal_event_is_not_emitted_again(queues).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtimes_looking_at_once_emit_each_unreported_event_once() {
    let Some(fixture) = fresh().await else { return };
    let queues: [Arc<dyn Queue>; 2] = [fixture.queue.clone(), reconnect(&fixture).await];
    queue_suite::terminal::runtimes_looking_at_once_emit_each_unreported_event_once(queues).await;
}

/// A first delivery's checkpoints are not read (no earlier delivery recorded any): with the
/// checkpoints table gone, where any read fails, delivery 1 still gets its recorder; delivery
/// 2 reads, and says what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_delivery_reads_no_checkpoints() {
    let Some(fixture) = fresh().await else { return };
    let queue = &fixture.queue;
    queue.push(queue_suite::envelope("first")).await.unwrap();
    let claim = queue
        .claim(queue_suite::LEASE, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.envelope.delivery_attempt, 1);
    let schema = quoted(&fixture.schema);
    execute(
        &fixture.url,
        &format!("ALTER TABLE {schema}.checkpoints RENAME TO checkpoints_moved"),
        &[],
    )
    .await;
    let task_id = claim.envelope.task_id;
    let checkpoints = queue
        .delivery_checkpoints(task_id, claim.lease, 1)
        .await
        .expect("a first delivery reads nothing")
        .expect("a durable queue keeps checkpoints");
    assert_eq!(checkpoints.recorded(0), None);
    let error = queue
        .delivery_checkpoints(task_id, claim.lease, 2)
        .await
        .err();
    let Some(QueueError::Backend(message)) = error else {
        panic!("{error:?}")
    };
    assert!(
        message.contains("relation") && message.contains("does not exist"),
        "{message}"
    );
}

/// Not a test: the cost of one claim with 1,000 and with 10,000 ready rows, printed (the claim
/// walks an index, so both should be about the same).
///
/// `cargo test --release --all-features --test queue_postgres -- --ignored --nocapture claim_cost`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: run it with --ignored --nocapture"]
async fn claim_cost_at_1_000_and_10_000_ready_rows() {
    const CLAIMS: u32 = 500;
    for ready in [1_000_i32, 10_000] {
        let Some(fixture) = fresh().await else { return };
        let text = String::from_utf8(queue_suite::envelope("measured").encode()).unwrap();
        execute(
            &fixture.url,
            &format!(
                "INSERT INTO {}.envelopes (queue, task_id, envelope, available_at)
                 SELECT $1, 'task-' || i, $2, now() - interval '1 hour' + i * interval '1 ms'
                 FROM generate_series(1, $3) AS i",
                quoted(&fixture.schema)
            ),
            &[&fixture.queue.name(), &text, &ready],
        )
        .await;
        execute(
            &fixture.url,
            &format!("ANALYZE {}.envelopes", quoted(&fixture.schema)),
            &[],
        )
        .await;
        // Commits that do not wait for the disk: the claim's own cost, not the flush's (on
        // a shared machine, the flush varies from 0.1 to 10 ms).
        let queue = PostgresQueue::builder(format!(
            "{}?options=-c%20synchronous_commit%3Doff",
            fixture.url
        ))
        .schema(&fixture.schema)
        .connect()
        .await
        .unwrap();
        for _ in 0..50 {
            let claim = queue
                .claim_isolated(
                    queue_suite::LEASE,
                    Duration::ZERO,
                    tasker::queue::Isolation::Shared,
                )
                .await
                .unwrap();
            assert!(claim.is_some());
        }
        let started = Instant::now();
        for _ in 0..CLAIMS {
            let claim = queue
                .claim_isolated(
                    queue_suite::LEASE,
                    Duration::ZERO,
                    tasker::queue::Isolation::Shared,
                )
                .await
                .unwrap();
            assert!(claim.is_some());
        }
        let each = started.elapsed() / CLAIMS;
        println!("PostgreSQL claim with {ready} ready rows: {each:?} per claim ({CLAIMS} claims)");
    }
}

/// Not a test: the transactions per second of one idle runtime with 8 workers, from
/// `pg_stat_database` (`xact_commit + xact_rollback`) over 10 s, in a database of its own
/// (`tasker_idle`, created if missing) so that nothing else counts.
///
/// `cargo test --release --all-features --test queue_postgres -- --ignored --nocapture idle`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: run it with --ignored --nocapture"]
async fn idle_transactions_per_second_of_8_workers() {
    let Some(url) = database_url() else { return };
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let _ = client.batch_execute("CREATE DATABASE tasker_idle").await;
    let idle_url = match url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/tasker_idle"),
        None => panic!("no database in {url}"),
    };
    let queue = PostgresQueue::builder(&idle_url)
        .schema("tasker_idle")
        .pool_size(8)
        .connect()
        .await
        .unwrap();
    queue.migrate().await.unwrap();
    let runtime = tasker::Runtime::builder()
        .workers(8)
        .queue(queue)
        .build()
        .unwrap();
    // Past the first looks, the back-off's climb and the statistics' flush delay (up to 10 s
    // for an idle connection).
    tokio::time::sleep(Duration::from_secs(30)).await;
    let transactions = || async {
        // Forces the statistics of this connection's session out; others flush on their own.
        client
            .query_one(
                "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database
                 WHERE datname = 'tasker_idle'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let before = transactions().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = transactions().await;
    println!(
        "idle runtime, 8 workers: {} transactions in 10 s, {:.1} per second",
        after - before,
        (after - before) as f64 / 10.0
    );
    runtime.shutdown().await;
    drop(client);
    let _ = driver.await;
}

/// An envelope column a DBA altered while the claim's statement was prepared on a connection:
/// the statement is prepared again and claims go on (the server refuses a prepared statement
/// whose result type changed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_column_altered_under_a_prepared_claim_is_still_read() {
    let Some(fixture) = fresh().await else { return };
    // One connection: the second claim runs where the first prepared its statement.
    let queue = PostgresQueue::builder(&fixture.url)
        .schema(&fixture.schema)
        .pool_size(1)
        .connect()
        .await
        .unwrap();
    queue.push(queue_suite::envelope("before")).await.unwrap();
    let before = queue
        .claim(queue_suite::LEASE, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before.envelope.task_name, "before");
    let sent = queue_suite::envelope("after");
    queue.push(sent.clone()).await.unwrap();
    execute(
        &fixture.url,
        &format!(
            "ALTER TABLE {}.envelopes ALTER COLUMN envelope TYPE jsonb USING envelope::jsonb",
            quoted(&fixture.schema)
        ),
        &[],
    )
    .await;
    let after = queue
        .claim(queue_suite::LEASE, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.envelope, sent);
    assert!(queue.dead_letters().await.unwrap().is_empty());
}

/// Writes `event` (text) into the schema's terminal events as a worker's completion does,
/// completed an hour ago.
async fn insert_terminal(fixture: &Fixture, task_id: &str, event: &str) {
    let s = quoted(&fixture.schema);
    execute(
        &fixture.url,
        &format!(
            "INSERT INTO {s}.terminal_events (task_id, queue, event, completed_at)
             VALUES ($1, $2, $3, now() - interval '1 hour')"
        ),
        &[&task_id, &fixture.queue.name(), &event],
    )
    .await;
}

/// A terminal_events column a DBA altered is read, not a panic: with `event` made `jsonb`, a
/// good event is emitted and a row that holds no event (`{}`) is warned about and removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_event_column_altered_to_jsonb_is_read_without_a_panic() {
    let Some(fixture) = fresh().await else { return };
    let s = quoted(&fixture.schema);
    execute(
        &fixture.url,
        &format!(
            "ALTER TABLE {s}.terminal_events ALTER COLUMN event TYPE jsonb USING event::jsonb"
        ),
        &[],
    )
    .await;
    let good = queue_suite::terminal::stored_terminal(1);
    for (task_id, event) in [
        ("bad".to_owned(), "{}".to_owned()),
        (good.task_id.to_string(), good.encode()),
    ] {
        execute(
            &fixture.url,
            &format!(
                "INSERT INTO {s}.terminal_events (task_id, queue, event, completed_at)
                 VALUES ($1, $2, $3::text::jsonb, now() - interval '1 hour')"
            ),
            &[&task_id, &fixture.queue.name(), &event],
        )
        .await;
    }
    let (emit, emitted) = queue_suite::terminal::recording_emitter(Duration::ZERO);
    let queue = fixture.queue.clone();
    let looks = tokio::spawn(async move {
        let first = queue
            .report_unreported(Duration::from_millis(1), 10, emit.clone())
            .await;
        let second = queue
            .report_unreported(Duration::from_millis(1), 10, emit)
            .await;
        (first, second)
    })
    .await
    .expect("recovery does not panic");
    assert_eq!(looks, (Ok(2), Ok(0)));
    assert_eq!(*emitted.lock().unwrap(), [good.event_id]);
    assert_eq!(fixture.queue.unreported().await, Ok(0));
}

/// Re-emitting unreported events holds no transaction open while adapters run, and the
/// events it took are skipped by another process's look meanwhile; each is emitted once, in
/// completion order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_holds_no_transaction_open_while_it_emits() {
    let Some(fixture) = fresh().await else { return };
    let stored: Vec<_> = (1..=10)
        .map(queue_suite::terminal::stored_terminal)
        .collect();
    for event in &stored {
        insert_terminal(&fixture, &event.task_id.to_string(), &event.encode()).await;
    }
    let (emit, emitted) = queue_suite::terminal::recording_emitter(Duration::from_millis(50));
    let queue = fixture.queue.clone();
    let recovery = tokio::spawn(async move {
        queue
            .report_unreported(Duration::from_secs(30), 100, emit)
            .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (client, connection) = tokio_postgres::connect(&fixture.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    // A table lock that conflicts with any row lock a transaction still holds.
    let locked = client
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {}.terminal_events IN EXCLUSIVE MODE NOWAIT; ROLLBACK",
            quoted(&fixture.schema)
        ))
        .await;
    drop(client);
    let _ = driver.await;
    let other = reconnect(&fixture).await;
    let (skip, skipped) = queue_suite::terminal::recording_emitter(Duration::ZERO);
    let second_look = other.report_unreported(Duration::ZERO, 100, skip).await;
    let recovered = tokio::time::timeout(Duration::from_secs(10), recovery)
        .await
        .expect("recovery ends within 10 s")
        .unwrap();
    assert!(
        locked.is_ok(),
        "a transaction held its rows while events were emitted: {locked:?}"
    );
    assert_eq!((recovered, second_look), (Ok(10), Ok(0)));
    assert!(skipped.lock().unwrap().is_empty());
    let ids: Vec<_> = stored.iter().map(|event| event.event_id).collect();
    assert_eq!(*emitted.lock().unwrap(), ids);
    assert_eq!(fixture.queue.unreported().await, Ok(0));
}
