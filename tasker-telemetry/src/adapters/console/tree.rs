//! A finished task's events, arranged as the tree the console prints: the task, its step calls
//! (nested by the step they were called from), their attempts, backoffs and custom events.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use crate::event::{Details, Event};

/// How the task ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TaskEnd {
    Completed {
        duration: Duration,
    },
    Failed {
        duration: Duration,
        class: String,
        message: String,
        error_steps: Vec<&'static str>,
    },
    /// `task.initialize` with `status: error`: the request was refused.
    Rejected {
        errors: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AttemptResult {
    /// No `complete` or `error` was seen (the task ended first, or events were dropped).
    Unfinished,
    Succeeded,
    Failed {
        class: String,
        message: String,
        retryable: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StepItem {
    Attempt {
        number: u32,
        max_attempts: u32,
        started: SystemTime,
        duration: Option<Duration>,
        result: AttemptResult,
    },
    Backoff {
        wait: Duration,
    },
    GaveUp {
        attempts: u32,
        max_attempts: u32,
    },
    Custom {
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StepEnd {
    Unfinished,
    Succeeded,
    Failed,
    Skipped { reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StepNode {
    pub(crate) id: Uuid,
    pub(crate) name: &'static str,
    pub(crate) parent: Option<Uuid>,
    pub(crate) started: SystemTime,
    pub(crate) ended: SystemTime,
    pub(crate) items: Vec<StepItem>,
    pub(crate) end: StepEnd,
    /// Indexes of the steps called from this one, in order.
    pub(crate) children: Vec<usize>,
}

impl StepNode {
    pub(crate) fn attempts(&self) -> usize {
        self.items
            .iter()
            .filter(|item| matches!(item, StepItem::Attempt { .. }))
            .count()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TaskTree {
    pub(crate) id: Uuid,
    pub(crate) name: &'static str,
    pub(crate) version: &'static str,
    pub(crate) queue: Option<String>,
    /// When processing began (`task.start`), else the first event.
    pub(crate) started: SystemTime,
    pub(crate) ended: SystemTime,
    pub(crate) end: TaskEnd,
    /// `task.finalize`'s counts: completed, failed, skipped.
    pub(crate) counts: Option<(u32, u32, u32)>,
    pub(crate) steps: Vec<StepNode>,
    /// Indexes of the steps called directly by the task, in order.
    pub(crate) roots: Vec<usize>,
    /// Custom events recorded in the task outside any step.
    pub(crate) notes: Vec<String>,
    /// Events the buffer did not keep.
    pub(crate) dropped_events: u64,
}

impl TaskTree {
    /// The tree of `events` (one task's, in order), ended by `last`: `task.complete`,
    /// `task.error`, or a refused `task.initialize`. `None` if `last` is none of those.
    pub(crate) fn build(
        events: &[Event<'static>],
        last: &Event<'_>,
        dropped_events: u64,
    ) -> Option<Self> {
        let task = last.task()?;
        let end = match last.details() {
            Details::TaskComplete { duration } => TaskEnd::Completed {
                duration: *duration,
            },
            Details::TaskError {
                duration,
                error,
                error_steps,
            } => TaskEnd::Failed {
                duration: *duration,
                class: error.class.to_string(),
                message: error.message.to_string(),
                error_steps: error_steps.to_vec(),
            },
            Details::TaskInitialize { errors, .. } => TaskEnd::Rejected {
                errors: errors.to_vec(),
            },
            _ => return None,
        };
        let mut tree = TaskTree {
            id: task.id,
            name: task.name,
            version: task.version,
            queue: None,
            started: events.first().map_or(last.timestamp(), Event::timestamp),
            ended: last.timestamp(),
            end,
            counts: None,
            steps: Vec::new(),
            roots: Vec::new(),
            notes: Vec::new(),
            dropped_events,
        };
        let mut index_of: HashMap<Uuid, usize> = HashMap::new();
        for event in events {
            tree.add(event, &mut index_of);
        }
        for index in 0..tree.steps.len() {
            match tree.steps[index]
                .parent
                .and_then(|parent| index_of.get(&parent))
            {
                Some(&parent) if parent != index => tree.steps[parent].children.push(index),
                _ => tree.roots.push(index),
            }
        }
        Some(tree)
    }

    fn add(&mut self, event: &Event<'static>, index_of: &mut HashMap<Uuid, usize>) {
        let at = event.timestamp();
        let Some(step) = event.step() else {
            match event.details() {
                Details::TaskEnqueue { queue } => self.queue = Some(queue.to_string()),
                Details::TaskStart => self.started = at,
                Details::TaskFinalize {
                    completed_steps,
                    failed_steps,
                    skipped_steps,
                } => self.counts = Some((*completed_steps, *failed_steps, *skipped_steps)),
                Details::Custom { name, .. } => self.notes.push(name.to_string()),
                _ => {}
            }
            return;
        };
        let index = *index_of.entry(step.id).or_insert_with(|| {
            self.steps.push(StepNode {
                id: step.id,
                name: step.name,
                parent: step.parent_id,
                started: at,
                ended: at,
                items: Vec::new(),
                end: StepEnd::Unfinished,
                children: Vec::new(),
            });
            self.steps.len() - 1
        });
        let node = &mut self.steps[index];
        node.ended = at;
        match event.details() {
            Details::StepHandle {
                attempt,
                max_attempts,
            } => node.items.push(StepItem::Attempt {
                number: *attempt,
                max_attempts: *max_attempts,
                started: at,
                duration: None,
                result: AttemptResult::Unfinished,
            }),
            Details::StepComplete { duration, .. } => {
                finish_attempt(node, Some(*duration), AttemptResult::Succeeded);
                node.end = StepEnd::Succeeded;
            }
            Details::StepError {
                error, retryable, ..
            } => {
                finish_attempt(
                    node,
                    None,
                    AttemptResult::Failed {
                        class: error.class.to_string(),
                        message: error.message.to_string(),
                        retryable: *retryable,
                    },
                );
                node.end = StepEnd::Failed;
            }
            Details::StepBackoff { backoff, .. } => {
                node.items.push(StepItem::Backoff { wait: *backoff });
            }
            Details::StepMaxRetriesReached {
                attempts,
                max_attempts,
            } => node.items.push(StepItem::GaveUp {
                attempts: *attempts,
                max_attempts: *max_attempts,
            }),
            Details::StepSkip { reason } => {
                node.end = StepEnd::Skipped {
                    reason: reason.to_string(),
                };
            }
            Details::Custom { name, .. } => node.items.push(StepItem::Custom {
                name: name.to_string(),
            }),
            // `step.retry` is implied by the next attempt; the rest are task events.
            _ => {}
        }
    }
}

/// Closes the step's latest attempt; an error's duration is measured from its `step.handle`.
fn finish_attempt(node: &mut StepNode, duration: Option<Duration>, result: AttemptResult) {
    let ended = node.ended;
    let latest = node
        .items
        .iter_mut()
        .rev()
        .find(|item| matches!(item, StepItem::Attempt { .. }));
    if let Some(StepItem::Attempt {
        started,
        duration: slot,
        result: slot_result,
        ..
    }) = latest
    {
        *slot = duration.or_else(|| ended.duration_since(*started).ok());
        *slot_result = result;
    }
}
