//! The text of a [`TaskTree`]: one line per step call, `join!` batch, attempt, backoff and custom
//! event, with aligned columns and a timing bar per step; ANSI colours when asked for.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::tree::{AttemptResult, Batch, Entry, StepEnd, StepItem, StepNode, TaskEnd, TaskTree};

/// Columns of the timing bar.
pub(crate) const BAR_WIDTH: usize = 24;

/// The status column's width.
const STATUS_WIDTH: usize = 9;
/// The duration column's width.
const DURATION_WIDTH: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paint {
    Plain,
    Bold,
    Dim,
    Green,
    Yellow,
    Red,
    Cyan,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Paint::Plain => "",
            Paint::Bold => "\x1b[1m",
            Paint::Dim => "\x1b[2m",
            Paint::Green => "\x1b[32m",
            Paint::Yellow => "\x1b[33m",
            Paint::Red => "\x1b[31m",
            Paint::Cyan => "\x1b[36m",
        }
    }
}

/// Writes text, coloured or not.
struct Painter {
    color: bool,
    out: String,
}

impl Painter {
    fn paint(&mut self, paint: Paint, text: &str) {
        if self.color && paint != Paint::Plain && !text.is_empty() {
            let _ = write!(self.out, "{}{text}\x1b[0m", paint.code());
        } else {
            self.out.push_str(text);
        }
    }
}

/// One line below the header.
struct Row {
    /// Tree glyphs before the label.
    prefix: String,
    label: String,
    label_paint: Paint,
    status: &'static str,
    status_paint: Paint,
    duration: Option<Duration>,
    /// The span as fractions of the task's, for the timing bar.
    span: Option<(f64, f64)>,
    detail: String,
}

/// The whole tree as text, ending with a newline.
pub(crate) fn render(tree: &TaskTree, color: bool) -> String {
    let mut rows = Vec::new();
    let roots = tree.roots.clone();
    push_children(tree, &roots, "", &mut rows);
    for (name, payload) in &tree.notes {
        rows.push(Row {
            prefix: String::new(),
            label: name.clone(),
            label_paint: Paint::Plain,
            status: "event",
            status_paint: Paint::Cyan,
            duration: None,
            span: None,
            detail: payload.clone(),
        });
    }

    let mut painter = Painter {
        color,
        out: String::new(),
    };
    header(tree, &mut painter);
    let label_width = rows
        .iter()
        .map(|row| row.prefix.chars().count() + row.label.chars().count())
        .max()
        .unwrap_or(0);
    for row in &rows {
        painter.paint(Paint::Dim, &row.prefix);
        painter.paint(row.label_paint, &row.label);
        let used = row.prefix.chars().count() + row.label.chars().count();
        painter.out.push_str(&" ".repeat(label_width - used + 2));
        painter.paint(row.status_paint, &format!("{:<STATUS_WIDTH$}", row.status));
        let duration = row.duration.map(human).unwrap_or_default();
        painter
            .out
            .push_str(&format!("{duration:>DURATION_WIDTH$}"));
        if let Some((from, to)) = row.span {
            painter.out.push_str("  ");
            bar(&mut painter, from, to, row.status_paint);
        }
        if !row.detail.is_empty() {
            painter.out.push_str("  ");
            painter.paint(Paint::Plain, &row.detail);
        }
        let trimmed = painter.out.trim_end_matches(' ').len();
        painter.out.truncate(trimmed);
        painter.out.push('\n');
    }
    footer(tree, &mut painter);
    painter.out
}

fn header(tree: &TaskTree, painter: &mut Painter) {
    painter.paint(Paint::Bold, &format!("{} {}", tree.name, tree.version));
    painter.out.push_str("  ");
    match &tree.end {
        TaskEnd::Completed { duration } => {
            painter.paint(Paint::Green, "completed");
            painter.out.push_str(&format!(" in {}", human(*duration)));
        }
        TaskEnd::Failed { duration, .. } => {
            painter.paint(Paint::Red, "failed");
            painter
                .out
                .push_str(&format!(" after {}", human(*duration)));
        }
        TaskEnd::Rejected { .. } => painter.paint(Paint::Red, "rejected"),
    }
    painter.out.push_str("  ");
    let mut identity = format!("task {}", tree.id);
    if let Some(queue) = &tree.queue {
        let _ = write!(identity, ", queue {queue}");
    }
    painter.paint(Paint::Dim, &identity);
    painter.out.push('\n');
}

