//! Enqueuing a request: checking it against the registered tasks, then queueing it.

use serde_json::Value;
use tasker_telemetry::context::Context;
use tasker_telemetry::{events, propagation, Details, Event, InitializeStatus, TaskRef};
use tokio::sync::oneshot;

use super::registry::Registered;
use super::{task_ref, EnqueueError, Pending, Runtime, TaskHandle};
use crate::queue::{Envelope, MAX_CONTEXT_BYTES};
use crate::request::TaskRequest;

impl Runtime {
    /// Checks `request` against the registered tasks and queues it: emits `task.initialize`, then
    /// `task.enqueue`, with the task id the worker's events will carry too.
    ///
    /// `request` is the task function's own request, typed (`fulfill::request(order)`: the
    /// handle waits for the task's output type), or a by-name [`TaskRequest`] (the handle waits
    /// for JSON).
    ///
    /// A request for an unknown task or version, with a context that does not fit the task's
    /// input, or bypassing a step that is not `skippable`, is refused: `task.initialize` is
    /// emitted with `status: "error"` and the message, and nothing reaches the queue.
    pub async fn enqueue<R: crate::typed::Enqueue>(
        &self,
        request: R,
    ) -> Result<TaskHandle<R::Output>, EnqueueError> {
        let request = request.into_request()?;
        let task_id = crate::ids::new_id();
        let registered = match self.check(&request) {
            Ok(registered) => registered,
            Err((error, task)) => {
                let task = task.map(|descriptor| task_ref(task_id, descriptor));
                initialize(task, Some(&error));
                return Err(error);
            }
        };
        let descriptor = registered.descriptor;
        let task = task_ref(task_id, descriptor);
        initialize(Some(task), None);
        if events::listening() {
            tasker_telemetry::__private::fire(&Event::new(
                Some(task),
                None,
                Details::TaskEnqueue {
                    queue: self.inner.queue.name().into(),
                },
            ));
        }
        let trace_context = propagation::propagator_context(Some(&task))
            .or_else(|| request.carried_trace_context().cloned());
        let envelope = Envelope {
            format: crate::queue::ENVELOPE_FORMAT,
            task_id,
            task_name: descriptor.name.to_owned(),
            task_version: descriptor.version.to_owned(),
            context: request.context().clone(),
            bypass_steps: request.bypassed_steps().to_vec(),
            trace_context,
            enqueued_at_us: crate::queue::now_micros(),
            delivery_attempt: 1,
            task_attempt: 1,
        };
        let (sender, receiver) = oneshot::channel();
        if self.inner.has_workers {
            self.inner.lock_pending().insert(
                task_id,
                Pending {
                    result: sender,
                    scope: Context::with_current(Context::scope),
                },
            );
        }
        if let Err(error) = self.inner.queue.push(envelope).await {
            self.inner.lock_pending().remove(&task_id);
            return Err(EnqueueError::Queue(error));
        }
        Ok(TaskHandle {
            task_id,
            result: receiver,
            _output: std::marker::PhantomData,
        })
    }

    /// Resolves the task, and checks the context and the bypassed steps; on error, also the
    /// descriptor when the task is known, for the `task.initialize` event.
    #[allow(clippy::result_large_err)]
    fn check(
        &self,
        request: &TaskRequest,
    ) -> Result<&Registered, (EnqueueError, Option<&'static crate::TaskDescriptor>)> {
        let registered = self
            .inner
            .registry
            .resolve(request.name(), request.requested_version())
            .map_err(|error| (error, None))?;
        let descriptor = registered.descriptor;
        let fail = |error| Err((error, Some(descriptor)));
        let Some(runner) = &registered.runner else {
            return fail(EnqueueError::NotEnqueueable {
                name: descriptor.name.to_owned(),
                version: descriptor.version.to_owned(),
            });
        };
        if let Err(size) = fits(request.context(), MAX_CONTEXT_BYTES) {
            return fail(EnqueueError::TooLarge {
                name: descriptor.name.to_owned(),
                size,
                limit: MAX_CONTEXT_BYTES,
            });
        }
        if let Err(error) = runner.check(request.context()) {
            return fail(EnqueueError::InvalidContext {
                name: descriptor.name.to_owned(),
                version: descriptor.version.to_owned(),
                reason: error.to_string(),
            });
        }
        for step in request.bypassed_steps() {
            let steps = crate::steps();
            let skippable = || {
                let mut names: Vec<String> = steps
                    .iter()
                    .filter(|step| step.skippable)
                    .map(|step| step.name.to_owned())
                    .collect();
                names.dedup();
                names
            };
            match steps.iter().find(|candidate| candidate.name == step) {
                None => {
                    return fail(EnqueueError::UnknownStep {
                        step: step.clone(),
                        skippable: skippable(),
                    })
                }
                Some(found) if !found.skippable => {
                    return fail(EnqueueError::NotSkippable {
                        step: step.clone(),
                        skippable: skippable(),
                    })
                }
                Some(_) => {}
            }
        }
        Ok(registered)
    }
}

/// `Ok` when `context` encodes to at most `limit` bytes of JSON; else the bytes counted before
/// stopping (just over the limit). Stops as soon as the limit is passed.
fn fits(context: &Value, limit: usize) -> Result<(), usize> {
    struct Counter {
        written: usize,
        limit: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.written += bytes.len();
            if self.written > self.limit {
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { written: 0, limit };
    match serde_json::to_writer(&mut counter, context) {
        Ok(()) => Ok(()),
        Err(_) => Err(counter.written),
    }
}

fn initialize(task: Option<TaskRef>, error: Option<&EnqueueError>) {
    if !events::listening() {
        return;
    }
    let (status, errors) = match error {
        None => (InitializeStatus::Success, Vec::new()),
        Some(error) => (InitializeStatus::Error, vec![error.to_string()]),
    };
    tasker_telemetry::__private::fire(&Event::new(
        task,
        None,
        Details::TaskInitialize {
            status,
            errors: errors.into(),
        },
    ));
}
