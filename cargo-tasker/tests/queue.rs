//! `cargo tasker queue` against real queues: a SQLite file in a temporary directory and, when
//! `TASKER_TEST_DATABASE_URL` is set, PostgreSQL in a schema of its own (dropped afterwards).
//! Each test seeds its queue with the library — pushes, claims, requeues past `max_deliveries`,
//! completions, and a garbage row written straight into the table — then runs the real binary
//! and asserts its exact output.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use tasker::queue::{Completion, Envelope, PostgresQueue, Queue, SqliteQueue};

/// 2025-12-01T12:00:00Z, written as every dead row's `dead_at` so that listings are exact.
const DEAD_AT_SECONDS: i64 = 1_764_590_400;
const DEAD_AT: &str = "2025-12-01T12:00:00Z";
/// How long before the status the one ready envelope became available: "1h 0m" for a minute.
const READY_FOR_SECONDS: i64 = 3_630;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A queue to seed and the `--url` (and `--schema`) arguments that name it.
enum Store {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        url: String,
        schema: String,
    },
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Store::Postgres { url, schema } = self {
            let (url, schema) = (url.clone(), schema.clone());
            let _ = std::thread::spawn(move || {
                runtime().block_on(postgres_execute(
                    &url,
                    &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
                ))
            })
            .join();
        }
    }
}

async fn postgres_execute(url: &str, statement: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    client.batch_execute(statement).await.unwrap();
    drop(client);
    let _ = driver.await;
}

impl Store {
    fn sqlite() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        Store::Sqlite { _dir: dir, path }
    }

    fn postgres() -> Option<Store> {
        let url = match std::env::var("TASKER_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                eprintln!(
                    "skipping the PostgreSQL half: set TASKER_TEST_DATABASE_URL (for example \
                     postgres://postgres@127.0.0.1:5432/test) to run it"
                );
                return None;
            }
        };
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let schema = format!(
            "tasker_cli_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Some(Store::Postgres { url, schema })
    }

    fn url_args(&self) -> Vec<String> {
        match self {
            Store::Sqlite { path, .. } => {
                vec!["--url".into(), format!("sqlite:{}", path.display())]
            }
            Store::Postgres { url, schema } => {
                vec![
                    "--url".into(),
                    url.clone(),
                    "--schema".into(),
                    schema.clone(),
                ]
            }
        }
    }

    async fn open(&self) -> Box<dyn Queue> {
        match self {
            Store::Sqlite { path, .. } => Box::new(
                SqliteQueue::builder(path)
                    .max_deliveries(2)
                    .open()
                    .await
                    .unwrap(),
            ),
            Store::Postgres { url, schema } => {
                let queue = PostgresQueue::builder(url.clone())
                    .schema(schema.clone())
                    .max_deliveries(2)
                    .pool_size(2)
                    .listen(false)
                    .connect()
                    .await
                    .unwrap();
                queue.migrate().await.unwrap();
                Box::new(queue)
            }
        }
    }

    /// Runs `sqlite` on a SQLite store, or `postgres` (`{schema}` where the quoted schema goes)
    /// on a PostgreSQL one, in a connection of its own.
    async fn execute(&self, sqlite: &str, postgres: &str) {
        match self {
            Store::Sqlite { path, .. } => {
                let connection = rusqlite::Connection::open(path).unwrap();
                connection.execute_batch(sqlite).unwrap();
            }
            Store::Postgres { url, schema } => {
                postgres_execute(url, &postgres.replace("{schema}", &format!("\"{schema}\""))).await
            }
        }
    }

    /// What the garbage row (id 1) was buried for.
    fn garbage_reason(&self) -> &'static str {
        match self {
            Store::Sqlite { .. } => {
                "unreadable envelope: the `envelope` column holds a BLOB of 2 bytes, not text"
            }
            Store::Postgres { .. } => "malformed envelope: expected ident at line 1 column 2",
        }
    }
}

