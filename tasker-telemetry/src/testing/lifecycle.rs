//! The lifecycle grammar of one task's events (DESIGN.md §3), checked event by event.
//!
//! [`LifecycleValidator`] reads the events of one task in the order they were fired and stops at
//! the first one that breaks a [`Rule`], saying which event (its index), which rule, and why. It
//! keeps only a little state per step, so a load test can check a million tasks as they run.

use std::collections::HashMap;
use std::fmt;

use uuid::Uuid;

use crate::event::{Details, Event, EventKind, InitializeStatus};
use crate::telemetry::CANCELLED_CLASS;

/// One rule of the lifecycle grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// Every event carries the same task id.
    OneTask,
    /// `task.initialize` comes first, once.
    InitializeFirst,
    /// A `task.initialize` with `status: "error"` (a refused request) is the task's only event.
    RefusedAlone,
    /// `task.enqueue` comes at most once, between `task.initialize` and `task.start`.
    EnqueueBetweenInitializeAndStart,
    /// `task.start` follows `task.initialize` (and `task.enqueue`) once; it comes again only
    /// when a worker delivers the request again after a delivery that ended cancelled, or
    /// delivers the next attempt after `task.backoff`.
    StartOnce,
    /// `task.handle` comes once, right after `task.start`.
    HandleAfterStart,
    /// Step events come between `task.handle` and `task.finalize`.
    StepInsideTaskHandle,
    /// A step call begins with `step.handle` of attempt 1 or with `step.skip`.
    StepBegins,
    /// Every `step.handle` is closed by `step.complete` or `step.error` of the same attempt,
    /// before any other event of its step and before `task.finalize`.
    HandleClosed,
    /// Attempt numbers are consecutive (1, 2, …) and `max_attempts` does not change.
    AttemptsConsecutive,
    /// `step.retry` comes only right after a retryable `step.error` with attempts left.
    RetryOnlyAfterRetryableError,
    /// A retryable `step.error` with attempts left is followed by `step.retry` (n+1), then
    /// `step.backoff` (n+1), then `step.handle` (n+1) — or, cancelled while waiting, a
    /// `step.error` of class `tasker::Cancelled`.
    RetrySequence,
    /// `step.max_retries_reached` comes right after a retryable `step.error` of the last allowed
    /// attempt, and such an error is always followed by it.
    MaxRetriesAtLimit,
    /// `step.skip` is the only event of its step call.
    SkipAlone,
    /// Nothing of a step call follows its last event.
    AfterStepEnd,
    /// The steps named by `step.find_viable` start after it.
    FindViableBeforeItsSteps,
    /// `task.finalize` counts the step calls that completed, failed and were skipped (in the
    /// task's last attempt).
    FinalizeCounts,
    /// Exactly one `task.complete` or `task.error`, right after `task.finalize`, and last.
    OneTerminal,
    /// `task.retry` comes only while the task is handled, once its step calls have ended, with
    /// the next attempt (n+1, up to `max_attempts`, which does not change); it is followed by
    /// `task.backoff` of the same attempt and then `task.handle`.
    TaskRetrySequence,
}

