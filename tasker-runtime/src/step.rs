//! Running one step call: its attempts, retries, skip, panics and cancellation.
//!
//! `#[tasker::step]` expands to a short loop around [`StepRun`]: start, optionally skip, then
//! `attempt` → [`finish`](StepRun::finish) until it says [`Next::Return`]. All lifecycle events are
//! emitted here; when nobody listens a `StepRun` is "silent" and only applies the policy.

use std::any::Any;
use std::borrow::Cow;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::resume_unwind;
use std::pin::Pin;
use std::task::{Context as PollContext, Poll};
use std::time::{Duration, SystemTime};

use tasker_telemetry::__private::StepTally;
use tasker_telemetry::context::Context;
use tasker_telemetry::filter::mask_configured;
use tasker_telemetry::{clock, propagation};
use tasker_telemetry::{
    events, panic_message, Details, ErrorInfo, Event, StepRef, CANCELLED_CLASS,
};

use crate::batch::announce;
use crate::checkpoint::RunCheckpoints;
use crate::descriptor::StepDescriptor;
use crate::diagnostics::{FromTimeout, RetryArgument, TimeoutError, TimeoutOutput};
use crate::outcome::{DescribeError, Outcome};
use crate::scoped::run_in;
use crate::{ids, StepTimeout};

/// What the expansion does after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Return the attempt's value.
    Return,
    /// Wait this long, then run another attempt.
    Retry(Duration),
}

/// Whether a step call that has no policy to apply (one attempt, no `skip_if`, not `skippable`,
/// no `timeout_ms`, no `fields`) can run its body and nothing else: nobody listens to Tasker's
/// events and no `tracing` subscriber takes INFO spans (an attempt's span, for log
/// correlation). Two relaxed loads; `#[step]` checks it before it builds a [`StepRun`]. An async
/// step whose output could be checkpointed also asks [`quiet_uncheckpointed`].
#[inline(always)]
pub fn quiet() -> bool {
    use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
    !events::listening()
        && (STATIC_MAX_LEVEL < LevelFilter::INFO || LevelFilter::current() < LevelFilter::INFO)
}

/// [`quiet`], and no task run keeps checkpoints (then a step's output must be recorded).
#[inline(always)]
pub fn quiet_uncheckpointed() -> bool {
    quiet() && !crate::checkpoint::checkpointing()
}

/// Runs the observed path of a step call, out of line: see [`quiet`].
#[cold]
#[inline(never)]
pub fn observed<R>(run: impl FnOnce() -> R) -> R {
    run()
}

/// One call of a step, across all of its attempts.
#[derive(Debug)]
pub struct StepRun {
    descriptor: &'static StepDescriptor,
    attempt: u32,
    /// This call's position among its task's checkpointed step calls, when the task keeps
    /// checkpoints.
    position: Option<u32>,
    /// `ManuallyDrop` so that a silent call (`None`) needs no out-of-line drop glue; `Drop`
    /// drops it, on the cold path, when there is something to drop.
    live: ManuallyDrop<Option<LiveBox>>,
}

/// The state of a step call that somebody listens to.
#[derive(Debug)]
struct Live {
    /// The step's context (its task, itself as current step); while an attempt is polled, the
    /// context it replaced (see `run_in`).
    context: Option<Context>,
    step: StepRef,
    /// When the attempt running (or about to run) started, on both clocks.
    attempt_started: clock::Tick,
    attempt_started_at: SystemTime,
    finished: bool,
    /// Values recorded with `#[step(fields(...))]`, masked.
    fields: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

/// A [`Live`] on the heap, so that a step call's future stays small (it is moved by value into
/// place, and a quiet call pays for every byte of it), in a box recycled through a per-thread
/// pool, so that live calls allocate only while the pool fills.
struct LiveBox(ManuallyDrop<Box<Option<Live>>>);

/// Boxes kept per thread for the next live step calls: enough for deep nesting and wide
/// `join!` batches; more are freed.
const POOLED_PER_THREAD: usize = 64;

thread_local! {
    // The boxes are the point: each is one call's `Live`, handed out and taken back whole.
    #[allow(clippy::vec_box)]
    static LIVE_POOL: std::cell::RefCell<Vec<Box<Option<Live>>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl LiveBox {
    fn new(live: Live) -> LiveBox {
        let recycled = LIVE_POOL
            .try_with(|pool| pool.try_borrow_mut().ok().and_then(|mut pool| pool.pop()))
            .ok()
            .flatten();
        let mut slot = recycled.unwrap_or_else(|| Box::new(None));
        *slot = Some(live);
        LiveBox(ManuallyDrop::new(slot))
    }
}

impl std::ops::Deref for LiveBox {
    type Target = Live;

    #[inline]
    fn deref(&self) -> &Live {
        match &**self.0 {
            Some(live) => live,
            None => unreachable!("a LiveBox holds its Live until it is dropped"),
        }
    }
}

impl std::ops::DerefMut for LiveBox {
    #[inline]
    fn deref_mut(&mut self) -> &mut Live {
        match &mut **self.0 {
            Some(live) => live,
            None => unreachable!("a LiveBox holds its Live until it is dropped"),
        }
    }
}

impl Drop for LiveBox {
    fn drop(&mut self) {
        // SAFETY: `self.0` is taken once, here, and never used again.
        let mut slot = unsafe { ManuallyDrop::take(&mut self.0) };
        // Drop the call's state (its task's `Arc`, its fields) now, wherever the box goes.
        *slot = None;
        let _ = LIVE_POOL.try_with(|pool| {
            if let Ok(mut pool) = pool.try_borrow_mut() {
                if pool.len() < POOLED_PER_THREAD {
                    pool.push(slot);
                }
            }
        });
    }
}

impl std::fmt::Debug for LiveBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Live::fmt(self, f)
    }
}

