//! The console trace view of real tasks: success, retry, skip and failure trees, pinned as plain
//! text. Durations vary from run to run, so the captured events are moved onto a logical clock
//! (each event 1 ms after the previous, each successful attempt 1 ms long, each backoff 1 ms)
//! before the console sees them; the bars then depend only on the order of events.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tasker::telemetry::adapters::{ColorChoice, ConsoleAdapter};
use tasker::telemetry::{Adapter, Details, Event};
use tasker::testing::Capture;

#[derive(Debug, thiserror::Error)]
#[error("card declined")]
struct CardDeclined;

#[derive(Debug, thiserror::Error)]
#[error("inventory service unavailable")]
struct Unavailable;

#[tasker::step(max_attempts = 1)]
fn validate(items: &[&str]) -> Result<usize, CardDeclined> {
    Ok(items.len())
}

#[tasker::step(max_attempts = 1)]
async fn price(count: usize) -> Result<u32, CardDeclined> {
    Ok(count as u32 * 100)
}

#[tasker::step(max_attempts = 1)]
async fn quote(items: &[&str]) -> Result<u32, CardDeclined> {
    price(items.len()).await
}

#[tasker::task(name = "checkout", version = "1.0.0")]
async fn checkout(items: Vec<&'static str>) -> Result<u32, CardDeclined> {
    validate(&items)?;
    quote(&items).await
}

#[tasker::step(max_attempts = 3, backoff_ms = 1, jitter = 0.0)]
async fn reserve(calls: &AtomicU32) -> Result<(), Unavailable> {
    if calls.fetch_add(1, Ordering::SeqCst) < 2 {
        return Err(Unavailable);
    }
    Ok(())
}

#[tasker::task(name = "reservation", version = "1.0.0")]
async fn reservation(calls: &'static AtomicU32) -> Result<(), Unavailable> {
    reserve(calls).await
}

fn not_a_gift(gift: &bool) -> bool {
    !*gift
}

#[tasker::step(skip_if = not_a_gift)]
async fn gift_wrap(gift: &bool) -> Result<(), Unavailable> {
    let _ = gift;
    Ok(())
}

#[tasker::step(max_attempts = 1)]
fn ship() -> Result<&'static str, Unavailable> {
    Ok("TRK-1")
}

#[tasker::task(name = "delivery", version = "2.0.0")]
async fn delivery(gift: bool) -> Result<&'static str, Unavailable> {
    gift_wrap(&gift).await?;
    ship()
}

#[tasker::step(max_attempts = 2, backoff_ms = 1, jitter = 0.0)]
async fn charge(card: &str) -> Result<(), CardDeclined> {
    let _ = card;
    Err(CardDeclined)
}

#[tasker::task(name = "payment", version = "1.0.0")]
async fn payment(card: &'static str) -> Result<(), CardDeclined> {
    charge(card).await
}

#[tasker::step(max_attempts = 1)]
async fn pack(items: usize) -> Result<usize, Unavailable> {
    Ok(items)
}

#[tasker::task(name = "warehouse", version = "1.0.0")]
async fn warehouse(items: usize) -> Result<usize, Unavailable> {
    tasker::telemetry::record(
        "order.flagged",
        serde_json::json!({"items": items, "lane": "B"}),
    )
    .expect("a valid custom event");
    let (first, second) = tasker::join!(pack(items), price_box(items));
    Ok(first? + second? as usize)
}

#[tasker::step(max_attempts = 1)]
async fn price_box(items: usize) -> Result<u32, Unavailable> {
    Ok(items as u32)
}

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

