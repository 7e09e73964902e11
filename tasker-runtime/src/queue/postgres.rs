//! A durable, distributed queue on PostgreSQL (feature `postgres`).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Config, Pool, PoolConfig, Runtime as PoolRuntime};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{AsyncMessage, NoTls, Row};

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

/// The versioned migrations, in order: `(version, name, SQL)`, the SQL with `{schema}` where the
/// quoted schema name goes. Each is idempotent, so the script [`PostgresQueue::migration_sql`]
/// prints can be run again safely.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "envelopes",
        "CREATE TABLE IF NOT EXISTS {schema}.envelopes (
    id               bigserial   PRIMARY KEY,
    queue            text        NOT NULL,
    task_id          text        NOT NULL,
    envelope         text        NOT NULL,
    -- 'ready' (waiting, perhaps until available_at), 'leased' or 'dead'.
    state            text        NOT NULL DEFAULT 'ready',
    delivery_attempt integer     NOT NULL DEFAULT 1,
    available_at     timestamptz NOT NULL DEFAULT now(),
    lease_id         text,
    lease_until      timestamptz,
    enqueued_at      timestamptz NOT NULL DEFAULT now(),
    dead_at          timestamptz,
    last_error       text
);
CREATE INDEX IF NOT EXISTS envelopes_ready
    ON {schema}.envelopes (queue, available_at, id) WHERE state = 'ready';
CREATE INDEX IF NOT EXISTS envelopes_leased
    ON {schema}.envelopes (queue, lease_until) WHERE state = 'leased';
CREATE UNIQUE INDEX IF NOT EXISTS envelopes_lease_id
    ON {schema}.envelopes (lease_id) WHERE lease_id IS NOT NULL;",
    ),
    (
        2,
        "checkpoints",
        "CREATE TABLE IF NOT EXISTS {schema}.checkpoints (
    task_id     text        NOT NULL,
    position    integer     NOT NULL,
    step        text        NOT NULL,
    output      text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, position)
);",
    ),
    (
        3,
        "results",
        "CREATE TABLE IF NOT EXISTS {schema}.results (
    task_id      text        PRIMARY KEY,
    succeeded    boolean     NOT NULL,
    output       text,
    error        text,
    completed_at timestamptz NOT NULL DEFAULT now()
);",
    ),
    (
        4,
        "runs",
        "CREATE TABLE IF NOT EXISTS {schema}.runs (
    -- The latest delivery of an unfinished task whose run recorded its trace context.
    task_id          text        PRIMARY KEY,
    delivery_attempt integer     NOT NULL,
    trace            text        NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);",
    ),
    (
        5,
        "isolation",
        "-- Deliveries that count toward max_deliveries: not one whose lease expired while its
-- process ran other tasks too (the crash may not have been its own).
ALTER TABLE {schema}.envelopes ADD COLUMN IF NOT EXISTS counted_deliveries integer;
UPDATE {schema}.envelopes SET counted_deliveries = delivery_attempt
    WHERE counted_deliveries IS NULL;
ALTER TABLE {schema}.envelopes ALTER COLUMN counted_deliveries SET DEFAULT 1,
    ALTER COLUMN counted_deliveries SET NOT NULL;
-- Whether the current lease's run is alone in its process.
ALTER TABLE {schema}.envelopes ADD COLUMN IF NOT EXISTS alone boolean NOT NULL DEFAULT true;",
    ),
    (
        6,
        "terminal_events",
        "CREATE TABLE IF NOT EXISTS {schema}.terminal_events (
    -- A completion's terminal event, from its commit until it is reported (then the row goes).
    task_id      text        PRIMARY KEY,
    queue        text        NOT NULL,
    event        text        NOT NULL,
    completed_at timestamptz NOT NULL DEFAULT now(),
    -- Until when a recovering process has taken it to emit it (others skip it meanwhile).
    taken_until  timestamptz NOT NULL DEFAULT '-infinity'
);
CREATE INDEX IF NOT EXISTS terminal_events_due
    ON {schema}.terminal_events (queue, completed_at);",
    ),
    (
        7,
        "claim_order",
        "-- Expired leases in the order a claimer that runs alone takes them (ties by id), so that
-- its claim walks an index instead of sorting; it replaces envelopes_leased, its prefix.
CREATE INDEX IF NOT EXISTS envelopes_expiring
    ON {schema}.envelopes (queue, lease_until, id) WHERE state = 'leased';
DROP INDEX IF EXISTS {schema}.envelopes_leased;",
    ),
];

/// The longest schema name PostgreSQL keeps, in bytes (`NAMEDATALEN - 1`); it cuts longer ones
/// short without a word.
pub const MAX_SCHEMA_NAME_BYTES: usize = 63;

/// Configures a [`PostgresQueue`]; made by [`PostgresQueue::builder`].
#[derive(Debug, Clone)]
pub struct PostgresQueueBuilder {
    url: String,
    schema: String,
    name: String,
    pool_size: usize,
    max_deliveries: u32,
    poll_interval: Duration,
    listen: bool,
}

impl PostgresQueueBuilder {
    /// The schema that holds the queue's tables (default `tasker`); created by
    /// [`PostgresQueue::migrate`]. At most [`MAX_SCHEMA_NAME_BYTES`] bytes long:
    /// [`connect`](Self::connect) refuses a longer one.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The queue's name (default `default`): several queues can share one schema, and events'
    /// `task.enqueue` carry it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How many connections the pool keeps at most (default 8).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
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

    /// How often, at most, waiting claims look at the table when no notification arrives
    /// (default 1 s): idle, they look more and more rarely up to this interval, one look for
    /// all the waiting claims of this queue object.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Whether waiting claims `LISTEN` for pushes (default on); off, they only poll.
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// Connects the pool (and the listening connection). Does not create the tables: see
    /// [`PostgresQueue::migrate`].
    ///
    /// A schema name longer than PostgreSQL keeps ([`MAX_SCHEMA_NAME_BYTES`]) is refused with
    /// [`QueueError::SchemaNameTooLong`].
    pub async fn connect(self) -> Result<PostgresQueue, QueueError> {
        if self.schema.len() > MAX_SCHEMA_NAME_BYTES {
            return Err(QueueError::SchemaNameTooLong {
                length: self.schema.len(),
                schema: self.schema,
                limit: MAX_SCHEMA_NAME_BYTES,
            });
        }
        let mut config = Config::new();
        config.url = Some(self.url.clone());
        config.pool = Some(PoolConfig::new(self.pool_size));
        let pool = config
            .create_pool(Some(PoolRuntime::Tokio1), NoTls)
            .map_err(backend)?;
        // Fail now, with the database's message, rather than at the first claim.
        drop(pool.get().await.map_err(backend)?);
        let quoted = quote_ident(&self.schema);
        let channel = format!(
            "tasker_{:016x}",
            sql::fnv1a(format!("{}\0{}", self.schema, self.name).as_bytes())
        );
        let waiting = Arc::new(ClaimWait::new(Some(self.poll_interval)));
        let listener = self.listen.then(|| {
            tokio::spawn(listen(
                self.url.clone(),
                channel.clone(),
                waiting.clone(),
                self.poll_interval,
            ))
        });
        Ok(PostgresQueue {
            sql: Arc::new(Statements::new(&quoted)),
            schema: self.schema,
            name: self.name,
            pool,
            max_deliveries: i32::try_from(self.max_deliveries).unwrap_or(i32::MAX),
            poll_interval: self.poll_interval,
            channel,
            waiting,
            listener: listener.map(|listener| Arc::new(Listener(listener))),
        })
    }
}