impl StepRun {
    /// Starts an async step call. Inside the announce poll of [`join!`](crate::join) the future
    /// records the step in the batch and stays pending once, before anything runs.
    #[inline]
    pub fn start(descriptor: &'static StepDescriptor) -> Start {
        Start { descriptor }
    }

    /// Starts a sync step call.
    #[inline]
    pub fn start_sync(descriptor: &'static StepDescriptor) -> StepRun {
        if !events::listening() {
            return StepRun::silent(descriptor);
        }
        StepRun::live(descriptor)
    }

    fn silent(descriptor: &'static StepDescriptor) -> StepRun {
        StepRun {
            descriptor,
            attempt: 1,
            position: None,
            live: ManuallyDrop::new(None),
        }
    }

    #[cold]
    fn live(descriptor: &'static StepDescriptor) -> StepRun {
        // One clock read serves the id, and the start and `step.handle` of the first attempt.
        let now = clock::now();
        let parent = Context::current();
        let step = StepRef {
            id: ids::new_id_at(now.system),
            name: descriptor.name,
            parent_id: parent.step().map(|step| step.id),
            source: Some(&descriptor.source),
        };
        StepRun {
            descriptor,
            attempt: 1,
            position: None,
            live: ManuallyDrop::new(Some(LiveBox::new(Live {
                context: Some(parent.with_step(step)),
                step,
                attempt_started: now.tick,
                attempt_started_at: now.system,
                finished: false,
                fields: None,
            }))),
        }
    }

    /// The attempt about to run or running, from 1.
    pub fn attempt_number(&self) -> u32 {
        self.attempt
    }