/// The seeded queue, its rows by id:
/// 1 garbage (dead), 2 `charge` A (dead), 3 `ship` B (dead), 4 `charge` F (completed, gone),
/// 5 `charge` G (failed, gone), 6 `charge` D (leased), 7 `ship` E (delayed), 8 `ship` C (ready).
struct Seeded {
    a: Envelope,
    b: Envelope,
    c: Envelope,
    f: Envelope,
    g: Envelope,
}

const LEASE: Duration = Duration::from_secs(600);

async fn claim(queue: &dyn Queue) -> tasker::queue::Claim {
    queue.claim(LEASE, Duration::ZERO).await.unwrap().unwrap()
}

/// Delivers `envelope` until it is dead (max_deliveries 2: two requeues).
async fn kill(queue: &dyn Queue, envelope: &Envelope) {
    queue.push(envelope.clone()).await.unwrap();
    for _ in 0..2 {
        let claimed = claim(queue).await;
        assert_eq!(claimed.envelope.task_id, envelope.task_id);
        queue.requeue(claimed.lease, Duration::ZERO).await.unwrap();
    }
}

async fn seed(store: &Store) -> Seeded {
    let queue = store.open().await;
    let queue = queue.as_ref();
    store
        .execute(
            "INSERT INTO tasker_envelopes (queue, task_id, envelope, available_at_us, enqueued_at_us)
             VALUES ('default', 'not-a-uuid', x'00ff', 0, 0)",
            "INSERT INTO {schema}.envelopes (queue, task_id, envelope)
             VALUES ('default', 'not-a-uuid', 'not json {')",
        )
        .await;
    let envelope = |name: &str, context: Value| Envelope::new(name, "1.0.0", context);
    let seeded = Seeded {
        a: envelope("charge", json!({"order": 1})),
        b: envelope("ship", json!({"order": 2})),
        c: envelope("ship", json!({"order": 3})),
        f: envelope("charge", json!({"order": 4})),
        g: envelope("charge", json!({"order": 5})),
    };
    // The first claim buries the garbage row and takes A.
    kill(queue, &seeded.a).await;
    kill(queue, &seeded.b).await;
    for (envelope, completion) in [
        (
            &seeded.f,
            Completion {
                succeeded: true,
                output: Some(json!({"receipt": "r-4"})),
                error: None,
            },
        ),
        (
            &seeded.g,
            Completion {
                succeeded: false,
                output: None,
                error: Some("card declined".to_owned()),
            },
        ),
    ] {
        queue.push(envelope.clone()).await.unwrap();
        let claimed = claim(queue).await;
        queue.complete(claimed.lease, &completion).await.unwrap();
    }
    queue
        .push(envelope("charge", json!({"order": 6})))
        .await
        .unwrap();
    claim(queue).await;
    queue
        .push(envelope("ship", json!({"order": 7})))
        .await
        .unwrap();
    let delayed = claim(queue).await;
    queue
        .requeue(delayed.lease, Duration::from_secs(3600))
        .await
        .unwrap();
    queue.push(seeded.c.clone()).await.unwrap();
    store
        .execute(
            &format!(
                "UPDATE tasker_envelopes SET dead_at_us = {} WHERE state = 'dead';
                 UPDATE tasker_envelopes SET available_at_us = available_at_us - {}
                    WHERE id = 8",
                DEAD_AT_SECONDS * 1_000_000,
                READY_FOR_SECONDS * 1_000_000
            ),
            &format!(
                "UPDATE {{schema}}.envelopes SET dead_at = to_timestamp({DEAD_AT_SECONDS})
                    WHERE state = 'dead';
                 UPDATE {{schema}}.envelopes
                    SET available_at = available_at - interval '{READY_FOR_SECONDS} seconds'
                    WHERE id = 8"
            ),
        )
        .await;
    seeded
}