/// A durable queue on PostgreSQL, shared by any number of producers and workers in any number
/// of processes.
///
/// Envelopes are rows of `<schema>.envelopes`. A claim takes the oldest available row with
/// `SELECT … FOR UPDATE SKIP LOCKED` and leases it: the row records the lease id and when the
/// lease ends, by the database's clock. A lease that ends unrenewed (a worker that died) makes the
/// row claimable again by a claimer that runs alone ([`Isolation`]), as its next delivery; after
/// [`max_deliveries`] counted deliveries it goes to the dead-letter state instead. Pushes and
/// immediate requeues `NOTIFY` waiting claims, which also poll as a fallback.
///
/// ```no_run
/// # async fn example() -> Result<(), tasker::queue::QueueError> {
/// use tasker::queue::PostgresQueue;
/// let queue = PostgresQueue::builder("postgres://postgres@127.0.0.1:5432/app")
///     .schema("tasker")
///     .pool_size(8)
///     .connect()
///     .await?;
/// queue.migrate().await?;
/// # Ok(()) }
/// ```
///
/// A `PostgresQueue` is a cheap handle: clones share the pool, the statements and the listener,
/// so a program can keep one for enqueueing and give another to a [`Runtime`](crate::Runtime).
///
/// [`max_deliveries`]: PostgresQueueBuilder::max_deliveries
#[derive(Clone)]
pub struct PostgresQueue {
    schema: String,
    name: String,
    pool: Pool,
    sql: Arc<Statements>,
    max_deliveries: i32,
    poll_interval: Duration,
    channel: String,
    /// Waiting claims: woken one per notified task, polling with a back-off meanwhile.
    waiting: Arc<ClaimWait>,
    listener: Option<Arc<Listener>>,
}

/// The `LISTEN` task, stopped when the last handle of the queue is dropped.
struct Listener(tokio::task::JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for PostgresQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresQueue")
            .field("schema", &self.schema)
            .field("name", &self.name)
            .field("max_deliveries", &self.max_deliveries)
            .field("poll_interval", &self.poll_interval)
            .field("listening", &self.listener.is_some())
            .finish()
    }
}

/// The statements, with the schema's name in them.
struct Statements {
    create_schema: String,
    create_migrations: String,
    applied: String,
    record: String,
    push: String,
    claim_ready: String,
    claim_expired: String,
    bury: String,
    next_due: String,
    suspects: String,
    renew: String,
    acknowledge: String,
    checkpoints: String,
    record_checkpoint: String,
    record_run: String,
    previous_run: String,
    complete: String,
    unreported: String,
    count_unreported: String,
    mark_reported: String,
    result: String,
    requeue: String,
    release: String,
    held_envelope: String,
    requeue_attempt: String,
    dead: String,
    counts: String,
}