    /// Records the values of `#[step(fields(...))]` on every event of this call. `fields` runs
    /// only when somebody listens; values under sensitive keys are masked.
    #[inline]
    pub fn record_fields<I>(&mut self, fields: impl FnOnce() -> I)
    where
        I: IntoIterator<Item = (&'static str, serde_json::Value)>,
    {
        if let Some(live) = &mut *self.live {
            let mut map: serde_json::Map<String, serde_json::Value> = fields()
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect();
            mask_configured(&mut map);
            live.fields = Some(Box::new(map));
        }
    }

    /// Skips the step when `skip` is true, emitting `step.skip` with reason `skip_if`.
    #[inline]
    pub fn skip_if(&mut self, skip: bool) -> bool {
        if skip {
            self.skip("skip_if");
        }
        skip
    }

    /// Skips a `skippable` step that the task's request bypasses, emitting `step.skip` with reason
    /// `bypassed`.
    #[inline]
    pub fn bypassed(&mut self) -> bool {
        let name = self.descriptor.name;
        let bypassed = Context::with_current(|context| {
            context
                .task_frame()
                .is_some_and(|frame| frame.bypasses(name))
        });
        if bypassed {
            self.skip("bypassed");
        }
        bypassed
    }

    /// The output an earlier delivery of this call's task recorded for it, when the task keeps
    /// checkpoints (a worker run on a durable queue); numbers the call either way.
    #[inline]
    pub fn recorded_output(&mut self) -> Option<serde_json::Value> {
        if !crate::checkpoint::checkpointing() {
            return None;
        }
        self.recorded_output_slow()
    }

    #[cold]
    fn recorded_output_slow(&mut self) -> Option<serde_json::Value> {
        let (position, recorded) = Context::with_current(|context| {
            let frame = context.task_frame()?;
            let run = RunCheckpoints::of(frame)?;
            let position = run.next_position();
            Some((position, run.checkpoints().recorded(position)))
        })?;
        self.position = Some(position);
        recorded
    }

    /// Ends a call whose output was replayed from its checkpoint: emits `step.skip` with reason
    /// `replayed`.
    pub fn replayed(&mut self) {
        self.skip("replayed");
    }

    /// Records `output` as this call's checkpoint, when its task keeps checkpoints; the returned
    /// future ends when the record is durable.
    pub fn record_output(&self, output: serde_json::Value) -> crate::checkpoint::replay::Recording {
        let Some(position) = self.position else {
            return crate::checkpoint::replay::Recording::done();
        };
        let name = self.descriptor.name;
        Context::with_current(|context| {
            context
                .task_frame()
                .and_then(|frame| RunCheckpoints::of(frame))
                .map(|run| run.checkpoints().record(position, name, output))
        })
        .map_or_else(
            crate::checkpoint::replay::Recording::done,
            crate::checkpoint::replay::Recording::pending,
        )
    }

    /// Whether this call is numbered among its task's checkpoints (then its output is recorded).
    #[inline]
    pub fn is_checkpointed(&self) -> bool {
        self.position.is_some()
    }

    /// Skips the step, emitting `step.skip` with `reason`.
    pub fn skip(&mut self, reason: &str) {
        self.emit(Details::StepSkip {
            reason: Cow::Borrowed(reason),
        });
        self.close(StepTally::Skipped);
    }

    /// Gives a by-value argument to the next attempt: a clone while more attempts may follow,
    /// the original on the last one.
    #[inline]
    pub fn argument<T: RetryArgument>(&self, slot: &mut Option<T>) -> T {
        if self.attempt < self.descriptor.policy.max_attempts {
            if let Some(value) = slot.as_ref() {
                return value.clone_for_retry();
            }
        }
        // The slot is only emptied on the last attempt, after which the step returns.
        slot.take()
            .expect("tasker: a step argument was requested after the last attempt")
    }

    /// Runs one attempt of an async step: emits `step.handle`, then polls `body` inside the step's
    /// context, reporting a panic before it resumes.
    #[inline]
    pub fn attempt<F: Future>(&mut self, body: F) -> Attempt<'_, F> {
        self.begin_attempt();
        let span = self.attempt_span();
        Attempt {
            run: self,
            body,
            span,
        }
    }

    /// The `tracing` span an attempt runs in, so the user's own `tracing` events inside it say
    /// which task, step and attempt they belong to. Without a subscriber interested in target
    /// `tasker` it is `Span::none()`, and its fields are not even evaluated.
    #[inline]
    fn attempt_span(&self) -> tracing::Span {
        let live = self.live.as_ref();
        let task = live
            .and_then(|live| live.context.as_ref())
            .and_then(|context| context.task().copied());
        tracing::info_span!(
            target: "tasker",
            "step",
            task_id = task.map(|task| tracing::field::display(task.id)),
            task_name = task.map(|task| task.name),
            step_id = live.map(|live| tracing::field::display(live.step.id)),
            step_name = self.descriptor.name,
            attempt = self.attempt,
        )
    }

    /// [`StepRun::attempt`] with the step's `timeout_ms`: an attempt that runs longer is dropped
    /// and returns `Err(StepTimeout.into())`.
    ///
    /// The bounds are asked of the output and of its error type separately, so that rustc shows
    /// the readable message of [`TimeoutOutput`] or [`TimeoutError`] at the step's return type.
    pub fn attempt_timed<F>(&mut self, body: F) -> TimedAttempt<'_, F>
    where
        F: Future,
        F::Output: TimeoutOutput,
        <F::Output as TimeoutOutput>::Error: TimeoutError,
    {
        let limit = self.descriptor.timeout.unwrap_or(Duration::MAX);
        self.begin_attempt();
        TimedAttempt {
            timer: futures_timer::Delay::new(limit),
            limit,
            timed_out: <F::Output as FromTimeout>::from_timeout,
            attempt: Attempt {
                span: self.attempt_span(),
                run: self,
                body,
            },
        }
    }

    /// Runs one attempt of a sync step.
    #[inline]
    pub fn attempt_sync<R>(&mut self, body: impl FnOnce() -> R) -> R {
        self.begin_attempt();
        let span = self.attempt_span();
        let _entered = span.enter();
        let Some(live) = &mut *self.live else {
            return body();
        };
        let _active = propagation::enter_step(&live.step);
        match run_in(&mut live.context, body) {
            Ok(value) => value,
            Err(payload) => self.panicked(payload),
        }
    }