fn cargo_tasker(store: &Store, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cargo-tasker"))
        .args(["tasker", "queue"])
        .args(store.url_args())
        .args(args)
        .output()
        .expect("cargo-tasker runs")
}

/// The command's stdout, after checking that it succeeded with nothing on stderr.
fn stdout(output: Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(stderr, "");
    String::from_utf8(output.stdout).unwrap()
}

fn json_stdout(output: Output) -> Value {
    serde_json::from_str(&stdout(output)).unwrap()
}

/// The command's stderr, after checking its exit status and that it wrote nothing on stdout.
fn failure(output: Output, code: i32) -> String {
    assert_eq!(output.status.code(), Some(code));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    String::from_utf8(output.stderr).unwrap()
}

/// Runs `check` on a seeded SQLite queue, then on a seeded PostgreSQL one.
fn on_both_backends(check: impl Fn(&Store, &Seeded, &tokio::runtime::Runtime)) {
    let runtime = runtime();
    let stores = std::iter::once(Store::sqlite()).chain(Store::postgres());
    for store in stores {
        let seeded = runtime.block_on(seed(&store));
        check(&store, &seeded, &runtime);
    }
}

#[test]
fn status_counts_by_state_and_task_and_ages_the_oldest_ready() {
    on_both_backends(|store, _, _| {
        assert_eq!(
            stdout(cargo_tasker(store, &["status"])),
            "\
queue `default`: 1 ready, 1 delayed, 1 leased, 3 dead
oldest ready envelope: available for 1h 0m

task            ready  delayed   leased     dead
charge              0        0        1        1
ship                1        1        0        1
(unreadable)        0        0        0        1
"
        );
        let mut status = json_stdout(cargo_tasker(store, &["status", "--json"]));
        let age = status["oldest_ready_age_ms"].take().as_u64().unwrap();
        assert!(
            (3_630_000..3_690_000).contains(&age),
            "oldest_ready_age_ms {age}"
        );
        assert_eq!(
            status,
            json!({
                "queue": "default",
                "counts": {"ready": 1, "delayed": 1, "leased": 1, "dead": 3},
                "oldest_ready_age_ms": null,
                "by_task": [
                    {"task_name": "charge", "ready": 0, "delayed": 0, "leased": 1, "dead": 1},
                    {"task_name": "ship", "ready": 1, "delayed": 1, "leased": 0, "dead": 1},
                    {"task_name": null, "ready": 0, "delayed": 0, "leased": 0, "dead": 1},
                ],
            })
        );
    });
}

#[test]
fn dead_letters_lists_every_dead_row_the_unreadable_one_included() {
    on_both_backends(|store, seeded, _| {
        let (a, b) = (seeded.a.task_id, seeded.b.task_id);
        let reason = store.garbage_reason();
        assert_eq!(
            stdout(cargo_tasker(store, &["dead-letters"])),
            format!(
                "\
3 dead letters in queue `default`

id  task    delivery  died at               task id                               reason
 1  ?              1  {DEAD_AT}  not-a-uuid                            {reason}
 2  charge         3  {DEAD_AT}  {a}  requeued after its last delivery
 3  ship           3  {DEAD_AT}  {b}  requeued after its last delivery
"
            )
        );
        let row = |id: i64, task_id: String, name: Value, size: usize, reason: &str, ok: bool| {
            json!({
                "id": id, "task_id": task_id, "task_name": name,
                "delivery_attempt": if id == 1 { 1 } else { 3 }, "dead_at": DEAD_AT,
                "reason": reason, "size": size, "readable": ok,
            })
        };
        let garbage_size = match store {
            Store::Sqlite { .. } => 2,
            Store::Postgres { .. } => "not json {".len(),
        };
        let dead_reason = "requeued after its last delivery";
        assert_eq!(
            json_stdout(cargo_tasker(store, &["dead-letters", "--json"])),
            json!([
                row(
                    1,
                    "not-a-uuid".into(),
                    Value::Null,
                    garbage_size,
                    reason,
                    false
                ),
                row(
                    2,
                    a.to_string(),
                    json!("charge"),
                    seeded.a.encode().len(),
                    dead_reason,
                    true
                ),
                row(
                    3,
                    b.to_string(),
                    json!("ship"),
                    seeded.b.encode().len(),
                    dead_reason,
                    true
                ),
            ])
        );
    });
}