impl Statements {
    fn new(schema: &str) -> Self {
        let t = format!("{schema}.envelopes");
        let micros = "* interval '1 microsecond'";
        let held = "lease_id = $1 AND state = 'leased' AND lease_until > now()";
        // Requeues and task retries count a delivery alike ($2 the delay, $3 max_deliveries).
        let requeued = format!(
            "delivery_attempt = delivery_attempt + 1,
             counted_deliveries = counted_deliveries + 1,
             state = CASE WHEN counted_deliveries + 1 > $3 THEN 'dead' ELSE 'ready' END,
             dead_at = CASE WHEN counted_deliveries + 1 > $3 THEN now() END,
             last_error = CASE WHEN counted_deliveries + 1 > $3
                 THEN 'requeued after its last delivery' END,
             available_at = now() + $2 {micros},
             lease_id = NULL, lease_until = NULL"
        );
        Statements {
            create_schema: format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
            create_migrations: format!(
                "CREATE TABLE IF NOT EXISTS {schema}.migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())"
            ),
            applied: format!("SELECT version FROM {schema}.migrations"),
            record: format!(
                "INSERT INTO {schema}.migrations (version, name) VALUES ($1, $2)
                 ON CONFLICT (version) DO NOTHING"
            ),
            push: format!(
                "WITH pushed AS (
                    INSERT INTO {t} (queue, task_id, envelope, delivery_attempt)
                    VALUES ($1, $2, $3, $4) RETURNING id)
                 SELECT pg_notify($5, '') FROM pushed"
            ),
            // Two claims, each walking its own index in order: an `OR` of both kinds of row
            // would scan and sort every ready row at each claim. Each leases up to `$6` rows,
            // found through the primary key, with the lease ids `$2` in claim order (the
            // locked ids come out of the index in order). The ready claim also buries the expired last lone deliveries
            // (`alone AND counted_deliveries >= $4`), which no claim takes.
            claim_ready: format!(
                "WITH swept AS (
                    UPDATE {t} SET state = 'dead', dead_at = now(), lease_id = NULL,
                        lease_until = NULL, last_error = 'its last lease expired'
                    WHERE queue = $1 AND state = 'leased' AND lease_until <= now()
                        AND alone AND counted_deliveries >= $4),
                 next AS (SELECT array_agg(id) AS ids FROM (
                    SELECT id FROM {t}
                    WHERE queue = $1 AND state = 'ready' AND available_at <= now()
                    ORDER BY available_at, id
                    LIMIT $6
                    FOR UPDATE SKIP LOCKED) AS locked)
                 UPDATE {t} AS row SET alone = $5, state = 'leased',
                    lease_id = ($2::text[])[array_position(next.ids, row.id)],
                    lease_until = now() + $3 {micros}
                 FROM next WHERE row.id = ANY(next.ids)
                 RETURNING row.id, row.envelope, row.delivery_attempt, row.task_id,
                    array_position(next.ids, row.id)::bigint"
            ),
            // Suspects, for a claimer that runs alone: the next deliveries of expired leases.
            claim_expired: format!(
                "WITH next AS (SELECT array_agg(id) AS ids FROM (
                    SELECT id FROM {t}
                    WHERE queue = $1 AND state = 'leased' AND lease_until <= now()
                        AND (counted_deliveries < $4 OR NOT alone)
                    ORDER BY lease_until, id
                    LIMIT $6
                    FOR UPDATE SKIP LOCKED) AS locked)
                 UPDATE {t} AS row SET
                    delivery_attempt = row.delivery_attempt + 1,
                    -- The expired lease counts only if its run was alone.
                    counted_deliveries = row.counted_deliveries
                        + CASE WHEN row.alone THEN 1 ELSE 0 END,
                    alone = $5, state = 'leased',
                    lease_id = ($2::text[])[array_position(next.ids, row.id)],
                    lease_until = now() + $3 {micros}
                 FROM next WHERE row.id = ANY(next.ids)
                 RETURNING row.id, row.envelope, row.delivery_attempt, row.task_id,
                    array_position(next.ids, row.id)::bigint"
            ),
            bury: format!(
                "UPDATE {t} SET state = 'dead', dead_at = now(), lease_id = NULL,
                    lease_until = NULL, last_error = $2
                 WHERE id = $1"
            ),
            next_due: format!(
                "SELECT EXTRACT(EPOCH FROM (LEAST(
                    (SELECT min(available_at) FROM {t} WHERE queue = $1 AND state = 'ready'),
                    (SELECT min(lease_until) FROM {t}
                     WHERE queue = $1 AND state = 'leased' AND $2))
                    - now()))::float8"
            ),
            // An expired last lone delivery is not waiting: the next claim buries it.
            suspects: format!(
                "SELECT EXISTS (SELECT 1 FROM {t}
                    WHERE queue = $1 AND state = 'leased' AND lease_until <= now()
                        AND (counted_deliveries < $2 OR NOT alone))"
            ),
            renew: format!("UPDATE {t} SET lease_until = now() + $2 {micros} WHERE {held}"),
            // The task's checkpoints and run record go with its envelope, in one statement.
            acknowledge: format!(
                "WITH done AS (DELETE FROM {t} WHERE {held} RETURNING task_id),
                      gone AS (DELETE FROM {schema}.checkpoints
                               WHERE task_id IN (SELECT task_id FROM done)),
                      runs AS (DELETE FROM {schema}.runs
                               WHERE task_id IN (SELECT task_id FROM done))
                 SELECT count(*) FROM done"
            ),
            checkpoints: format!(
                "SELECT position, output FROM {schema}.checkpoints WHERE task_id = $1"
            ),
            // The result, the checkpoints' removal and the envelope's removal commit together,
            // and only while the lease is held.
            // The terminal event, when there is one, is kept with the result until reported.
            complete: format!(
                "WITH done AS (DELETE FROM {t} WHERE {held} RETURNING task_id, queue),
                      gone AS (DELETE FROM {schema}.checkpoints
                               WHERE task_id IN (SELECT task_id FROM done)),
                      runs AS (DELETE FROM {schema}.runs
                               WHERE task_id IN (SELECT task_id FROM done)),
                      kept AS (INSERT INTO {schema}.results (task_id, succeeded, output, error)
                               SELECT task_id, $2, $3, $4 FROM done
                               ON CONFLICT (task_id) DO NOTHING),
                      held AS (INSERT INTO {schema}.terminal_events (task_id, queue, event)
                               SELECT task_id, queue, $5::text FROM done
                               WHERE $5::text IS NOT NULL
                               ON CONFLICT (task_id) DO NOTHING)
                 SELECT count(*) FROM done"
            ),
            // Taken for the grace period in one statement: emitted with no transaction open,
            // then removed; other processes skip them meanwhile. Read as text whatever their
            // column types.
            unreported: format!(
                "WITH taken AS (
                    UPDATE {schema}.terminal_events SET taken_until = now() + $2 {micros}
                    WHERE task_id IN (
                        SELECT task_id FROM {schema}.terminal_events
                        WHERE queue = $1 AND completed_at <= now() - $2 {micros}
                            AND taken_until <= now()
                        ORDER BY completed_at
                        LIMIT $3
                        FOR UPDATE SKIP LOCKED)
                    RETURNING task_id::text AS task_id, event, completed_at)
                 SELECT task_id, event FROM taken ORDER BY completed_at"
            ),
            count_unreported: format!(
                "SELECT count(*) FROM {schema}.terminal_events WHERE queue = $1"
            ),
            mark_reported: format!("DELETE FROM {schema}.terminal_events WHERE task_id = ANY($1)"),
            result: format!(
                "SELECT succeeded, output, error FROM {schema}.results WHERE task_id = $1"
            ),
            // Only while the lease is held, its row share-locked so that no claim takes it
            // over meanwhile: once another delivery may run the task, this one's steps must
            // not count as completed. Counts 0 when the lease is not held.
            record_checkpoint: format!(
                "WITH held AS (SELECT task_id FROM {t} WHERE {held} FOR SHARE),
                      kept AS (INSERT INTO {schema}.checkpoints (task_id, position, step, output)
                               SELECT task_id, $2, $3, $4 FROM held
                               ON CONFLICT (task_id, position) DO NOTHING)
                 SELECT count(*) FROM held"
            ),
            record_run: format!(
                "WITH held AS (SELECT task_id FROM {t} WHERE {held} FOR SHARE),
                      kept AS (INSERT INTO {schema}.runs (task_id, delivery_attempt, trace)
                               SELECT task_id, $2, $3 FROM held
                               ON CONFLICT (task_id) DO UPDATE SET
                                   delivery_attempt = excluded.delivery_attempt,
                                   trace = excluded.trace, recorded_at = now())
                 SELECT count(*) FROM held"
            ),
            previous_run: format!("SELECT trace FROM {schema}.runs WHERE task_id = $1"),
            // The envelope with its next task attempt, read under the lease: set in Rust, since
            // `jsonb` cannot hold every JSON text (a `\u0000` in a string).
            held_envelope: format!("SELECT envelope FROM {t} WHERE {held} FOR UPDATE"),
            // A task retry also writes its envelope ($4, the column's own type), read and
            // rewritten under the row lock (`held_envelope`).
            requeue_attempt: format!(
                "UPDATE {t} SET envelope = $4, {requeued} WHERE {held} RETURNING state"
            ),
            requeue: format!("UPDATE {t} SET {requeued} WHERE {held} RETURNING state"),
            // A hand-back: the next delivery is a new one, but the task did nothing to count.
            release: format!(
                "UPDATE {t} SET
                    delivery_attempt = delivery_attempt + 1,
                    state = 'ready', available_at = now(),
                    lease_id = NULL, lease_until = NULL
                 WHERE {held}"
            ),
            // A large envelope (by its stored size, read without decompressing it): only its
            // start and its length leave the server.
            dead: format!(
                "SELECT id, task_id,
                    CASE WHEN pg_column_size(envelope) <= $3 THEN envelope END,
                    last_error, delivery_attempt, dead_at,
                    CASE WHEN pg_column_size(envelope) > $3
                        THEN octet_length(envelope::text) END,
                    CASE WHEN pg_column_size(envelope) > $3
                        THEN convert_to(left(envelope::text, $4), 'UTF8') END
                 FROM {t}
                 WHERE queue = $1 AND state = 'dead' AND id > $2 ORDER BY id LIMIT $5"
            ),
            counts: format!(
                "SELECT
                    count(*) FILTER (WHERE state = 'ready' AND available_at <= now()),
                    count(*) FILTER (WHERE state = 'ready' AND available_at > now()),
                    count(*) FILTER (WHERE state = 'leased'),
                    count(*) FILTER (WHERE state = 'dead')
                 FROM {t} WHERE queue = $1"
            ),
        }
    }
}

impl PostgresQueue {
    /// A builder for a queue on the database at `url` (`postgres://user:password@host:port/db`).
    pub fn builder(url: impl Into<String>) -> PostgresQueueBuilder {
        PostgresQueueBuilder {
            url: url.into(),
            schema: "tasker".to_owned(),
            name: "default".to_owned(),
            pool_size: 8,
            max_deliveries: 10,
            poll_interval: Duration::from_secs(1),
            listen: true,
        }
    }

    /// Connects to `url` with the defaults.
    pub async fn connect(url: impl Into<String>) -> Result<Self, QueueError> {
        Self::builder(url).connect().await
    }

