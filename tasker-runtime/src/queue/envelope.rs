//! The envelope: the serialisable unit that travels through a queue, all a worker needs to run a
//! task.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tasker_telemetry::propagation::TraceContext;
use uuid::Uuid;

/// The envelope format this version writes and reads.
pub const ENVELOPE_FORMAT: u32 = 1;

/// The largest encoded envelope [`Envelope::decode`] accepts (16 MiB).
pub const MAX_ENVELOPE_BYTES: usize = 16 * 1024 * 1024;

/// The largest context a request may carry (as JSON): an envelope's limit less room for the
/// rest of it, so that any worker can decode what a producer enqueued.
pub const MAX_CONTEXT_BYTES: usize = MAX_ENVELOPE_BYTES - 64 * 1024;

/// A task request on its way to a worker.
///
/// ```
/// use tasker::queue::Envelope;
/// let envelope = Envelope::new("order_fulfillment", "1.0.0", serde_json::json!({"id": 7}));
/// let bytes = envelope.encode();
/// assert_eq!(Envelope::decode(&bytes).unwrap(), envelope);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The format version, [`ENVELOPE_FORMAT`].
    pub format: u32,
    /// The task id the producer's events carry; the worker's events carry it too.
    pub task_id: Uuid,
    /// The registered task name.
    pub task_name: String,
    /// The registered task version.
    pub task_version: String,
    /// The task's input as JSON.
    pub context: Value,
    /// `skippable` steps this request bypasses.
    #[serde(default)]
    pub bypass_steps: Vec<String>,
    /// The W3C trace context of the code that enqueued the task.
    #[serde(default)]
    pub trace_context: Option<TraceContext>,
    /// When the request was enqueued, in microseconds since the Unix epoch.
    pub enqueued_at_us: u64,
    /// Which delivery this is, from 1; a queue increments it when it hands the envelope out again.
    pub delivery_attempt: u32,
    /// The task's attempt this delivery runs, from 1 (`#[task(max_attempts = …)]`): a worker
    /// whose attempt failed with attempts left hands the envelope back with the next one.
    /// Absent from envelopes written before task retries, which are first attempts.
    #[serde(default = "first_attempt")]
    pub task_attempt: u32,
}

fn first_attempt() -> u32 {
    1
}

/// Why bytes are not an envelope.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Larger than [`MAX_ENVELOPE_BYTES`].
    #[error("envelope of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JSON, or JSON of another shape.
    #[error("malformed envelope: {0}")]
    Malformed(serde_json::Error),
    /// Written by a version of Tasker with another format.
    #[error(
        "unsupported envelope format {found}; this version of tasker reads format {supported}"
    )]
    UnsupportedFormat {
        /// The format found.
        found: u64,
        /// The format supported.
        supported: u32,
    },
}

tasker_telemetry::__debug_shows_message!(EnvelopeError {
    TooLarge,
    Malformed,
    UnsupportedFormat
});

#[derive(Deserialize)]
struct FormatProbe {
    format: Option<Value>,
}

impl Envelope {
    /// A first delivery of a new request, enqueued now.
    pub fn new(
        task_name: impl Into<String>,
        task_version: impl Into<String>,
        context: Value,
    ) -> Self {
        Envelope {
            format: ENVELOPE_FORMAT,
            task_id: crate::ids::new_id(),
            task_name: task_name.into(),
            task_version: task_version.into(),
            context,
            bypass_steps: Vec::new(),
            trace_context: None,
            enqueued_at_us: now_micros(),
            delivery_attempt: 1,
            task_attempt: 1,
        }
    }

    /// When the request was enqueued.
    pub fn enqueued_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.enqueued_at_us)
    }

    /// The envelope as JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an envelope, refusing oversized input, malformed input and unknown formats.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge {
                size: bytes.len(),
                limit: MAX_ENVELOPE_BYTES,
            });
        }
        let probe: FormatProbe = serde_json::from_slice(bytes).map_err(EnvelopeError::Malformed)?;
        match probe.format {
            Some(Value::Number(number)) if number.as_u64() == Some(u64::from(ENVELOPE_FORMAT)) => {}
            Some(Value::Number(number)) => {
                return Err(EnvelopeError::UnsupportedFormat {
                    found: number.as_u64().unwrap_or(u64::MAX),
                    supported: ENVELOPE_FORMAT,
                })
            }
            _ => {
                return Err(EnvelopeError::Malformed(serde::de::Error::custom(
                    "missing or non-numeric `format`: not a tasker envelope",
                )))
            }
        }
        serde_json::from_slice(bytes).map_err(EnvelopeError::Malformed)
    }
}

