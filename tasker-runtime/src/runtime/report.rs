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