    /// The schema that holds the queue's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Creates the schema and applies the migrations it lacks, in one transaction, and returns
    /// how many it applied (`0` when it is up to date). Safe to run from several processes at
    /// once: they take turns on an advisory lock.
    pub async fn migrate(&self) -> Result<u32, QueueError> {
        let mut client = self.pool.get().await.map_err(backend)?;
        let transaction = client.transaction().await.map_err(backend)?;
        transaction
            .execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                &[&format!("tasker.migrate.{}", self.schema)],
            )
            .await
            .map_err(backend)?;
        transaction
            .batch_execute(&self.sql.create_schema)
            .await
            .map_err(backend)?;
        transaction
            .batch_execute(&self.sql.create_migrations)
            .await
            .map_err(backend)?;
        let applied: Vec<i32> = transaction
            .query(&self.sql.applied, &[])
            .await
            .map_err(backend)?
            .iter()
            .map(|row| column(row, 0, "migrations.version"))
            .collect::<Result<_, _>>()?;
        let quoted = quote_ident(&self.schema);
        let mut count = 0;
        for (version, name, migration) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            transaction
                .batch_execute(&migration.replace("{schema}", &quoted))
                .await
                .map_err(backend)?;
            transaction
                .execute(&self.sql.record, &[version, name])
                .await
                .map_err(backend)?;
            count += 1;
        }
        transaction.commit().await.map_err(backend)?;
        Ok(count)
    }

    /// The migrations as one SQL script for `schema`, for a DBA to review and run instead of
    /// [`migrate`](Self::migrate). Running it again changes nothing.
    pub fn migration_sql(schema: &str) -> String {
        let quoted = quote_ident(schema);
        let statements = Statements::new(&quoted);
        let mut script = format!(
            "BEGIN;\n{};\n{};\n",
            statements.create_schema, statements.create_migrations
        );
        for (version, name, migration) in MIGRATIONS {
            script.push_str(&format!(
                "-- migration {version}: {name}\n{}\nINSERT INTO {quoted}.migrations (version, name) \
                 VALUES ({version}, '{name}') ON CONFLICT (version) DO NOTHING;\n",
                migration.replace("{schema}", &quoted)
            ));
        }
        script.push_str("COMMIT;\n");
        script
    }

    /// Every row of this queue in the dead-letter state, oldest first: envelopes delivered as
    /// many times as allowed, and rows no worker could read, each with why it was set aside
    /// and the start of what it holds (an envelope stored in over
    /// [`DEAD_LETTER_DECODED_BYTES`] is not read whole).
    /// [`dead_letters_page`](Self::dead_letters_page) lists them a page at a time.
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
        let client = self.pool.get().await.map_err(backend)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (decoded, raw) = (
            i32::try_from(DEAD_LETTER_DECODED_BYTES).unwrap_or(i32::MAX),
            i32::try_from(DEAD_LETTER_RAW_BYTES).unwrap_or(i32::MAX),
        );
        let rows = query_fresh(
            &client,
            &self.sql.dead,
            &[&self.name, &after_id, &decoded, &raw, &limit],
        )
        .await?;
        rows.iter()
            .map(|row| {
                let cut = column::<Option<i32>>(row, 6, "length(envelopes.envelope)")?;
                let (envelope, size) = match cut {
                    // Whatever the envelope column holds: these are the rows that hold
                    // something unexpected.
                    None => {
                        let stored = column::<AnyValue>(row, 2, "envelopes.envelope")?.stored();
                        let size = stored.bytes().len();
                        (stored, size)
                    }
                    Some(size) => (
                        StoredEnvelope::Text(column(row, 7, "envelopes.envelope")?),
                        usize::try_from(size).unwrap_or(0),
                    ),
                };
                let dead = sql::DeadRow {
                    id: column(row, 0, "envelopes.id")?,
                    task_id: column(row, 1, "envelopes.task_id")?,
                    envelope,
                    size,
                    reason: column(row, 3, "envelopes.last_error")?,
                    delivery_attempt: column::<i32>(row, 4, "envelopes.delivery_attempt")?.into(),
                    dead_at: column(row, 5, "envelopes.dead_at")?,
                };
                Ok(dead.into_dead_letter())
            })
            .collect()
    }

    /// How task `task_id` ended, once a worker completed it.
    pub async fn result(&self, task_id: uuid::Uuid) -> Result<Option<Completion>, QueueError> {
        let client = self.pool.get().await.map_err(backend)?;
        let row = client
            .query_opt(
                &prepare(&client, &self.sql.result).await?,
                &[&task_id.to_string()],
            )
            .await
            .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Completion {
            succeeded: column(&row, 0, "results.succeeded")?,
            output: column::<Option<&str>>(&row, 1, "results.output")?
                .and_then(|text| serde_json::from_str(text).ok()),
            error: column(&row, 2, "results.error")?,
        }))
    }

    /// How many completed tasks of this queue have a terminal event that was not reported yet
    /// (emitted and not yet marked, or left by a worker that died before emitting it).
    pub async fn unreported(&self) -> Result<u64, QueueError> {
        let client = self.pool.get().await.map_err(backend)?;
        let row = client
            .query_one(
                &prepare(&client, &self.sql.count_unreported).await?,
                &[&self.name],
            )
            .await
            .map_err(backend)?;
        Ok(u64::try_from(column::<i64>(&row, 0, "count")?).unwrap_or(0))
    }

    /// How many envelopes of this queue are in each state.
    pub async fn counts(&self) -> Result<Counts, QueueError> {
        let client = self.pool.get().await.map_err(backend)?;
        let row = client
            .query_one(&prepare(&client, &self.sql.counts).await?, &[&self.name])
            .await
            .map_err(backend)?;
        let count = |index: usize| {
            column::<i64>(&row, index, "count").map(|count| u64::try_from(count).unwrap_or(0))
        };
        Ok(Counts {
            ready: count(0)?,
            delayed: count(1)?,
            leased: count(2)?,
            dead: count(3)?,
        })
    }

    /// Wakes a waiting claim of this queue object for a task it made ready, unless the
    /// notification does (it reaches every listening process, this one included).
    fn announce(&self) {
        if self.listener.is_none() {
            self.waiting.wake(1);
        }
    }

    /// One look at the table for a claimer with `isolation`: a claimer that runs alone takes a
    /// suspect (an expired lease) before a ready envelope. When nothing is claimable and
    /// `will_wait`, also how long until something may be.
    async fn try_claim(
        &self,
        max: usize,
        lease: Duration,
        isolation: Isolation,
        will_wait: bool,
    ) -> Result<Attempt<Vec<Claim>>, QueueError> {
        let client = self.pool.get().await.map_err(backend)?;
        let alone = isolation == Isolation::Alone;
        let statements: &[&str] = if alone {
            &[&self.sql.claim_expired, &self.sql.claim_ready]
        } else {
            &[&self.sql.claim_ready]
        };
        let mut claims = Vec::new();
        for statement in statements {
            while claims.len() < max {
                let wanted = max - claims.len();
                let leases: Vec<LeaseId> = (0..wanted)
                    .map(|_| LeaseId(crate::ids::new_id().as_u128()))
                    .collect();
                let lease_texts: Vec<String> =
                    leases.iter().copied().map(sql::lease_text).collect();
                let mut rows = query_fresh(
                    &client,
                    statement,
                    &[
                        &self.name,
                        &lease_texts,
                        &micros(lease),
                        &self.max_deliveries,
                        &alone,
                        &i64::try_from(wanted).unwrap_or(i64::MAX),
                    ],
                )
                .await?;
                let (taken, before) = (rows.len(), claims.len());
                // In claim order: the oldest first.
                rows.sort_by_key(|row| row.try_get::<_, i64>(4).unwrap_or(i64::MAX));
                for row in &rows {
                    let id: i64 = column(row, 0, "envelopes.id")?;
                    let number: i64 = column(row, 4, "claim order")?;
                    let lease_id = usize::try_from(number - 1)
                        .ok()
                        .and_then(|index| leases.get(index).copied())
                        .ok_or_else(|| {
                            QueueError::Backend(format!(
                                "a claim numbered a row {number}, of {wanted} asked for"
                            ))
                        })?;
                    match read_claimed(row) {
                        Ok((mut envelope, attempt, task_id)) => {
                            envelope.delivery_attempt = attempt;
                            let previous_run =
                                self.previous_run(&client, &envelope, &task_id).await?;
                            claims.push(Claim {
                                envelope,
                                lease: lease_id,
                                previous_run,
                            });
                        }
                        Err(reason) => {
                            // A row no worker can read would only come back again: bury it.
                            client
                                .execute(&prepare(&client, &self.sql.bury).await?, &[&id, &reason])
                                .await
                                .map_err(backend)?;
                        }
                    }
                }
                // Fewer rows than asked for: none is left. Only buried ones: look again.
                if taken < wanted || claims.len() > before {
                    break;
                }
            }
        }
        if !claims.is_empty() {
            return Ok(Attempt::Claimed(claims));
        }
        let due = match will_wait {
            true => self.next_due(&client, isolation).await?,
            false => None,
        };
        Ok(Attempt::Empty { due })
    }

    /// The trace context an earlier delivery of the claimed task recorded, if any.
    async fn previous_run(
        &self,
        client: &deadpool_postgres::ClientWrapper,
        envelope: &Envelope,
        task_id: &str,
    ) -> Result<Option<RunTrace>, QueueError> {
        // Only a task delivered before can have a recorded run.
        if envelope.delivery_attempt <= 1 {
            return Ok(None);
        }
        let run = client
            .query_opt(&prepare(client, &self.sql.previous_run).await?, &[&task_id])
            .await
            .map_err(backend)?;
        Ok(run.and_then(|run| {
            column::<&str>(&run, 0, "runs.trace")
                .ok()
                .and_then(|trace| serde_json::from_str(trace).ok())
        }))
    }

    /// How long until a delayed envelope is due or — for a claimer that runs alone, the only
    /// one an expired lease goes to — a lease ends, if any.
    async fn next_due(
        &self,
        client: &deadpool_postgres::ClientWrapper,
        isolation: Isolation,
    ) -> Result<Option<Duration>, QueueError> {
        let row = client
            .query_one(
                &prepare(client, &self.sql.next_due).await?,
                &[&self.name, &(isolation == Isolation::Alone)],
            )
            .await
            .map_err(backend)?;
        Ok(column::<Option<f64>>(&row, 0, "next due")?
            .map(|seconds| Duration::from_secs_f64(seconds.clamp(0.0, 86_400.0))))
    }

    /// How many envelopes of this queue are in each state, by task name, sorted by name: the
    /// first `"task_name": "…"` string in each stored envelope, read by pattern, so truncated
    /// JSON still names its task; rows whose envelope names none are one group, `None`, last.
    /// (SQLite's reads names from envelopes that are whole JSON only.)
    pub async fn counts_by_task(&self) -> Result<Vec<TaskCounts>, QueueError> {
        let client = self.pool.get().await.map_err(backend)?;
        // A pattern rather than a JSON cast: a cast fails the whole query on one row that is
        // not JSON, and these counts are wanted most when such rows are there.
        let statement = format!(
            "SELECT substring(envelope::text from $2),
                count(*) FILTER (WHERE state = 'ready' AND available_at <= now()),
                count(*) FILTER (WHERE state = 'ready' AND available_at > now()),
                count(*) FILTER (WHERE state = 'leased'),
                count(*) FILTER (WHERE state = 'dead')
             FROM {}.envelopes WHERE queue = $1 GROUP BY 1",
            quote_ident(&self.schema)
        );
        let pattern = r#""task_name"\s*:\s*"((?:[^"\\]|\\.)*)""#;
        let rows = client
            .query(&statement, &[&self.name, &pattern])
            .await
            .map_err(backend)?;
        let rows = rows
            .iter()
            .map(|row| {
                let count = |index: usize| {
                    column::<i64>(row, index, "count")
                        .map(|count| u64::try_from(count).unwrap_or(0))
                };
                // The JSON string's escapes, undone; as it is if they do not undo.
                let task_name = column::<Option<&str>>(row, 0, "task_name")?.map(|raw| {
                    serde_json::from_str::<String>(&format!("\"{raw}\""))
                        .unwrap_or_else(|_| raw.to_owned())
                });
                let counts = Counts {
                    ready: count(1)?,
                    delayed: count(2)?,
                    leased: count(3)?,
                    dead: count(4)?,
                };
                Ok((task_name, counts))
            })
            .collect::<Result<Vec<_>, QueueError>>()?;
        Ok(sql::group_by_task(rows))
    }

    /// How long the oldest envelope of this queue that is ready now has been available (since
    /// it was pushed, or since the delay it was requeued with passed), by the database's clock;
    /// `None` when none is ready.
    pub async fn oldest_ready_age(&self) -> Result<Option<Duration>, QueueError> {
        let client = self.pool.get().await.map_err(backend)?;
        let statement = format!(
            "SELECT EXTRACT(EPOCH FROM now() - min(available_at))::float8 FROM {}.envelopes
             WHERE queue = $1 AND state = 'ready' AND available_at <= now()",
            quote_ident(&self.schema)
        );
        let row = client
            .query_one(&statement, &[&self.name])
            .await
            .map_err(backend)?;
        Ok(column::<Option<f64>>(&row, 0, "oldest ready age")?
            .map(|seconds| Duration::from_secs_f64(seconds.clamp(0.0, 1e12))))
    }

    /// Makes dead letter `id` ready again, now: its counted deliveries (what counts toward
    /// `max_deliveries`) start again from one; its checkpoints stay, so the steps it completed
    /// are replayed. Refused with [`QueueError::NoSuchDeadLetter`] when the queue has no dead
    /// row `id`, and with [`QueueError::UnreadableDeadLetter`] when its envelope does not
    /// decode (no worker could run it).
    pub async fn retry_dead_letter(&self, id: i64) -> Result<(), QueueError> {
        let retried = self.revive(Some(id)).await?;
        if let Some((_, reason)) = retried.unreadable.into_iter().next() {
            return Err(QueueError::UnreadableDeadLetter { id, reason });
        }
        if retried.retried.is_empty() {
            return Err(QueueError::NoSuchDeadLetter {
                queue: self.name.clone(),
                id,
            });
        }
        Ok(())
    }

    /// Makes every dead letter of this queue whose envelope decodes ready again, as
    /// [`retry_dead_letter`](Self::retry_dead_letter) does one, in one transaction; the others
    /// stay dead and are listed with what is wrong with them.
    pub async fn retry_dead_letters(&self) -> Result<RetriedDeadLetters, QueueError> {
        self.revive(None).await
    }

    /// Removes dead letter `id` for good, with its task's checkpoints and run record.
    /// [`QueueError::NoSuchDeadLetter`] when the queue has no dead row `id`.
    pub async fn purge_dead_letter(&self, id: i64) -> Result<(), QueueError> {
        match self.purge_dead(Some(id)).await? {
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
        self.purge_dead(None).await
    }

    /// Makes the dead letters of this queue whose envelope decodes ready again — dead row `id`,
    /// or all of them — in one transaction, and wakes waiting claims.
    async fn revive(&self, id: Option<i64>) -> Result<RetriedDeadLetters, QueueError> {
        let t = format!("{}.envelopes", quote_ident(&self.schema));
        let mut client = self.pool.get().await.map_err(backend)?;
        let transaction = client.transaction().await.map_err(backend)?;
        let rows = transaction
            .query(
                &format!(
                    "SELECT id, envelope FROM {t}
                     WHERE queue = $1 AND state = 'dead' AND ($2::bigint IS NULL OR id = $2)
                     ORDER BY id FOR UPDATE"
                ),
                &[&self.name, &id],
            )
            .await
            .map_err(backend)?;
        let mut report = RetriedDeadLetters::default();
        for row in &rows {
            let id: i64 = column(row, 0, "envelopes.id")?;
            let decoded = column::<AnyValue>(row, 1, "envelopes.envelope")?
                .stored()
                .decode();
            match decoded {
                Ok(_) => report.retried.push(id),
                Err(reason) => report.unreadable.push((id, reason)),
            }
        }
        if !report.retried.is_empty() {
            transaction
                .execute(
                    &format!(
                        "UPDATE {t} SET state = 'ready', available_at = now(),
                            counted_deliveries = 1, alone = true, dead_at = NULL,
                            last_error = NULL, lease_id = NULL, lease_until = NULL
                         WHERE id = ANY($1) AND state = 'dead'"
                    ),
                    &[&report.retried],
                )
                .await
                .map_err(backend)?;
            transaction
                .execute("SELECT pg_notify($1, '')", &[&self.channel])
                .await
                .map_err(backend)?;
        }
        transaction.commit().await.map_err(backend)?;
        if !report.retried.is_empty() {
            self.announce();
        }
        Ok(report)
    }

    /// Removes this queue's dead rows — row `id`, or all of them — with their tasks'
    /// checkpoints and run records, in one statement; returns how many rows it removed.
    async fn purge_dead(&self, id: Option<i64>) -> Result<u64, QueueError> {
        let schema = quote_ident(&self.schema);
        let client = self.pool.get().await.map_err(backend)?;
        let statement = format!(
            "WITH dead AS (DELETE FROM {schema}.envelopes
                           WHERE queue = $1 AND state = 'dead' AND ($2::bigint IS NULL OR id = $2)
                           RETURNING task_id),
                  gone AS (DELETE FROM {schema}.checkpoints
                           WHERE task_id IN (SELECT task_id FROM dead)),
                  runs AS (DELETE FROM {schema}.runs WHERE task_id IN (SELECT task_id FROM dead))
             SELECT count(*) FROM dead"
        );
        let removed: i64 = client
            .query_one(&statement, &[&self.name, &id])
            .await
            .map_err(backend)
            .and_then(|row| column(&row, 0, "count"))?;
        Ok(u64::try_from(removed).unwrap_or(0))
    }
}