/// Now, in microseconds since the Unix epoch, as envelopes carry it.
pub fn now_micros() -> u64 {
    to_micros(SystemTime::now())
}

pub(crate) fn to_micros(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unknown_format_is_refused_by_number() {
        let mut json = serde_json::to_value(Envelope::new("t", "1", Value::Null)).unwrap();
        json["format"] = 2.into();
        let error = Envelope::decode(json.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unsupported envelope format 2; this version of tasker reads format 1"
        );
    }

    #[test]
    fn input_without_a_format_is_not_an_envelope() {
        let error = Envelope::decode(br#"{"task_name": "t"}"#).unwrap_err();
        assert!(
            error.to_string().starts_with(
                "malformed envelope: missing or non-numeric `format`: not a tasker envelope"
            ),
            "{error}"
        );
    }

    #[test]
    fn truncated_input_is_malformed() {
        let bytes = Envelope::new("t", "1", serde_json::json!({"a": [1, 2, 3]})).encode();
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(matches!(
                Envelope::decode(&bytes[..cut]),
                Err(EnvelopeError::Malformed(_))
            ));
        }
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let bytes = vec![b' '; MAX_ENVELOPE_BYTES + 1];
        assert!(matches!(
            Envelope::decode(&bytes),
            Err(EnvelopeError::TooLarge { .. })
        ));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".*", inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn an_envelope_written_before_task_retries_is_a_first_attempt() {
        let mut json: Value =
            serde_json::from_slice(&Envelope::new("order", "1.0.0", Value::Null).encode()).unwrap();
        json.as_object_mut().unwrap().remove("task_attempt");
        let envelope = Envelope::decode(json.to_string().as_bytes()).unwrap();
        assert_eq!(envelope.task_attempt, 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_envelope_round_trips(
            name in ".{1,40}",
            version in "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
            context in json_value(),
            bypass in prop::collection::vec("[a-z_]{1,12}", 0..4),
            traceparent in proptest::option::of(".*"),
            baggage in proptest::option::of(".*"),
            enqueued_at_us in any::<u64>(),
            delivery_attempt in 1..u32::MAX,
            task_attempt in 1..u32::MAX,
            id in any::<u128>(),
        ) {
            let envelope = Envelope {
                format: ENVELOPE_FORMAT,
                task_id: Uuid::from_u128(id),
                task_name: name,
                task_version: version,
                context,
                bypass_steps: bypass,
                trace_context: traceparent.map(|traceparent| TraceContext {
                    traceparent,
                    tracestate: None,
                    baggage,
                }),
                enqueued_at_us,
                delivery_attempt,
                task_attempt,
            };
            prop_assert_eq!(Envelope::decode(&envelope.encode()).unwrap(), envelope);
        }

        #[test]
        fn every_strict_prefix_of_an_envelope_is_malformed(
            context in json_value(),
            cut in any::<prop::sample::Index>(),
        ) {
            let bytes = Envelope::new("order", "1.0.0", context).encode();
            let cut = cut.index(bytes.len());
            let error = Envelope::decode(&bytes[..cut]).unwrap_err();
            prop_assert!(matches!(error, EnvelopeError::Malformed(_)), "{error}");
        }

        #[test]
        fn random_bytes_give_an_error_that_names_the_problem(
            bytes in prop::collection::vec(any::<u8>(), 0..1024),
        ) {
            if let Err(error) = Envelope::decode(&bytes) {
                let message = error.to_string();
                prop_assert!(
                    message.starts_with("malformed envelope: ")
                        || message.starts_with("unsupported envelope format "),
                    "{message}"
                );
            }
        }

        #[test]
        fn json_of_another_shape_is_refused_naming_what_is_wrong(
            value in json_value(),
            format in proptest::option::of(any::<i64>()),
        ) {
            let mut json = match value {
                Value::Object(map) => Value::Object(map),
                other => serde_json::json!({ "payload": other }),
            };
            if let Some(format) = format {
                json["format"] = format.into();
            }
            let error = Envelope::decode(json.to_string().as_bytes()).unwrap_err();
            let message = error.to_string();
            prop_assert!(
                message.contains("format") || message.contains("missing field"),
                "{message}"
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = Envelope::decode(&bytes);
        }

        #[test]
        fn corrupted_envelopes_are_errors_or_envelopes(position in 0usize..400, byte in any::<u8>()) {
            let mut bytes = Envelope::new("order", "1.0.0", serde_json::json!({"id": 1})).encode();
            let index = position % bytes.len();
            bytes[index] = byte;
            let _ = Envelope::decode(&bytes);
        }
    }
}
