//! Step checkpoints in generated code: replaying a recorded output, and recording a new one.
//!
//! A step's output is checkpointed when its type can go to JSON and back: `Result<T, E>` with
//! `T: Serialize + DeserializeOwned` (the `Ok` value is recorded) or any `T: Serialize +
//! DeserializeOwned`. The expansion picks the level by autoref specialisation, as for
//! [`outcome`](crate::outcome): `(&&&Probe::<Output>::new()).tasker_replay(&mut run)`, with as
//! many references as level 1 (`Result`, implemented for `&&Probe`) takes, so that it is tried
//! first — a `Result` whose error type serializes too records only its `Ok` value.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::CheckpointError;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::step::StepRun;

/// Names a step's output type.
pub struct Probe<T>(PhantomData<fn() -> T>);

impl<T> Probe<T> {
    /// A probe for output type `T`.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Probe(PhantomData)
    }
}

/// A checkpoint being written: `Ok` once it is durable.
type Write = Pin<Box<dyn Future<Output = Result<(), CheckpointError>> + Send + 'static>>;

/// The future of recording a checkpoint: ready at once when there is nothing to record, and
/// ready otherwise only once the checkpoint is durable — a record that failed never finishes,
/// so its step never completes (the worker stops the run).
#[must_use = "a checkpoint is durable only once its recording is awaited"]
pub struct Recording(Option<Write>);

impl Recording {
    /// Nothing to record.
    pub fn done() -> Self {
        Recording(None)
    }

    /// A record being written.
    pub fn pending(future: Write) -> Self {
        Recording(Some(future))
    }
}

impl Future for Recording {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            Some(future) => match future.as_mut().poll(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(()),
                Poll::Pending => Poll::Pending,
                // Not durable: the step must not complete. A worker's checkpoints stop the run
                // rather than say so (see `DurableCheckpoints`); this is the backstop.
                Poll::Ready(Err(_)) => {
                    self.0 = Some(Box::pin(std::future::pending()));
                    Poll::Pending
                }
            },
            None => Poll::Ready(()),
        }
    }
}

/// Level 1: `Result<T, E>` whose `Ok` value goes to JSON and back.
pub trait CheckpointResult<T, E> {
    /// The recorded `Ok` value, if an earlier delivery recorded one.
    fn tasker_replay(&self, run: &mut StepRun) -> Option<Result<T, E>>;
    /// Records an `Ok` value.
    fn tasker_record(&self, run: &StepRun, output: &Result<T, E>) -> Recording;
}

impl<T: Serialize + DeserializeOwned, E> CheckpointResult<T, E> for &&Probe<Result<T, E>> {
    fn tasker_replay(&self, run: &mut StepRun) -> Option<Result<T, E>> {
        let value = serde_json::from_value(run.recorded_output()?).ok()?;
        run.replayed();
        Some(Ok(value))
    }

    fn tasker_record(&self, run: &StepRun, output: &Result<T, E>) -> Recording {
        match output {
            Ok(value) if run.is_checkpointed() => serde_json::to_value(value)
                .map_or_else(|_| Recording::done(), |json| run.record_output(json)),
            _ => Recording::done(),
        }
    }
}

/// Level 2: any output that goes to JSON and back.
pub trait CheckpointValue<T> {
    /// The recorded value, if an earlier delivery recorded one.
    fn tasker_replay(&self, run: &mut StepRun) -> Option<T>;
    /// Records the value.
    fn tasker_record(&self, run: &StepRun, output: &T) -> Recording;
}

impl<T: Serialize + DeserializeOwned> CheckpointValue<T> for &Probe<T> {
    fn tasker_replay(&self, run: &mut StepRun) -> Option<T> {
        let value = serde_json::from_value(run.recorded_output()?).ok()?;
        run.replayed();
        Some(value)
    }

    fn tasker_record(&self, run: &StepRun, output: &T) -> Recording {
        if !run.is_checkpointed() {
            return Recording::done();
        }
        serde_json::to_value(output)
            .map_or_else(|_| Recording::done(), |json| run.record_output(json))
    }
}

/// Level 3: outputs that are not checkpointed; the step simply runs again on redelivery.
pub trait NoCheckpoint<T> {
    /// Never a recorded value.
    fn tasker_replay(&self, run: &mut StepRun) -> Option<T> {
        let _ = run;
        None
    }
    /// Nothing to record.
    fn tasker_record(&self, run: &StepRun, output: &T) -> Recording {
        let _ = (run, output);
        Recording::done()
    }
}

impl<T> NoCheckpoint<T> for Probe<T> {}
