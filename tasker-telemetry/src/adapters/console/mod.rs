//! The console trace view: each task's tree printed when the task ends.

mod buffer;
mod render;
mod tree;

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub use buffer::ConsoleLimits;

use crate::adapter::Adapter;
use crate::event::{Details, Event, InitializeStatus};
use crate::notice::Notice;
use buffer::TaskBuffers;
use tree::TaskTree;

/// Whether the console view uses ANSI colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ColorChoice {
    /// Colours when the output is a terminal and `NO_COLOR` is unset or empty.
    #[default]
    Auto,
    /// Always colours, even into a pipe or a file.
    Always,
    /// Never colours.
    Never,
}

impl ColorChoice {
    /// Whether to colour output going to a terminal (`is_terminal`) or not, honouring
    /// [`NO_COLOR`](https://no-color.org) under `Auto`.
    ///
    /// ```
    /// use tasker::telemetry::adapters::ColorChoice;
    /// assert!(!ColorChoice::Auto.colors(false));
    /// assert!(ColorChoice::Always.colors(false));
    /// assert!(!ColorChoice::Never.colors(true));
    /// ```
    pub fn colors(self, is_terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                is_terminal && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
            }
        }
    }

    /// `auto`, `always` or `never`.
    pub fn as_str(self) -> &'static str {
        match self {
            ColorChoice::Auto => "auto",
            ColorChoice::Always => "always",
            ColorChoice::Never => "never",
        }
    }
}

impl fmt::Display for ColorChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a word that is not a [`ColorChoice`].
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a colour choice; valid choices are: auto, always, never")]
pub struct UnknownColorChoice(pub String);

crate::__debug_shows_message!(UnknownColorChoice);

impl FromStr for ColorChoice {
    type Err = UnknownColorChoice;

    /// Parses `auto`, `always` or `never`, ignoring case and surrounding spaces.
    fn from_str(word: &str) -> Result<Self, Self::Err> {
        match word.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(ColorChoice::Auto),
            "always" => Ok(ColorChoice::Always),
            "never" => Ok(ColorChoice::Never),
            _ => Err(UnknownColorChoice(word.to_owned())),
        }
    }
}

/// The console trace view ([`TelemetryAdapter::Console`](crate::TelemetryAdapter::Console)):
/// buffers each task's events and, when the task ends, prints its tree — steps (nested by the
/// step that called them), attempts, retries with their backoff, skips, errors, durations and a
/// timing bar per step showing when it ran within the task:
///
/// ```text
/// order_fulfillment 1.0.0  completed in 159.9 ms  task 01a213a1-ba3e-7e35-819f-46c915098021, queue memory
/// ├─ validate           ok            11 µs  █·······················
/// ├─ reserve_inventory  ok         159.7 ms  ████████████████████████  3 attempts
/// │  ├─ attempt 1/3     failed       6.3 ms  order_fulfillment::FulfillError: inventory service unavailable
/// │  ├─ backoff         wait        48.0 ms
/// │  ├─ attempt 2/3     failed       5.3 ms  order_fulfillment::FulfillError: inventory service unavailable
/// │  ├─ backoff         wait        93.0 ms
/// │  └─ attempt 3/3     ok           6.3 ms
/// ├─ charge             ok          11.6 ms  ██······················
/// ├─ gift_wrap          skipped              skip_if
/// └─ ship               ok             7 µs  ·······················█
/// steps: 4 completed, 0 failed, 1 skipped
/// ```
///
/// A `join!` (or `join_all`) batch is one `join` line spanning its steps, with the steps under
/// it; a custom event shows its payload as `key=value` pairs, cut at 60 characters.
///
/// Colours follow a [`ColorChoice`] (by default: on a terminal only). Events outside any task
/// are not shown (the first step called outside a task says so once). Memory is bounded by [`ConsoleLimits`]: a task that never ends is dropped
/// once newer tasks push it out ([`dropped_tasks`](Self::dropped_tasks)).
///
/// Configured as `TelemetryAdapter::Console` it writes to standard output with the
/// configuration's `console_color`; build one yourself to choose the writer, and register it as
/// a custom adapter:
///
/// ```
/// use tasker::telemetry::adapters::{ColorChoice, ConsoleAdapter};
/// use tasker::telemetry::{Adapter, Details, Event, TaskRef, TaskOrigin};
///
/// let console = ConsoleAdapter::builder()
///     .writer(Vec::<u8>::new())   // any `Write + Send`; a file, a buffer, stderr…
///     .color(ColorChoice::Never)
///     .build();
/// let task = TaskRef {
///     id: uuid::Uuid::nil(), name: "checkout", version: "1.0.0",
///     source: None, origin: TaskOrigin::Inline,
/// };
/// console.record(&Event::new(Some(task), None, Details::TaskStart));
/// assert_eq!(console.buffered_tasks(), 1);
///
/// tasker::register_adapter!("stderr-console", || {
///     ConsoleAdapter::builder().writer(std::io::stderr()).build()
/// });
/// ```
pub struct ConsoleAdapter {
    buffers: Mutex<TaskBuffers>,
    output: Mutex<Box<dyn Write + Send>>,
    color: bool,
    limits: ConsoleLimits,
    dropped_tasks: AtomicU64,
    dropped_events: AtomicU64,
    write_errors: AtomicU64,
}

