//! The span tree of the OpenTelemetry adapter for an order workflow: success, recovered retry,
//! exhausted retry, skip, panic, cancellation, nesting, steps outside tasks, custom events, and
//! 200 concurrent tasks. Each test has its own tracer provider with an in-memory exporter.
#![cfg(feature = "opentelemetry")]

mod otel_support;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::Context;

use opentelemetry::trace::{SpanId, SpanKind, Status};
use otel_support::{
    assert_lines, by_trace, children, line_of, render_tree, root, roots, text, Otel,
};
use tasker::telemetry::otel::open_span_count;
use tasker::testing::Capture;

const SOURCE: &str = include_str!("otel_spans.rs");

#[derive(Debug, Default)]
struct Order {
    id: u64,
    gift: bool,
    /// Failures the inventory service answers with before it succeeds.
    inventory_failures: AtomicU32,
    card_declined: bool,
    panic_in_ship: bool,
    hang_in_ship: bool,
}

#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error("order {0} has no id")]
    NoId(u64),
    #[error("inventory service unavailable")]
    InventoryUnavailable,
    #[error("card declined")]
    CardDeclined,
}

#[tasker::step(max_attempts = 1)]
fn validate(order: &Order) -> Result<(), OrderError> {
    if order.id == 0 {
        return Err(OrderError::NoId(order.id));
    }
    Ok(())
}

#[tasker::step(max_attempts = 3, backoff_ms = 1, jitter = 0.0)]
async fn reserve_inventory(order: &Order) -> Result<u32, OrderError> {
    let failed = order
        .inventory_failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failed {
        return Err(OrderError::InventoryUnavailable);
    }
    Ok(2)
}

#[tasker::step(max_attempts = 2, backoff_ms = 1, jitter = 0.0)]
async fn charge(order: &Order) -> Result<u64, OrderError> {
    if order.card_declined {
        return Err(OrderError::CardDeclined);
    }
    Ok(3998)
}

fn no_gift_wrap(order: &Order) -> bool {
    !order.gift
}

#[tasker::step(skip_if = no_gift_wrap)]
async fn gift_wrap(order: &Order) -> Result<(), OrderError> {
    let _ = order;
    Ok(())
}

#[tasker::step(max_attempts = 1)]
async fn ship(order: &Order, items: u32, cents: u64) -> Result<String, OrderError> {
    if order.panic_in_ship {
        panic!("label printer on fire");
    }
    if order.hang_in_ship {
        std::future::pending::<()>().await;
    }
    Ok(format!("TRK-{items}-{cents}"))
}

#[tasker::task(name = "order_fulfillment", version = "1.0.0")]
async fn fulfill(order: Order) -> Result<String, OrderError> {
    validate(&order)?;
    let (items, cents) = tasker::join!(reserve_inventory(&order), charge(&order));
    let (items, cents) = (items?, cents?);
    gift_wrap(&order).await?;
    ship(&order, items, cents).await
}

