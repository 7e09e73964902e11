//! One task's events as a worker runs it, and the runs of it that workers abandoned.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tasker::telemetry::{Details, Event, TaskRef};

/// Collects the events of the task whose id the test sets in `task_id`, as
/// `<event>[ <step>][ <error class>]`. Everything is kept with its task id and filtered when
/// read, because the worker may start the task before the test learns its id; the producer's
/// `task.initialize` and `task.enqueue` are left out.
#[derive(Default)]
pub struct TaskLog {
    pub task_id: Mutex<Option<uuid::Uuid>>,
    lines: Mutex<Vec<(uuid::Uuid, String)>>,
    abandoned: Mutex<Vec<uuid::Uuid>>,
}

impl TaskLog {
    fn ours(&self, id: uuid::Uuid) -> bool {
        Some(id) == *self.task_id.lock().unwrap()
    }

    /// The task's events so far.
    pub fn lines(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|(id, _)| self.ours(*id))
            .map(|(_, line)| line.clone())
            .collect()
    }

    /// The task's runs that workers abandoned (one entry per run).
    pub fn abandoned(&self) -> Vec<uuid::Uuid> {
        let abandoned = self.abandoned.lock().unwrap();
        abandoned
            .iter()
            .copied()
            .filter(|id| self.ours(*id))
            .collect()
    }

    /// Waits (at most 30 s) until `done` holds of the task's events.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(&self.lines()) {
            assert!(
                Instant::now() < deadline,
                "waited 30 s for {what}; events: {:#?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The observer that fills a [`TaskLog`].
pub struct Observe(pub Arc<TaskLog>);

impl tasker::events::Observer for Observe {
    fn on_event(&self, event: &Event<'_>) {
        let Some(task_id) = event.task_id() else {
            return;
        };
        if matches!(
            event.details(),
            Details::TaskInitialize { .. } | Details::TaskEnqueue { .. }
        ) {
            return;
        }
        let step = event
            .step_name()
            .map(|name| format!(" {name}"))
            .unwrap_or_default();
        let class = match event.details() {
            Details::StepError { error, .. } => format!(" {}", error.class),
            _ => String::new(),
        };
        self.0
            .lines
            .lock()
            .unwrap()
            .push((task_id, format!("{}{step}{class}", event.name())));
    }

    fn on_task_abandoned(&self, task: &TaskRef) {
        self.0.abandoned.lock().unwrap().push(task.id);
    }
}
