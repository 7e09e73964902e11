//! The console view fed with events at exact times, so durations and bars are pinned too.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use super::*;
use crate::context::{StepRef, TaskOrigin, TaskRef};
use crate::event::ErrorInfo;

#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Write for Output {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Output {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

const TASK: TaskRef = TaskRef {
    id: Uuid::from_u128(1),
    name: "checkout",
    version: "1.0.0",
    source: None,
    origin: TaskOrigin::Inline,
};

fn step(id: u128, name: &'static str) -> StepRef {
    StepRef {
        id: Uuid::from_u128(id),
        name,
        parent_id: None,
        source: None,
    }
}

/// Feeds events to a console adapter, each at `t0 + millis`.
struct Script {
    console: ConsoleAdapter,
    output: Output,
    t0: SystemTime,
}

impl Script {
    fn new(color: ColorChoice, limits: ConsoleLimits) -> Self {
        let output = Output::default();
        let console = ConsoleAdapter::builder()
            .writer(output.clone())
            .color(color)
            .limits(limits)
            .build();
        Self {
            console,
            output,
            t0: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        }
    }

    fn at(&self, millis: u64, step: Option<StepRef>, details: Details<'static>) -> &Self {
        let event = Event::at(
            self.t0 + Duration::from_millis(millis),
            Some(TASK),
            step,
            details,
        );
        self.console.record(&event);
        self
    }
}

fn error(message: &'static str) -> ErrorInfo<'static> {
    ErrorInfo {
        class: Cow::Borrowed("shop::PaymentError"),
        message: Cow::Borrowed(message),
    }
}

fn retried_then_succeeded(script: &Script) {
    let pay = Some(step(2, "charge"));
    let ship = Some(step(3, "ship"));
    script
        .at(0, None, Details::TaskStart)
        .at(0, None, Details::TaskHandle)
        .at(
            0,
            pay,
            Details::StepHandle {
                attempt: 1,
                max_attempts: 3,
            },
        )
        .at(
            10,
            pay,
            Details::StepError {
                attempt: 1,
                error: error("gateway timeout"),
                retryable: true,
            },
        )
        .at(
            10,
            pay,
            Details::StepRetry {
                attempt: 2,
                max_attempts: 3,
            },
        )
        .at(
            10,
            pay,
            Details::StepBackoff {
                attempt: 2,
                backoff: Duration::from_millis(40),
            },
        )
        .at(
            50,
            pay,
            Details::StepHandle {
                attempt: 2,
                max_attempts: 3,
            },
        )
        .at(
            60,
            pay,
            Details::StepComplete {
                attempt: 2,
                duration: Duration::from_millis(10),
            },
        )
        .at(
            60,
            ship,
            Details::StepSkip {
                reason: Cow::Borrowed("skip_if"),
            },
        )
        .at(
            60,
            None,
            Details::TaskFinalize {
                completed_steps: 1,
                failed_steps: 0,
                skipped_steps: 1,
            },
        );
}

#[test]
fn a_finished_task_prints_its_tree_with_proportional_bars() {
    let script = Script::new(ColorChoice::Never, ConsoleLimits::default());
    retried_then_succeeded(&script);
    assert_eq!(script.output.text(), "", "nothing before the task ends");
    script.at(
        96,
        None,
        Details::TaskComplete {
            duration: Duration::from_millis(96),
        },
    );
    assert_eq!(
        script.output.text(),
        "\
checkout 1.0.0  completed in 96.0 ms  task 00000000-0000-0000-0000-000000000001
├─ charge          ok          60.0 ms  ███████████████·········  2 attempts
│  ├─ attempt 1/3  failed      10.0 ms  shop::PaymentError: gateway timeout
│  ├─ backoff      wait        40.0 ms
│  └─ attempt 2/3  ok          10.0 ms
└─ ship            skipped              skip_if
steps: 1 completed, 0 failed, 1 skipped
"
    );
    assert_eq!(script.console.buffered_tasks(), 0);
}

#[test]
fn colours_are_ansi_codes_around_the_same_text() {
    let script = Script::new(ColorChoice::Always, ConsoleLimits::default());
    retried_then_succeeded(&script);
    script.at(
        96,
        None,
        Details::TaskComplete {
            duration: Duration::from_millis(96),
        },
    );
    let text = script.output.text();
    assert!(text.contains("\x1b[32mok       \x1b[0m"), "{text:?}");
    assert!(text.contains("\x1b[33mfailed   \x1b[0m"), "{text:?}");
    let mut plain = text.clone();
    for code in [
        "\x1b[0m", "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[32m", "\x1b[33m",
    ] {
        plain = plain.replace(code, "");
    }
    let uncoloured = Script::new(ColorChoice::Never, ConsoleLimits::default());
    retried_then_succeeded(&uncoloured);
    uncoloured.at(
        96,
        None,
        Details::TaskComplete {
            duration: Duration::from_millis(96),
        },
    );
    assert_eq!(plain, uncoloured.output.text());
}

#[test]
fn a_writer_is_not_a_terminal_so_auto_means_plain() {
    let console = ConsoleAdapter::builder().writer(Vec::new()).build();
    assert!(!console.colors());
    let console = ConsoleAdapter::builder()
        .writer(Vec::new())
        .color(ColorChoice::Always)
        .build();
    assert!(console.colors());
}

#[test]
fn a_refused_request_prints_its_errors() {
    let script = Script::new(ColorChoice::Never, ConsoleLimits::default());
    script.at(
        0,
        None,
        Details::TaskInitialize {
            status: InitializeStatus::Error,
            errors: Cow::Owned(vec!["unknown task `checkout` version 9".into()]),
        },
    );
    assert_eq!(
        script.output.text(),
        "checkout 1.0.0  rejected  task 00000000-0000-0000-0000-000000000001\n\
         error: unknown task `checkout` version 9\n"
    );
}

#[test]
fn events_past_the_per_task_cap_are_reported_in_the_tree() {
    let script = Script::new(
        ColorChoice::Never,
        ConsoleLimits {
            max_tasks: 4,
            max_events_per_task: 2,
        },
    );
    retried_then_succeeded(&script);
    script.at(
        96,
        None,
        Details::TaskComplete {
            duration: Duration::from_millis(96),
        },
    );
    assert_eq!(script.console.dropped_events(), 8);
    assert!(script.output.text().ends_with(
        "8 later events of this task were not kept (ConsoleLimits::max_events_per_task)\n"
    ));
}

#[test]
fn tasks_that_never_end_are_dropped_oldest_first_and_counted() {
    let output = Output::default();
    let console = ConsoleAdapter::builder()
        .writer(output.clone())
        .limits(ConsoleLimits {
            max_tasks: 3,
            max_events_per_task: 8,
        })
        .build();
    for id in 0..100u128 {
        let task = TaskRef {
            id: Uuid::from_u128(id),
            ..TASK
        };
        console.record(&Event::new(Some(task), None, Details::TaskStart));
    }
    assert_eq!(console.buffered_tasks(), 3);
    assert_eq!(console.dropped_tasks(), 97);
    assert_eq!(output.text(), "");
}

#[test]
fn color_choices_parse_from_their_words() {
    assert_eq!(" Always ".parse(), Ok(ColorChoice::Always));
    assert_eq!("never".parse(), Ok(ColorChoice::Never));
    assert_eq!(
        "sometimes".parse::<ColorChoice>().unwrap_err().to_string(),
        "`sometimes` is not a colour choice; valid choices are: auto, always, never"
    );
}

fn complete(attempt: u32, millis: u64) -> Details<'static> {
    Details::StepComplete {
        attempt,
        duration: Duration::from_millis(millis),
    }
}

