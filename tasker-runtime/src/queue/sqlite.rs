//! A durable queue in one SQLite file (feature `sqlite`).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::envelope::now_micros;
use super::sql::{
    self, Counts, DeadLetter, RetriedDeadLetters, StoredEnvelope, TaskCounts,
    DEAD_LETTER_DECODED_BYTES, DEAD_LETTER_RAW_BYTES,
};
use super::terminal::{self, TakenRow};
use super::wait::{Attempt, ClaimWait};
use super::{
    Claim, Completion, EmitTerminal, Envelope, Isolation, LeaseId, Queue, QueueError, RunTrace,
    TerminalEvent,
};
use crate::checkpoint::{CheckpointError, Checkpoints};
use crate::runner::BoxFuture;

/// The versioned migrations, in order: `(version, name, SQL)`. Each is idempotent but the fifth
/// (SQLite has no `ADD COLUMN IF NOT EXISTS`); [`SqliteQueue::migrate`] applies each once.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "envelopes",
        "CREATE TABLE IF NOT EXISTS tasker_envelopes (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    queue            TEXT    NOT NULL,
    task_id          TEXT    NOT NULL,
    envelope         TEXT    NOT NULL,
    -- 'ready' (waiting, perhaps until available_at_us), 'leased' or 'dead'.
    state            TEXT    NOT NULL DEFAULT 'ready',
    delivery_attempt INTEGER NOT NULL DEFAULT 1,
    -- Microseconds since the Unix epoch, by the clock of the machine the processes share.
    available_at_us  INTEGER NOT NULL,
    lease_id         TEXT,
    lease_until_us   INTEGER,
    enqueued_at_us   INTEGER NOT NULL,
    dead_at_us       INTEGER,
    last_error       TEXT
);
CREATE INDEX IF NOT EXISTS tasker_envelopes_next
    ON tasker_envelopes (queue, state, available_at_us, id);
CREATE UNIQUE INDEX IF NOT EXISTS tasker_envelopes_lease_id
    ON tasker_envelopes (lease_id) WHERE lease_id IS NOT NULL;",
    ),
    (
        2,
        "checkpoints",
        "CREATE TABLE IF NOT EXISTS tasker_checkpoints (
    task_id        TEXT    NOT NULL,
    position       INTEGER NOT NULL,
    step           TEXT    NOT NULL,
    output         TEXT    NOT NULL,
    recorded_at_us INTEGER NOT NULL,
    PRIMARY KEY (task_id, position)
);",
    ),
    (
        3,
        "results",
        "CREATE TABLE IF NOT EXISTS tasker_results (
    task_id         TEXT    PRIMARY KEY,
    succeeded       INTEGER NOT NULL,
    output          TEXT,
    error           TEXT,
    completed_at_us INTEGER NOT NULL
);",
    ),
    (
        4,
        "runs",
        "CREATE TABLE IF NOT EXISTS tasker_runs (
    -- The latest delivery of an unfinished task whose run recorded its trace context.
    task_id          TEXT    PRIMARY KEY,
    delivery_attempt INTEGER NOT NULL,
    trace            TEXT    NOT NULL,
    recorded_at_us   INTEGER NOT NULL
);",
    ),
    (
        5,
        "isolation",
        "-- Deliveries that count toward max_deliveries: not one whose lease expired while its
-- process ran other tasks too (the crash may not have been its own).
ALTER TABLE tasker_envelopes ADD COLUMN counted_deliveries INTEGER NOT NULL DEFAULT 1;
-- Not again when the printed script is re-run (its ALTERs then fail, and it goes on).
UPDATE tasker_envelopes SET counted_deliveries = delivery_attempt
    WHERE NOT EXISTS (SELECT 1 FROM tasker_migrations WHERE version = 5);
-- Whether the current lease's run is alone in its process.
ALTER TABLE tasker_envelopes ADD COLUMN alone INTEGER NOT NULL DEFAULT 1;",
    ),
    (
        6,
        "terminal_events",
        "CREATE TABLE IF NOT EXISTS tasker_terminal_events (
    -- A completion's terminal event, from its commit until it is reported (then the row goes).
    task_id         TEXT    PRIMARY KEY,
    queue           TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    completed_at_us INTEGER NOT NULL,
    -- Until when a recovering process has taken it to emit it (others skip it meanwhile).
    taken_until_us  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tasker_terminal_events_due
    ON tasker_terminal_events (queue, completed_at_us);",
    ),
    (
        7,
        "claim_order",
        "-- Expired leases in the order a claimer that runs alone takes them, so that a claim walks
-- an index instead of sorting (ready rows walk tasker_envelopes_next).
CREATE INDEX IF NOT EXISTS tasker_envelopes_expiring
    ON tasker_envelopes (queue, lease_until_us, id) WHERE state = 'leased';",
    ),
];

/// The next ready envelope (`?1` the queue, `?2` now), walking `tasker_envelopes_next` in
/// order. The claim's queries are apart so that each walks an index: an `OR` of ready rows and
/// expired leases would sort every ready row at each claim.
const CLAIM_READY: &str = "SELECT id, envelope, state, delivery_attempt, task_id
    FROM tasker_envelopes
    WHERE queue = ?1 AND state = 'ready' AND available_at_us <= ?2
    ORDER BY available_at_us, id LIMIT 1";

/// The next suspect, for a claimer that runs alone (`?1` the queue, `?2` max deliveries, `?3`
/// now): an expired lease that may be delivered again, walking `tasker_envelopes_expiring`.
const CLAIM_EXPIRED: &str = "SELECT id, envelope, state, delivery_attempt, task_id
    FROM tasker_envelopes
    WHERE queue = ?1 AND state = 'leased' AND lease_until_us <= ?3
        AND (counted_deliveries < ?2 OR NOT alone)
    ORDER BY lease_until_us, id LIMIT 1";

/// When the next envelope is ready or — for a claimer that runs alone (`?2`) — the next lease
/// ends (`i64::MAX` for neither): the first entry of each index.
const NEXT_DUE: &str = "SELECT min(
    coalesce((SELECT available_at_us FROM tasker_envelopes
        WHERE queue = ?1 AND state = 'ready'
        ORDER BY available_at_us LIMIT 1), 9223372036854775807),
    coalesce((SELECT lease_until_us FROM tasker_envelopes
        WHERE ?2 AND queue = ?1 AND state = 'leased'
        ORDER BY lease_until_us LIMIT 1), 9223372036854775807))";

const CREATE_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS tasker_migrations (
    version       INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    applied_at_us INTEGER NOT NULL
)";

