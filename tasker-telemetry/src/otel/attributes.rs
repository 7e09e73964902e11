//! Attribute keys, and the typed attributes of each lifecycle event as a span event.

use opentelemetry::{Array, Key, KeyValue, StringValue, Value};

use crate::event::serialize::millis;
use crate::event::{Details, Event};

/// `tasker.task.id`: the task run's UUIDv7.
pub const TASK_ID: Key = Key::from_static_str("tasker.task.id");
/// `tasker.task.name`.
pub const TASK_NAME: Key = Key::from_static_str("tasker.task.name");
/// `tasker.task.version`.
pub const TASK_VERSION: Key = Key::from_static_str("tasker.task.version");
/// `tasker.task.result`: `success`, `failure` or `cancellation` (on the task span and the
/// `tasker.task.duration` metric), or `abandoned` on the span of a run whose worker lost the
/// task's lease.
pub const TASK_RESULT: Key = Key::from_static_str("tasker.task.result");
/// `tasker.delivery.attempt`: which delivery of a queued task a run is (on its CONSUMER span),
/// or which earlier delivery a link points to (on the link).
pub const DELIVERY_ATTEMPT: Key = Key::from_static_str("tasker.delivery.attempt");
/// `tasker.step.id`: the step call's UUIDv7.
pub const STEP_ID: Key = Key::from_static_str("tasker.step.id");
/// `tasker.step.name`.
pub const STEP_NAME: Key = Key::from_static_str("tasker.step.name");
/// `tasker.step.max_attempts`.
pub const STEP_MAX_ATTEMPTS: Key = Key::from_static_str("tasker.step.max_attempts");
/// `tasker.step.attempts`: attempts made (0 for a skipped step).
pub const STEP_ATTEMPTS: Key = Key::from_static_str("tasker.step.attempts");
/// `tasker.step.result`: `success`, `failure`, `skip` or `cancellation`.
pub const STEP_RESULT: Key = Key::from_static_str("tasker.step.result");
/// `tasker.queue`: the queue a task was enqueued into, on its `enqueue task.<name>` span.
pub const QUEUE: Key = Key::from_static_str("tasker.queue");
/// `code.function.name`: the fully qualified function.
pub const CODE_FUNCTION: Key = Key::from_static_str("code.function.name");
/// `code.file.path`.
pub const CODE_FILE: Key = Key::from_static_str("code.file.path");
/// `code.line.number`.
pub const CODE_LINE: Key = Key::from_static_str("code.line.number");
/// `error.type`: the error's Rust type name, `panic` or `tasker::Cancelled`.
pub const ERROR_TYPE: Key = Key::from_static_str("error.type");
/// `exception.type` of the `exception` span event.
pub const EXCEPTION_TYPE: Key = Key::from_static_str("exception.type");
/// `exception.message` of the `exception` span event.
pub const EXCEPTION_MESSAGE: Key = Key::from_static_str("exception.message");

/// Prefix of the attributes a step records with `#[step(fields(...))]`.
pub(crate) const FIELDS_PREFIX: &str = "tasker.step.fields.";

fn int(key: &'static str, value: impl Into<i64>) -> KeyValue {
    KeyValue::new(Key::from_static_str(key), value.into())
}