fn order() -> Order {
    Order {
        id: 1001,
        ..Order::default()
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// The lines of a task span whose steps all succeeded, up to (not including) its children.
const TASK_SUCCESS: [&str; 8] = [
    "task.order_fulfillment internal unset",
    "  @ tasker.task.name=\"order_fulfillment\" tasker.task.result=\"success\" tasker.task.version=\"1.0.0\"",
    "  - task.initialize status=\"success\"",
    "  - task.start",
    "  - task.handle",
    "  - step.find_viable step_names=[\"reserve_inventory\",\"charge\"] count=2",
    "  - task.finalize completed_steps=4 failed_steps=0 skipped_steps=1",
    "  - task.complete",
];

const STEP_ATTRS: &str = "tasker.task.name=\"order_fulfillment\" tasker.task.version=\"1.0.0\"";

#[test]
fn successful_order_is_one_trace_with_a_span_per_step() {
    let otel = Otel::new();
    let shipment = block_on(fulfill(order()));
    assert_eq!(shipment.unwrap(), "TRK-2-3998");

    let spans = otel.spans();
    assert_eq!(spans.len(), 6, "one task span and five step spans");
    let task = root(&spans, "task.order_fulfillment");
    let step = |name: &str, max_attempts: u32| {
        format!("    @ tasker.step.attempts=1 tasker.step.max_attempts={max_attempts} tasker.step.name=\"{name}\" tasker.step.result=\"success\" {STEP_ATTRS}")
    };
    let mut expected: Vec<String> = TASK_SUCCESS.iter().map(|line| (*line).to_owned()).collect();
    expected.extend([
        "  step.charge internal unset".to_owned(),
        step("charge", 2),
        "    - step.handle attempt=1 max_attempts=2".to_owned(),
        "    - step.complete attempt=1".to_owned(),
        "  step.gift_wrap internal unset".to_owned(),
        format!("    @ tasker.step.attempts=0 tasker.step.name=\"gift_wrap\" tasker.step.result=\"skip\" {STEP_ATTRS}"),
        "    - step.skip reason=\"skip_if\"".to_owned(),
        "  step.reserve_inventory internal unset".to_owned(),
        step("reserve_inventory", 3),
        "    - step.handle attempt=1 max_attempts=3".to_owned(),
        "    - step.complete attempt=1".to_owned(),
        "  step.ship internal unset".to_owned(),
        step("ship", 1),
        "    - step.handle attempt=1 max_attempts=1".to_owned(),
        "    - step.complete attempt=1".to_owned(),
        "  step.validate internal unset".to_owned(),
        step("validate", 1),
        "    - step.handle attempt=1 max_attempts=1".to_owned(),
        "    - step.complete attempt=1".to_owned(),
    ]);
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_lines(&render_tree(&spans, task), &expected);

    // One trace: the task span is its root, every step its direct child.
    assert_eq!(task.parent_span_id, SpanId::INVALID);
    assert_eq!(task.span_kind, SpanKind::Internal);
    for span in &spans {
        assert_eq!(span.span_context.trace_id(), task.span_context.trace_id());
        if span.name != "task.order_fulfillment" {
            assert_eq!(
                span.parent_span_id,
                task.span_context.span_id(),
                "{}",
                span.name
            );
            assert_eq!(span.span_kind, SpanKind::Internal);
        }
    }
    assert_eq!(open_span_count(), 0);
}

#[test]
fn spans_carry_the_ids_of_the_events_and_the_source_location() {
    let otel = Otel::new();
    let capture = Capture::new();
    block_on(capture.wrap(fulfill(order()))).unwrap();
    let events = capture.events();
    let task_id = events[0].task_id().expect("a task event").to_string();

    let spans = otel.spans();
    let task = root(&spans, "task.order_fulfillment");
    assert_eq!(text(task, "tasker.task.id"), task_id);
    assert_eq!(text(task, "code.function.name"), "otel_spans::fulfill");
    assert_eq!(text(task, "code.file.path"), "tests/otel_spans.rs");
    assert_eq!(
        text(task, "code.line.number"),
        line_of(SOURCE, "async fn fulfill(").to_string()
    );
    let reserve = spans
        .iter()
        .find(|span| span.name == "step.reserve_inventory")
        .expect("a reserve_inventory span");
    let step_id = events
        .iter()
        .find(|event| event.step_name() == Some("reserve_inventory"))
        .and_then(|event| event.step_id())
        .expect("a reserve_inventory event")
        .to_string();
    assert_eq!(text(reserve, "tasker.step.id"), step_id);
    assert_eq!(text(reserve, "tasker.task.id"), task_id);
    assert_eq!(
        text(reserve, "code.function.name"),
        "otel_spans::reserve_inventory"
    );
    assert_eq!(text(reserve, "code.file.path"), "tests/otel_spans.rs");
    assert_eq!(
        text(reserve, "code.line.number"),
        line_of(SOURCE, "async fn reserve_inventory(").to_string()
    );
    // Typed values: ints stay ints, durations are float milliseconds.
    let complete = reserve
        .events
        .iter()
        .find(|event| event.name == "step.complete")
        .expect("a step.complete event");
    assert!(matches!(
        otel_support::attribute(&complete.attributes, "attempt"),
        Some(opentelemetry::Value::I64(1))
    ));
    assert!(matches!(
        otel_support::attribute(&complete.attributes, "duration_ms"),
        Some(opentelemetry::Value::F64(ms)) if *ms >= 0.0
    ));
    // Span events are stamped within their span.
    for span in &spans {
        for event in span.events.iter() {
            assert!(event.timestamp >= span.start_time && event.timestamp <= span.end_time);
        }
    }
}

#[test]
fn recovered_retry_leaves_error_events_but_no_error_status() {
    let otel = Otel::new();
    let order = Order {
        inventory_failures: AtomicU32::new(2),
        ..order()
    };
    assert_eq!(block_on(fulfill(order)).unwrap(), "TRK-2-3998");

    let spans = otel.spans();
    let task = root(&spans, "task.order_fulfillment");
    let reserve: Vec<_> = children(&spans, task)
        .into_iter()
        .filter(|span| span.name == "step.reserve_inventory")
        .collect();
    let error = "error_class=\"otel_spans::OrderError\" error_message=\"inventory service unavailable\" retryable=true";
    assert_lines(
        &render_tree(&spans, reserve[0]),
        &[
            "step.reserve_inventory internal unset",
            &format!("  @ tasker.step.attempts=3 tasker.step.max_attempts=3 tasker.step.name=\"reserve_inventory\" tasker.step.result=\"success\" {STEP_ATTRS}"),
            "  - step.handle attempt=1 max_attempts=3",
            &format!("  - step.error attempt=1 {error}"),
            "  - step.retry attempt=2 max_attempts=3",
            "  - step.backoff attempt=2 backoff_ms=1",
            "  - step.handle attempt=2 max_attempts=3",
            &format!("  - step.error attempt=2 {error}"),
            "  - step.retry attempt=3 max_attempts=3",
            "  - step.backoff attempt=3 backoff_ms=2",
            "  - step.handle attempt=3 max_attempts=3",
            "  - step.complete attempt=3",
        ],
    );
    assert_eq!(task.status, Status::Unset);
}

#[test]
fn exhausted_retry_fails_the_step_and_the_task_with_exception_events() {
    let otel = Otel::new();
    let order = Order {
        card_declined: true,
        ..order()
    };
    assert!(matches!(
        block_on(fulfill(order)),
        Err(OrderError::CardDeclined)
    ));

    let spans = otel.spans();
    let task = root(&spans, "task.order_fulfillment");
    let error = "error_class=\"otel_spans::OrderError\" error_message=\"card declined\"";
    let exception =
        "- exception exception.type=\"otel_spans::OrderError\" exception.message=\"card declined\"";
    let mut expected = vec![
        "task.order_fulfillment internal error(\"card declined\")".to_owned(),
        "  @ error.type=\"otel_spans::OrderError\" tasker.task.name=\"order_fulfillment\" tasker.task.result=\"failure\" tasker.task.version=\"1.0.0\"".to_owned(),
        "  - task.initialize status=\"success\"".to_owned(),
        "  - task.start".to_owned(),
        "  - task.handle".to_owned(),
        "  - step.find_viable step_names=[\"reserve_inventory\",\"charge\"] count=2".to_owned(),
        "  - task.finalize completed_steps=2 failed_steps=1 skipped_steps=0".to_owned(),
        format!("  - task.error {error} error_steps=[\"charge\"]"),
        format!("  {exception}"),
        "  step.charge internal error(\"card declined\")".to_owned(),
        format!("    @ error.type=\"otel_spans::OrderError\" tasker.step.attempts=2 tasker.step.max_attempts=2 tasker.step.name=\"charge\" tasker.step.result=\"failure\" {STEP_ATTRS}"),
        "    - step.handle attempt=1 max_attempts=2".to_owned(),
        format!("    - step.error attempt=1 {error} retryable=true"),
        "    - step.retry attempt=2 max_attempts=2".to_owned(),
        "    - step.backoff attempt=2 backoff_ms=1".to_owned(),
        "    - step.handle attempt=2 max_attempts=2".to_owned(),
        format!("    - step.error attempt=2 {error} retryable=true"),
        format!("    {exception}"),
        "    - step.max_retries_reached attempts=2 max_attempts=2".to_owned(),
        "  step.reserve_inventory internal unset".to_owned(),
        format!("    @ tasker.step.attempts=1 tasker.step.max_attempts=3 tasker.step.name=\"reserve_inventory\" tasker.step.result=\"success\" {STEP_ATTRS}"),
        "    - step.handle attempt=1 max_attempts=3".to_owned(),
        "    - step.complete attempt=1".to_owned(),
        "  step.validate internal unset".to_owned(),
        format!("    @ tasker.step.attempts=1 tasker.step.max_attempts=1 tasker.step.name=\"validate\" tasker.step.result=\"success\" {STEP_ATTRS}"),
        "    - step.handle attempt=1 max_attempts=1".to_owned(),
        "    - step.complete attempt=1".to_owned(),
    ];
    let expected: Vec<&str> = expected.iter_mut().map(|line| &**line).collect();
    assert_lines(&render_tree(&spans, task), &expected);
}

#[test]
fn skipped_step_keeps_status_unset_and_runs_when_not_skipped() {
    let otel = Otel::new();
    block_on(fulfill(order())).unwrap();
    block_on(fulfill(Order {
        gift: true,
        ..order()
    }))
    .unwrap();

    let spans = otel.spans();
    let wraps: Vec<_> = spans
        .iter()
        .filter(|span| span.name == "step.gift_wrap")
        .map(|span| render_tree(&spans, span))
        .collect();
    assert_eq!(wraps.len(), 2);
    assert_lines(
        &wraps[0],
        &[
            "step.gift_wrap internal unset",
            &format!("  @ tasker.step.attempts=0 tasker.step.name=\"gift_wrap\" tasker.step.result=\"skip\" {STEP_ATTRS}"),
            "  - step.skip reason=\"skip_if\"",
        ],
    );
    assert_lines(
        &wraps[1],
        &[
            "step.gift_wrap internal unset",
            &format!("  @ tasker.step.attempts=1 tasker.step.max_attempts=3 tasker.step.name=\"gift_wrap\" tasker.step.result=\"success\" {STEP_ATTRS}"),
            "  - step.handle attempt=1 max_attempts=3",
            "  - step.complete attempt=1",
        ],
    );
}

#[test]
fn panicking_step_fails_its_span_and_the_task_and_leaks_nothing() {
    let otel = Otel::new();
    let order = Order {
        panic_in_ship: true,
        ..order()
    };
    let outcome = std::thread::spawn(move || block_on(fulfill(order))).join();
    assert!(outcome.is_err(), "the panic reaches the caller");

    let spans = otel.spans();
    let task = root(&spans, "task.order_fulfillment");
    let ship: Vec<_> = children(&spans, task)
        .into_iter()
        .filter(|span| span.name == "step.ship")
        .collect();
    assert_lines(
        &render_tree(&spans, ship[0]),
        &[
            "step.ship internal error(\"label printer on fire\")",
            &format!("  @ error.type=\"panic\" tasker.step.attempts=1 tasker.step.max_attempts=1 tasker.step.name=\"ship\" tasker.step.result=\"failure\" {STEP_ATTRS}"),
            "  - step.handle attempt=1 max_attempts=1",
            "  - step.error attempt=1 error_class=\"panic\" error_message=\"label printer on fire\" retryable=false",
            "  - exception exception.type=\"panic\" exception.message=\"label printer on fire\"",
        ],
    );
    assert_eq!(
        task.status,
        Status::error("label printer on fire"),
        "the task span fails with the panic"
    );
    assert_eq!(text(task, "tasker.task.result"), "failure");
    assert_eq!(spans.len(), 6, "every span ended");
    assert_eq!(open_span_count(), 0, "the adapter holds no span");
}

#[test]
fn cancelled_task_ends_its_spans_as_cancellations() {
    let otel = Otel::new();
    let order = Order {
        hang_in_ship: true,
        ..order()
    };
    {
        let mut task = std::pin::pin!(fulfill(order));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // Drive it until it hangs in `ship`: the retries in between wait on timers.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            for _ in 0..100 {
                if otel.spans().len() == 4 {
                    break;
                }
                assert!(task.as_mut().poll(&mut cx).is_pending());
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        });
        assert_eq!(otel.spans().len(), 4, "four steps ended before ship hangs");
    } // dropped while `ship` is pending

    let spans = otel.spans();
    let task = root(&spans, "task.order_fulfillment");
    let ship: Vec<_> = children(&spans, task)
        .into_iter()
        .filter(|span| span.name == "step.ship")
        .collect();
    let cancelled = "step `ship` was dropped before it finished";
    assert_lines(
        &render_tree(&spans, ship[0]),
        &[
            &format!("step.ship internal error({cancelled:?})"),
            &format!("  @ error.type=\"tasker::Cancelled\" tasker.step.attempts=1 tasker.step.max_attempts=1 tasker.step.name=\"ship\" tasker.step.result=\"cancellation\" {STEP_ATTRS}"),
            "  - step.handle attempt=1 max_attempts=1",
            &format!("  - step.error attempt=1 error_class=\"tasker::Cancelled\" error_message={cancelled:?} retryable=false"),
            &format!("  - exception exception.type=\"tasker::Cancelled\" exception.message={cancelled:?}"),
        ],
    );
    assert_eq!(text(task, "tasker.task.result"), "cancellation");
    assert_eq!(text(task, "error.type"), "tasker::Cancelled");
    assert_eq!(open_span_count(), 0);
}