#[test]
fn dead_letters_shows_one_in_full_envelope_or_raw_bytes() {
    on_both_backends(|store, seeded, _| {
        let mut a = seeded.a.clone();
        a.delivery_attempt = 3;
        let envelope = serde_json::to_value(&a).unwrap();
        assert_eq!(
            stdout(cargo_tasker(store, &["dead-letters", "2"])),
            format!(
                "\
dead letter 2 of queue `default`
task id:   {}
task name: charge
delivery:  3
died at:   {DEAD_AT}
reason:    requeued after its last delivery
size:      {} bytes
envelope:
{envelope:#}
",
                a.task_id,
                seeded.a.encode().len()
            )
        );
        let shown = json_stdout(cargo_tasker(store, &["dead-letters", "2", "--json"]));
        assert_eq!(shown["envelope"], envelope);
        assert_eq!(
            shown["raw"],
            json!(String::from_utf8(seeded.a.encode()).unwrap())
        );
        let (raw, stored) = match store {
            Store::Sqlite { .. } => ("\"\\0\u{fffd}\"", "the first 2 of 2 bytes"),
            Store::Postgres { .. } => ("\"not json {\"", "the first 10 of 10 bytes"),
        };
        let garbage = stdout(cargo_tasker(store, &["dead-letters", "1"]));
        assert!(
            garbage.ends_with(&format!(
                "reason:    {}\nsize:      {} bytes\nstored ({stored}; it does not decode, so it \
                 cannot be retried):\n{raw}\n",
                store.garbage_reason(),
                if matches!(store, Store::Sqlite { .. }) {
                    2
                } else {
                    10
                },
            )),
            "{garbage}"
        );
        assert_eq!(
            failure(cargo_tasker(store, &["dead-letters", "9"]), 1),
            "error: queue `default` has no dead letter with id 9: `dead_letters()` (or `cargo \
             tasker queue dead-letters`) lists the ids there are\n"
        );
    });
}

#[test]
fn retry_makes_a_dead_letter_ready_with_its_deliveries_counted_afresh() {
    on_both_backends(|store, seeded, runtime| {
        assert_eq!(
            failure(cargo_tasker(store, &["retry", "1"]), 1),
            format!(
                "error: dead letter 1 cannot be retried: {}; it can only be purged\n",
                store.garbage_reason()
            )
        );
        assert_eq!(
            failure(cargo_tasker(store, &["retry", "8"]), 1),
            "error: queue `default` has no dead letter with id 8: `dead_letters()` (or `cargo \
             tasker queue dead-letters`) lists the ids there are\n"
        );
        assert_eq!(
            stdout(cargo_tasker(store, &["retry", "2"])),
            "dead letter 2 is ready again; its deliveries count toward max_deliveries from one\n"
        );
        runtime.block_on(async {
            let queue = store.open().await;
            let queue = queue.as_ref();
            // C has waited longer; then A, on its next delivery.
            assert_eq!(claim(queue).await.envelope.task_id, seeded.c.task_id);
            let again = claim(queue).await;
            assert_eq!(
                (again.envelope.task_id, again.envelope.delivery_attempt),
                (seeded.a.task_id, 3)
            );
            // Counted afresh: one requeue under max_deliveries 2 leaves it ready, not dead.
            queue.requeue(again.lease, Duration::ZERO).await.unwrap();
        });
        assert!(stdout(cargo_tasker(store, &["status"]))
            .starts_with("queue `default`: 1 ready, 1 delayed, 2 leased, 2 dead\n"));
        assert_eq!(
            json_stdout(cargo_tasker(store, &["retry", "--all", "--json"])),
            json!({"retried": [3], "unreadable": [{"id": 1, "reason": store.garbage_reason()}]})
        );
        assert_eq!(
            stdout(cargo_tasker(store, &["retry", "--all"])),
            format!(
                "0 dead letters of queue `default` ready again; their deliveries count toward \
                 max_deliveries from one\n1 left dead: its envelope does not decode, so no \
                 worker could run it (purge it instead)\n  1: {}\n",
                store.garbage_reason()
            )
        );
    });
}

#[test]
fn purge_needs_a_scope_and_yes_and_removes_only_dead_letters() {
    on_both_backends(|store, _, _| {
        let message = failure(cargo_tasker(store, &["purge", "dead-letters"]), 2);
        assert!(
            message.starts_with(
                "error: purge removes dead letters for good: add --yes to confirm (nothing was \
                 removed; `dead-letters` lists what it would remove)\n\ncargo tasker queue:"
            ),
            "{message}"
        );
        let message = failure(cargo_tasker(store, &["purge", "--yes"]), 2);
        assert!(
            message.starts_with(
                "error: purge what? the one scope is dead letters: `purge dead-letters --yes` \
                 removes them all, `purge dead-letters ID --yes` one; ready, delayed and leased \
                 envelopes are never purged\n"
            ),
            "{message}"
        );
        let message = failure(cargo_tasker(store, &["purge", "everything", "--yes"]), 2);
        assert!(message.starts_with(
            "error: cannot purge `everything`: the one scope is `dead-letters` (ready, delayed \
             and leased envelopes are never purged)\n"
        ));
        assert_eq!(
            stdout(cargo_tasker(
                store,
                &["purge", "dead-letters", "2", "--yes"]
            )),
            "removed dead letter 2 of queue `default`\n"
        );
        assert_eq!(
            failure(
                cargo_tasker(store, &["purge", "dead-letters", "2", "--yes"]),
                1
            ),
            "error: queue `default` has no dead letter with id 2: `dead_letters()` (or `cargo \
             tasker queue dead-letters`) lists the ids there are\n"
        );
        assert_eq!(
            json_stdout(cargo_tasker(
                store,
                &["purge", "dead-letters", "--yes", "--json"]
            )),
            json!({"purged": 2})
        );
        assert_eq!(
            stdout(cargo_tasker(store, &["purge", "dead-letters", "--yes"])),
            "removed 0 dead letters of queue `default`\n"
        );
        assert!(stdout(cargo_tasker(store, &["status"]))
            .starts_with("queue `default`: 1 ready, 1 delayed, 1 leased, 0 dead\n"));
        assert_eq!(
            stdout(cargo_tasker(store, &["dead-letters"])),
            "no dead letters in queue `default`\n"
        );
    });
}

#[test]
fn result_shows_how_a_task_ended() {
    on_both_backends(|store, seeded, _| {
        let (f, g) = (seeded.f.task_id, seeded.g.task_id);
        assert_eq!(
            stdout(cargo_tasker(store, &["result", &f.to_string()])),
            format!("task {f} succeeded\noutput: {{\"receipt\":\"r-4\"}}\n")
        );
        assert_eq!(
            json_stdout(cargo_tasker(store, &["result", &g.to_string(), "--json"])),
            json!({"task_id": g.to_string(), "succeeded": false, "output": null,
                   "error": "card declined"})
        );
        assert_eq!(
            stdout(cargo_tasker(store, &["result", &g.to_string()])),
            format!("task {g} failed: card declined\n")
        );
        let c = seeded.c.task_id;
        assert_eq!(
            failure(cargo_tasker(store, &["result", &c.to_string()]), 1),
            format!(
                "error: no result for task {c}: it has not completed yet, or it did not run on \
                 this database (`status` shows what is still queued)\n"
            )
        );
    });
}

#[test]
fn bad_input_names_the_bad_value_and_what_is_valid() {
    let store = Store::sqlite();
    let cases: [(&[&str], &str); 6] = [
        (
            &["result", "order-7"],
            "error: `order-7` is not a task id: task ids are UUIDs, such as \
             0192f3c4-7b1e-7a70-8d5e-2f5c3e1a9b01 (TaskHandle::task_id(), the events' task_id)\n",
        ),
        (
            &["retry", "first"],
            "error: `first` is not a dead-letter id: ids are the integers `dead-letters` lists\n",
        ),
        (
            &["drain"],
            "error: unknown queue command `drain`: the commands are status, dead-letters, retry, \
             purge, result\n",
        ),
        (&["retry"], "error: retry which dead letters? give an ID (see `dead-letters`) or --all\n"),
        (&["status", "--verbose"], "error: unexpected option `--verbose`\n"),
        (
            &["status", "--schema", "ops"],
            "error: --schema applies to PostgreSQL only: a SQLite queue's tables have fixed names\n",
        ),
    ];
    for (args, message) in cases {
        let stderr = failure(cargo_tasker(&store, args), 2);
        assert!(
            stderr.starts_with(&format!("{message}\ncargo tasker queue:")),
            "{args:?}: {stderr}"
        );
    }
    let bad_url = Command::new(env!("CARGO_BIN_EXE_cargo-tasker"))
        .args(["tasker", "queue", "--url", "mysql://db/app", "status"])
        .output()
        .unwrap();
    assert!(failure(bad_url, 2).starts_with(
        "error: `mysql://db/app` is not a queue URL: give sqlite:PATH (a SQLite queue's file) or \
         postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE\n"
    ));
    // The file does not exist: said so, and not created.
    let Store::Sqlite { path, .. } = &store else {
        unreachable!()
    };
    assert_eq!(
        failure(cargo_tasker(&store, &["status"]), 1),
        format!(
            "error: there is no file at {}: give the path of the file your SqliteQueue opens\n",
            path.display()
        )
    );
    assert!(!path.exists());
    std::fs::write(path, "not a database").unwrap();
    let stderr = failure(cargo_tasker(&store, &["status"]), 1);
    assert!(
        stderr.starts_with(&format!(
            "error: {} is not a Tasker queue (",
            path.display()
        )),
        "{stderr}"
    );
}

#[test]
fn postgres_errors_are_operational_and_name_the_database_message() {
    let Some(store) = Store::postgres() else {
        return;
    };
    // A schema nobody migrated.
    let stderr = failure(cargo_tasker(&store, &["status"]), 1);
    assert!(
        stderr.starts_with("error: queue backend error: PostgreSQL: ERROR: relation")
            && stderr.ends_with(
                "has PostgresQueue::migrate() (or the script of migration_sql()) run on this \
                 schema?\n"
            ),
        "{stderr}"
    );
}

#[test]
fn every_command_has_help() {
    for (command, first_line) in [
        ("status", "cargo tasker queue --url URL status [--json]\n"),
        (
            "dead-letters",
            "cargo tasker queue --url URL dead-letters [ID] [--json]\n",
        ),
        (
            "retry",
            "cargo tasker queue --url URL retry (ID | --all) [--json]\n",
        ),
        (
            "purge",
            "cargo tasker queue --url URL purge dead-letters [ID] --yes [--json]\n",
        ),
        (
            "result",
            "cargo tasker queue --url URL result TASK_ID [--json]\n",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_cargo-tasker"))
            .args(["tasker", "queue", command, "--help"])
            .output()
            .unwrap();
        assert!(stdout(output).starts_with(first_line), "{command}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_cargo-tasker"))
        .args(["tasker", "queue", "--help"])
        .output()
        .unwrap();
    assert!(stdout(output)
        .starts_with("cargo tasker queue: look after a durable queue (PostgreSQL or SQLite)\n"));
}