fn text(key: &'static str, value: &str) -> KeyValue {
    KeyValue::new(Key::from_static_str(key), value.to_owned())
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> Value {
    Value::Array(Array::String(
        values
            .map(|value| StringValue::from(value.to_owned()))
            .collect(),
    ))
}

/// The attributes of `event` as a span event: the payload keys of DESIGN.md §3 beyond the
/// identity (which the span carries), with ints as ints and durations as float milliseconds.
pub(crate) fn event_attributes(event: &Event<'_>) -> Vec<KeyValue> {
    details_attributes(event.details())
}

/// [`event_attributes`] from the event's details alone, as a span record keeps them.
pub(crate) fn details_attributes(details: &Details<'_>) -> Vec<KeyValue> {
    match details {
        Details::TaskInitialize { status, errors } => {
            let mut attributes = vec![KeyValue::new("status", status.as_str())];
            if !errors.is_empty() {
                attributes.push(KeyValue::new(
                    "errors",
                    strings(errors.iter().map(String::as_str)),
                ));
            }
            attributes
        }
        Details::TaskEnqueue { queue } => vec![text("queue", queue)],
        Details::TaskStart | Details::TaskHandle => Vec::new(),
        Details::TaskRetry {
            attempt,
            max_attempts,
            error,
        } => vec![
            int("attempt", *attempt),
            int("max_attempts", *max_attempts),
            text("error_class", &error.class),
            text("error_message", &error.message),
        ],
        Details::TaskFinalize {
            completed_steps,
            failed_steps,
            skipped_steps,
        } => vec![
            int("completed_steps", *completed_steps),
            int("failed_steps", *failed_steps),
            int("skipped_steps", *skipped_steps),
        ],
        Details::TaskComplete { duration } => {
            vec![KeyValue::new("duration_ms", millis(*duration))]
        }
        Details::TaskError {
            duration,
            error,
            error_steps,
        } => vec![
            KeyValue::new("duration_ms", millis(*duration)),
            text("error_class", &error.class),
            text("error_message", &error.message),
            KeyValue::new("error_steps", strings(error_steps.iter().copied())),
        ],
        Details::StepFindViable { step_names } => vec![
            KeyValue::new("step_names", strings(step_names.iter().copied())),
            int("count", step_names.len() as i64),
        ],
        Details::StepHandle {
            attempt,
            max_attempts,
        }
        | Details::StepRetry {
            attempt,
            max_attempts,
        } => vec![int("attempt", *attempt), int("max_attempts", *max_attempts)],
        Details::StepComplete { attempt, duration } => vec![
            int("attempt", *attempt),
            KeyValue::new("duration_ms", millis(*duration)),
        ],
        Details::StepError {
            attempt,
            error,
            retryable,
        } => vec![
            int("attempt", *attempt),
            text("error_class", &error.class),
            text("error_message", &error.message),
            KeyValue::new("retryable", *retryable),
        ],
        Details::StepBackoff { attempt, backoff } | Details::TaskBackoff { attempt, backoff } => {
            vec![
                int("attempt", *attempt),
                int(
                    "backoff_ms",
                    i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX),
                ),
            ]
        }
        Details::StepSkip { reason } => vec![text("reason", reason)],
        Details::StepMaxRetriesReached {
            attempts,
            max_attempts,
        } => vec![
            int("attempts", *attempts),
            int("max_attempts", *max_attempts),
        ],
        Details::Custom { payload, .. } => payload
            .iter()
            .map(|(key, value)| KeyValue::new(key.clone(), json_value(value)))
            .collect(),
    }
}

/// A JSON value as an attribute value: scalars keep their type, arrays of one scalar type
/// become typed arrays, anything else (objects, nulls, mixed arrays) its JSON text.
pub(crate) fn json_value(value: &serde_json::Value) -> Value {
    use serde_json::Value as Json;
    match value {
        Json::Bool(flag) => Value::Bool(*flag),
        Json::Number(number) => match number.as_i64() {
            Some(int) => Value::I64(int),
            None => Value::F64(number.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(text) => Value::String(text.clone().into()),
        Json::Array(items) => typed_array(items).unwrap_or_else(|| Value::from(value.to_string())),
        Json::Null | Json::Object(_) => Value::from(value.to_string()),
    }
}

fn typed_array(items: &[serde_json::Value]) -> Option<Value> {
    use serde_json::Value as Json;
    let array = match items.first()? {
        Json::Bool(_) => Array::Bool(items.iter().map(Json::as_bool).collect::<Option<_>>()?),
        Json::Number(_) if items.iter().all(|item| item.is_i64()) => {
            Array::I64(items.iter().map(Json::as_i64).collect::<Option<_>>()?)
        }
        Json::Number(_) => Array::F64(items.iter().map(Json::as_f64).collect::<Option<_>>()?),
        Json::String(_) => Array::String(
            items
                .iter()
                .map(|item| item.as_str().map(|text| StringValue::from(text.to_owned())))
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    };
    Some(Value::Array(array))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_scalars_keep_their_type() {
        assert_eq!(json_value(&json!(42)), Value::I64(42));
        assert_eq!(json_value(&json!(1.5)), Value::F64(1.5));
        assert_eq!(json_value(&json!(true)), Value::Bool(true));
        assert_eq!(json_value(&json!("a")), Value::from("a"));
    }

    #[test]
    fn homogeneous_arrays_are_typed_and_the_rest_is_json_text() {
        assert_eq!(
            json_value(&json!([1, 2])),
            Value::Array(Array::I64(vec![1, 2]))
        );
        assert_eq!(
            json_value(&json!(["a", "b"])),
            Value::Array(Array::String(vec!["a".into(), "b".into()]))
        );
        assert_eq!(json_value(&json!([1, "b"])), Value::from("[1,\"b\"]"));
        assert_eq!(json_value(&json!({"k": 1})), Value::from("{\"k\":1}"));
        assert_eq!(json_value(&json!(null)), Value::from("null"));
    }
}