impl fmt::Debug for ConsoleAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleAdapter")
            .field("color", &self.color)
            .field("limits", &self.limits)
            .field("buffered_tasks", &self.buffered_tasks())
            .field("dropped_tasks", &self.dropped_tasks())
            .finish_non_exhaustive()
    }
}

/// Builds a [`ConsoleAdapter`]; see [`ConsoleAdapter::builder`].
pub struct ConsoleBuilder {
    writer: Box<dyn Write + Send>,
    is_terminal: bool,
    color: ColorChoice,
    limits: ConsoleLimits,
}

impl fmt::Debug for ConsoleBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleBuilder")
            .field("is_terminal", &self.is_terminal)
            .field("color", &self.color)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ConsoleBuilder {
    /// Writes trees to `writer` instead of standard output. A writer is taken not to be a
    /// terminal, so [`ColorChoice::Auto`] means no colours; say [`ColorChoice::Always`] to
    /// colour anyway.
    pub fn writer(mut self, writer: impl Write + Send + 'static) -> Self {
        self.writer = Box::new(writer);
        self.is_terminal = false;
        self
    }

    /// Colours or not; default [`ColorChoice::Auto`].
    pub fn color(mut self, color: ColorChoice) -> Self {
        self.color = color;
        self
    }

    /// What may be buffered; default [`ConsoleLimits::default`].
    pub fn limits(mut self, limits: ConsoleLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The adapter.
    pub fn build(self) -> ConsoleAdapter {
        ConsoleAdapter {
            buffers: Mutex::default(),
            output: Mutex::new(self.writer),
            color: self.color.colors(self.is_terminal),
            limits: self.limits,
            dropped_tasks: AtomicU64::new(0),
            dropped_events: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
        }
    }
}

impl Default for ConsoleAdapter {
    /// Standard output, [`ColorChoice::Auto`], default limits.
    fn default() -> Self {
        Self::builder().build()
    }
}

impl ConsoleAdapter {
    /// A builder writing to standard output, colours on a terminal, default limits.
    pub fn builder() -> ConsoleBuilder {
        ConsoleBuilder {
            writer: Box::new(io::stdout()),
            is_terminal: io::stdout().is_terminal(),
            color: ColorChoice::Auto,
            limits: ConsoleLimits::default(),
        }
    }

    /// Whether this adapter writes colours.
    pub fn colors(&self) -> bool {
        self.color
    }

    /// Tasks whose events are buffered now (running, or never ended).
    pub fn buffered_tasks(&self) -> usize {
        self.buffers.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Tasks dropped unprinted because [`ConsoleLimits::max_tasks`] newer ones were buffered.
    pub fn dropped_tasks(&self) -> u64 {
        self.dropped_tasks.load(Ordering::Relaxed)
    }

    /// Events not kept because their task had [`ConsoleLimits::max_events_per_task`] already.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events.load(Ordering::Relaxed)
    }

    /// Trees that could not be written (a closed pipe, a full disk).
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }

    fn print(&self, tree: &TaskTree) {
        let text = render::render(tree, self.color);
        let mut output = self.output.lock().unwrap_or_else(|e| e.into_inner());
        if output
            .write_all(text.as_bytes())
            .and_then(|()| output.flush())
            .is_err()
        {
            self.write_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Said the first time a step runs outside any task, which the view cannot show.
static OUTSIDE_TASK: Notice = Notice::new();

fn outside_task_message(step: &str) -> String {
    format!(
        "the console view shows each task's tree when the task ends; step `{step}` ran outside \
         any task, so it is not shown (nor are other steps outside a task): call it from a \
         `#[tasker::task]` function"
    )
}

impl Adapter for ConsoleAdapter {
    /// The console view is a terminal companion of the program: its trees and notices come on
    /// the program's own thread, in order with what the program prints itself, and through the
    /// subscriber that thread has.
    fn synchronous(&self) -> bool {
        true
    }

    fn record(&self, event: &Event<'_>) {
        let Some(task) = event.task_id() else {
            if let Some(step) = event.step_name() {
                OUTSIDE_TASK.say(|| outside_task_message(step));
            }
            return;
        };
        let ends_task = match event.details() {
            Details::TaskComplete { .. } | Details::TaskError { .. } => true,
            Details::TaskInitialize { status, .. } => *status == InitializeStatus::Error,
            _ => false,
        };
        let mut buffers = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        if !ends_task {
            let dropped = buffers.push(task, event, self.limits);
            self.dropped_tasks
                .fetch_add(dropped.tasks, Ordering::Relaxed);
            self.dropped_events
                .fetch_add(dropped.events, Ordering::Relaxed);
            return;
        }
        let finished = buffers.take(task);
        drop(buffers);
        if let Some(tree) = TaskTree::build(&finished.events, event, finished.dropped) {
            self.print(&tree);
        }
    }
}

#[cfg(test)]
mod tests;
