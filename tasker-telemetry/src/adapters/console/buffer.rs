//! The events of the tasks still running, bounded in both directions: events per task, and tasks.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use crate::event::Event;

/// How much the console view keeps while tasks run.
///
/// ```
/// use tasker::telemetry::adapters::ConsoleLimits;
/// let limits = ConsoleLimits { max_tasks: 16, ..ConsoleLimits::default() };
/// assert_eq!(limits.max_events_per_task, ConsoleLimits::default().max_events_per_task);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleLimits {
    /// Tasks buffered at once; beyond it the oldest is dropped unprinted (counted in
    /// [`ConsoleAdapter::dropped_tasks`](super::ConsoleAdapter::dropped_tasks)). Default 64.
    pub max_tasks: usize,
    /// Events kept per task; later ones are counted, not kept, and the tree says how many
    /// are missing. Default 512.
    pub max_events_per_task: usize,
}

impl Default for ConsoleLimits {
    fn default() -> Self {
        Self {
            max_tasks: 64,
            max_events_per_task: 512,
        }
    }
}

/// One task's events so far.
#[derive(Debug, Default)]
pub(crate) struct TaskEvents {
    task: Uuid,
    pub(crate) events: Vec<Event<'static>>,
    /// Events past `max_events_per_task`, not kept.
    pub(crate) dropped: u64,
}

/// The buffered tasks, oldest first.
#[derive(Debug, Default)]
pub(crate) struct TaskBuffers {
    /// Arrival order → events; the first entry is the oldest task.
    by_arrival: BTreeMap<u64, TaskEvents>,
    arrival_of: HashMap<Uuid, u64>,
    next_arrival: u64,
}

/// What [`TaskBuffers::push`] had to give up.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Dropped {
    pub(crate) tasks: u64,
    pub(crate) events: u64,
}

impl TaskBuffers {
    /// Keeps `event` for `task`, evicting the oldest task if a new one does not fit.
    pub(crate) fn push(&mut self, task: Uuid, event: &Event<'_>, limits: ConsoleLimits) -> Dropped {
        let mut dropped = Dropped::default();
        let arrival = match self.arrival_of.get(&task) {
            Some(arrival) => *arrival,
            None => {
                while self.by_arrival.len() >= limits.max_tasks.max(1) {
                    if let Some((_, oldest)) = self.by_arrival.pop_first() {
                        self.arrival_of.remove(&oldest.task);
                        dropped.tasks += 1;
                    }
                }
                let arrival = self.next_arrival;
                self.next_arrival += 1;
                self.arrival_of.insert(task, arrival);
                self.by_arrival.insert(
                    arrival,
                    TaskEvents {
                        task,
                        ..TaskEvents::default()
                    },
                );
                arrival
            }
        };
        if let Some(buffer) = self.by_arrival.get_mut(&arrival) {
            if buffer.events.len() < limits.max_events_per_task.max(1) {
                buffer.events.push(event.clone().into_owned());
            } else {
                buffer.dropped += 1;
                dropped.events += 1;
            }
        }
        dropped
    }

    /// Removes and returns the events of `task` (none if it was never seen or was evicted).
    pub(crate) fn take(&mut self, task: Uuid) -> TaskEvents {
        self.arrival_of
            .remove(&task)
            .and_then(|arrival| self.by_arrival.remove(&arrival))
            .unwrap_or_default()
    }

    /// Tasks buffered now.
    pub(crate) fn len(&self) -> usize {
        self.by_arrival.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{TaskOrigin, TaskRef};
    use crate::event::Details;

    fn start_of(id: u128) -> (Uuid, Event<'static>) {
        let task = TaskRef {
            id: Uuid::from_u128(id),
            name: "t",
            version: "1",
            source: None,
            origin: TaskOrigin::Inline,
        };
        (task.id, Event::new(Some(task), None, Details::TaskStart))
    }

    const SMALL: ConsoleLimits = ConsoleLimits {
        max_tasks: 2,
        max_events_per_task: 3,
    };

    #[test]
    fn the_oldest_task_is_dropped_when_a_new_one_does_not_fit() {
        let mut buffers = TaskBuffers::default();
        for id in 1..=3 {
            let (task, event) = start_of(id);
            let dropped = buffers.push(task, &event, SMALL);
            assert_eq!(dropped.tasks, u64::from(id == 3));
        }
        assert_eq!(buffers.len(), 2);
        assert!(buffers.take(Uuid::from_u128(1)).events.is_empty());
        assert_eq!(buffers.take(Uuid::from_u128(2)).events.len(), 1);
        assert_eq!(buffers.take(Uuid::from_u128(3)).events.len(), 1);
        assert_eq!(buffers.len(), 0);
    }

    #[test]
    fn events_past_the_cap_are_counted_not_kept() {
        let mut buffers = TaskBuffers::default();
        let (task, event) = start_of(1);
        let mut dropped_events = 0;
        for _ in 0..10 {
            dropped_events += buffers.push(task, &event, SMALL).events;
        }
        let kept = buffers.take(task);
        assert_eq!(kept.events.len(), 3);
        assert_eq!(kept.dropped, 7);
        assert_eq!(dropped_events, 7);
    }

    #[test]
    fn a_task_that_never_ends_does_not_grow_memory_without_limit() {
        let mut buffers = TaskBuffers::default();
        let (_, event) = start_of(0);
        for id in 0..10_000u128 {
            buffers.push(Uuid::from_u128(id), &event, SMALL);
        }
        assert_eq!(buffers.len(), 2);
        assert_eq!(buffers.arrival_of.len(), 2);
    }
}