/// The event on a logical clock: the `index`-th event happens `index` ms after a fixed instant,
/// and every duration it carries is 1 ms (a task's: its span on that clock).
fn on_logical_clock(event: &Event<'_>, index: usize, start: usize) -> Event<'static> {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let ms = |n: usize| Duration::from_millis(n as u64);
    let details = match event.details().clone() {
        Details::StepComplete { attempt, .. } => Details::StepComplete {
            attempt,
            duration: ms(1),
        },
        Details::StepBackoff { attempt, .. } => Details::StepBackoff {
            attempt,
            backoff: ms(1),
        },
        Details::TaskComplete { .. } => Details::TaskComplete {
            duration: ms(index - start),
        },
        Details::TaskError {
            error, error_steps, ..
        } => Details::TaskError {
            duration: ms(index - start),
            error,
            error_steps,
        },
        other => other,
    };
    Event::at(
        t0 + ms(index),
        event.task().copied(),
        event.step().copied(),
        details,
    )
    .into_owned()
}

/// The plain console tree of the one task `capture` saw, its id replaced by `<task-id>`.
fn console_tree(capture: &Capture) -> String {
    let events = capture.events();
    let task_id = events[0].task_id().expect("a task event").to_string();
    let start = events
        .iter()
        .position(|event| event.name() == "task.start")
        .unwrap_or(0);
    let output = Output::default();
    let console = ConsoleAdapter::builder()
        .writer(output.clone())
        .color(ColorChoice::Never)
        .build();
    for (index, event) in events.iter().enumerate() {
        console.record(&on_logical_clock(event, index, start));
    }
    let text = String::from_utf8(output.0.lock().unwrap().clone()).unwrap();
    text.replace(&task_id, "<task-id>")
}

#[tokio::test]
async fn success_tree_shows_every_step_nested_under_its_caller() {
    let capture = Capture::new();
    capture.wrap(checkout(vec!["book", "pen"])).await.unwrap();
    assert_eq!(
        console_tree(&capture),
        "\
checkout 1.0.0  completed in 9.0 ms  task <task-id>
├─ validate  ok           1.0 ms  ·····███················
└─ quote     ok           3.0 ms  ··········█████████·····
   └─ price  ok           1.0 ms  ·············███········
steps: 3 completed, 0 failed, 0 skipped
"
    );
}

#[tokio::test]
async fn retry_tree_shows_each_attempt_and_backoff() {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let capture = Capture::new();
    capture.wrap(reservation(&CALLS)).await.unwrap();
    assert_eq!(
        console_tree(&capture),
        "\
reservation 1.0.0  completed in 13.0 ms  task <task-id>
└─ reserve         ok           9.0 ms  ···██████████████████···  3 attempts
   ├─ attempt 1/3  failed       1.0 ms  console_view::Unavailable: inventory service unavailable
   ├─ backoff      wait         1.0 ms
   ├─ attempt 2/3  failed       1.0 ms  console_view::Unavailable: inventory service unavailable
   ├─ backoff      wait         1.0 ms
   └─ attempt 3/3  ok           1.0 ms
steps: 1 completed, 0 failed, 0 skipped
"
    );
}

#[tokio::test]
async fn skip_tree_shows_the_reason_and_no_bar() {
    let capture = Capture::new();
    capture.wrap(delivery(false)).await.unwrap();
    assert_eq!(
        console_tree(&capture),
        "\
delivery 2.0.0  completed in 6.0 ms  task <task-id>
├─ gift_wrap  skipped              skip_if
└─ ship       ok           1.0 ms  ············████········
steps: 1 completed, 0 failed, 1 skipped
"
    );
}

#[tokio::test]
async fn failure_tree_shows_the_attempts_the_give_up_and_the_task_error() {
    let capture = Capture::new();
    capture
        .wrap(payment("4000-0000-0000-0002"))
        .await
        .unwrap_err();
    assert_eq!(
        console_tree(&capture),
        "\
payment 1.0.0  failed after 10.0 ms  task <task-id>
└─ charge          failed       6.0 ms  ····████████████████····  2 attempts
   ├─ attempt 1/2  failed       1.0 ms  console_view::CardDeclined: card declined
   ├─ backoff      wait         1.0 ms
   ├─ attempt 2/2  failed       1.0 ms  console_view::CardDeclined: card declined
   └─ gave up      failed               after 2 of 2 attempts
steps: 0 completed, 1 failed, 0 skipped
error: console_view::CardDeclined: card declined (failed steps: charge)
"
    );
}

#[tokio::test]
async fn a_join_is_one_group_and_a_custom_event_shows_its_payload() {
    let capture = Capture::new();
    assert_eq!(capture.wrap(warehouse(3)).await.unwrap(), 6);
    assert_eq!(
        console_tree(&capture),
        "\
warehouse 1.0.0  completed in 9.0 ms  task <task-id>
└─ join          ok           3.0 ms  ··········█████████·····  2 steps at once
   ├─ pack       ok           1.0 ms  ··········████··········
   └─ price_box  ok           1.0 ms  ················███·····
order.flagged    event                items=3, lane=\"B\"
steps: 2 completed, 0 failed, 0 skipped
"
    );
}

#[test]
fn the_console_is_configured_by_its_word_and_its_colour_by_the_environment() {
    use tasker::telemetry::adapters::ColorChoice;
    use tasker::{ConfigError, Configuration, TelemetryAdapter};

    let config = Configuration::from_lookup(|name| match name {
        "TASKER_TELEMETRY_ADAPTERS" => Some("console,default".into()),
        "TASKER_CONSOLE_COLOR" => Some("never".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(
        config.telemetry_adapters,
        [TelemetryAdapter::Console, TelemetryAdapter::Default]
    );
    assert_eq!(config.console_color, ColorChoice::Never);

    let error = Configuration::from_lookup(|name| {
        (name == "TASKER_CONSOLE_COLOR").then(|| "rainbow".to_owned())
    })
    .unwrap_err();
    assert!(matches!(error, ConfigError::InvalidEnvironment { .. }));
    assert_eq!(
        error.to_string(),
        "TASKER_CONSOLE_COLOR=\"rainbow\" is not valid: `rainbow` is not a colour choice; valid \
         choices are: auto, always, never"
    );
}
