//! A queued task's terminal event is never lost: the worker emits it after its completion
//! commits and marks it reported in small batches off the task's path ([`Marks`]); a process
//! with workers looks now and then for events whose worker died before marking them, and emits
//! them again, with the same ids ([`recover_unreported`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tasker_telemetry::context::Context;
use tasker_telemetry::{TaskOrigin, TaskRef};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use super::registry::Registry;
use super::task_ref;
use crate::queue::{EmitTerminal, Queue, TerminalEvent};
use crate::repeated_failure::{failure_counter, RepeatedFailure};

/// How long the marker waits after the first new mark for others to join its batch.
const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// Marks kept while the queue cannot take them, at most; beyond, a mark is dropped (its event
/// is then emitted again by a later recovery, with the same ids) rather than memory grown.
const MAX_PENDING_MARKS: usize = 65_536;

/// Terminal events one recovery transaction takes at most.
const RECOVERY_BATCH: usize = 100;

/// A refused batch of marks is tried again after this, doubling up to [`MARK_RETRY_MAX`],
/// while any are pending: not only when the next task finishes.
const MARK_RETRY_FIRST: Duration = Duration::from_millis(50);
const MARK_RETRY_MAX: Duration = Duration::from_secs(2);

/// How long a stopping runtime keeps trying to write its pending marks.
const MARK_STOP_DEADLINE: Duration = Duration::from_secs(2);

/// The task ids whose terminal events this process emitted and has not yet marked reported.
#[derive(Debug)]
pub(super) struct Marks {
    pending: Mutex<Vec<Uuid>>,
    wake: Notify,
    /// Failures to mark, reported rate-limited for as long as they last.
    failures: Mutex<RepeatedFailure>,
}

impl Default for Marks {
    fn default() -> Self {
        Marks {
            pending: Mutex::new(Vec::new()),
            wake: Notify::new(),
            failures: failure_counter(),
        }
    }
}

impl Marks {
    /// Adds the mark of `task_id`, whose terminal event was just emitted.
    pub(super) fn add(&self, task_id: Uuid) {
        let mut pending = self.lock();
        if pending.len() < MAX_PENDING_MARKS {
            pending.push(task_id);
        }
        drop(pending);
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Uuid>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes every pending mark, in one call of the queue; on failure they are kept for the
    /// next flush. Whether none is left pending.
    pub(super) async fn flush(&self, queue: &dyn Queue) -> bool {
        let batch = std::mem::take(&mut *self.lock());
        if batch.is_empty() {
            return true;
        }
        let outcome = queue.mark_reported(&batch).await;
        let count = batch.len();
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).log(
            Instant::now(),
            outcome.as_ref().map(|_| ()),
            || {
                format!(
                    "could not mark {count} terminal events of queue `{}` reported (retrying \
                     with backoff; an event left unmarked for longer than a lease is emitted \
                     again, with the same ids)",
                    queue.name()
                )
            },
        );
        if outcome.is_ok() {
            return self.lock().is_empty();
        }
        let mut pending = self.lock();
        let room = MAX_PENDING_MARKS.saturating_sub(pending.len());
        pending.extend(batch.into_iter().take(room));
        false
    }
}

/// Writes `marks` in batches until the runtime stops, then tries the last ones until
/// [`MARK_STOP_DEADLINE`]. A refused batch is tried again on a backoff timer while any mark is
/// pending, so an idle process still writes it before recovery would emit its event again.
pub(super) async fn mark_in_batches(
    marks: Arc<Marks>,
    queue: Arc<dyn Queue>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut retry: Option<Duration> = None;
    loop {
        if *stopped.borrow() {
            let deadline = Instant::now() + MARK_STOP_DEADLINE;
            let mut backoff = MARK_RETRY_FIRST;
            while !marks.flush(&*queue).await && Instant::now() + backoff < deadline {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MARK_RETRY_MAX);
            }
            return;
        }
        let retry_after = retry.unwrap_or(MARK_RETRY_MAX);
        tokio::select! {
            _ = marks.wake.notified() => {
                // Let the marks of the tasks finishing about now join this batch.
                tokio::time::sleep(BATCH_WINDOW).await;
            }
            _ = stopped.changed() => {}
            _ = tokio::time::sleep(retry_after), if retry.is_some() => {}
        }
        retry = if marks.flush(&*queue).await {
            None
        } else {
            Some(retry.map_or(MARK_RETRY_FIRST, |last| (last * 2).min(MARK_RETRY_MAX)))
        };
    }
}

