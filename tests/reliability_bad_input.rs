//! Bad input: configuration from the environment and from code, task requests (unknown names,
//! contexts of the wrong shape, oversized contexts), trace contexts and custom event names. Each
//! is a typed error that names the problem, never a panic; property tests with many cases back
//! the parsers. (Envelopes: truncated, random and wrong-shaped bytes are property-tested in
//! `tasker-runtime/src/queue/envelope.rs`; configuration errors one by one in
//! `tests/telemetry_config.rs`; payloads that do not serialize in `tests/manual_events.rs`.)

use std::sync::{Arc, Mutex, PoisonError};

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use tasker::queue::{MemoryQueue, MAX_CONTEXT_BYTES};
use tasker::telemetry::propagation::TraceContext;
use tasker::telemetry::{env, RecordError};
use tasker::testing::Capture;
use tasker::{ConfigError, Configuration, EnqueueError, Runtime, TaskError, TaskRequest};

/// `configure` is process-wide: the tests that call it take turns.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Parcel {
    id: u64,
    weight_grams: u32,
    fragile: bool,
}

#[tasker::task(name = "weigh_parcel", version = "1.0.0")]
async fn weigh_parcel(parcel: Parcel) -> u32 {
    parcel.weight_grams
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn a_context_larger_than_an_envelope_may_carry_is_refused_before_the_queue() {
    runtime().block_on(async {
        let queue = Arc::new(MemoryQueue::new());
        let runtime = Runtime::builder()
            .workers(0)
            .shared_queue(queue.clone())
            .build()
            .unwrap();
        let capture = Capture::new();
        let huge = serde_json::json!({ "id": 1, "blob": "x".repeat(MAX_CONTEXT_BYTES) });
        let request = TaskRequest::new("weigh_parcel", &huge).unwrap();
        let error = capture.wrap(runtime.enqueue(request)).await.unwrap_err();
        assert!(
            matches!(error, EnqueueError::TooLarge { size, limit, .. }
                if size > limit && limit == MAX_CONTEXT_BYTES),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .starts_with("the context for task `weigh_parcel` is too large: more than"),
            "{error}"
        );
        assert!(queue.is_empty(), "nothing reaches the queue");
        let events = capture.json();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["event"], "task.initialize");
        assert_eq!(events[0]["status"], "error");
    });
}