/// Configures a [`SqliteQueue`]; made by [`SqliteQueue::builder`].
#[derive(Debug, Clone)]
pub struct SqliteQueueBuilder {
    path: PathBuf,
    name: String,
    max_deliveries: u32,
    poll_interval: Duration,
    busy_timeout: Duration,
}

impl SqliteQueueBuilder {
    /// The queue's name (default `default`): several queues can share one file, and events'
    /// `task.enqueue` carry it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How many times an envelope is delivered at most (default 10): one that would be delivered
    /// again after that — requeued, or its lease expired — goes to the dead-letter state instead.
    /// A delivery whose lease expired while its process ran other tasks too does not count (see
    /// [`Isolation`]).
    pub fn max_deliveries(mut self, deliveries: u32) -> Self {
        self.max_deliveries = deliveries.max(1);
        self
    }

    /// How often, at most, waiting claims look at the file for work another process pushed
    /// (default 100 ms): idle, they look more and more rarely up to this interval, one look for
    /// all of them. Each push or requeue in this process wakes one waiting claim at once.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long an operation waits for another process's write to finish (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Opens (or creates) the file, in WAL mode, and applies the migrations it lacks.
    pub async fn open(self) -> Result<SqliteQueue, QueueError> {
        let SqliteQueueBuilder {
            path,
            name,
            max_deliveries,
            poll_interval,
            busy_timeout,
        } = self;
        let connection = blocking(move || {
            let connection = Connection::open(&path)?;
            connection.busy_timeout(busy_timeout)?;
            connection.pragma_update(None, "journal_mode", "WAL")?;
            connection.pragma_update(None, "synchronous", "NORMAL")?;
            Ok(connection)
        })
        .await?;
        let queue = SqliteQueue {
            name,
            connection: Arc::new(Mutex::new(connection)),
            max_deliveries: i64::from(max_deliveries),
            poll_interval,
            waiting: Arc::new(ClaimWait::new(Some(poll_interval))),
        };
        queue.migrate().await?;
        Ok(queue)
    }
}

/// A durable queue in one SQLite file, shared by the producers and workers of several processes
/// on one machine.
///
/// Envelopes are rows of `tasker_envelopes`. Claims run in `BEGIN IMMEDIATE` transactions (one
/// writer at a time, across processes; WAL mode lets readers go on) and lease the oldest available
/// row, recording the lease id and its end. A lease that ends unrenewed makes the row claimable
/// again by a claimer that runs alone ([`Isolation`]), as its next delivery; after
/// [`max_deliveries`] counted deliveries it goes to the dead-letter state instead. Waiting
/// claims poll; a push in the same process wakes them at once. Every operation runs on Tokio's
/// blocking threads.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use tasker::queue::{Envelope, Queue, SqliteQueue};
/// let dir = std::env::temp_dir().join(format!("tasker-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let queue = SqliteQueue::open(dir.join("queue.db")).await.unwrap();
/// queue.push(Envelope::new("t", "1", serde_json::Value::Null)).await.unwrap();
/// let claim = queue.claim(Duration::from_secs(30), Duration::ZERO).await.unwrap().unwrap();
/// queue.acknowledge(claim.lease).await.unwrap();
/// # drop(queue);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # });
/// ```
///
/// A `SqliteQueue` is a cheap handle: clones share the connection, so a program can keep one for
/// enqueueing and give another to a [`Runtime`](crate::Runtime).
///
/// [`max_deliveries`]: SqliteQueueBuilder::max_deliveries
#[derive(Clone)]
pub struct SqliteQueue {
    name: String,
    connection: Arc<Mutex<Connection>>,
    max_deliveries: i64,
    poll_interval: Duration,
    /// Waiting claims: woken one per task pushed or requeued here, polling with a back-off
    /// for the other processes' pushes.
    waiting: Arc<ClaimWait>,
}

impl std::fmt::Debug for SqliteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteQueue")
            .field("name", &self.name)
            .field("max_deliveries", &self.max_deliveries)
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

impl SqliteQueue {
    /// A builder for a queue in the file at `path`.
    pub fn builder(path: impl AsRef<Path>) -> SqliteQueueBuilder {
        SqliteQueueBuilder {
            path: path.as_ref().to_owned(),
            name: "default".to_owned(),
            max_deliveries: 10,
            poll_interval: Duration::from_millis(100),
            busy_timeout: Duration::from_secs(5),
        }
    }

