//! A queued task's terminal event is never lost: the worker emits it after its completion
//! commits and marks it reported in small batches off the task's path ([`Marks`]); a process
//! with workers looks now and then for events whose worker died before marking them, and emits
//! them again, with the same ids ([`recover_unreported`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tasker_telemetry::context::Context;
use tasker_telemetry::{events, TaskOrigin, TaskRef};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use super::registry::Registry;
use super::task_ref;
use crate::queue::{EmitTerminal, Queue, TerminalEvent};

/// How long the marker waits after the first new mark for others to join its batch.
const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// Marks kept while the queue cannot take them, at most; beyond, a mark is dropped (its event
/// is then emitted again by a later recovery, with the same ids) rather than memory grown.
const MAX_PENDING_MARKS: usize = 65_536;

/// Terminal events one recovery transaction takes at most.
const RECOVERY_BATCH: usize = 100;

/// The task ids whose terminal events this process emitted and has not yet marked reported.
#[derive(Debug, Default)]
pub(super) struct Marks {
    pending: Mutex<Vec<Uuid>>,
    wake: Notify,
    /// Whether a failure to mark was reported already (once per process is enough).
    reported: std::sync::atomic::AtomicBool,
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
    /// next flush.
    pub(super) async fn flush(&self, queue: &dyn Queue) {
        let batch = std::mem::take(&mut *self.lock());
        if batch.is_empty() {
            return;
        }
        if let Err(error) = queue.mark_reported(&batch).await {
            if !self
                .reported
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(
                    target: "tasker",
                    "[Tasker] could not mark {} terminal events of queue `{}` reported: {error}; \
                     retrying with the next batch (an event left unmarked for longer than a \
                     lease is emitted again, with the same ids)",
                    batch.len(),
                    queue.name(),
                );
            }
            let mut pending = self.lock();
            let room = MAX_PENDING_MARKS.saturating_sub(pending.len());
            pending.extend(batch.into_iter().take(room));
        }
    }
}

/// Writes `marks` in batches until the runtime stops (then once more).
pub(super) async fn mark_in_batches(
    marks: Arc<Marks>,
    queue: Arc<dyn Queue>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        if *stopped.borrow() {
            marks.flush(&*queue).await;
            return;
        }
        tokio::select! {
            _ = marks.wake.notified() => {}
            _ = stopped.changed() => {}
        }
        // Let the marks of the tasks finishing about now join this batch.
        tokio::time::sleep(BATCH_WINDOW).await;
        marks.flush(&*queue).await;
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
        Context::default().in_scope(|| events::fire(&event));
    });
    let mut reported = false;
    loop {
        let mut recovered = 0;
        loop {
            match queue
                .report_unreported(lease, RECOVERY_BATCH, emit.clone())
                .await
            {
                Ok(taken) => {
                    recovered += taken;
                    if taken < RECOVERY_BATCH {
                        break;
                    }
                }
                Err(error) => {
                    if !std::mem::replace(&mut reported, true) {
                        tracing::warn!(
                            target: "tasker",
                            "[Tasker] could not look for unreported terminal events in queue \
                             `{}`: {error}; looking again in {lease:?}",
                            queue.name(),
                        );
                    }
                    break;
                }
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

/// `text` with a `'static` lifetime, kept once per distinct text: names of tasks and steps
/// this process does not know, a set no larger than the names in the queue.
fn intern(text: &str) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let names = names.get_or_insert_with(HashSet::new);
    if let Some(name) = names.get(text) {
        return name;
    }
    let name: &'static str = Box::leak(text.to_owned().into_boxed_str());
    names.insert(name);
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

    #[test]
    fn names_are_interned_once() {
        let first = intern("a task this process does not know");
        let again = intern(&String::from("a task this process does not know"));
        assert!(std::ptr::eq(first, again));
    }
}
