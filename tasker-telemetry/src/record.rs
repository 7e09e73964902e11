//! Custom events recorded by hand.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::bus;
use crate::config::with_filter_parameters;
use crate::context::Context;
use crate::event::{Details, Event};
use crate::filter::mask_map;

/// Keys every event carries; a custom payload may not use them.
const RESERVED_KEYS: [&str; 7] = [
    "event",
    "timestamp",
    "task_id",
    "task_name",
    "task_version",
    "step_id",
    "step_name",
];

/// Why [`record`] refused an event.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// `task.*` and `step.*` belong to the lifecycle catalog.
    #[error(
        "custom event name `{name}` is in the reserved namespace `{namespace}.*` of lifecycle \
         events; choose another prefix, such as `app.{name}`"
    )]
    ReservedName {
        /// The name given.
        name: String,
        /// `task` or `step`.
        namespace: &'static str,
    },
    /// An empty name, or one with characters other than ASCII letters, digits and `._-:/`.
    #[error(
        "custom event name {name:?} is not valid: use 1 to 128 ASCII letters, digits and `._-:/`, \
         such as `order.flagged`"
    )]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// The payload failed to serialize.
    #[error("the payload of custom event `{name}` does not serialize to JSON: {source}")]
    Payload {
        /// The event's name.
        name: String,
        /// serde's error.
        source: serde_json::Error,
    },
    /// The payload serialized to something other than an object.
    #[error(
        "the payload of custom event `{name}` serialized to a JSON {found}; it must be an object \
         (a struct or map), or `()` for none"
    )]
    NotAnObject {
        /// The event's name.
        name: String,
        /// What it serialized to: `array`, `string`, …
        found: &'static str,
    },
    /// A payload key that every event already carries.
    #[error(
        "the payload of custom event `{name}` uses the key `{key}`, which every event carries; \
         reserved keys are: {}",
        RESERVED_KEYS.join(", ")
    )]
    ReservedKey {
        /// The event's name.
        name: String,
        /// The key.
        key: String,
    },
}

crate::__debug_shows_message!(RecordError {
    ReservedName,
    InvalidName,
    Payload,
    NotAnObject,
    ReservedKey
});

fn check_name(name: &str) -> Result<(), RecordError> {
    for namespace in ["task", "step"] {
        if name
            .strip_prefix(namespace)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        {
            return Err(RecordError::ReservedName {
                name: name.to_owned(),
                namespace,
            });
        }
    }
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"._-:/".contains(&byte));
    if valid {
        Ok(())
    } else {
        Err(RecordError::InvalidName {
            name: name.to_owned(),
        })
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Sends a custom event to every observer (and so to the configured adapters), carrying the
/// current task and step identity when called inside one.
///
/// The payload must serialize to a JSON object; its keys become the event's keys, and values
/// under sensitive keys (see `filter_parameters`) are replaced by `[FILTERED]`. The name is
/// always checked; the payload only when somebody listens, so recording costs nothing while
/// telemetry is off.
///
/// ```
/// use tasker::telemetry::record;
/// record("order.flagged", serde_json::json!({"order_id": 42, "card_token": "tok_1"})).unwrap();
/// assert!(record("task.custom", ()).is_err()); // reserved namespace
/// ```
pub fn record(name: &str, payload: impl Serialize) -> Result<(), RecordError> {
    check_name(name)?;
    if !bus::listening() {
        return Ok(());
    }
    let value = serde_json::to_value(payload).map_err(|source| RecordError::Payload {
        name: name.to_owned(),
        source,
    })?;
    let mut payload = match value {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => {
            return Err(RecordError::NotAnObject {
                name: name.to_owned(),
                found: kind_of(&other),
            })
        }
    };
    if let Some(key) = RESERVED_KEYS.iter().find(|key| payload.contains_key(**key)) {
        return Err(RecordError::ReservedKey {
            name: name.to_owned(),
            key: (*key).to_owned(),
        });
    }
    with_filter_parameters(|patterns| mask_map(&mut payload, patterns));
    let (task, step) =
        Context::with_current(|context| (context.task().copied(), context.step().copied()));
    bus::fire(&Event::new(
        task,
        step,
        Details::Custom {
            name: Cow::Borrowed(name),
            payload: Cow::Owned(payload),
        },
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_namespaces_are_refused() {
        for name in ["task.complete", "step.custom", "task"] {
            assert!(
                matches!(check_name(name), Err(RecordError::ReservedName { .. })),
                "{name}"
            );
        }
        assert!(check_name("tasks.audit").is_ok());
        assert!(check_name("stepper").is_ok());
    }

    #[test]
    fn malformed_names_are_refused_with_the_rules() {
        let error = check_name("order flagged").unwrap_err();
        assert_eq!(
            error.to_string(),
            "custom event name \"order flagged\" is not valid: use 1 to 128 ASCII letters, \
             digits and `._-:/`, such as `order.flagged`"
        );
        assert!(check_name("").is_err());
        assert!(check_name(&"a".repeat(129)).is_err());
    }
}