    /// Opens (or creates) the queue in the file at `path` with the defaults.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, QueueError> {
        Self::builder(path).open().await
    }

    /// Applies the migrations the file lacks, in one transaction, and returns how many it applied
    /// (`0` when it is up to date). [`open`](Self::open) runs it.
    pub async fn migrate(&self) -> Result<u32, QueueError> {
        self.with(|connection| {
            let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            transaction.execute_batch(CREATE_MIGRATIONS)?;
            let mut count = 0;
            for (version, name, migration) in MIGRATIONS {
                let applied: bool = transaction.query_row(
                    "SELECT EXISTS (SELECT 1 FROM tasker_migrations WHERE version = ?1)",
                    [version],
                    |row| row.get(0),
                )?;
                if applied {
                    continue;
                }
                transaction.execute_batch(migration)?;
                transaction.execute(
                    "INSERT INTO tasker_migrations (version, name, applied_at_us) VALUES (?1, ?2, ?3)",
                    params![version, name, micros_now()],
                )?;
                count += 1;
            }
            transaction.commit()?;
            Ok(count)
        })
        .await
    }

    /// The migrations as one SQL script, to review or to run by hand. Running it again over a
    /// migrated file changes no row: migration 5's two `ALTER TABLE … ADD COLUMN` statements
    /// fail (their columns exist), which the sqlite3 CLI reports and goes on from, and the rest
    /// is guarded (`IF NOT EXISTS`, `INSERT OR IGNORE`, an `UPDATE` that runs only while
    /// migration 5 is not recorded).
    pub fn migration_sql() -> String {
        let mut script = format!("BEGIN IMMEDIATE;\n{CREATE_MIGRATIONS};\n");
        for (version, name, migration) in MIGRATIONS {
            script.push_str(&format!(
                "-- migration {version}: {name}\n{migration}\nINSERT OR IGNORE INTO tasker_migrations \
                 (version, name, applied_at_us) VALUES ({version}, '{name}', 0);\n"
            ));
        }
        script.push_str("COMMIT;\n");
        script
    }

    /// Every row of this queue in the dead-letter state, oldest first: envelopes delivered as
    /// many times as allowed, and rows no worker could read, each with why it was set aside
    /// and the start of what it holds (an envelope over [`DEAD_LETTER_DECODED_BYTES`] is not
    /// read whole). [`dead_letters_page`](Self::dead_letters_page) lists them a page at a time.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError> {
        self.dead_letters_page(0, usize::MAX).await
    }

    /// At most `limit` dead rows of this queue whose id is greater than `after_id`, oldest
    /// first, as [`dead_letters`](Self::dead_letters) lists them: pass the last id of a page
    /// (or `0`) to read the next.
    pub async fn dead_letters_page(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let name = self.name.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (decoded, raw) = (
            i64::try_from(DEAD_LETTER_DECODED_BYTES).unwrap_or(i64::MAX),
            i64::try_from(DEAD_LETTER_RAW_BYTES).unwrap_or(i64::MAX),
        );
        self.with(move |connection| {
            // A large envelope's start and size only, measured in bytes (a BLOB cast), whatever
            // the column holds.
            let mut statement = connection.prepare(
                "SELECT id, task_id,
                    CASE WHEN length(CAST(envelope AS BLOB)) <= ?4 THEN envelope
                         ELSE substr(CAST(envelope AS BLOB), 1, ?5) END,
                    last_error, delivery_attempt, dead_at_us,
                    length(CAST(envelope AS BLOB)), typeof(envelope)
                 FROM tasker_envelopes WHERE queue = ?1 AND state = 'dead' AND id > ?2
                 ORDER BY id LIMIT ?3",
            )?;
            let rows =
                statement.query_map(params![name, after_id, limit, decoded, raw], |row| {
                    // Every column as whatever it holds: this lists exactly the rows that hold
                    // something unexpected.
                    let text = |index: usize| -> rusqlite::Result<Option<String>> {
                        Ok(match row.get_ref(index)? {
                            ValueRef::Null => None,
                            value => {
                                Some(String::from_utf8_lossy(stored(value).bytes()).into_owned())
                            }
                        })
                    };
                    let integer = |index: usize| -> rusqlite::Result<Option<i64>> {
                        Ok(match row.get_ref(index)? {
                            ValueRef::Integer(value) => Some(value),
                            _ => None,
                        })
                    };
                    let envelope = match (row.get_ref(2)?, row.get_ref(7)?) {
                        // The start of text, cut as bytes.
                        (ValueRef::Blob(bytes), ValueRef::Text(b"text")) => {
                            StoredEnvelope::Text(bytes)
                        }
                        (value, _) => stored(value),
                    };
                    let dead = sql::DeadRow {
                        id: row.get(0)?,
                        task_id: text(1)?.unwrap_or_default(),
                        size: integer(6)?.map_or(0, |size| usize::try_from(size).unwrap_or(0)),
                        envelope,
                        reason: text(3)?,
                        delivery_attempt: integer(4)?.unwrap_or(1),
                        dead_at: integer(5)?.map(|micros| {
                            UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).unwrap_or(0))
                        }),
                    };
                    Ok(dead.into_dead_letter())
                })?;
            rows.collect()
        })
        .await
    }

    /// How task `task_id` ended, once a worker completed it.
    pub async fn result(&self, task_id: uuid::Uuid) -> Result<Option<Completion>, QueueError> {
        let task = task_id.to_string();
        let row: Option<(bool, Option<String>, Option<String>)> = self
            .with(move |connection| {
                connection
                    .query_row(
                        "SELECT succeeded, output, error FROM tasker_results WHERE task_id = ?1",
                        params![task],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                    )
                    .optional()
            })
            .await?;
        Ok(row.map(|(succeeded, output, error)| Completion {
            succeeded,
            output: output.and_then(|text| serde_json::from_str(&text).ok()),
            error,
        }))
    }

    /// How many completed tasks of this queue have a terminal event that was not reported yet
    /// (emitted and not yet marked, or left by a worker that died before emitting it).
    pub async fn unreported(&self) -> Result<u64, QueueError> {
        let name = self.name.clone();
        let count: i64 = self
            .with(move |connection| {
                connection.query_row(
                    "SELECT count(*) FROM tasker_terminal_events WHERE queue = ?1",
                    [name],
                    |row| row.get(0),
                )
            })
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// How many envelopes of this queue are in each state.
    pub async fn counts(&self) -> Result<Counts, QueueError> {
        let name = self.name.clone();
        self.with(move |connection| {
            connection.query_row(
                "SELECT
                    coalesce(sum(state = 'ready' AND available_at_us <= ?2), 0),
                    coalesce(sum(state = 'ready' AND available_at_us > ?2), 0),
                    coalesce(sum(state = 'leased'), 0),
                    coalesce(sum(state = 'dead'), 0)
                 FROM tasker_envelopes WHERE queue = ?1",
                params![name, micros_now()],
                |row| {
                    let count = |index: usize| -> rusqlite::Result<u64> {
                        Ok(u64::try_from(row.get::<_, i64>(index)?).unwrap_or(0))
                    };
                    Ok(Counts {
                        ready: count(0)?,
                        delayed: count(1)?,
                        leased: count(2)?,
                        dead: count(3)?,
                    })
                },
            )
        })
        .await
    }

    /// Runs `operation` on the connection, on a blocking thread.
    async fn with<T, F>(&self, operation: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let connection = self.connection.clone();
        blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|e| e.into_inner());
            operation(&mut connection)
        })
        .await
    }

    /// Claims up to `wanted` available envelopes in one transaction, or says how long until
    /// one may be due.
    async fn try_claim(
        &self,
        wanted: usize,
        lease: Duration,
        isolation: Isolation,
    ) -> Result<Result<Vec<Claim>, Option<Duration>>, QueueError> {
        let alone = isolation == Isolation::Alone;
        let name = self.name.clone();
        let max = self.max_deliveries;
        let lease_micros = micros(lease);
        self.with(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = micros_now();
            transaction.execute(
                "UPDATE tasker_envelopes SET state = 'dead', dead_at_us = ?3, lease_id = NULL,
                    lease_until_us = NULL, last_error = 'its last lease expired'
                 WHERE queue = ?1 AND state = 'leased' AND lease_until_us <= ?3
                    AND alone AND counted_deliveries >= ?2",
                params![name, max, now],
            )?;
            let mut claims = Vec::new();
            let claimed = loop {
                if claims.len() >= wanted {
                    break Ok(claims);
                }
                // Read without assuming the columns' types: a row that does not hold an
                // envelope is buried below instead of failing every claim. Each query walks
                // an index in order; a claimer that runs alone takes a suspect first.
                let read_row =
                    |row: &rusqlite::Row<'_>| Ok((row.get(0)?, row.get(2)?, read_claimed(row)));
                let mut next: Option<(i64, String, Claimed)> = None;
                if alone {
                    next = transaction
                        .prepare_cached(CLAIM_EXPIRED)?
                        .query_row(params![name, max, now], read_row)
                        .optional()?;
                }
                if next.is_none() {
                    next = transaction
                        .prepare_cached(CLAIM_READY)?
                        .query_row(params![name, now], read_row)
                        .optional()?;
                }
                let Some((id, state, read)) = next else {
                    if !claims.is_empty() {
                        break Ok(claims);
                    }
                    let due: Option<i64> = transaction
                        .prepare_cached(NEXT_DUE)?
                        .query_row(params![&name, alone], |row| row.get(0))?;
                    let due = due.filter(|due| *due != i64::MAX);
                    break Err(
                        due.map(|due| Duration::from_micros(u64::try_from(due - now).unwrap_or(0)))
                    );
                };
                match read {
                    Ok((mut envelope, attempt, task_id)) => {
                        let attempt = if state == "leased" {
                            attempt + 1
                        } else {
                            attempt
                        };
                        let lease_id = LeaseId(crate::ids::new_id().as_u128());
                        transaction.execute(
                            // An expired lease counts only if its run was alone.
                            "UPDATE tasker_envelopes SET state = 'leased', lease_id = ?2,
                                lease_until_us = ?3, delivery_attempt = ?4,
                                counted_deliveries = counted_deliveries
                                    + (state = 'leased' AND alone),
                                alone = ?5
                             WHERE id = ?1",
                            params![
                                id,
                                sql::lease_text(lease_id),
                                now.saturating_add(lease_micros),
                                attempt,
                                alone
                            ],
                        )?;
                        envelope.delivery_attempt = delivery(attempt);
                        // Only a task delivered before can have a recorded run.
                        let previous_run = if attempt > 1 {
                            transaction
                                .query_row(
                                    "SELECT trace FROM tasker_runs WHERE task_id = ?1",
                                    [&task_id],
                                    |row| row.get::<_, String>(0),
                                )
                                .optional()?
                                .and_then(|trace| serde_json::from_str::<RunTrace>(&trace).ok())
                        } else {
                            None
                        };
                        claims.push(Claim {
                            envelope,
                            lease: lease_id,
                            previous_run,
                        });
                    }
                    Err(reason) => {
                        // A row no worker can read would only come back again: bury it.
                        transaction.execute(
                            "UPDATE tasker_envelopes SET state = 'dead', dead_at_us = ?2,
                                lease_id = NULL, lease_until_us = NULL, last_error = ?3
                             WHERE id = ?1",
                            params![id, now, reason],
                        )?;
                    }
                }
            };
            transaction.commit()?;
            Ok(claimed)
        })
        .await
    }

    /// Runs `statement` on the row of `lease` if the lease is still held; `LeaseLost` if not.
    async fn on_held<P>(
        &self,
        lease: LeaseId,
        statement: &'static str,
        params: P,
    ) -> Result<(), QueueError>
    where
        P: FnOnce(String, i64) -> Vec<rusqlite::types::Value> + Send + 'static,
    {
        let updated = self
            .with(move |connection| {
                let values = params(sql::lease_text(lease), micros_now());
                connection.execute(statement, rusqlite::params_from_iter(values))
            })
            .await?;
        match updated {
            0 => Err(QueueError::LeaseLost(lease)),
            _ => Ok(()),
        }
    }

    /// How many envelopes of this queue are in each state, by task name, sorted by name: the
    /// `task_name` of each stored envelope that is JSON text; rows whose envelope is not (a
    /// BLOB, truncated JSON) or names no task are one group, `None`, last. (PostgreSQL's reads
    /// the name from truncated JSON too.)
    pub async fn counts_by_task(&self) -> Result<Vec<TaskCounts>, QueueError> {
        let name = self.name.clone();
        let rows = self
            .with(move |connection| {
                // `typeof` first: SQLite reads a BLOB given to its JSON functions as JSONB.
                let mut statement = connection.prepare(
                    "SELECT
                        CASE WHEN typeof(envelope) = 'text' AND json_valid(envelope)
                            THEN json_extract(envelope, '$.task_name') END AS task_name,
                        coalesce(sum(state = 'ready' AND available_at_us <= ?2), 0),
                        coalesce(sum(state = 'ready' AND available_at_us > ?2), 0),
                        coalesce(sum(state = 'leased'), 0),
                        coalesce(sum(state = 'dead'), 0)
                     FROM tasker_envelopes WHERE queue = ?1 GROUP BY 1",
                )?;
                let rows = statement.query_map(params![name, micros_now()], |row| {
                    let task_name = match row.get_ref(0)? {
                        ValueRef::Text(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
                        _ => None,
                    };
                    let count = |index: usize| -> rusqlite::Result<u64> {
                        Ok(u64::try_from(row.get::<_, i64>(index)?).unwrap_or(0))
                    };
                    let counts = Counts {
                        ready: count(1)?,
                        delayed: count(2)?,
                        leased: count(3)?,
                        dead: count(4)?,
                    };
                    Ok((task_name, counts))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        Ok(sql::group_by_task(rows))
    }

    /// How long the oldest envelope of this queue that is ready now has been available (since
    /// it was pushed, or since the delay it was requeued with passed); `None` when none is
    /// ready.
    pub async fn oldest_ready_age(&self) -> Result<Option<Duration>, QueueError> {
        let name = self.name.clone();
        self.with(move |connection| {
            let now = micros_now();
            let oldest: Option<i64> = connection.query_row(
                "SELECT min(available_at_us) FROM tasker_envelopes
                 WHERE queue = ?1 AND state = 'ready' AND available_at_us <= ?2",
                params![name, now],
                |row| row.get(0),
            )?;
            Ok(oldest.map(|oldest| {
                Duration::from_micros(u64::try_from(now.saturating_sub(oldest)).unwrap_or(0))
            }))
        })
        .await
    }

    /// Makes dead letter `id` ready again, now: its counted deliveries (what counts toward
    /// `max_deliveries`) start again from one; its checkpoints stay, so the steps it completed
    /// are replayed. Refused with [`QueueError::NoSuchDeadLetter`] when the queue has no dead
    /// row `id`, and with [`QueueError::UnreadableDeadLetter`] when its envelope does not
    /// decode (no worker could run it).
    pub async fn retry_dead_letter(&self, id: i64) -> Result<(), QueueError> {
        let name = self.name.clone();
        self.with(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let read: Option<Result<Envelope, String>> = transaction
                .query_row(
                    "SELECT envelope FROM tasker_envelopes
                     WHERE id = ?1 AND queue = ?2 AND state = 'dead'",
                    params![id, name],
                    |row| Ok(stored(row.get_ref(0)?).decode()),
                )
                .optional()?;
            let refusal = match read {
                None => Some(QueueError::NoSuchDeadLetter { queue: name, id }),
                Some(Err(reason)) => Some(QueueError::UnreadableDeadLetter { id, reason }),
                Some(Ok(_)) => {
                    transaction.execute(REVIVE, params![id, micros_now()])?;
                    None
                }
            };
            transaction.commit()?;
            Ok(refusal)
        })
        .await?
        .map_or(Ok(()), Err)?;
        self.waiting.wake(1);
        Ok(())
    }

    /// Makes every dead letter of this queue whose envelope decodes ready again, as
    /// [`retry_dead_letter`](Self::retry_dead_letter) does one, in one transaction; the others
    /// stay dead and are listed with what is wrong with them.
    pub async fn retry_dead_letters(&self) -> Result<RetriedDeadLetters, QueueError> {
        let name = self.name.clone();
        let report = self
            .with(move |connection| {
                let transaction =
                    connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let rows: Vec<(i64, Result<Envelope, String>)> = {
                    let mut statement = transaction.prepare(
                        "SELECT id, envelope FROM tasker_envelopes
                         WHERE queue = ?1 AND state = 'dead' ORDER BY id",
                    )?;
                    let rows = statement.query_map([&name], |row| {
                        Ok((row.get(0)?, stored(row.get_ref(1)?).decode()))
                    })?;
                    rows.collect::<rusqlite::Result<_>>()?
                };
                let mut report = RetriedDeadLetters::default();
                let now = micros_now();
                for (id, read) in rows {
                    match read {
                        Ok(_) => {
                            transaction.execute(REVIVE, params![id, now])?;
                            report.retried.push(id);
                        }
                        Err(reason) => report.unreadable.push((id, reason)),
                    }
                }
                transaction.commit()?;
                Ok(report)
            })
            .await?;
        self.waiting.wake(report.retried.len());
        Ok(report)
    }

    /// Removes dead letter `id` for good, with its task's checkpoints and run record.
    /// [`QueueError::NoSuchDeadLetter`] when the queue has no dead row `id`.
    pub async fn purge_dead_letter(&self, id: i64) -> Result<(), QueueError> {
        let name = self.name.clone();
        let removed = self
            .with(move |connection| {
                purge_dead(connection, "id = ?2 AND queue = ?1", params![name, id])
            })
            .await?;
        match removed {
            0 => Err(QueueError::NoSuchDeadLetter {
                queue: self.name.clone(),
                id,
            }),
            _ => Ok(()),
        }
    }

    /// Removes every dead letter of this queue for good, with their tasks' checkpoints and run
    /// records, and returns how many it removed. Ready, delayed and leased envelopes stay.
    pub async fn purge_dead_letters(&self) -> Result<u64, QueueError> {
        let name = self.name.clone();
        let removed = self
            .with(move |connection| purge_dead(connection, "queue = ?1", params![name]))
            .await?;
        Ok(u64::try_from(removed).unwrap_or(0))
    }
}

/// Matches the row of a lease that is still held: `?1` the lease id, `?2` now.
macro_rules! held {
    () => {
        "lease_id = ?1 AND state = 'leased' AND lease_until_us > ?2"
    };
}

impl SqliteQueue {
    /// Hands a claimed envelope out again after `delay`, for `task_attempt` when given: one
    /// statement for requeues and task retries, so both count deliveries the same way.
    async fn put_back(
        &self,
        lease: LeaseId,
        delay: Duration,
        task_attempt: Option<u32>,
    ) -> Result<(), QueueError> {
        let (delay, max) = (micros(delay), self.max_deliveries);
        let task_attempt = task_attempt.map(i64::from);
        self.on_held(
            lease,
            concat!(
                "UPDATE tasker_envelopes SET
                    envelope = CASE WHEN ?5 IS NULL THEN envelope
                        ELSE json_set(envelope, '$.task_attempt', ?5) END,
                    delivery_attempt = delivery_attempt + 1,
                    counted_deliveries = counted_deliveries + 1,
                    state = CASE WHEN counted_deliveries + 1 > ?4 THEN 'dead' ELSE 'ready' END,
                    dead_at_us = CASE WHEN counted_deliveries + 1 > ?4 THEN ?2 END,
                    last_error = CASE WHEN counted_deliveries + 1 > ?4
                        THEN 'requeued after its last delivery' END,
                    available_at_us = ?2 + ?3,
                    lease_id = NULL, lease_until_us = NULL
                 WHERE ",
                held!()
            ),
            move |lease, now| {
                vec![
                    lease.into(),
                    now.into(),
                    delay.into(),
                    max.into(),
                    task_attempt.into(),
                ]
            },
        )
        .await?;
        self.waiting.wake(1);
        Ok(())
    }
}

/// The checkpoints of one task run in the queue's file, recorded while its lease is held.
struct SqliteCheckpoints {
    connection: Arc<Mutex<Connection>>,
    lease: LeaseId,
    recorded: std::collections::HashMap<u32, serde_json::Value>,
}

impl Checkpoints for SqliteCheckpoints {
    fn recorded(&self, position: u32) -> Option<serde_json::Value> {
        self.recorded.get(&position).cloned()
    }

    fn record(
        &self,
        position: u32,
        step: &'static str,
        output: serde_json::Value,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), CheckpointError>> + Send + 'static>,
    > {
        let connection = self.connection.clone();
        let lease = sql::lease_text(self.lease);
        Box::pin(async move {
            let stored = blocking(move || {
                let mut connection = connection.lock().unwrap_or_else(|e| e.into_inner());
                let transaction =
                    connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = micros_now();
                // Only while the lease is held: once another delivery may run the task, this
                // one's steps must not count as completed.
                let task_id: Option<String> = transaction
                    .query_row(
                        concat!("SELECT task_id FROM tasker_envelopes WHERE ", held!()),
                        params![lease, now],
                        |row| row.get(0),
                    )
                    .optional()?;
                let Some(task_id) = task_id else {
                    return Ok(false);
                };
                transaction.execute(
                    "INSERT OR IGNORE INTO tasker_checkpoints
                        (task_id, position, step, output, recorded_at_us)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![task_id, i64::from(position), step, output.to_string(), now],
                )?;
                transaction.commit()?;
                Ok(true)
            })
            .await;
            match stored {
                Ok(true) => Ok(()),
                Ok(false) => Err(CheckpointError::LeaseLost),
                Err(error) => Err(CheckpointError::Backend(error.to_string())),
            }
        })
    }
}

impl Queue for SqliteQueue {
    fn name(&self) -> &str {
        &self.name
    }

    fn push(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let name = self.name.clone();
            self.with(move |connection| {
                let now = micros_now();
                let text = String::from_utf8_lossy(&envelope.encode()).into_owned();
                connection.execute(
                    "INSERT INTO tasker_envelopes
                        (queue, task_id, envelope, delivery_attempt, available_at_us, enqueued_at_us)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    params![
                        name,
                        envelope.task_id.to_string(),
                        text,
                        i64::from(envelope.delivery_attempt),
                        now
                    ],
                )
            })
            .await?;
            self.waiting.wake(1);
            Ok(())
        })
    }

    fn claim(
        &self,
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Option<Claim>, QueueError>> {
        self.claim_isolated(lease, wait, Isolation::Alone)
    }

    fn claim_isolated(
        &self,
        lease: Duration,
        wait: Duration,
        isolation: Isolation,
    ) -> BoxFuture<'_, Result<Option<Claim>, QueueError>> {
        Box::pin(async move {
            let claims = self.claim_batch(1, lease, wait, isolation).await?;
            Ok(claims.into_iter().next())
        })
    }

    fn claim_batch(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
        isolation: Isolation,
    ) -> BoxFuture<'_, Result<Vec<Claim>, QueueError>> {
        Box::pin(async move {
            if max == 0 {
                return Ok(Vec::new());
            }
            let claims = self
                .waiting
                .claim(wait, move |_| async move {
                    Ok(match self.try_claim(max, lease, isolation).await? {
                        Ok(claims) => Attempt::Claimed(claims),
                        Err(due) => Attempt::Empty { due },
                    })
                })
                .await?;
            Ok(claims.unwrap_or_default())
        })
    }

    fn suspects_waiting(&self) -> BoxFuture<'_, Result<bool, QueueError>> {
        let (name, max) = (self.name.clone(), self.max_deliveries);
        Box::pin(self.with(move |connection| {
            // An expired last lone delivery is not waiting: the next claim buries it.
            connection.query_row(
                "SELECT EXISTS (SELECT 1 FROM tasker_envelopes
                    WHERE queue = ?1 AND state = 'leased' AND lease_until_us <= ?3
                        AND (counted_deliveries < ?2 OR NOT alone))",
                params![name, max, micros_now()],
                |row| row.get(0),
            )
        }))
    }

    fn renew(&self, lease: LeaseId, duration: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        let duration = micros(duration);
        Box::pin(self.on_held(
            lease,
            concat!(
                "UPDATE tasker_envelopes SET lease_until_us = ?2 + ?3 WHERE ",
                held!()
            ),
            move |lease, now| vec![lease.into(), now.into(), duration.into()],
        ))
    }

    fn acknowledge(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let removed = self
                .with(move |connection| {
                    let transaction =
                        connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    let (lease, now) = (sql::lease_text(lease), micros_now());
                    // The task's checkpoints and run record go with its envelope, in one
                    // transaction.
                    for statement in [
                        concat!(
                            "DELETE FROM tasker_checkpoints WHERE task_id IN
                                (SELECT task_id FROM tasker_envelopes WHERE ",
                            held!(),
                            ")"
                        ),
                        concat!(
                            "DELETE FROM tasker_runs WHERE task_id IN
                                (SELECT task_id FROM tasker_envelopes WHERE ",
                            held!(),
                            ")"
                        ),
                    ] {
                        transaction.execute(statement, params![lease, now])?;
                    }
                    let removed = transaction.execute(
                        concat!("DELETE FROM tasker_envelopes WHERE ", held!()),
                        params![lease, now],
                    )?;
                    transaction.commit()?;
                    Ok(removed)
                })
                .await?;
            match removed {
                0 => Err(QueueError::LeaseLost(lease)),
                _ => Ok(()),
            }
        })
    }

    fn complete(
        &self,
        lease: LeaseId,
        completion: &Completion,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        self.complete_reporting(lease, completion, None)
    }

    fn complete_reporting(
        &self,
        lease: LeaseId,
        completion: &Completion,
        terminal: Option<&TerminalEvent>,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        let output = completion.output.as_ref().map(ToString::to_string);
        let (succeeded, error) = (completion.succeeded, completion.error.clone());
        let terminal = terminal.map(TerminalEvent::encode);
        let name = self.name.clone();
        Box::pin(async move {
            let removed = self
                .with(move |connection| {
                    let transaction =
                        connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    let (lease, now) = (sql::lease_text(lease), micros_now());
                    // The result, the checkpoints' removal and the envelope's removal commit
                    // together, and only while the lease is held.
                    let task_id: Option<String> = transaction
                        .query_row(
                            concat!("SELECT task_id FROM tasker_envelopes WHERE ", held!()),
                            params![lease, now],
                            |row| row.get(0),
                        )
                        .optional()?;
                    let Some(task_id) = task_id else {
                        return Ok(0);
                    };
                    transaction.execute(
                        "DELETE FROM tasker_checkpoints WHERE task_id = ?1",
                        params![task_id],
                    )?;
                    transaction.execute(
                        "DELETE FROM tasker_runs WHERE task_id = ?1",
                        params![task_id],
                    )?;
                    transaction.execute(
                        "INSERT OR IGNORE INTO tasker_results
                            (task_id, succeeded, output, error, completed_at_us)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![task_id, succeeded, output, error, now],
                    )?;
                    // The terminal event, when there is one, is kept until reported.
                    if let Some(event) = terminal {
                        transaction.execute(
                            "INSERT OR IGNORE INTO tasker_terminal_events
                                (task_id, queue, event, completed_at_us)
                             VALUES (?1, ?2, ?3, ?4)",
                            params![task_id, name, event, now],
                        )?;
                    }
                    let removed = transaction.execute(
                        concat!("DELETE FROM tasker_envelopes WHERE ", held!()),
                        params![lease, now],
                    )?;
                    transaction.commit()?;
                    Ok(removed)
                })
                .await?;
            match removed {
                0 => Err(QueueError::LeaseLost(lease)),
                _ => Ok(()),
            }
        })
    }

    fn keeps_terminal_events(&self) -> bool {
        true
    }

    fn mark_reported(&self, task_ids: &[uuid::Uuid]) -> BoxFuture<'_, Result<(), QueueError>> {
        let task_ids: Vec<String> = task_ids.iter().map(ToString::to_string).collect();
        Box::pin(self.with(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            forget_terminal_events(&transaction, &task_ids)?;
            transaction.commit()
        }))
    }

    fn report_unreported(
        &self,
        grace: Duration,
        limit: usize,
        emit: EmitTerminal,
    ) -> BoxFuture<'_, Result<usize, QueueError>> {
        let name = self.name.clone();
        let (grace, limit) = (micros(grace), i64::try_from(limit).unwrap_or(i64::MAX));
        Box::pin(async move {
            // Taken in one short transaction, for `grace`: the events are emitted with no lock
            // held, so other processes' claims and completions go on meanwhile.
            let taken = self
                .with(move |connection| {
                    let now = micros_now();
                    let cutoff = now.saturating_sub(grace);
                    // Nothing due: no write transaction, so an idle process stays quiet.
                    let due: bool = connection.query_row(
                        "SELECT EXISTS (SELECT 1 FROM tasker_terminal_events
                                        WHERE queue = ?1 AND completed_at_us <= ?2
                                            AND taken_until_us <= ?3)",
                        params![name, cutoff, now],
                        |row| row.get(0),
                    )?;
                    if !due {
                        return Ok(Vec::new());
                    }
                    let transaction =
                        connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    let taken = {
                        let mut statement = transaction.prepare(
                            "UPDATE tasker_terminal_events SET taken_until_us = ?4
                             WHERE rowid IN (
                                SELECT rowid FROM tasker_terminal_events
                                WHERE queue = ?1 AND completed_at_us <= ?2
                                    AND taken_until_us <= ?3
                                ORDER BY completed_at_us LIMIT ?5)
                             RETURNING rowid, task_id, event, completed_at_us",
                        )?;
                        let rows = statement.query_map(
                            params![name, cutoff, now, now.saturating_add(grace), limit],
                            |row| Ok((row.get::<_, i64>(3)?, read_taken(row)?)),
                        )?;
                        let mut taken = rows.collect::<rusqlite::Result<Vec<_>>>()?;
                        // RETURNING keeps no order: emitted in completion order.
                        taken.sort_by_key(|(completed, _)| *completed);
                        taken.into_iter().map(|(_, row)| row).collect::<Vec<_>>()
                    };
                    transaction.commit()?;
                    Ok(taken)
                })
                .await?;
            if taken.is_empty() {
                return Ok(0);
            }
            let (rowids, rows): (Vec<i64>, Vec<TakenRow>) = taken.into_iter().unzip();
            // Should emitting not finish, the rows stay taken and are emitted again after the
            // grace period: a repeat, never a loss.
            blocking(move || {
                terminal::emit_taken(&rows, &emit);
                Ok(())
            })
            .await?;
            let removed = self
                .with(move |connection| {
                    let transaction =
                        connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    {
                        let mut statement = transaction
                            .prepare("DELETE FROM tasker_terminal_events WHERE rowid = ?1")?;
                        for rowid in &rowids {
                            statement.execute([rowid])?;
                        }
                    }
                    transaction.commit()?;
                    Ok(rowids.len())
                })
                .await?;
            Ok(removed)
        })
    }

    fn checkpoints(
        &self,
        task_id: uuid::Uuid,
        lease: LeaseId,
    ) -> BoxFuture<'_, Result<Option<Arc<dyn Checkpoints>>, QueueError>> {
        Box::pin(async move {
            let task = task_id.to_string();
            let recorded = self
                .with(move |connection| {
                    let mut statement = connection.prepare(
                        "SELECT position, output FROM tasker_checkpoints WHERE task_id = ?1",
                    )?;
                    let rows = statement.query_map(params![task], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                    })?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })
                .await?;
            let recorded = recorded
                .into_iter()
                .filter_map(|(position, output)| {
                    Some((
                        u32::try_from(position).ok()?,
                        serde_json::from_str(&output).ok()?,
                    ))
                })
                .collect();
            Ok(Some(Arc::new(SqliteCheckpoints {
                connection: self.connection.clone(),
                lease,
                recorded,
            }) as Arc<dyn Checkpoints>))
        })
    }

    fn delivery_checkpoints(
        &self,
        task_id: uuid::Uuid,
        lease: LeaseId,
        delivery_attempt: u32,
    ) -> BoxFuture<'_, Result<Option<Arc<dyn Checkpoints>>, QueueError>> {
        if delivery_attempt > 1 {
            return self.checkpoints(task_id, lease);
        }
        // A first delivery: no earlier one recorded anything, so nothing to read.
        Box::pin(std::future::ready(Ok(Some(Arc::new(SqliteCheckpoints {
            connection: self.connection.clone(),
            lease,
            recorded: std::collections::HashMap::new(),
        })
            as Arc<dyn Checkpoints>))))
    }

    fn record_run(&self, lease: LeaseId, run: &RunTrace) -> BoxFuture<'_, Result<(), QueueError>> {
        let (attempt, trace) = (
            i64::from(run.delivery_attempt),
            serde_json::to_string(run).unwrap_or_default(),
        );
        Box::pin(self.on_held(
            lease,
            concat!(
                "INSERT INTO tasker_runs (task_id, delivery_attempt, trace, recorded_at_us)
                 SELECT task_id, ?3, ?4, ?2 FROM tasker_envelopes WHERE ",
                held!(),
                " ON CONFLICT (task_id) DO UPDATE SET delivery_attempt = excluded.delivery_attempt,
                    trace = excluded.trace, recorded_at_us = excluded.recorded_at_us"
            ),
            move |lease, now| vec![lease.into(), now.into(), attempt.into(), trace.into()],
        ))
    }

    fn requeue_attempt(
        &self,
        lease: LeaseId,
        delay: Duration,
        task_attempt: u32,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(self.put_back(lease, delay, Some(task_attempt)))
    }

    fn requeue(&self, lease: LeaseId, delay: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(self.put_back(lease, delay, None))
    }

    fn release(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            self.on_held(
                lease,
                // A hand-back: the next delivery is a new one, but the task did nothing to count.
                concat!(
                    "UPDATE tasker_envelopes SET
                        delivery_attempt = delivery_attempt + 1,
                        state = 'ready', available_at_us = ?2,
                        lease_id = NULL, lease_until_us = NULL
                     WHERE ",
                    held!()
                ),
                move |lease, now| vec![lease.into(), now.into()],
            )
            .await?;
            self.waiting.wake(1);
            Ok(())
        })
    }

    fn unfinished(&self) -> BoxFuture<'_, Result<Option<u64>, QueueError>> {
        Box::pin(async move {
            let counts = self.counts().await?;
            let unreported = self.unreported().await?;
            Ok(Some(
                counts.ready + counts.delayed + counts.leased + unreported,
            ))
        })
    }
}