impl Queue for PostgresQueue {
    fn name(&self) -> &str {
        &self.name
    }

    fn push(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(backend)?;
            let attempt = i32::try_from(envelope.delivery_attempt).unwrap_or(i32::MAX);
            let task_id = envelope.task_id.to_string();
            let text = String::from_utf8(envelope.encode())
                .map_err(|error| QueueError::Backend(error.to_string()))?;
            client
                .execute(
                    &prepare(&client, &self.sql.push).await?,
                    &[&self.name, &task_id, &text, &attempt, &self.channel],
                )
                .await
                .map_err(backend)?;
            self.announce();
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
                .claim(wait, move |will_wait| {
                    self.try_claim(max, lease, isolation, will_wait)
                })
                .await?;
            Ok(claims.unwrap_or_default())
        })
    }

    fn suspects_waiting(&self) -> BoxFuture<'_, Result<bool, QueueError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(backend)?;
            let row = client
                .query_one(
                    &prepare(&client, &self.sql.suspects).await?,
                    &[&self.name, &self.max_deliveries],
                )
                .await
                .map_err(backend)?;
            column(&row, 0, "exists")
        })
    }

    fn renew(&self, lease: LeaseId, duration: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(backend)?;
            let renewed = client
                .execute(
                    &prepare(&client, &self.sql.renew).await?,
                    &[&sql::lease_text(lease), &micros(duration)],
                )
                .await
                .map_err(backend)?;
            match renewed {
                0 => Err(QueueError::LeaseLost(lease)),
                _ => Ok(()),
            }
        })
    }

    fn acknowledge(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(backend)?;
            let removed: i64 = client
                .query_one(
                    &prepare(&client, &self.sql.acknowledge).await?,
                    &[&sql::lease_text(lease)],
                )
                .await
                .map_err(backend)
                .and_then(|row| column(&row, 0, "count"))?;
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
        Box::pin(async move {
            let client = self.pool.get().await.map_err(backend)?;
            let removed: i64 = client
                .query_one(
                    &prepare(&client, &self.sql.complete).await?,
                    &[
                        &sql::lease_text(lease),
                        &succeeded,
                        &output,
                        &error,
                        &terminal,
                    ],
                )
                .await
                .map_err(backend)
                .and_then(|row| column(&row, 0, "count"))?;
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
        Box::pin(async move {
            let client = self.pool.get().await.map_err(backend)?;
            client
                .execute(
                    &prepare(&client, &self.sql.mark_reported).await?,
                    &[&task_ids],
                )
                .await
                .map_err(backend)?;
            Ok(())
        })
    }

    fn report_unreported(
        &self,
        grace: Duration,
        limit: usize,
        emit: EmitTerminal,
    ) -> BoxFuture<'_, Result<usize, QueueError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(backend)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = client
                .query(
                    &prepare(&client, &self.sql.unreported).await?,
                    &[&self.name, &micros(grace), &limit],
                )
                .await
                .map_err(backend)?;
            if rows.is_empty() {
                return Ok(0);
            }
            let taken: Vec<TakenRow> = rows.iter().map(read_taken).collect();
            drop(rows);
            let emitted = tokio::task::spawn_blocking(move || {
                terminal::emit_taken(&taken, &emit);
                taken
            })
            .await;
            let taken = emitted.map_err(|join| {
                QueueError::Backend(format!("emitting recovered events did not finish: {join}"))
            })?;
            let task_ids: Vec<&str> = taken.iter().map(|(task_id, _)| task_id.as_str()).collect();
            client
                .execute(
                    &prepare(&client, &self.sql.mark_reported).await?,
                    &[&task_ids],
                )
                .await
                .map_err(backend)?;
            Ok(taken.len())
        })
    }

    fn checkpoints(
        &self,
        task_id: uuid::Uuid,
        lease: LeaseId,
    ) -> BoxFuture<'_, Result<Option<Arc<dyn Checkpoints>>, QueueError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(backend)?;
            let task = task_id.to_string();
            let rows = client
                .query(&prepare(&client, &self.sql.checkpoints).await?, &[&task])
                .await
                .map_err(backend)?;
            let recorded = rows
                .iter()
                .map(|row| {
                    let position = column::<i32>(row, 0, "checkpoints.position")?;
                    let output = column::<&str>(row, 1, "checkpoints.output")?;
                    Ok((
                        u32::try_from(position).ok(),
                        serde_json::from_str(output).ok(),
                    ))
                })
                .collect::<Result<Vec<_>, QueueError>>()?
                .into_iter()
                .filter_map(|(position, output)| Some((position?, output?)))
                .collect();
            Ok(Some(Arc::new(PostgresCheckpoints {
                pool: self.pool.clone(),
                statement: self.sql.record_checkpoint.clone(),
                lease: sql::lease_text(lease),
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
        Box::pin(std::future::ready(Ok(Some(Arc::new(PostgresCheckpoints {
            pool: self.pool.clone(),
            statement: self.sql.record_checkpoint.clone(),
            lease: sql::lease_text(lease),
            recorded: std::collections::HashMap::new(),
        })
            as Arc<dyn Checkpoints>))))
    }

    fn record_run(&self, lease: LeaseId, run: &RunTrace) -> BoxFuture<'_, Result<(), QueueError>> {
        let attempt = i32::try_from(run.delivery_attempt).unwrap_or(i32::MAX);
        let trace = serde_json::to_string(run).unwrap_or_default();
        Box::pin(async move {
            let client = self.pool.get().await.map_err(backend)?;
            let held: i64 = client
                .query_one(
                    &prepare(&client, &self.sql.record_run).await?,
                    &[&sql::lease_text(lease), &attempt, &trace],
                )
                .await
                .map_err(backend)
                .and_then(|row| column(&row, 0, "count"))?;
            match held {
                0 => Err(QueueError::LeaseLost(lease)),
                _ => Ok(()),
            }
        })
    }

    fn requeue(&self, lease: LeaseId, delay: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
        self.put_back(lease, delay, None)
    }

    fn requeue_attempt(
        &self,
        lease: LeaseId,
        delay: Duration,
        task_attempt: u32,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        self.put_back(lease, delay, Some(task_attempt))
    }

    fn release(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(backend)?;
            let released = client
                .execute(
                    &prepare(&client, &self.sql.release).await?,
                    &[&sql::lease_text(lease)],
                )
                .await
                .map_err(backend)?;
            if released == 0 {
                return Err(QueueError::LeaseLost(lease));
            }
            client
                .execute(
                    &prepare(&client, "SELECT pg_notify($1, '')").await?,
                    &[&self.channel],
                )
                .await
                .map_err(backend)?;
            self.announce();
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

impl PostgresQueue {
    /// Hands a claimed envelope out again after `delay`, for `task_attempt` when given: one
    /// statement for requeues and task retries, so both count deliveries the same way.
    fn put_back(
        &self,
        lease: LeaseId,
        delay: Duration,
        task_attempt: Option<u32>,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let mut client = self.pool.get().await.map_err(backend)?;
            let (lease_text, delay_micros) = (sql::lease_text(lease), micros(delay));
            let row = match task_attempt {
                None => client
                    .query_opt(
                        &prepare(&client, &self.sql.requeue).await?,
                        &[&lease_text, &delay_micros, &self.max_deliveries],
                    )
                    .await
                    .map_err(backend)?,
                Some(task_attempt) => {
                    let transaction = client.transaction().await.map_err(backend)?;
                    let Some(row) = transaction
                        .query_opt(
                            &transaction
                                .prepare_cached(&self.sql.held_envelope)
                                .await
                                .map_err(backend)?,
                            &[&lease_text],
                        )
                        .await
                        .map_err(backend)?
                    else {
                        return Err(QueueError::LeaseLost(lease));
                    };
                    // Set in Rust: `jsonb` cannot hold every JSON text (a `\u0000` in a
                    // string). It decoded when claimed; a row changed since is refused.
                    let mut envelope = column::<AnyValue>(&row, 0, "envelopes.envelope")?
                        .stored()
                        .decode()
                        .map_err(QueueError::Backend)?;
                    envelope.task_attempt = task_attempt;
                    let envelope = String::from_utf8(envelope.encode()).map_err(|error| {
                        QueueError::Backend(format!("envelope is not UTF-8: {error}"))
                    })?;
                    let row = transaction
                        .query_opt(
                            &transaction
                                .prepare_cached(&self.sql.requeue_attempt)
                                .await
                                .map_err(backend)?,
                            &[&lease_text, &delay_micros, &self.max_deliveries, &envelope],
                        )
                        .await
                        .map_err(backend)?;
                    transaction.commit().await.map_err(backend)?;
                    row
                }
            };
            let Some(row) = row else {
                return Err(QueueError::LeaseLost(lease));
            };
            if delay.is_zero() && column::<&str>(&row, 0, "envelopes.state")? == "ready" {
                client
                    .execute(
                        &prepare(&client, "SELECT pg_notify($1, '')").await?,
                        &[&self.channel],
                    )
                    .await
                    .map_err(backend)?;
                self.announce();
            }
            Ok(())
        })
    }
}

/// Keeps a connection that `LISTEN`s on the queue's channel and wakes one waiting claim per
/// notified task; reconnects after a failure (claims poll meanwhile).
async fn listen(url: String, channel: String, waiting: Arc<ClaimWait>, retry: Duration) {
    let mut reported = false;
    loop {
        let failure = match tokio_postgres::connect(&url, NoTls).await {
            Ok((client, mut connection)) => {
                let statement = format!("LISTEN {}", quote_ident(&channel));
                let listen = client.batch_execute(&statement);
                tokio::pin!(listen);
                let mut listening = false;
                loop {
                    tokio::select! {
                        done = &mut listen, if !listening => match done {
                            Ok(()) => {
                                listening = true;
                                reported = false;
                                // Whatever was pushed while nobody listened.
                                waiting.wake_all();
                            }
                            Err(error) => break error.to_string(),
                        },
                        message = std::future::poll_fn(|cx| connection.poll_message(cx)) => {
                            match message {
                                Some(Ok(AsyncMessage::Notification(notification))) => {
                                    waiting.wake(notified_tasks(notification.payload()));
                                }
                                Some(Ok(_)) => {}
                                Some(Err(error)) => break error.to_string(),
                                None => break "the connection closed".to_owned(),
                            }
                        }
                    }
                }
            }
            Err(error) => error.to_string(),
        };
        if !std::mem::replace(&mut reported, true) {
            tracing::warn!(target: "tasker", "[Tasker] the PostgreSQL queue stopped listening for notifications ({failure}); polling until it reconnects");
        }
        tokio::time::sleep(retry.max(Duration::from_millis(100))).await;
    }
}

/// How many tasks a notification announces: its payload when that is a number (a bulk push),
/// else one. PostgreSQL folds identical notifications of one transaction into one, so a
/// transaction that readies several tasks says how many.
fn notified_tasks(payload: &str) -> usize {
    /// More wake-ups than this wake no more workers than a process has.
    const MOST: usize = 1024;
    payload
        .parse::<usize>()
        .map_or(1, |tasks| tasks.clamp(1, MOST))
}

/// `"name"`, quoted as a PostgreSQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Microseconds, as the `float8` that `interval '1 microsecond' * $n` takes.
fn micros(duration: Duration) -> f64 {
    duration.as_micros() as f64
}

fn attempt(column: i32) -> u32 {
    u32::try_from(column).unwrap_or(1).max(1)
}

/// Column `index` of `row`, or a [`QueueError::Backend`] naming it (`name`): a column whose
/// type a DBA changed is an error, never a panic.
fn column<'a, T: FromSql<'a>>(row: &'a Row, index: usize, name: &str) -> Result<T, QueueError> {
    row.try_get(index).map_err(|error| {
        let PgFailure(message) = error.into();
        QueueError::Backend(format!("cannot read column `{name}`: {message}"))
    })
}

/// Any value of any column, as the bytes PostgreSQL sent and their type: read without assuming
/// the type, so that an envelope column holding something unexpected is buried, never an error
/// for every claim.
struct AnyValue<'a> {
    ty: Type,
    bytes: Option<&'a [u8]>,
}