fn handle(max_attempts: u32) -> Details<'static> {
    Details::StepHandle {
        attempt: 1,
        max_attempts,
    }
}

fn custom(name: &'static str, payload: serde_json::Value) -> Details<'static> {
    let serde_json::Value::Object(payload) = payload else {
        panic!("a payload is an object");
    };
    Details::Custom {
        name: Cow::Borrowed(name),
        payload: Cow::Owned(payload),
    }
}

#[test]
fn a_join_batch_is_one_group_spanning_its_steps() {
    let script = Script::new(ColorChoice::Never, ConsoleLimits::default());
    let (validate, reserve, charge, ship) = (
        Some(step(2, "validate")),
        Some(step(3, "reserve")),
        Some(step(4, "charge")),
        Some(step(5, "ship")),
    );
    script
        .at(0, None, Details::TaskStart)
        .at(0, validate, handle(1))
        .at(10, validate, complete(1, 10))
        .at(
            10,
            None,
            Details::StepFindViable {
                step_names: Cow::Borrowed(&["reserve", "charge"]),
            },
        )
        .at(10, reserve, handle(3))
        .at(10, charge, handle(3))
        .at(30, charge, complete(1, 20))
        .at(60, reserve, complete(1, 50))
        .at(60, ship, handle(3))
        .at(80, ship, complete(1, 20))
        .at(
            80,
            None,
            Details::TaskComplete {
                duration: Duration::from_millis(80),
            },
        );
    assert_eq!(
        script.output.text(),
        "\
checkout 1.0.0  completed in 80.0 ms  task 00000000-0000-0000-0000-000000000001
├─ validate    ok          10.0 ms  ███·····················
├─ join        ok          50.0 ms  ···███████████████······  2 steps at once
│  ├─ reserve  ok          50.0 ms  ···███████████████······
│  └─ charge   ok          20.0 ms  ···██████···············
└─ ship        ok          20.0 ms  ··················██████
"
    );
}

#[test]
fn custom_events_show_their_payload_kept_short() {
    let script = Script::new(ColorChoice::Never, ConsoleLimits::default());
    let charge = Some(step(2, "charge"));
    script
        .at(0, None, Details::TaskStart)
        .at(
            0,
            None,
            custom("order.flagged", serde_json::json!({"order_id": 42, "reason": "fraud"})),
        )
        .at(0, charge, handle(1))
        .at(
            5,
            charge,
            custom(
                "card.checked",
                serde_json::json!({"note": "a very long explanation that would not fit on one line of the tree"}),
            ),
        )
        .at(10, charge, complete(1, 10))
        .at(
            10,
            None,
            Details::TaskComplete {
                duration: Duration::from_millis(10),
            },
        );
    assert_eq!(
        script.output.text(),
        "\
checkout 1.0.0  completed in 10.0 ms  task 00000000-0000-0000-0000-000000000001
└─ charge           ok          10.0 ms  ████████████████████████
   └─ card.checked  event                note=\"a very long explanation that would not fit on one lin…
order.flagged       event                order_id=42, reason=\"fraud\"
"
    );
}