impl Rule {
    /// The rule in words.
    pub fn description(self) -> &'static str {
        match self {
            Rule::OneTask => "every event carries the same task id",
            Rule::InitializeFirst => "task.initialize comes first, once",
            Rule::RefusedAlone => "a refused task.initialize (status error) is the only event",
            Rule::EnqueueBetweenInitializeAndStart => {
                "task.enqueue comes at most once, between task.initialize and task.start"
            }
            Rule::StartOnce => {
                "task.start follows task.initialize/task.enqueue once (again only after a \
                 cancelled delivery)"
            }
            Rule::HandleAfterStart => "task.handle comes once, right after task.start",
            Rule::StepInsideTaskHandle => "step events come between task.handle and task.finalize",
            Rule::StepBegins => "a step call begins with step.handle(1) or step.skip",
            Rule::HandleClosed => {
                "every step.handle is closed by step.complete or step.error of its attempt"
            }
            Rule::AttemptsConsecutive => {
                "attempt numbers are consecutive and max_attempts does not change"
            }
            Rule::RetryOnlyAfterRetryableError => {
                "step.retry comes only after a retryable step.error with attempts left"
            }
            Rule::RetrySequence => {
                "a retryable step.error with attempts left is followed by step.retry(n+1), \
                 step.backoff(n+1), step.handle(n+1)"
            }
            Rule::MaxRetriesAtLimit => {
                "step.max_retries_reached follows exactly the retryable step.error of the last \
                 allowed attempt"
            }
            Rule::SkipAlone => "step.skip is the only event of its step call",
            Rule::AfterStepEnd => "nothing of a step call follows its last event",
            Rule::FindViableBeforeItsSteps => "the steps named by step.find_viable start after it",
            Rule::FinalizeCounts => {
                "task.finalize counts the step calls that completed, failed and were skipped"
            }
            Rule::OneTerminal => {
                "exactly one task.complete or task.error, right after task.finalize, and last"
            }
            Rule::TaskRetrySequence => {
                "task.retry(n+1) comes after the task's step calls ended, followed by \
                 task.backoff(n+1) and task.handle"
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({})", self, self.description())
    }
}

/// The first event of a sequence that breaks the lifecycle grammar.
#[derive(Clone, PartialEq, Eq)]
pub struct Violation {
    /// Index of the offending event in the sequence (its length when the sequence ended too
    /// early).
    pub index: usize,
    /// The offending event, such as `step.handle charge attempt=2`, or `<end of sequence>`.
    pub event: String,
    /// The rule it breaks.
    pub rule: Rule,
    /// What exactly is wrong.
    pub detail: String,
}

crate::__debug_shows_message!(Violation);

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event #{} `{}` breaks rule {}: {}",
            self.index, self.event, self.rule, self.detail
        )
    }
}

impl std::error::Error for Violation {}