fn footer(tree: &TaskTree, painter: &mut Painter) {
    if let Some((completed, failed, skipped)) = tree.counts {
        painter.paint(
            Paint::Dim,
            &format!("steps: {completed} completed, {failed} failed, {skipped} skipped"),
        );
        painter.out.push('\n');
    }
    match &tree.end {
        TaskEnd::Failed {
            class,
            message,
            error_steps,
            ..
        } => {
            painter.paint(Paint::Red, "error:");
            painter.out.push_str(&format!(" {class}: {message}"));
            if !error_steps.is_empty() {
                painter
                    .out
                    .push_str(&format!(" (failed steps: {})", error_steps.join(", ")));
            }
            painter.out.push('\n');
        }
        TaskEnd::Rejected { errors } => {
            for error in errors {
                painter.paint(Paint::Red, "error:");
                painter.out.push_str(&format!(" {error}\n"));
            }
        }
        TaskEnd::Completed { .. } => {}
    }
    if tree.dropped_events > 0 {
        painter.paint(
            Paint::Yellow,
            &format!(
                "{} later events of this task were not kept (ConsoleLimits::max_events_per_task)",
                tree.dropped_events
            ),
        );
        painter.out.push('\n');
    }
}

fn push_children(tree: &TaskTree, children: &[Entry], prefix: &str, rows: &mut Vec<Row>) {
    for (position, entry) in children.iter().enumerate() {
        let last = position + 1 == children.len();
        match *entry {
            Entry::Step(index) => push_step(tree, &tree.steps[index], prefix, last, rows),
            Entry::Batch(batch) => push_batch(tree, &tree.batches[batch], prefix, last, rows),
        }
    }
}

/// A batch's line — `join`, spanning its steps, failed if one failed — and its steps under it.
fn push_batch(tree: &TaskTree, batch: &Batch, prefix: &str, last: bool, rows: &mut Vec<Row>) {
    let (glyph, continuation) = if last {
        ("└─ ", "   ")
    } else {
        ("├─ ", "│  ")
    };
    let members: Vec<&StepNode> = batch
        .members
        .iter()
        .map(|&index| &tree.steps[index])
        .collect();
    let ran: Vec<&StepNode> = members
        .iter()
        .copied()
        .filter(|step| !matches!(step.end, StepEnd::Skipped { .. }))
        .collect();
    let ends = |end: fn(&StepEnd) -> bool| members.iter().any(|step| end(&step.end));
    let (status, status_paint) = if ends(|end| *end == StepEnd::Failed) {
        ("failed", Paint::Red)
    } else if ends(|end| *end == StepEnd::Unfinished) {
        ("unfinished", Paint::Yellow)
    } else if ran.is_empty() {
        ("skipped", Paint::Yellow)
    } else {
        ("ok", Paint::Green)
    };
    let started = ran.iter().map(|step| step.started).min();
    let ended = ran.iter().map(|step| step.ended).max();
    let span = started.zip(ended);
    rows.push(Row {
        prefix: format!("{prefix}{glyph}"),
        label: "join".to_owned(),
        label_paint: Paint::Bold,
        status,
        status_paint,
        duration: span.map(|(started, ended)| since(started, ended)),
        span: span.map(|(started, ended)| (fraction(tree, started), fraction(tree, ended))),
        detail: format!("{} steps at once", members.len()),
    });
    let entries: Vec<Entry> = batch
        .members
        .iter()
        .map(|&index| Entry::Step(index))
        .collect();
    push_children(tree, &entries, &format!("{prefix}{continuation}"), rows);
}

fn push_step(tree: &TaskTree, step: &StepNode, prefix: &str, last: bool, rows: &mut Vec<Row>) {
    let (glyph, continuation) = if last {
        ("└─ ", "   ")
    } else {
        ("├─ ", "│  ")
    };
    let attempts = step.attempts();
    let (status, status_paint) = match &step.end {
        StepEnd::Succeeded => ("ok", Paint::Green),
        StepEnd::Failed => ("failed", Paint::Red),
        StepEnd::Skipped { .. } => ("skipped", Paint::Yellow),
        StepEnd::Unfinished => ("unfinished", Paint::Yellow),
    };
    let detail = match &step.end {
        StepEnd::Skipped { reason } => reason.clone(),
        _ if attempts > 1 => format!("{attempts} attempts"),
        _ => String::new(),
    };
    let ran = !matches!(step.end, StepEnd::Skipped { .. });
    rows.push(Row {
        prefix: format!("{prefix}{glyph}"),
        label: step.name.to_owned(),
        label_paint: Paint::Bold,
        status,
        status_paint,
        duration: ran.then(|| since(step.started, step.ended)),
        span: ran.then(|| (fraction(tree, step.started), fraction(tree, step.ended))),
        detail,
    });

    let inner = format!("{prefix}{continuation}");
    let expanded =
        attempts > 1 || !matches!(step.end, StepEnd::Succeeded | StepEnd::Skipped { .. });
    let items: Vec<&StepItem> = step
        .items
        .iter()
        .filter(|item| expanded || matches!(item, StepItem::Custom { .. }))
        .collect();
    let item_count = items.len() + step.children.len();
    for (position, item) in items.into_iter().enumerate() {
        let glyph = if position + 1 == item_count {
            "└─ "
        } else {
            "├─ "
        };
        rows.push(item_row(format!("{inner}{glyph}"), item, &step.end));
    }
    push_children(tree, &step.children, &inner, rows);
}