#[tasker::step(max_attempts = 1)]
fn price(cents: u64) -> u64 {
    tasker::telemetry::record(
        "app.priced",
        serde_json::json!({"cents": cents, "currency": "EUR"}),
    )
    .unwrap();
    cents
}

#[tasker::step(max_attempts = 1)]
fn quote(items: u64) -> u64 {
    price(items * 1999)
}

#[tasker::task(name = "quote_order", version = "2.0.0")]
fn quote_order(items: u64) -> u64 {
    tasker::telemetry::record("app.quoting", serde_json::json!({"items": items})).unwrap();
    quote(items)
}

#[test]
fn nested_step_is_the_child_of_its_calling_step_and_custom_events_land_on_the_current_span() {
    let otel = Otel::new();
    assert_eq!(quote_order(2), 3998);

    let spans = otel.spans();
    let task = root(&spans, "task.quote_order");
    let attrs = "tasker.task.name=\"quote_order\" tasker.task.version=\"2.0.0\"";
    assert_lines(
        &render_tree(&spans, task),
        &[
            "task.quote_order internal unset",
            "  @ tasker.task.name=\"quote_order\" tasker.task.result=\"success\" tasker.task.version=\"2.0.0\"",
            "  - task.initialize status=\"success\"",
            "  - task.start",
            "  - task.handle",
            "  - app.quoting items=2",
            "  - task.finalize completed_steps=2 failed_steps=0 skipped_steps=0",
            "  - task.complete",
            "  step.quote internal unset",
            &format!("    @ tasker.step.attempts=1 tasker.step.max_attempts=1 tasker.step.name=\"quote\" tasker.step.result=\"success\" {attrs}"),
            "    - step.handle attempt=1 max_attempts=1",
            "    - step.complete attempt=1",
            "    step.price internal unset",
            &format!("      @ tasker.step.attempts=1 tasker.step.max_attempts=1 tasker.step.name=\"price\" tasker.step.result=\"success\" {attrs}"),
            "      - step.handle attempt=1 max_attempts=1",
            "      - app.priced cents=3998 currency=\"EUR\"",
            "      - step.complete attempt=1",
        ],
    );
}