impl<'a> FromSql<'a> for AnyValue<'a> {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(AnyValue {
            ty: ty.clone(),
            bytes: Some(raw),
        })
    }

    fn from_sql_null(ty: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(AnyValue {
            ty: ty.clone(),
            bytes: None,
        })
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

impl<'a> AnyValue<'a> {
    /// The value as a stored envelope: text as it is, JSON (a column a DBA made `json` or
    /// `jsonb`) as its text, anything else named by its type.
    fn stored(&self) -> StoredEnvelope<'a> {
        let Some(bytes) = self.bytes else {
            return StoredEnvelope::Other {
                kind: "NULL".to_owned(),
                bytes: std::borrow::Cow::Borrowed(&[]),
            };
        };
        match self.ty {
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON => {
                StoredEnvelope::Text(bytes)
            }
            // jsonb's binary form is a version byte (1) and the JSON text.
            Type::JSONB if bytes.first() == Some(&1) => StoredEnvelope::Text(&bytes[1..]),
            _ => StoredEnvelope::Other {
                kind: format!("a value of type {}", self.ty),
                bytes: std::borrow::Cow::Borrowed(bytes),
            },
        }
    }
}

/// The envelope, delivery attempt and task id of the row a claim leased (`RETURNING id,
/// envelope, delivery_attempt, task_id`), or why the row holds none: the reason it is buried
/// with.
fn read_claimed(row: &Row) -> Result<(Envelope, u32, String), String> {
    let unreadable = |error: QueueError| match error {
        QueueError::Backend(message) => format!("unreadable row: {message}"),
        other => format!("unreadable row: {other}"),
    };
    let envelope = column::<AnyValue>(row, 1, "envelopes.envelope")
        .map_err(unreadable)?
        .stored()
        .decode()?;
    let delivery_attempt =
        column::<i32>(row, 2, "envelopes.delivery_attempt").map_err(unreadable)?;
    let task_id = column::<String>(row, 3, "envelopes.task_id").map_err(unreadable)?;
    Ok((envelope, attempt(delivery_attempt), task_id))
}