fn item_row(prefix: String, item: &StepItem, step_end: &StepEnd) -> Row {
    let mut row = Row {
        prefix,
        label: String::new(),
        label_paint: Paint::Plain,
        status: "",
        status_paint: Paint::Plain,
        duration: None,
        span: None,
        detail: String::new(),
    };
    match item {
        StepItem::Attempt {
            number,
            max_attempts,
            duration,
            result,
            ..
        } => {
            row.label = format!("attempt {number}/{max_attempts}");
            row.duration = *duration;
            (row.status, row.status_paint) = match result {
                AttemptResult::Succeeded => ("ok", Paint::Green),
                AttemptResult::Unfinished => ("unfinished", Paint::Yellow),
                // A failure that was retried is a warning; the last one is the step's failure.
                AttemptResult::Failed { .. } if *number < *max_attempts => {
                    ("failed", Paint::Yellow)
                }
                AttemptResult::Failed { .. } => ("failed", Paint::Red),
            };
            if let AttemptResult::Failed {
                class,
                message,
                retryable,
            } = result
            {
                row.detail = format!("{class}: {message}");
                if !retryable {
                    row.detail.push_str(" (not retryable)");
                }
            }
            if matches!(result, AttemptResult::Failed { .. }) && *step_end == StepEnd::Succeeded {
                row.status_paint = Paint::Yellow;
            }
        }
        StepItem::Backoff { wait } => {
            row.label = "backoff".to_owned();
            row.label_paint = Paint::Dim;
            row.status = "wait";
            row.status_paint = Paint::Dim;
            row.duration = Some(*wait);
        }
        StepItem::GaveUp {
            attempts,
            max_attempts,
        } => {
            row.label = "gave up".to_owned();
            row.status = "failed";
            row.status_paint = Paint::Red;
            row.detail = format!("after {attempts} of {max_attempts} attempts");
        }
        StepItem::Custom { name, payload } => {
            row.label = name.clone();
            row.status = "event";
            row.status_paint = Paint::Cyan;
            row.detail = payload.clone();
        }
    }
    row
}

/// The bar for a span of `from..to` (fractions of the task), at least one cell wide.
fn bar(painter: &mut Painter, from: f64, to: f64, paint: Paint) {
    let (filled_from, filled_to) = bar_cells(from, to, BAR_WIDTH);
    painter.paint(Paint::Dim, &"·".repeat(filled_from));
    painter.paint(paint, &"█".repeat(filled_to - filled_from));
    painter.paint(Paint::Dim, &"·".repeat(BAR_WIDTH - filled_to));
}

/// The filled cells `start..end` of a `width`-cell bar for the span `from..to` (fractions of
/// the whole, clamped to 0..=1); never empty.
pub(crate) fn bar_cells(from: f64, to: f64, width: usize) -> (usize, usize) {
    let clamp = |value: f64| {
        if value.is_nan() {
            0.0
        } else {
            value.clamp(0.0, 1.0)
        }
    };
    let (from, to) = (clamp(from), clamp(to.max(from)));
    let start = ((from * width as f64).floor() as usize).min(width.saturating_sub(1));
    let end = ((to * width as f64).ceil() as usize).clamp(start + 1, width.max(1));
    (start, end)
}

/// Where `at` falls in the task's span, from 0 to 1.
fn fraction(tree: &TaskTree, at: SystemTime) -> f64 {
    let whole = since(tree.started, tree.ended).as_secs_f64();
    if whole <= 0.0 {
        return 0.0;
    }
    since(tree.started, at).as_secs_f64() / whole
}

fn since(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from).unwrap_or_default()
}

/// `420 µs`, `163.4 ms`, `2.35 s`.
pub(crate) fn human(duration: Duration) -> String {
    let millis = duration.as_secs_f64() * 1000.0;
    if duration < Duration::from_millis(1) {
        format!("{} µs", duration.as_micros())
    } else if millis < 1000.0 {
        format!("{millis:.1} ms")
    } else {
        format!("{:.2} s", millis / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_is_proportional_to_the_span() {
        assert_eq!(bar_cells(0.0, 1.0, 24), (0, 24));
        assert_eq!(bar_cells(0.0, 0.5, 24), (0, 12));
        assert_eq!(bar_cells(0.25, 0.5, 24), (6, 12));
    }

    #[test]
    fn a_bar_is_never_empty_nor_longer_than_its_width() {
        assert_eq!(bar_cells(0.5, 0.5, 24), (12, 13));
        assert_eq!(bar_cells(1.0, 1.0, 24), (23, 24));
        assert_eq!(bar_cells(-1.0, 2.0, 24), (0, 24));
        assert_eq!(bar_cells(f64::NAN, f64::NAN, 24), (0, 1));
    }

    #[test]
    fn durations_read_in_milliseconds_then_seconds() {
        assert_eq!(human(Duration::from_micros(420)), "420 µs");
        assert_eq!(human(Duration::from_micros(163_420)), "163.4 ms");
        assert_eq!(human(Duration::from_millis(2_346)), "2.35 s");
    }
}