#[test]
fn a_step_outside_any_task_is_a_root_span() {
    let otel = Otel::new();
    assert_eq!(price(5), 5);

    let spans = otel.spans();
    assert_eq!(roots(&spans).len(), 1);
    assert_lines(
        &render_tree(&spans, root(&spans, "step.price")),
        &[
            "step.price internal unset",
            "  @ tasker.step.attempts=1 tasker.step.max_attempts=1 tasker.step.name=\"price\" tasker.step.result=\"success\"",
            "  - step.handle attempt=1 max_attempts=1",
            "  - app.priced cents=5 currency=\"EUR\"",
            "  - step.complete attempt=1",
        ],
    );
    assert!(otel_support::attribute(&spans[0].attributes, "tasker.task.id").is_none());
}

#[test]
fn concurrent_tasks_each_produce_exactly_their_own_tree() {
    const TASKS: u64 = 200;
    let otel = Otel::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let results = runtime.block_on(async {
        let handles: Vec<_> = (1..=TASKS)
            .map(|id| {
                tokio::spawn(fulfill(Order {
                    id,
                    gift: id % 2 == 0,
                    inventory_failures: AtomicU32::new((id % 3) as u32),
                    ..Order::default()
                }))
            })
            .collect();
        let mut results = Vec::new();
        for handle in handles {
            results.push(handle.await.expect("no panic"));
        }
        results
    });
    assert!(results.iter().all(Result::is_ok));

    let spans = otel.spans();
    let traces = by_trace(&spans);
    assert_eq!(traces.len(), TASKS as usize, "one trace per task");
    let mut task_ids = std::collections::HashSet::new();
    for spans in traces.values() {
        let task = root(spans, "task.order_fulfillment");
        let task_id = text(task, "tasker.task.id");
        assert!(task_ids.insert(task_id.clone()), "a task id seen twice");
        assert_eq!(spans.len(), 6, "a task span and five step spans");
        for span in spans.iter().filter(|span| span.name != task.name) {
            assert_eq!(span.parent_span_id, task.span_context.span_id());
            assert_eq!(text(span, "tasker.task.id"), task_id, "{}", span.name);
        }
        let reserve = spans
            .iter()
            .find(|span| span.name == "step.reserve_inventory")
            .expect("a reserve span");
        let attempts: i64 = text(reserve, "tasker.step.attempts").parse().unwrap();
        let handles = reserve
            .events
            .iter()
            .filter(|event| event.name == "step.handle")
            .count();
        assert_eq!(handles as i64, attempts, "events of one call only");
        let events: Vec<&str> = task.events.iter().map(|event| &*event.name).collect();
        assert_eq!(
            events,
            [
                "task.initialize",
                "task.start",
                "task.handle",
                "step.find_viable",
                "task.finalize",
                "task.complete"
            ]
        );
    }
    assert_eq!(open_span_count(), 0);
}