    #[inline]
    fn begin_attempt(&mut self) {
        if self.live.is_some() {
            self.begin_live_attempt();
        }
    }

    #[cold]
    fn begin_live_attempt(&mut self) {
        let Some(live) = &mut *self.live else { return };
        if self.attempt > 1 {
            let now = clock::now();
            live.attempt_started = now.tick;
            live.attempt_started_at = now.system;
        }
        let at = live.attempt_started_at;
        let (attempt, max_attempts) = (self.attempt, self.descriptor.policy.max_attempts);
        self.emit_at(
            at,
            Details::StepHandle {
                attempt,
                max_attempts,
            },
        );
    }

    /// Decides what follows an attempt and emits its events: `step.complete`, or `step.error`
    /// followed by `step.retry` + `step.backoff`, `step.max_retries_reached`, or nothing.
    #[inline]
    pub fn finish(&mut self, outcome: Outcome<'_>) -> Next {
        match (outcome, self.live.is_some()) {
            (Outcome::Success, false) => Next::Return,
            (Outcome::Failure { retryable, .. }, false) => self.next_after_failure(retryable),
            (outcome, true) => self.finish_live(outcome),
        }
    }

    fn next_after_failure(&mut self, retryable: bool) -> Next {
        let policy = &self.descriptor.policy;
        if retryable && self.attempt < policy.max_attempts {
            let wait = policy.next_backoff(self.attempt);
            self.attempt += 1;
            Next::Retry(wait)
        } else {
            Next::Return
        }
    }

    #[cold]
    fn finish_live(&mut self, outcome: Outcome<'_>) -> Next {
        // One clock read for the attempt's duration and every event that follows it.
        let now = clock::now();
        let attempt = self.attempt;
        let max_attempts = self.descriptor.policy.max_attempts;
        let Outcome::Failure { retryable, error } = outcome else {
            let duration = self.live.as_ref().map_or(Duration::ZERO, |live| {
                now.tick.duration_since(live.attempt_started)
            });
            self.emit_at(now.system, Details::StepComplete { attempt, duration });
            self.close(StepTally::Completed);
            return Next::Return;
        };
        self.emit_error_at(now.system, error, retryable);
        let next = self.next_after_failure(retryable);
        match next {
            Next::Retry(backoff) => {
                let attempt = self.attempt;
                self.emit_at(
                    now.system,
                    Details::StepRetry {
                        attempt,
                        max_attempts,
                    },
                );
                self.emit_at(now.system, Details::StepBackoff { attempt, backoff });
            }
            Next::Return => {
                if retryable {
                    self.emit_at(
                        now.system,
                        Details::StepMaxRetriesReached {
                            attempts: attempt,
                            max_attempts,
                        },
                    );
                }
                self.close(StepTally::Failed);
            }
        }
        next
    }

    fn emit_error(&mut self, error: &dyn DescribeError, retryable: bool) {
        self.emit_error_at(clock::now().system, error, retryable);
    }

    fn emit_error_at(&mut self, at: SystemTime, error: &dyn DescribeError, retryable: bool) {
        let attempt = self.attempt;
        self.emit_at(
            at,
            Details::StepError {
                attempt,
                error: ErrorInfo {
                    class: Cow::Borrowed(error.class()),
                    message: Cow::Owned(error.message()),
                },
                retryable,
            },
        );
    }

    /// Reports a panic of the body as the final failure, then resumes unwinding.
    #[cold]
    fn panicked(&mut self, payload: Box<dyn Any + Send>) -> ! {
        if self.live.is_some() {
            let message = panic_message(&*payload).to_owned();
            self.emit_error(
                &crate::outcome::FixedError {
                    class: "panic",
                    message: &message,
                },
                false,
            );
            self.close(StepTally::Failed);
        }
        resume_unwind(payload)
    }

    /// Emits `details` now.
    fn emit(&mut self, details: Details<'_>) {
        self.emit_at(clock::now().system, details);
    }

    /// Emits `details` with timestamp `at`. The step's own code runs in its caller's context
    /// (same task, same scope), so the event is fired there, without switching contexts; only
    /// a drop, which may happen anywhere, enters the step's context (see `Drop`).
    #[inline]
    fn emit_at(&mut self, at: SystemTime, details: Details<'_>) {
        let Some(live) = &*self.live else { return };
        let task = live
            .context
            .as_ref()
            .and_then(|context| context.task().copied());
        let mut event = Event::at(at, task, Some(live.step), details);
        if let Some(fields) = &live.fields {
            event = event.with_fields(fields);
        }
        tasker_telemetry::__private::fire(&event);
    }