/// Emits the terminal events of `queue`'s completions left unreported for longer than `lease`
/// (their worker died before marking them): at once, then every `lease`, until the runtime
/// stops. An idle queue costs one read per lease length.
pub(super) async fn recover_unreported(
    queue: Arc<dyn Queue>,
    registry: Arc<Registry>,
    lease: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let emit: EmitTerminal = Arc::new(move |stored: &TerminalEvent| {
        let event = stored.to_event(terminal_task(&registry, stored), step_name);
        Context::default().in_scope(|| tasker_telemetry::__private::fire(&event));
    });
    let failures = failure_counter();
    loop {
        let mut recovered = 0;
        loop {
            let outcome = queue
                .report_unreported(lease, RECOVERY_BATCH, emit.clone())
                .await;
            failures.lock().unwrap_or_else(|e| e.into_inner()).log(
                Instant::now(),
                outcome.as_ref().map(|_| ()),
                || {
                    format!(
                        "could not look for unreported terminal events in queue `{}` \
                         (looking again every {lease:?})",
                        queue.name()
                    )
                },
            );
            match outcome {
                Ok(taken) if taken == RECOVERY_BATCH => recovered += taken,
                Ok(taken) => {
                    recovered += taken;
                    break;
                }
                Err(_) => break,
            }
        }
        if recovered > 0 {
            tracing::info!(
                target: "tasker",
                "[Tasker] emitted {recovered} terminal events of queue `{}` that the workers \
                 which completed their tasks had not reported (those workers stopped first)",
                queue.name(),
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(lease) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// The identity of the task `stored` ends: its registered descriptor when this process has
/// it, else its names as stored.
fn terminal_task(registry: &Registry, stored: &TerminalEvent) -> TaskRef {
    match registry.exact(&stored.task_name, &stored.task_version) {
        Some(registered) => task_ref(stored.task_id, registered.descriptor),
        None => TaskRef {
            id: stored.task_id,
            name: intern(&stored.task_name),
            version: intern(&stored.task_version),
            source: None,
            origin: TaskOrigin::Queued,
        },
    }
}

/// A step's name as events carry it: the registered one, else the stored text.
fn step_name(name: &str) -> &'static str {
    crate::steps()
        .into_iter()
        .find(|step| step.name == name)
        .map_or_else(|| intern(name), |step| step.name)
}

/// Distinct names [`intern`] keeps at most, and their bytes at most: names read from the
/// database that this process does not know are leaked to be `'static`, so their number is
/// bounded, not the names in the queue.
const MAX_INTERNED_NAMES: usize = 1024;
const MAX_INTERNED_BYTES: usize = 256 * 1024;

/// The name a re-emitted event carries for an unknown name once [`intern`] is full.
const UNKEPT_NAME: &str = "(unregistered name not kept)";

/// `text` with a `'static` lifetime, kept once per distinct text: names of tasks and steps this
/// process does not know, up to [`MAX_INTERNED_NAMES`] names and [`MAX_INTERNED_BYTES`]; past
/// that, [`UNKEPT_NAME`] (said once).
fn intern(text: &str) -> &'static str {
    static NAMES: Mutex<Option<(HashSet<&'static str>, usize)>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let (names, bytes) = names.get_or_insert_with(|| (HashSet::new(), 0));
    if let Some(name) = names.get(text) {
        return name;
    }
    if names.len() >= MAX_INTERNED_NAMES || *bytes + text.len() > MAX_INTERNED_BYTES {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::warn!(
                target: "tasker",
                "[Tasker] re-emitted terminal events name more than {MAX_INTERNED_NAMES} \
                 tasks or steps this process does not register; further unknown names are \
                 emitted as `{UNKEPT_NAME}` (register the tasks in the process that recovers \
                 their events)"
            );
        });
        return UNKEPT_NAME;
    }
    let name: &'static str = Box::leak(text.to_owned().into_boxed_str());
    names.insert(name);
    *bytes += text.len();
    name
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::queue::{Claim, Envelope, LeaseId, QueueError};
    use crate::runner::BoxFuture;

    /// Records the batches of marks it is given; refuses them while `down`.
    #[derive(Default)]
    struct MarkLog {
        down: AtomicBool,
        batches: Mutex<Vec<Vec<Uuid>>>,
    }

    fn unused<T: Send + 'static>() -> BoxFuture<'static, Result<T, QueueError>> {
        Box::pin(std::future::ready(Err(QueueError::Closed("test".into()))))
    }

    impl Queue for MarkLog {
        fn name(&self) -> &str {
            "marks"
        }
        fn push(&self, _: Envelope) -> BoxFuture<'_, Result<(), QueueError>> {
            unused()
        }
        fn claim(
            &self,
            _: Duration,
            _: Duration,
        ) -> BoxFuture<'_, Result<Option<Claim>, QueueError>> {
            unused()
        }
        fn renew(&self, _: LeaseId, _: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
            unused()
        }
        fn acknowledge(&self, _: LeaseId) -> BoxFuture<'_, Result<(), QueueError>> {
            unused()
        }
        fn requeue(&self, _: LeaseId, _: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
            unused()
        }
        fn mark_reported(&self, task_ids: &[Uuid]) -> BoxFuture<'_, Result<(), QueueError>> {
            if self.down.load(Ordering::SeqCst) {
                return Box::pin(std::future::ready(Err(QueueError::Backend("down".into()))));
            }
            self.batches.lock().unwrap().push(task_ids.to_vec());
            Box::pin(std::future::ready(Ok(())))
        }
    }

    #[tokio::test]
    async fn marks_the_queue_refuses_are_written_with_the_next_batch() {
        let queue = MarkLog::default();
        let marks = Marks::default();
        let ids: Vec<Uuid> = (1..=3).map(Uuid::from_u128).collect();
        queue.down.store(true, Ordering::SeqCst);
        marks.add(ids[0]);
        marks.add(ids[1]);
        marks.flush(&queue).await;
        assert!(queue.batches.lock().unwrap().is_empty());
        queue.down.store(false, Ordering::SeqCst);
        marks.add(ids[2]);
        marks.flush(&queue).await;
        marks.flush(&queue).await;
        assert_eq!(*queue.batches.lock().unwrap(), [ids]);
    }

    #[tokio::test]
    async fn the_marker_writes_marks_in_batches_and_the_last_ones_on_stop() {
        let queue = Arc::new(MarkLog::default());
        let marks = Arc::new(Marks::default());
        let (stop, stopped) = watch::channel(false);
        let marker = tokio::spawn(mark_in_batches(marks.clone(), queue.clone(), stopped));
        let ids: Vec<Uuid> = (1..=4).map(Uuid::from_u128).collect();
        marks.add(ids[0]);
        marks.add(ids[1]);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while queue.batches.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "no batch within 10 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        marks.add(ids[2]);
        marks.add(ids[3]);
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), marker)
            .await
            .expect("the marker stops within 10 s")
            .unwrap();
        assert_eq!(
            *queue.batches.lock().unwrap(),
            [ids[..2].to_vec(), ids[2..].to_vec()]
        );
    }

    /// Waits (at most 5 s) until `queue` took a batch.
    async fn first_batch(queue: &MarkLog, what: &str) -> Vec<Vec<Uuid>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while queue.batches.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "{what} within 5 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        queue.batches.lock().unwrap().clone()
    }

    /// A mark refused once is written once the queue takes marks again, with no other task
    /// finishing meanwhile (else recovery would emit an event that no kill left unmarked).
    #[tokio::test]
    async fn a_refused_mark_is_retried_while_the_process_is_idle() {
        let queue = Arc::new(MarkLog::default());
        let marks = Arc::new(Marks::default());
        let (_stop, stopped) = watch::channel(false);
        queue.down.store(true, Ordering::SeqCst);
        let marker = tokio::spawn(mark_in_batches(marks.clone(), queue.clone(), stopped));
        marks.add(Uuid::from_u128(1));
        tokio::time::sleep(Duration::from_millis(300)).await;
        queue.down.store(false, Ordering::SeqCst);
        let batches = first_batch(&queue, "the refused mark retried").await;
        assert_eq!(batches, [vec![Uuid::from_u128(1)]]);
        marker.abort();
    }

    /// A stopping runtime keeps trying its refused marks until the queue takes them (within
    /// its deadline), instead of trying once.
    #[tokio::test]
    async fn a_stopping_marker_retries_refused_marks_until_its_deadline() {
        let queue = Arc::new(MarkLog::default());
        let marks = Arc::new(Marks::default());
        let (stop, stopped) = watch::channel(false);
        queue.down.store(true, Ordering::SeqCst);
        marks.add(Uuid::from_u128(7));
        stop.send(true).unwrap();
        let marker = tokio::spawn(mark_in_batches(marks.clone(), queue.clone(), stopped));
        tokio::time::sleep(Duration::from_millis(200)).await;
        queue.down.store(false, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(5), marker)
            .await
            .expect("the marker stops within 5 s")
            .unwrap();
        assert_eq!(*queue.batches.lock().unwrap(), [vec![Uuid::from_u128(7)]]);
    }

    #[test]
    fn names_are_interned_once() {
        let first = intern("a task this process does not know");
        let again = intern(&String::from("a task this process does not know"));
        assert!(std::ptr::eq(first, again));
    }

    /// The interned names are bounded: past the limit an unknown name is not kept (no leak),
    /// and the names kept before are still given back.
    #[test]
    fn interned_names_are_bounded() {
        let kept = intern("kept before the limit");
        let names: Vec<&str> = (0..MAX_INTERNED_NAMES + 10)
            .map(|n| intern(&format!("unknown name {n}")))
            .collect();
        assert_eq!(names.last(), Some(&UNKEPT_NAME));
        assert_eq!(intern("one more unknown name"), UNKEPT_NAME);
        assert!(std::ptr::eq(intern("kept before the limit"), kept));
    }
}