/// The statement `sql` on `client`'s connection, prepared there once: later executions skip
/// the parse round trip (deadpool keeps the cache with the connection).
async fn prepare(
    client: &deadpool_postgres::ClientWrapper,
    sql: &str,
) -> Result<tokio_postgres::Statement, QueueError> {
    client.prepare_cached(sql).await.map_err(backend)
}

/// The rows of the query `sql`, prepared on `client`. A prepared statement whose result the
/// server can no longer describe (a DBA changed a column's type since: "cached plan must not
/// change result type") is prepared again, once, so that its rows are read — or buried — as
/// they now are rather than failing every claim until the connection closes.
async fn query_fresh(
    client: &deadpool_postgres::ClientWrapper,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Row>, QueueError> {
    let statement = prepare(client, sql).await?;
    match client.query(&statement, params).await {
        Err(error)
            if error.code() == Some(&tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED) =>
        {
            client.statement_cache.remove(sql, &[]);
            let statement = prepare(client, sql).await?;
            client.query(&statement, params).await.map_err(backend)
        }
        result => result.map_err(backend),
    }
}

/// A terminal-event row a recovery took (`RETURNING task_id::text, event`), whatever its
/// columns hold: a value that is not the event's text is a reason it cannot be emitted.
fn read_taken(row: &Row) -> TakenRow {
    let task_id = column::<String>(row, 0, "terminal_events.task_id").unwrap_or_default();
    let event = column::<AnyValue>(row, 1, "terminal_events.event")
        .map_err(|error| error.to_string())
        .and_then(|value| match value.stored() {
            StoredEnvelope::Text(bytes) => std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|error| format!("its event is not UTF-8: {error}")),
            StoredEnvelope::Other { kind, .. } => Err(format!("its event is {kind}, not text")),
        });
    (task_id, event)
}