    fn close(&mut self, tally: StepTally) {
        if let Some(live) = &mut *self.live {
            live.finished = true;
            if let Some(frame) = live.context.as_ref().and_then(Context::task_frame) {
                frame.tally(self.descriptor.name, tally);
            }
        }
    }
}

impl Drop for StepRun {
    #[inline]
    fn drop(&mut self) {
        if self.live.is_some() {
            self.drop_live();
        }
    }
}

impl StepRun {
    #[cold]
    fn drop_live(&mut self) {
        if self.live.as_ref().is_some_and(|live| !live.finished) {
            // Dropped mid-call: the future was cancelled, or code around the body panicked.
            let class = if std::thread::panicking() {
                "panic"
            } else {
                CANCELLED_CLASS
            };
            let message = format!(
                "step `{}` was {} before it finished",
                self.descriptor.name,
                if class == "panic" {
                    "unwound by a panic"
                } else {
                    "dropped"
                }
            );
            // Observers scoped to the step's context (a test's capture) must see this even when
            // the future is dropped elsewhere.
            let _guard = self
                .live
                .as_ref()
                .and_then(|live| live.context.clone())
                .map(Context::enter);
            self.emit_error(
                &crate::outcome::FixedError {
                    class,
                    message: &message,
                },
                false,
            );
            self.close(StepTally::Failed);
        }
        drop(self.live.take());
    }
}

/// The future of [`StepRun::start`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Start {
    descriptor: &'static StepDescriptor,
}

impl Future for Start {
    type Output = StepRun;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut PollContext<'_>) -> Poll<StepRun> {
        if !events::listening() {
            return Poll::Ready(StepRun::silent(self.descriptor));
        }
        if announce(self.descriptor.name) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(StepRun::live(self.descriptor))
    }
}

/// The future of one attempt; see [`StepRun::attempt`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Attempt<'a, F> {
    run: &'a mut StepRun,
    body: F,
    span: tracing::Span,
}

impl<F: Future> Future for Attempt<'_, F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut PollContext<'_>) -> Poll<F::Output> {
        // SAFETY: `body` is structurally pinned: never moved out of `self`; `run` is a plain
        // reference and not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let body = unsafe { Pin::new_unchecked(&mut this.body) };
        let _entered = this.span.enter();
        let Some(live) = &mut *this.run.live else {
            return body.poll(cx);
        };
        let _active = propagation::enter_step(&live.step);
        match run_in(&mut live.context, || body.poll(cx)) {
            Ok(poll) => poll,
            Err(payload) => this.run.panicked(payload),
        }
    }
}

/// The future of one attempt with a time limit; see [`StepRun::attempt_timed`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct TimedAttempt<'a, F: Future> {
    timer: futures_timer::Delay,
    limit: Duration,
    /// The output of an attempt that timed out, chosen where the bounds were checked.
    timed_out: fn(StepTimeout) -> F::Output,
    attempt: Attempt<'a, F>,
}

impl<F: Future> Future for TimedAttempt<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut PollContext<'_>) -> Poll<F::Output> {
        // SAFETY: `attempt` is structurally pinned; `timer` is `Unpin`.
        let this = unsafe { self.get_unchecked_mut() };
        let attempt = unsafe { Pin::new_unchecked(&mut this.attempt) };
        if let Poll::Ready(value) = attempt.poll(cx) {
            return Poll::Ready(value);
        }
        match Pin::new(&mut this.timer).poll(cx) {
            Poll::Ready(()) => {
                let run = &this.attempt.run;
                Poll::Ready((this.timed_out)(StepTimeout {
                    step: run.descriptor.name,
                    attempt: run.attempt,
                    limit: this.limit,
                }))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Waits before the next attempt of an async step.
pub async fn backoff(wait: Duration) {
    if !wait.is_zero() {
        futures_timer::Delay::new(wait).await;
    }
}

/// Waits before the next attempt of a sync step, without holding up the Tokio runtime it may be
/// called from.
///
/// - On a multi-thread runtime (a worker, or inside `block_on`) the wait runs in
///   `tokio::task::block_in_place`: the worker hands its other tasks to another thread first.
/// - On a current-thread runtime no other thread can take them, so the wait blocks the runtime,
///   as the sync step's body itself does; make the step `async` to free it.
/// - Outside any runtime it is a plain sleep.
///
/// The step's events and attempts are the same in every case.
pub fn backoff_sync(wait: Duration) {
    if wait.is_zero() {
        return;
    }
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        // `block_in_place` panics only on a thread that runs a current-thread runtime with a
        // multi-thread handle entered inside it, which no supported set-up does.
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| std::thread::sleep(wait)),
        _ => std::thread::sleep(wait),
    }
}