/// Removes the terminal events of `task_ids`: they were reported.
fn forget_terminal_events(
    transaction: &rusqlite::Transaction<'_>,
    task_ids: &[String],
) -> rusqlite::Result<()> {
    let mut statement =
        transaction.prepare_cached("DELETE FROM tasker_terminal_events WHERE task_id = ?1")?;
    for task_id in task_ids {
        statement.execute([task_id])?;
    }
    Ok(())
}

/// Runs `operation` on Tokio's blocking threads, its SQLite error as a [`QueueError::Backend`].
async fn blocking<T, F>(operation: F) -> Result<T, QueueError>
where
    T: Send + 'static,
    F: FnOnce() -> rusqlite::Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(QueueError::Backend(format!("SQLite: {error}"))),
        Err(join) => Err(QueueError::Backend(format!(
            "SQLite operation did not finish: {join}"
        ))),
    }
}

fn micros_now() -> i64 {
    i64::try_from(now_micros()).unwrap_or(i64::MAX)
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

fn delivery(attempt: i64) -> u32 {
    u32::try_from(attempt).unwrap_or(1).max(1)
}

/// A stored envelope column as SQLite holds it.
fn stored(value: ValueRef<'_>) -> StoredEnvelope<'_> {
    let other = |kind: &str, bytes: Vec<u8>| StoredEnvelope::Other {
        kind: kind.to_owned(),
        bytes: Cow::Owned(bytes),
    };
    match value {
        ValueRef::Text(bytes) => StoredEnvelope::Text(bytes),
        ValueRef::Blob(bytes) => StoredEnvelope::Other {
            kind: format!("a BLOB of {} bytes", bytes.len()),
            bytes: Cow::Borrowed(bytes),
        },
        ValueRef::Null => other("NULL", Vec::new()),
        ValueRef::Integer(value) => other("an integer", value.to_string().into_bytes()),
        ValueRef::Real(value) => other("a real number", value.to_string().into_bytes()),
    }
}

/// A row a recovery took (`RETURNING rowid, task_id, event`), whatever its columns hold: a
/// value of another type is a reason it cannot be emitted, never an error for the whole batch.
fn read_taken(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, TakenRow)> {
    let rowid: i64 = row.get(0)?;
    let task_id = match row.get_ref(1)? {
        ValueRef::Text(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => format!("(a {:?} value in row {rowid})", other.data_type()),
    };
    let event = match row.get_ref(2)? {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|error| format!("its event is not UTF-8: {error}")),
        other => Err(format!("its event is {:?}, not text", other.data_type())),
    };
    Ok((rowid, (task_id, event)))
}

/// What a claim reads from a row: its envelope, delivery attempt and task id, or why the row
/// holds none (the reason it is buried with).
type Claimed = Result<(Envelope, i64, String), String>;

/// What a claim reads from the row it came to (`SELECT id, envelope, state,
/// delivery_attempt, task_id`).
fn read_claimed(row: &rusqlite::Row<'_>) -> Claimed {
    let column = |index: usize| {
        row.get_ref(index)
            .map_err(|error| format!("unreadable row: {error}"))
    };
    let envelope = stored(column(1)?).decode()?;
    let ValueRef::Integer(attempt) = column(3)? else {
        return Err(
            "unreadable row: the `delivery_attempt` column does not hold an integer".into(),
        );
    };
    let task_id = match column(4)? {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes).ok().map(str::to_owned),
        _ => None,
    };
    let Some(task_id) = task_id else {
        return Err("unreadable row: the `task_id` column does not hold UTF-8 text".into());
    };
    Ok((envelope, attempt, task_id))
}

/// Makes dead row `?1` ready at `?2` (now), its counted deliveries starting again from one.
const REVIVE: &str = "UPDATE tasker_envelopes SET state = 'ready', available_at_us = ?2,
    counted_deliveries = 1, alone = 1, dead_at_us = NULL, last_error = NULL, lease_id = NULL,
    lease_until_us = NULL
 WHERE id = ?1 AND state = 'dead'";

/// Removes the dead rows that `filter` matches (with `params`), with their tasks' checkpoints
/// and run records, in one transaction; returns how many rows it removed.
fn purge_dead(
    connection: &mut Connection,
    filter: &str,
    params: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<usize> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let dead = format!("SELECT task_id FROM tasker_envelopes WHERE state = 'dead' AND {filter}");
    for table in ["tasker_checkpoints", "tasker_runs"] {
        transaction.execute(
            &format!("DELETE FROM {table} WHERE task_id IN ({dead})"),
            params,
        )?;
    }
    let removed = transaction.execute(
        &format!("DELETE FROM tasker_envelopes WHERE state = 'dead' AND {filter}"),
        params,
    )?;
    transaction.commit()?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migrated file with `ready` ready rows and `leased` expired leases in queue `q`.
    fn table(ready: i64, leased: i64) -> (Connection, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "tasker-sqlite-plan-{}-{ready}-{leased}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut connection = Connection::open(dir.join("queue.db")).unwrap();
        let transaction = connection.transaction().unwrap();
        transaction.execute_batch(CREATE_MIGRATIONS).unwrap();
        for (_, _, migration) in MIGRATIONS {
            transaction.execute_batch(migration).unwrap();
        }
        transaction
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
                 INSERT INTO tasker_envelopes (queue, task_id, envelope, available_at_us,
                    enqueued_at_us, state, lease_until_us)
                 SELECT 'q', i, '{}', i, i,
                    CASE WHEN i <= ?2 THEN 'leased' ELSE 'ready' END,
                    CASE WHEN i <= ?2 THEN i END
                 FROM n",
                params![ready + leased, leased],
            )
            .unwrap();
        transaction.execute_batch("ANALYZE").unwrap();
        transaction.commit().unwrap();
        (connection, dir)
    }

    /// The plan's detail lines for `statement` with `params`.
    fn plan(connection: &Connection, statement: &str, params: &[&dyn rusqlite::ToSql]) -> String {
        let mut explain = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {statement}"))
            .unwrap();
        let rows = explain
            .query_map(params, |row| row.get::<_, String>(3))
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn each_claim_query_walks_an_index_in_order_without_sorting() {
        let (connection, dir) = table(5_000, 50);
        let now = i64::MAX - 1;
        let ready = plan(&connection, CLAIM_READY, &[&"q", &now]);
        assert_eq!(
            ready,
            "SEARCH tasker_envelopes USING INDEX tasker_envelopes_next (queue=? AND state=? AND \
             available_at_us<?)"
        );
        let expired = plan(&connection, CLAIM_EXPIRED, &[&"q", &3, &now]);
        assert_eq!(
            expired,
            "SEARCH tasker_envelopes USING INDEX tasker_envelopes_expiring (queue=? AND \
             lease_until_us<?)"
        );
        let due = plan(&connection, NEXT_DUE, &[&"q", &true]);
        assert!(
            !due.contains("TEMP B-TREE") && !due.contains("SCAN tasker_envelopes"),
            "{due}"
        );
        assert!(
            due.contains("INDEX tasker_envelopes_next (queue=? AND state=?)")
                && due.contains("INDEX tasker_envelopes_expiring (queue=?)"),
            "{due}"
        );
        drop(connection);
        let _ = std::fs::remove_dir_all(dir);
    }
}
