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

use tasker::queue::{Counts, PostgresQueue, Queue, QueueError};

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
    assert_eq!(queue.migrate().await.unwrap(), 4);
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
    assert_eq!(fixture.queue.migrate().await.unwrap(), 4);
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
    assert_eq!(dead[0].task_id, doomed.task_id);
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