/// The database's message as a [`QueueError::Backend`].
fn backend(error: impl Into<PgFailure>) -> QueueError {
    let PgFailure(message) = error.into();
    QueueError::Backend(message)
}

/// The checkpoints of one task run in the queue's schema, recorded while its lease is held.
struct PostgresCheckpoints {
    pool: Pool,
    statement: String,
    lease: String,
    recorded: std::collections::HashMap<u32, serde_json::Value>,
}

impl Checkpoints for PostgresCheckpoints {
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
        let (pool, statement, lease) = (
            self.pool.clone(),
            self.statement.clone(),
            self.lease.clone(),
        );
        Box::pin(async move {
            let position = i32::try_from(position).unwrap_or(i32::MAX);
            let stored = async {
                let client = pool.get().await.map_err(backend)?;
                let held: i64 = client
                    .query_one(
                        &client.prepare_cached(&statement).await.map_err(backend)?,
                        &[&lease, &position, &step, &output.to_string()],
                    )
                    .await
                    .map_err(backend)
                    .and_then(|row| column::<i64>(&row, 0, "count"))?;
                Ok::<_, QueueError>(held > 0)
            }
            .await;
            match stored {
                Ok(true) => Ok(()),
                Ok(false) => Err(CheckpointError::LeaseLost),
                Err(error) => Err(CheckpointError::Backend(error.to_string())),
            }
        })
    }
}

/// An error of the pool or the driver, as text that carries the database's own message.
struct PgFailure(String);

impl From<tokio_postgres::Error> for PgFailure {
    fn from(error: tokio_postgres::Error) -> Self {
        PgFailure(match error.as_db_error() {
            Some(db) => {
                let mut message = format!("PostgreSQL: {}: {}", db.severity(), db.message());
                if let Some(detail) = db.detail() {
                    message.push_str(&format!(" ({detail})"));
                }
                if db.code() == &tokio_postgres::error::SqlState::UNDEFINED_TABLE {
                    message.push_str(
                        "; has PostgresQueue::migrate() (or the script of migration_sql()) run \
                         on this schema?",
                    );
                }
                message
            }
            None => match std::error::Error::source(&error) {
                Some(source) => format!("PostgreSQL: {error}: {source}"),
                None => format!("PostgreSQL: {error}"),
            },
        })
    }
}

impl From<deadpool_postgres::PoolError> for PgFailure {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(error) => error.into(),
            other => PgFailure(format!("PostgreSQL connection pool: {other}")),
        }
    }
}

impl From<deadpool_postgres::CreatePoolError> for PgFailure {
    fn from(error: deadpool_postgres::CreatePoolError) -> Self {
        PgFailure(format!("PostgreSQL connection pool: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_announces_one_task_or_as_many_as_its_payload_says() {
        assert_eq!(notified_tasks(""), 1);
        assert_eq!(notified_tasks("not a number"), 1);
        assert_eq!(notified_tasks("0"), 1);
        assert_eq!(notified_tasks("12"), 12);
        assert_eq!(notified_tasks("99999999"), 1024);
    }

    /// The plans of the claim's statements on a table of 10,000 ready rows and 1,000 expired
    /// leases (after `ANALYZE`): each walks its index in order, with no sort and no scan of the
    /// table. Needs `TASKER_TEST_DATABASE_URL`; passes after saying so without it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_claim_statement_walks_an_index_in_order_without_sorting() {
        let Some(url) = std::env::var("TASKER_TEST_DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
        else {
            eprintln!("skipping: set TASKER_TEST_DATABASE_URL to check the claim's plans");
            return;
        };
        let schema = format!("tasker_plan_{}", std::process::id());
        let queue = PostgresQueue::builder(&url)
            .schema(&schema)
            .listen(false)
            .connect()
            .await
            .unwrap();
        let client = queue.pool.get().await.unwrap();
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .unwrap();
        queue.migrate().await.unwrap();
        client
            .batch_execute(&format!(
                "INSERT INTO {schema}.envelopes (queue, task_id, envelope, available_at)
                    SELECT 'default', i::text, '{{}}', now() - interval '1 hour' + i * interval '1 ms'
                    FROM generate_series(1, 10000) AS i;
                 INSERT INTO {schema}.envelopes
                    (queue, task_id, envelope, state, lease_id, lease_until)
                    SELECT 'default', 'l' || i, '{{}}', 'leased', 'l' || i,
                        now() - interval '1 hour' + i * interval '1 ms'
                    FROM generate_series(1, 1000) AS i;
                 ANALYZE {schema}.envelopes;"
            ))
            .await
            .unwrap();
        // As planned for each claimer's values, and as a generic plan, which a prepared
        // statement may come to use.
        let mut plans = Vec::new();
        for (name, statement, index) in [
            (
                "ready",
                &queue.sql.claim_ready,
                "Index Scan using envelopes_ready on envelopes",
            ),
            (
                "expired",
                &queue.sql.claim_expired,
                "Index Scan using envelopes_expiring on envelopes",
            ),
        ] {
            client
                .batch_execute(&format!("PREPARE {name} AS {statement}"))
                .await
                .unwrap();
            for (mode, alone) in [
                ("auto", false),
                ("auto", true),
                ("force_generic_plan", true),
            ] {
                let explain = format!(
                    "SET plan_cache_mode = {mode};
                     EXPLAIN EXECUTE {name}('default', ARRAY['lease'], 1000000, 3, {alone}, 1)"
                );
                let plan = client
                    .simple_query(&explain)
                    .await
                    .unwrap()
                    .iter()
                    .filter_map(|message| match message {
                        tokio_postgres::SimpleQueryMessage::Row(row) => {
                            row.get(0).map(str::to_owned)
                        }
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                plans.push((plan, index));
            }
        }
        client
            .batch_execute(&format!(
                "DEALLOCATE ALL; RESET plan_cache_mode; DROP SCHEMA {schema} CASCADE"
            ))
            .await
            .unwrap();
        for (plan, index) in &plans {
            // The claimed rows are updated through the primary key, not a scan of the table.
            assert!(
                plan.contains("Index Scan using envelopes_pkey on envelopes \"row\""),
                "{plan}"
            );
            assert!(plan.contains(index), "{plan}");
            assert!(!plan.contains("Sort"), "{plan}");
            assert!(!plan.contains("Seq Scan"), "{plan}");
        }
    }
}