#[test]
fn a_producer_only_runtime_answers_a_wait_at_once_instead_of_holding_it_forever() {
    runtime().block_on(async {
        let runtime = Runtime::builder().workers(0).build().unwrap();
        let parcel = Parcel {
            id: 1,
            weight_grams: 10,
            fragile: false,
        };
        let handle = runtime
            .enqueue(TaskRequest::new("weigh_parcel", &parcel).unwrap())
            .await
            .unwrap();
        let waited = tokio::time::timeout(std::time::Duration::from_secs(5), handle.wait()).await;
        assert_eq!(waited, Ok(Err(TaskError::Abandoned)));
    });
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("id".to_owned()),
                    Just("weight_grams".to_owned()),
                    Just("fragile".to_owned()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..4
            )
            .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn requests_for_unknown_names_are_refused_naming_the_name(name in ".{0,40}") {
        prop_assume!(name != "weigh_parcel");
        let result = runtime().block_on(async {
            let runtime = Runtime::builder().workers(0).build().unwrap();
            runtime.enqueue(TaskRequest::new(name.clone(), &1).unwrap()).await
        });
        match result {
            Err(error @ EnqueueError::UnknownTask { .. }) => {
                let message = error.to_string();
                let expected = format!("no task is registered as `{name}`; registered tasks are: ");
                prop_assert!(message.starts_with(&expected), "{message}");
                prop_assert!(message.contains("`weigh_parcel`"), "{message}");
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn contexts_of_the_wrong_shape_are_refused_naming_the_task(context in json_value()) {
        let fits = serde_json::from_value::<Parcel>(context.clone()).is_ok();
        let result = runtime().block_on(async {
            let runtime = Runtime::builder().workers(0).build().unwrap();
            runtime
                .enqueue(TaskRequest::new("weigh_parcel", &context).unwrap())
                .await
                .map(|handle| handle.task_id())
        });
        match result {
            Ok(_) => prop_assert!(fits, "accepted {context}"),
            Err(error @ EnqueueError::InvalidContext { .. }) => {
                prop_assert!(!fits);
                let message = error.to_string();
                prop_assert!(
                    message.starts_with(
                        "the context for task `weigh_parcel` version `1.0.0` does not fit its input: "
                    ),
                    "{message}"
                );
            }
            Err(other) => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn every_environment_variable_parses_or_names_itself_and_its_value(
        variable in prop::sample::select(vec![
            env::ENABLE_TELEMETRY,
            env::TELEMETRY_ADAPTERS,
            env::TELEMETRY_ADAPTER_CLASSES,
            env::FILTER_PARAMETERS,
            env::CONSOLE_COLOR,
            env::LOG_FORMAT,
        ]),
        value in prop_oneof![
            ".{0,30}",
            "(default|opentelemetry|custom|true|false|yes|0|1|compact|json|never| |,){0,6}",
        ],
    ) {
        let result = Configuration::from_lookup(|name| (name == variable).then(|| value.clone()));
        match result {
            Ok(_) => {}
            Err(ConfigError::InvalidEnvironment { variable: named, value: got, reason }) => {
                prop_assert_eq!(named, variable);
                prop_assert_eq!(&got, &value);
                prop_assert!(!reason.is_empty());
            }
            Err(other) => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn an_unknown_adapter_class_is_refused_by_name_and_changes_nothing(name in ".{0,40}") {
        let _exclusive = EXCLUSIVE.lock().unwrap_or_else(PoisonError::into_inner);
        prop_assume!(!tasker::telemetry::registered_adapters().contains(&name.as_str()));
        let before = tasker::configuration();
        let result = tasker::configure(|config| {
            config.enable_telemetry = true;
            config.telemetry_adapters = vec![tasker::TelemetryAdapter::Custom];
            config.telemetry_adapter_classes = vec![name.clone()];
        });
        match result {
            Err(error @ ConfigError::UnknownAdapterClass { .. }) => {
                let expected = format!("no custom telemetry adapter is registered as `{name}`");
                prop_assert!(error.to_string().starts_with(&expected), "{error}");
            }
            other => prop_assert!(false, "{other:?}"),
        }
        prop_assert_eq!(tasker::configuration(), before);
    }

    #[test]
    fn custom_event_names_are_accepted_or_refused_naming_the_name(name in ".{0,140}") {
        match tasker::telemetry::record(&name, ()) {
            Ok(()) => {
                prop_assert!(!name.is_empty() && name.len() <= 128);
                prop_assert!(!name.starts_with("task.") && !name.starts_with("step."));
            }
            Err(RecordError::ReservedName { name: got, namespace }) => {
                prop_assert_eq!(&got, &name);
                prop_assert!(name.starts_with(namespace));
            }
            Err(error @ RecordError::InvalidName { .. }) => {
                let expected = format!("custom event name {name:?} is not valid");
                prop_assert!(error.to_string().starts_with(&expected), "{error}");
            }
            Err(other) => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn traceparents_are_valid_exactly_in_the_w3c_form(
        text in prop_oneof![
            ".{0,60}",
            "00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}",
            "[0-9a-fA-F]{2}-[0-9a-fA-F]{31,33}-[0-9a-f]{15,17}-[0-9a-f]{1,3}",
        ],
    ) {
        let parts: Vec<&str> = text.split('-').collect();
        let hex = |part: &str, len: usize| {
            part.len() == len && part.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let zero = |part: &str| part.bytes().all(|b| b == b'0');
        let expected = parts.len() == 4
            && parts[0] == "00"
            && hex(parts[1], 32) && !zero(parts[1])
            && hex(parts[2], 16) && !zero(parts[2])
            && hex(parts[3], 2);
        prop_assert_eq!(TraceContext::new(text.clone()).is_valid(), expected, "{}", text);
    }
}

#[tasker::task(name = "traced_parcel", version = "1.0.0")]
async fn traced_parcel(_: ()) -> Option<String> {
    tasker::telemetry::propagation::current_trace_context().map(|context| context.traceparent)
}

#[test]
fn a_request_with_an_invalid_traceparent_still_runs() {
    runtime().block_on(async {
        let runtime = Runtime::builder().workers(1).build().unwrap();
        let capture = Capture::new();
        let handle = capture
            .wrap(
                runtime.enqueue(
                    TaskRequest::new("traced_parcel", &())
                        .unwrap()
                        .trace_context(Some(TraceContext::new("not-a-traceparent"))),
                ),
            )
            .await
            .unwrap();
        let waited = tokio::time::timeout(std::time::Duration::from_secs(30), handle.wait()).await;
        assert!(waited.expect("the task ended within 30 s").is_ok());
        runtime.shutdown().await;
        assert_eq!(capture.assert_valid_tasks(), 1);
    });
}