/// A short description of an event: its name, step and attempt.
pub fn describe(event: &Event<'_>) -> String {
    let mut text = event.name().to_owned();
    if let Some(step) = event.step_name() {
        text.push(' ');
        text.push_str(step);
    }
    match event.details() {
        Details::StepMaxRetriesReached { attempts, .. } => {
            text.push_str(&format!(" attempts={attempts}"));
        }
        Details::TaskInitialize { status, .. } => {
            text.push_str(&format!(" status={}", status.as_str()));
        }
        _ => {
            if let Some(attempt) = event.attempt() {
                text.push_str(&format!(" attempt={attempt}"));
            }
        }
    }
    text
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Fresh,
    Refused,
    Initialized,
    Enqueued,
    Started,
    Handling,
    /// `task.retry` of this attempt was read: `task.backoff` must follow.
    TaskRetrying(u32),
    /// `task.backoff` of this attempt was read: `task.handle` must follow.
    TaskBackingOff(u32),
    Finalized,
    Ended {
        cancelled: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepEnd {
    Completed,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepPhase {
    Running(u32),
    /// A retryable error with attempts left: a retry must follow.
    Errored(u32),
    /// A retryable error of the last attempt: `max_retries_reached` must follow.
    Exhausted(u32),
    Retrying(u32),
    BackingOff(u32),
    Ended(StepEnd),
}

#[derive(Debug)]
struct StepState {
    name: &'static str,
    max_attempts: Option<u32>,
    phase: StepPhase,
}

/// Checks the events of one task, one at a time, against the lifecycle grammar of DESIGN.md §3.
///
/// ```
/// use tasker::testing::LifecycleValidator;
/// use tasker::telemetry::{Details, Event};
/// let mut validator = LifecycleValidator::new();
/// let error = validator.push(&Event::new(None, None, Details::TaskStart)).unwrap_err();
/// assert_eq!(error.index, 0);
/// ```
#[derive(Debug, Default)]
pub struct LifecycleValidator {
    index: usize,
    task_id: Option<Uuid>,
    phase: Option<Phase>,
    steps: HashMap<Uuid, StepState>,
    /// Names announced by `step.find_viable` whose step has not started yet, with the index of
    /// the announcing event.
    announced: Vec<(&'static str, usize)>,
    completed: u32,
    failed: u32,
    skipped: u32,
    /// The task's attempt being handled (from 1), and its `max_attempts` once `task.retry`
    /// told it.
    task_attempt: u32,
    task_max_attempts: Option<u32>,
    violation: Option<Violation>,
}

impl LifecycleValidator {
    /// A validator that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Events read so far.
    pub fn len(&self) -> usize {
        self.index
    }

    /// Whether no event was read yet.
    pub fn is_empty(&self) -> bool {
        self.index == 0
    }

    /// Whether the sequence is complete: a terminal event or a refused `task.initialize` was
    /// read (a cancelled delivery may still be followed by another one).
    pub fn is_ended(&self) -> bool {
        matches!(self.phase, Some(Phase::Ended { .. } | Phase::Refused))
    }

    /// Reads the next event; the first violation is returned, and again for every later call.
    /// Custom events (`record`) are not part of the grammar and only counted.
    pub fn push(&mut self, event: &Event<'_>) -> Result<(), Violation> {
        if let Some(violation) = &self.violation {
            return Err(violation.clone());
        }
        let result = self.check(event);
        self.index += 1;
        if let Err(violation) = &result {
            self.violation = Some(violation.clone());
        }
        result
    }

    /// Ends the sequence: checks that the task ended and every step call ended.
    pub fn finish(&self) -> Result<(), Violation> {
        if let Some(violation) = &self.violation {
            return Err(violation.clone());
        }
        let end = |rule, detail: String| Violation {
            index: self.index,
            event: "<end of sequence>".to_owned(),
            rule,
            detail,
        };
        match self.phase {
            None | Some(Phase::Fresh) => Err(end(
                Rule::InitializeFirst,
                "the sequence has no task.initialize".to_owned(),
            )),
            Some(Phase::Ended { .. } | Phase::Refused) => Ok(()),
            Some(phase) => Err(end(
                Rule::OneTerminal,
                format!(
                    "the sequence ended in phase {phase:?}, without task.complete or task.error"
                ),
            )),
        }
    }

    fn check(&mut self, event: &Event<'_>) -> Result<(), Violation> {
        let index = self.index;
        let fail = |rule: Rule, detail: String| -> Result<(), Violation> {
            Err(Violation {
                index,
                event: describe(event),
                rule,
                detail,
            })
        };
        let Some(kind) = event.kind() else {
            return Ok(());
        };
        match (self.task_id, event.task_id()) {
            (_, None) => return fail(Rule::OneTask, "the event carries no task id".to_owned()),
            (None, Some(id)) => self.task_id = Some(id),
            (Some(expected), Some(id)) if expected != id => {
                return fail(
                    Rule::OneTask,
                    format!("task id {id} differs from the first event's {expected}"),
                )
            }
            _ => {}
        }
        let phase = self.phase.unwrap_or(Phase::Fresh);
        if phase == Phase::Refused {
            return fail(
                Rule::RefusedAlone,
                "an event follows a refused task.initialize".to_owned(),
            );
        }
        if phase == Phase::Fresh && kind != EventKind::TaskInitialize {
            return fail(
                Rule::InitializeFirst,
                "the first event is not task.initialize".to_owned(),
            );
        }
        if let Phase::Ended { cancelled } = phase {
            if !(kind == EventKind::TaskStart && cancelled) {
                return fail(
                    Rule::OneTerminal,
                    "an event follows the task's terminal event".to_owned(),
                );
            }
        }
        if kind.is_task_event() {
            self.task_event(kind, event, phase, &fail)
        } else {
            if phase != Phase::Handling {
                return fail(
                    Rule::StepInsideTaskHandle,
                    format!("a step event in phase {phase:?}"),
                );
            }
            if kind == EventKind::StepFindViable {
                if let Details::StepFindViable { step_names } = event.details() {
                    self.announced
                        .extend(step_names.iter().map(|name| (*name, index)));
                }
                return Ok(());
            }
            self.step_event(kind, event, &fail)
        }
    }

    fn task_event(
        &mut self,
        kind: EventKind,
        event: &Event<'_>,
        phase: Phase,
        fail: &dyn Fn(Rule, String) -> Result<(), Violation>,
    ) -> Result<(), Violation> {
        let next = match (kind, phase) {
            (EventKind::TaskInitialize, Phase::Fresh) => match event.details() {
                Details::TaskInitialize {
                    status: InitializeStatus::Error,
                    ..
                } => Phase::Refused,
                _ => Phase::Initialized,
            },
            (EventKind::TaskInitialize, _) => {
                return fail(Rule::InitializeFirst, "a second task.initialize".to_owned())
            }
            (EventKind::TaskEnqueue, Phase::Initialized) => Phase::Enqueued,
            (EventKind::TaskEnqueue, _) => {
                return fail(
                    Rule::EnqueueBetweenInitializeAndStart,
                    format!("task.enqueue in phase {phase:?}"),
                )
            }
            (EventKind::TaskStart, Phase::Initialized | Phase::Enqueued) => Phase::Started,
            (EventKind::TaskStart, Phase::Ended { cancelled: true }) => {
                // Another delivery of a request whose previous run was cancelled.
                self.steps.clear();
                self.announced.clear();
                (self.completed, self.failed, self.skipped) = (0, 0, 0);
                Phase::Started
            }
            (EventKind::TaskStart, Phase::TaskBackingOff(attempt)) => {
                // A worker's delivery of the task's next attempt.
                self.task_attempt = attempt;
                Phase::Started
            }
            (EventKind::TaskStart, _) => {
                return fail(Rule::StartOnce, format!("task.start in phase {phase:?}"))
            }
            (EventKind::TaskHandle, Phase::Started) => Phase::Handling,
            (EventKind::TaskHandle, Phase::TaskBackingOff(attempt)) => {
                self.task_attempt = attempt;
                Phase::Handling
            }
            (EventKind::TaskHandle, Phase::TaskRetrying(_)) => {
                return fail(
                    Rule::TaskRetrySequence,
                    "task.handle follows task.retry without task.backoff".to_owned(),
                )
            }
            (EventKind::TaskRetry, Phase::Handling) => {
                self.check_steps_ended(fail)?;
                let current = self.task_attempt.max(1);
                let (attempt, max_attempts) = match *event.details() {
                    Details::TaskRetry {
                        attempt,
                        max_attempts,
                        ..
                    } => (attempt, max_attempts),
                    _ => (0, 0),
                };
                if attempt != current + 1 || attempt > max_attempts {
                    return fail(
                        Rule::TaskRetrySequence,
                        format!(
                            "task.retry announces attempt {attempt} of {max_attempts} after \
                             attempt {current}"
                        ),
                    );
                }
                if self
                    .task_max_attempts
                    .is_some_and(|known| known != max_attempts)
                {
                    return fail(
                        Rule::TaskRetrySequence,
                        format!("task.retry changes max_attempts to {max_attempts}"),
                    );
                }
                self.task_max_attempts = Some(max_attempts);
                // `task.finalize` counts the steps of the attempt that ends the task.
                (self.completed, self.failed, self.skipped) = (0, 0, 0);
                Phase::TaskRetrying(attempt)
            }
            (EventKind::TaskBackoff, Phase::TaskRetrying(retrying)) => {
                let attempt = event.attempt().unwrap_or(0);
                if attempt != retrying {
                    return fail(
                        Rule::TaskRetrySequence,
                        format!("task.backoff of attempt {attempt} after task.retry({retrying})"),
                    );
                }
                Phase::TaskBackingOff(attempt)
            }
            (EventKind::TaskRetry | EventKind::TaskBackoff, _) => {
                return fail(
                    Rule::TaskRetrySequence,
                    format!("{} in phase {phase:?}", kind.name()),
                )
            }
            (EventKind::TaskHandle, _) => {
                return fail(
                    Rule::HandleAfterStart,
                    format!("task.handle in phase {phase:?}"),
                )
            }
            (EventKind::TaskFinalize, Phase::Handling) => {
                self.check_steps_ended(fail)?;
                if let Details::TaskFinalize {
                    completed_steps,
                    failed_steps,
                    skipped_steps,
                } = *event.details()
                {
                    let reported = (completed_steps, failed_steps, skipped_steps);
                    let seen = (self.completed, self.failed, self.skipped);
                    if reported != seen {
                        return fail(
                            Rule::FinalizeCounts,
                            format!(
                                "finalize reports completed/failed/skipped {reported:?}, the \
                                 step events show {seen:?}"
                            ),
                        );
                    }
                }
                Phase::Finalized
            }
            (EventKind::TaskFinalize, _) => {
                return fail(
                    Rule::OneTerminal,
                    format!("task.finalize in phase {phase:?}"),
                )
            }
            (EventKind::TaskComplete | EventKind::TaskError, Phase::Finalized) => {
                let cancelled = event
                    .error()
                    .is_some_and(|error| error.class == CANCELLED_CLASS);
                let interrupted =
                    cancelled || event.error().is_some_and(|error| error.class == "panic");
                if let Some((name, at)) = self.announced.first() {
                    if !interrupted {
                        return fail(
                            Rule::FindViableBeforeItsSteps,
                            format!(
                                "step.find_viable #{at} announced `{name}`, but no step `{name}` \
                                 started after it"
                            ),
                        );
                    }
                }
                Phase::Ended { cancelled }
            }
            (EventKind::TaskComplete | EventKind::TaskError, _) => {
                return fail(
                    Rule::OneTerminal,
                    format!("a terminal event in phase {phase:?}, not right after task.finalize"),
                )
            }
            _ => unreachable!("every task event kind is matched"),
        };
        self.phase = Some(next);
        Ok(())
    }

    fn check_steps_ended(
        &self,
        fail: &dyn Fn(Rule, String) -> Result<(), Violation>,
    ) -> Result<(), Violation> {
        let mut open: Vec<(&StepState, &Uuid)> = self
            .steps
            .iter()
            .filter(|(_, state)| !matches!(state.phase, StepPhase::Ended(_)))
            .map(|(id, state)| (state, id))
            .collect();
        open.sort_by_key(|(_, id)| **id);
        let Some((state, id)) = open.first() else {
            return Ok(());
        };
        let (rule, what) = match state.phase {
            StepPhase::Running(attempt) => {
                (Rule::HandleClosed, format!("attempt {attempt} is open"))
            }
            StepPhase::Exhausted(attempt) => (
                Rule::MaxRetriesAtLimit,
                format!(
                    "attempt {attempt} failed retryably at the limit without max_retries_reached"
                ),
            ),
            StepPhase::Errored(attempt)
            | StepPhase::Retrying(attempt)
            | StepPhase::BackingOff(attempt) => (
                Rule::RetrySequence,
                format!("its retry sequence stopped around attempt {attempt}"),
            ),
            StepPhase::Ended(_) => unreachable!("filtered out"),
        };
        fail(
            rule,
            format!(
                "task.finalize while step `{}` ({id}) has not ended: {what}",
                state.name
            ),
        )
    }

    fn step_event(
        &mut self,
        kind: EventKind,
        event: &Event<'_>,
        fail: &dyn Fn(Rule, String) -> Result<(), Violation>,
    ) -> Result<(), Violation> {
        let Some(step) = event.step() else {
            return fail(
                Rule::StepBegins,
                "a step event without a step identity".to_owned(),
            );
        };
        let details = event.details();
        let Some(state) = self.steps.get_mut(&step.id) else {
            // A new step call.
            match *details {
                Details::StepHandle {
                    attempt: 1,
                    max_attempts,
                } => {
                    self.steps.insert(
                        step.id,
                        StepState {
                            name: step.name,
                            max_attempts: Some(max_attempts),
                            phase: StepPhase::Running(1),
                        },
                    );
                }
                Details::StepHandle { attempt, .. } => {
                    return fail(
                        Rule::AttemptsConsecutive,
                        format!("the step call's first attempt is {attempt}, not 1"),
                    )
                }
                Details::StepSkip { .. } => {
                    self.skipped += 1;
                    self.steps.insert(
                        step.id,
                        StepState {
                            name: step.name,
                            max_attempts: None,
                            phase: StepPhase::Ended(StepEnd::Skipped),
                        },
                    );
                }
                _ => {
                    let rule = match kind {
                        EventKind::StepRetry => Rule::RetryOnlyAfterRetryableError,
                        EventKind::StepMaxRetriesReached => Rule::MaxRetriesAtLimit,
                        EventKind::StepComplete | EventKind::StepError => Rule::HandleClosed,
                        _ => Rule::StepBegins,
                    };
                    return fail(
                        rule,
                        format!("step `{}` has no step.handle before it", step.name),
                    );
                }
            }
            if let Some(position) = self
                .announced
                .iter()
                .position(|(name, _)| *name == step.name)
            {
                self.announced.remove(position);
            }
            return Ok(());
        };

        let max_attempts = state.max_attempts.unwrap_or(0);
        let next = match (state.phase, details) {
            (StepPhase::Ended(StepEnd::Skipped), _) => {
                return fail(
                    Rule::SkipAlone,
                    format!("step `{}` was skipped", state.name),
                )
            }
            (_, Details::StepSkip { .. }) => {
                return fail(
                    Rule::SkipAlone,
                    format!("step `{}` had events before step.skip", state.name),
                )
            }
            (StepPhase::Running(open), Details::StepComplete { attempt, .. }) => {
                if *attempt != open {
                    return fail(
                        Rule::AttemptsConsecutive,
                        format!("step.complete of attempt {attempt} while attempt {open} is open"),
                    );
                }
                self.completed += 1;
                StepPhase::Ended(StepEnd::Completed)
            }
            (
                StepPhase::Running(open),
                Details::StepError {
                    attempt, retryable, ..
                },
            ) => {
                if *attempt != open {
                    return fail(
                        Rule::AttemptsConsecutive,
                        format!("step.error of attempt {attempt} while attempt {open} is open"),
                    );
                }
                match (*retryable, open < max_attempts) {
                    (true, true) => StepPhase::Errored(open),
                    (true, false) => StepPhase::Exhausted(open),
                    (false, _) => {
                        self.failed += 1;
                        StepPhase::Ended(StepEnd::Failed)
                    }
                }
            }
            (StepPhase::Running(open), _) => {
                return fail(
                    Rule::HandleClosed,
                    format!(
                        "step.handle of attempt {open} of `{}` is not closed by step.complete or \
                         step.error",
                        state.name
                    ),
                )
            }
            (
                StepPhase::Errored(failed),
                Details::StepRetry {
                    attempt,
                    max_attempts: announced,
                },
            ) => {
                if *attempt != failed + 1 || *announced != max_attempts {
                    return fail(
                        Rule::AttemptsConsecutive,
                        format!(
                            "step.retry announces attempt {attempt}/{announced} after attempt \
                             {failed}/{max_attempts} failed"
                        ),
                    );
                }
                StepPhase::Retrying(*attempt)
            }
            (
                StepPhase::Exhausted(failed),
                Details::StepMaxRetriesReached {
                    attempts,
                    max_attempts: limit,
                },
            ) => {
                if *attempts != failed || *limit != max_attempts {
                    return fail(
                        Rule::MaxRetriesAtLimit,
                        format!(
                            "max_retries_reached reports {attempts}/{limit} after attempt \
                             {failed}/{max_attempts}"
                        ),
                    );
                }
                self.failed += 1;
                StepPhase::Ended(StepEnd::Failed)
            }
            (StepPhase::Exhausted(failed), Details::StepRetry { .. }) => {
                return fail(
                    Rule::RetryOnlyAfterRetryableError,
                    format!("attempt {failed} was the last of {max_attempts}"),
                )
            }
            (StepPhase::Exhausted(failed), _) => {
                return fail(
                    Rule::MaxRetriesAtLimit,
                    format!(
                        "the retryable error of the last attempt ({failed}/{max_attempts}) is not \
                         followed by step.max_retries_reached"
                    ),
                )
            }
            (_, Details::StepMaxRetriesReached { .. }) => {
                return fail(
                    Rule::MaxRetriesAtLimit,
                    format!(
                        "step `{}` is not right after a retryable error of its last attempt",
                        state.name
                    ),
                )
            }
            (StepPhase::Retrying(next), Details::StepBackoff { attempt, .. }) => {
                if *attempt != next {
                    return fail(
                        Rule::AttemptsConsecutive,
                        format!("step.backoff for attempt {attempt} after step.retry({next})"),
                    );
                }
                StepPhase::BackingOff(next)
            }
            (
                StepPhase::BackingOff(next),
                Details::StepHandle {
                    attempt,
                    max_attempts: announced,
                },
            ) => {
                if *attempt != next || *announced != max_attempts {
                    return fail(
                        Rule::AttemptsConsecutive,
                        format!(
                            "step.handle of attempt {attempt}/{announced} where \
                             {next}/{max_attempts} was scheduled"
                        ),
                    );
                }
                StepPhase::Running(next)
            }
            (
                StepPhase::BackingOff(next),
                Details::StepError {
                    attempt,
                    error,
                    retryable: false,
                },
            ) if error.class == CANCELLED_CLASS && *attempt == next => {
                // Cancelled while waiting for its next attempt.
                self.failed += 1;
                StepPhase::Ended(StepEnd::Failed)
            }
            (StepPhase::Retrying(_) | StepPhase::BackingOff(_), Details::StepRetry { .. }) => {
                return fail(
                    Rule::RetryOnlyAfterRetryableError,
                    format!("a second step.retry for step `{}`", state.name),
                )
            }
            (StepPhase::Errored(_) | StepPhase::Retrying(_) | StepPhase::BackingOff(_), _) => {
                return fail(
                    Rule::RetrySequence,
                    format!(
                        "out of order in the retry sequence of step `{}`",
                        state.name
                    ),
                )
            }
            (StepPhase::Ended(_), Details::StepRetry { .. }) => {
                return fail(
                    Rule::RetryOnlyAfterRetryableError,
                    format!("step `{}` ended without a retryable error", state.name),
                )
            }
            (StepPhase::Ended(_), _) => {
                return fail(
                    Rule::AfterStepEnd,
                    format!("step `{}` had already ended", state.name),
                )
            }
        };
        state.phase = next;
        Ok(())
    }
}

/// Checks the complete event sequence of one task; the first violation is returned.
pub fn validate_task(events: &[Event<'_>]) -> Result<(), Violation> {
    let mut validator = LifecycleValidator::new();
    for event in events {
        validator.push(event)?;
    }
    validator.finish()
}

/// Splits `events` by task id (events without one are left out) and checks each task's sequence;
/// returns how many tasks were checked, or the first violation with its task id.
pub fn validate_tasks(events: &[Event<'_>]) -> Result<usize, (Uuid, Violation)> {
    let mut order = Vec::new();
    let mut validators: HashMap<Uuid, LifecycleValidator> = HashMap::new();
    for event in events {
        let Some(task_id) = event.task_id() else {
            continue;
        };
        let validator = validators.entry(task_id).or_insert_with(|| {
            order.push(task_id);
            LifecycleValidator::new()
        });
        // The first violation is kept and reported below, in task order.
        let _ = validator.push(event);
    }
    for task_id in &order {
        validators[task_id]
            .finish()
            .map_err(|violation| (*task_id, violation))?;
    }
    Ok(order.len())
}

/// Panics, naming the rule, the event and the whole sequence, unless `events` is one valid task.
#[track_caller]
pub fn assert_valid_task(events: &[Event<'_>]) {
    if let Err(violation) = validate_task(events) {
        panic!("{violation}\n{}", numbered(events));
    }
}

/// Panics unless every task among `events` has a valid sequence; returns how many tasks there
/// were.
#[track_caller]
pub fn assert_valid_tasks(events: &[Event<'_>]) -> usize {
    match validate_tasks(events) {
        Ok(count) => count,
        Err((task_id, violation)) => {
            let task: Vec<Event<'_>> = events
                .iter()
                .filter(|event| event.task_id() == Some(task_id))
                .cloned()
                .collect();
            panic!("task {task_id}: {violation}\n{}", numbered(&task));
        }
    }
}

fn numbered(events: &[Event<'_>]) -> String {
    events
        .iter()
        .enumerate()
        .map(|(index, event)| format!("  #{index} {}", describe(event)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
