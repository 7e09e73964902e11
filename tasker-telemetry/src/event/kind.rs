//! The catalog of lifecycle events and their stable dotted names.

use std::fmt;
use std::str::FromStr;

macro_rules! catalog {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)+) => {
        /// One of the seventeen lifecycle events of a task or step.
        ///
        /// The dotted names are a stable contract: they round-trip through
        /// [`Display`](fmt::Display) and [`FromStr`].
        ///
        /// ```
        /// use tasker::telemetry::EventKind;
        /// let kind: EventKind = "step.retry".parse().unwrap();
        /// assert_eq!(kind, EventKind::StepRetry);
        /// assert_eq!(kind.to_string(), "step.retry");
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind {
            $($(#[$doc])* $variant,)+
        }

        impl EventKind {
            /// Every lifecycle event, tasks first, in lifecycle order.
            pub const ALL: [EventKind; 17] = [$(EventKind::$variant,)+];

            /// The stable dotted name, such as `"task.complete"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)+
                }
            }
        }
    };
}

catalog! {
    /// A task is created from a call or a request.
    TaskInitialize => "task.initialize",
    /// A task request is queued for a worker.
    TaskEnqueue => "task.enqueue",
    /// Processing of the task begins.
    TaskStart => "task.start",
    /// The task function is invoked.
    TaskHandle => "task.handle",
    /// An attempt of a task failed and another is scheduled.
    TaskRetry => "task.retry",
    /// The wait before the task's next attempt.
    TaskBackoff => "task.backoff",
    /// The task body returned; its outcome is being decided.
    TaskFinalize => "task.finalize",
    /// The task succeeded.
    TaskComplete => "task.complete",
    /// The task failed (error returned, panic or cancellation).
    TaskError => "task.error",
    /// A batch of steps is about to run together.
    StepFindViable => "step.find_viable",
    /// An attempt of a step starts.
    StepHandle => "step.handle",
    /// An attempt of a step succeeded.
    StepComplete => "step.complete",
    /// An attempt of a step failed.
    StepError => "step.error",
    /// Another attempt of a step is scheduled.
    StepRetry => "step.retry",
    /// The wait before the next attempt.
    StepBackoff => "step.backoff",
    /// The step will not run.
    StepSkip => "step.skip",
    /// The last allowed attempt of a step failed.
    StepMaxRetriesReached => "step.max_retries_reached",
}

impl EventKind {
    /// Whether the event concerns a task as a whole (`task.*`).
    pub const fn is_task_event(self) -> bool {
        matches!(
            self,
            EventKind::TaskInitialize
                | EventKind::TaskEnqueue
                | EventKind::TaskStart
                | EventKind::TaskHandle
                | EventKind::TaskRetry
                | EventKind::TaskBackoff
                | EventKind::TaskFinalize
                | EventKind::TaskComplete
                | EventKind::TaskError
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing an unknown event name into an [`EventKind`].
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown lifecycle event `{name}`; valid names are: {}", valid_names())]
pub struct UnknownEventKind {
    /// The name that was given.
    pub name: String,
}

crate::__debug_shows_message!(UnknownEventKind);

fn valid_names() -> String {
    EventKind::ALL.map(EventKind::name).join(", ")
}

impl FromStr for EventKind {
    type Err = UnknownEventKind;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| UnknownEventKind {
                name: name.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_through_from_str() {
        for kind in EventKind::ALL {
            assert_eq!(kind.to_string().parse::<EventKind>(), Ok(kind));
        }
    }

    #[test]
    fn catalog_has_seventeen_distinct_names() {
        let mut names: Vec<_> = EventKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 17);
    }

    #[test]
    fn unknown_name_lists_the_valid_ones() {
        let error = "task.explode".parse::<EventKind>().unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("unknown lifecycle event `task.explode`; valid names are: task.initialize, task.enqueue,"));
        assert!(message.ends_with("step.skip, step.max_retries_reached"));
    }

    #[test]
    fn task_events_are_the_task_namespace() {
        for kind in EventKind::ALL {
            assert_eq!(kind.is_task_event(), kind.name().starts_with("task."));
        }
    }
}
