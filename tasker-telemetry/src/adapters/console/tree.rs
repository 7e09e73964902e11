//! A finished task's events, arranged as the tree the console prints: the task, its step calls
//! (nested by the step they were called from, a `join!` batch grouped), their attempts, backoffs
//! and custom events with their payload.

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
        /// The payload, shortened: see [`payload_summary`].
        payload: String,
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
    /// The batch (`join!`, `join_all`) it ran in, if any.
    pub(crate) batch: Option<usize>,
    /// The steps and batches called from this one, in order.
    pub(crate) children: Vec<Entry>,
}

/// One line of a level of the tree: a step call, or a batch of calls that ran together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    Step(usize),
    Batch(usize),
}

/// Steps announced together by one `step.find_viable`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Batch {
    /// Names announced and not yet matched to a step call.
    pending: Vec<&'static str>,
    /// The calling step of the first member: every member has the same caller.
    parent: Option<Option<Uuid>>,
    /// Indexes of its steps, in the order they started.
    pub(crate) members: Vec<usize>,
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
    /// Batches of steps that ran together.
    pub(crate) batches: Vec<Batch>,
    /// The steps and batches called directly by the task, in order.
    pub(crate) roots: Vec<Entry>,
    /// Custom events recorded in the task outside any step: name and shortened payload.
    pub(crate) notes: Vec<(String, String)>,
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
            batches: Vec::new(),
            roots: Vec::new(),
            notes: Vec::new(),
            dropped_events,
        };
        let mut index_of: HashMap<Uuid, usize> = HashMap::new();
        for event in events {
            tree.add(event, &mut index_of);
        }
        for index in 0..tree.steps.len() {
            // A batch takes the place of its first member; the others are under it already.
            let entry = match tree.steps[index].batch {
                Some(batch) if tree.batches[batch].members.first() == Some(&index) => {
                    Entry::Batch(batch)
                }
                Some(_) => continue,
                None => Entry::Step(index),
            };
            match tree.steps[index]
                .parent
                .and_then(|parent| index_of.get(&parent))
            {
                Some(&parent) if parent != index => tree.steps[parent].children.push(entry),
                _ => tree.roots.push(entry),
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
                Details::Custom { name, payload } => self
                    .notes
                    .push((name.to_string(), payload_summary(payload))),
                Details::StepFindViable { step_names } if step_names.len() > 1 => {
                    self.batches.push(Batch {
                        pending: step_names.to_vec(),
                        parent: None,
                        members: Vec::new(),
                    });
                }
                _ => {}
            }
            return;
        };
        let index = match index_of.get(&step.id) {
            Some(&index) => index,
            None => {
                let index = self.steps.len();
                let batch = self.join_batch(step.name, step.parent_id, index);
                self.steps.push(StepNode {
                    id: step.id,
                    name: step.name,
                    parent: step.parent_id,
                    started: at,
                    ended: at,
                    items: Vec::new(),
                    end: StepEnd::Unfinished,
                    batch,
                    children: Vec::new(),
                });
                index_of.insert(step.id, index);
                index
            }
        };
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
            Details::Custom { name, payload } => node.items.push(StepItem::Custom {
                name: name.to_string(),
                payload: payload_summary(payload),
            }),
            // `step.retry` is implied by the next attempt; the rest are task events.
            _ => {}
        }
    }
}

impl TaskTree {
    /// The batch a new call of step `name` (called from `parent`) belongs to, if one announced
    /// it and still waits for it; the call becomes its member `index`.
    fn join_batch(&mut self, name: &str, parent: Option<Uuid>, index: usize) -> Option<usize> {
        let (position, batch) = self.batches.iter_mut().enumerate().find(|(_, batch)| {
            batch.parent.is_none_or(|caller| caller == parent) && batch.pending.contains(&name)
        })?;
        if let Some(at) = batch.pending.iter().position(|pending| *pending == name) {
            batch.pending.remove(at);
        }
        batch.parent = Some(parent);
        batch.members.push(index);
        Some(position)
    }
}

/// The most of a payload the console shows: `key=value` pairs, values as compact JSON.
pub(crate) const PAYLOAD_WIDTH: usize = 60;

/// A custom event's payload on one short line: `order_id=42, reason="fraud"`, cut at
/// [`PAYLOAD_WIDTH`] characters with `…`.
pub(crate) fn payload_summary(payload: &serde_json::Map<String, serde_json::Value>) -> String {
    let text = payload
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(", ");
    if text.chars().count() <= PAYLOAD_WIDTH {
        return text;
    }
    let mut short: String = text.chars().take(PAYLOAD_WIDTH - 1).collect();
    short.push('…');
    short
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
