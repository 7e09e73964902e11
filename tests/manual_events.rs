//! Custom events recorded by hand with `tasker::telemetry::record`: the identity they carry,
//! the names and payloads refused, and masking of sensitive values.
//!
//! Each test captures its own events with `tasker::testing::Capture`. Masking depends on the
//! process-global configuration, so the masking tests hold [`LOCK`] (one of them configures
//! `filter_parameters`), and payload keys elsewhere avoid every pattern either of them uses.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::ser::{Error as _, Serializer};
use serde::Serialize;
use serde_json::{json, Value};
use tasker::telemetry::{record, RecordError};
use tasker::testing::Capture;
use tasker::Configuration;

static LOCK: Mutex<()> = Mutex::new(());

/// Holds [`LOCK`]; restores the default configuration when dropped, even when the test fails.
struct Exclusive {
    _lock: MutexGuard<'static, ()>,
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        tasker::configure(|config| *config = Configuration::default())
            .expect("the default configuration is valid");
    }
}

fn exclusive() -> Exclusive {
    Exclusive {
        _lock: LOCK.lock().unwrap_or_else(PoisonError::into_inner),
    }
}

/// Checks that `json["timestamp"]` is RFC 3339 UTC with microseconds and replaces it with
/// `"<timestamp>"`, so the rest of the event can be compared exactly.
fn stable(mut json: Value) -> Value {
    let timestamp = json["timestamp"].as_str().expect("a timestamp string");
    let bytes = timestamp.as_bytes();
    assert!(
        timestamp.len() == 27
            && bytes[4] == b'-'
            && bytes[10] == b'T'
            && bytes[19] == b'.'
            && timestamp.ends_with('Z'),
        "not RFC 3339 UTC with microseconds: {timestamp}"
    );
    json["timestamp"] = json!("<timestamp>");
    json
}

/// Checks that `value` is a UUIDv7 string and returns it.
fn uuid_v7(value: &Value) -> Value {
    let id = value.as_str().expect("an id string");
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(&id[14..15], "7", "not a UUIDv7: {id}");
    value.clone()
}

// ---------------------------------------------------------------------------------------------
// Identity.

#[tasker::step(max_attempts = 1)]
fn charge_card(amount_cents: u32) -> Result<u32, std::io::Error> {
    record(
        "payment.authorized",
        json!({ "amount_cents": amount_cents, "currency": "EUR" }),
    )
    .expect("a valid custom event");
    Ok(amount_cents)
}

#[tasker::task(name = "manual_checkout", version = "1.2.0")]
fn checkout(amount_cents: u32) -> Result<u32, std::io::Error> {
    record("checkout.opened", json!({ "items": 3 })).expect("a valid custom event");
    charge_card(amount_cents)
}

#[test]
fn record_inside_a_step_carries_task_and_step_identity() {
    let capture = Capture::new();

    let result = capture.run(|| checkout(1999));

    assert_eq!(result.expect("the task succeeds"), 1999);
    capture.assert_names(&[
        "task.initialize",
        "task.start",
        "task.handle",
        "checkout.opened",
        "step.handle",
        "payment.authorized",
        "step.complete",
        "task.finalize",
        "task.complete",
    ]);
    let json = capture.json();
    let task_id = uuid_v7(&json[0]["task_id"]);
    let step_id = uuid_v7(&json[4]["step_id"]);
    assert_eq!(
        stable(json[5].clone()),
        json!({
            "event": "payment.authorized",
            "timestamp": "<timestamp>",
            "task_id": task_id,
            "task_name": "manual_checkout",
            "task_version": "1.2.0",
            "step_id": step_id,
            "step_name": "charge_card",
            "amount_cents": 1999,
            "currency": "EUR",
        })
    );
    let event = &capture.events()[5];
    assert_eq!(event.task_name(), Some("manual_checkout"));
    assert_eq!(event.step_name(), Some("charge_card"));
    assert_eq!(event.kind(), None);
}

#[test]
fn record_inside_a_task_outside_any_step_has_no_step_keys() {
    let capture = Capture::new();

    capture.run(|| checkout(5)).expect("the task succeeds");

    let json = capture.json();
    assert_eq!(
        stable(json[3].clone()),
        json!({
            "event": "checkout.opened",
            "timestamp": "<timestamp>",
            "task_id": uuid_v7(&json[0]["task_id"]),
            "task_name": "manual_checkout",
            "task_version": "1.2.0",
            "items": 3,
        })
    );
}

#[test]
fn record_outside_any_task_has_null_task_keys_and_no_step_keys() {
    let capture = Capture::new();

    capture
        .run(|| {
            record(
                "inventory.recounted",
                json!({ "warehouse": "north", "units": 12 }),
            )
        })
        .expect("a valid custom event");

    let json = capture.json();
    assert_eq!(json.len(), 1);
    assert_eq!(
        stable(json[0].clone()),
        json!({
            "event": "inventory.recounted",
            "timestamp": "<timestamp>",
            "task_id": null,
            "task_name": null,
            "task_version": null,
            "warehouse": "north",
            "units": 12,
        })
    );
    let object = json[0].as_object().expect("an object");
    assert!(!object.contains_key("step_id"));
    assert!(!object.contains_key("step_name"));
}

#[test]
fn record_inside_a_step_called_outside_any_task_has_null_task_keys_and_the_step_keys() {
    let capture = Capture::new();

    capture.run(|| charge_card(250)).expect("the step succeeds");

    capture.assert_names(&["step.handle", "payment.authorized", "step.complete"]);
    let json = capture.json();
    assert_eq!(
        stable(json[1].clone()),
        json!({
            "event": "payment.authorized",
            "timestamp": "<timestamp>",
            "task_id": null,
            "task_name": null,
            "task_version": null,
            "step_id": uuid_v7(&json[0]["step_id"]),
            "step_name": "charge_card",
            "amount_cents": 250,
            "currency": "EUR",
        })
    );
}

#[tasker::step(max_attempts = 1)]
async fn await_courier(parcel: u32) -> Result<u32, std::io::Error> {
    tokio::task::yield_now().await;
    record("courier.assigned", json!({ "parcel": parcel })).expect("a valid custom event");
    Ok(parcel)
}

#[tasker::task(name = "manual_shipping", version = "1.0.0")]
async fn shipping(parcel: u32) -> Result<u32, std::io::Error> {
    tokio::task::yield_now().await;
    await_courier(parcel).await
}

#[tokio::test]
async fn record_after_an_await_inside_an_async_step_keeps_the_identity() {
    let capture = Capture::new();

    let result = capture.wrap(shipping(7)).await;

    assert_eq!(result.expect("the task succeeds"), 7);
    let json = capture.json();
    let assigned = json
        .iter()
        .find(|event| event["event"] == "courier.assigned")
        .expect("the custom event was captured");
    assert_eq!(assigned["task_id"], uuid_v7(&json[0]["task_id"]));
    assert_eq!(assigned["task_name"], "manual_shipping");
    assert_eq!(assigned["step_name"], "await_courier");
    assert_eq!(assigned["parcel"], 7);
}

// ---------------------------------------------------------------------------------------------
// Names.

#[test]
fn reserved_lifecycle_names_are_refused() {
    let capture = Capture::new();
    for (name, namespace) in [
        ("task.complete", "task"),
        ("task.audit", "task"),
        ("task", "task"),
        ("step.custom", "step"),
        ("step", "step"),
    ] {
        let error = capture
            .run(|| record(name, ()))
            .expect_err("a reserved name");
        assert!(
            matches!(&error, RecordError::ReservedName { name: n, namespace: ns } if n == name && *ns == namespace),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "custom event name `{name}` is in the reserved namespace `{namespace}.*` of \
                 lifecycle events; choose another prefix, such as `app.{name}`"
            )
        );
    }
    assert_eq!(capture.names(), Vec::<String>::new());
}

#[test]
fn names_that_only_start_like_a_reserved_namespace_are_accepted() {
    let capture = Capture::new();
    capture.run(|| {
        for name in [
            "tasks.audit",
            "stepper",
            "taskforce.assembled",
            "app.task.start",
        ] {
            record(name, ()).expect("not in a reserved namespace");
        }
    });
    capture.assert_names(&[
        "tasks.audit",
        "stepper",
        "taskforce.assembled",
        "app.task.start",
    ]);
}

#[test]
fn malformed_names_are_refused_with_the_rules() {
    let capture = Capture::new();
    let too_long = "a".repeat(129);
    for name in [
        "",
        "order flagged",
        "ordér.flagged",
        "order\nflagged",
        "order,flagged",
        too_long.as_str(),
    ] {
        let error = capture
            .run(|| record(name, ()))
            .expect_err("a malformed name");
        assert!(
            matches!(&error, RecordError::InvalidName { name: n } if n == name),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "custom event name {name:?} is not valid: use 1 to 128 ASCII letters, digits and \
                 `._-:/`, such as `order.flagged`"
            )
        );
    }
    assert_eq!(capture.names(), Vec::<String>::new());
}

#[test]
fn names_of_every_allowed_character_up_to_128_bytes_are_accepted() {
    let capture = Capture::new();
    let longest = "b".repeat(128);
    capture.run(|| {
        record("App.Order-Flagged_v2:eu/west", ()).expect("allowed characters");
        record(&longest, ()).expect("128 bytes is the limit");
    });
    capture.assert_names(&["App.Order-Flagged_v2:eu/west", longest.as_str()]);
}

// ---------------------------------------------------------------------------------------------
// Payloads.

#[test]
fn payloads_that_are_not_objects_are_refused() {
    let capture = Capture::new();
    let cases: [(Value, &str); 5] = [
        (json!([1, 2]), "array"),
        (json!("urgent"), "string"),
        (json!(42), "number"),
        (json!(1.5), "number"),
        (json!(true), "boolean"),
    ];
    for (payload, found) in cases {
        let error = capture
            .run(|| record("app.bad_payload", &payload))
            .expect_err("not an object");
        assert!(
            matches!(&error, RecordError::NotAnObject { name, found: f } if name == "app.bad_payload" && *f == found),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "the payload of custom event `app.bad_payload` serialized to a JSON {found}; it \
                 must be an object (a struct or map), or `()` for none"
            )
        );
    }
    let error = capture
        .run(|| record("app.bad_payload", vec!["a", "b"]))
        .expect_err("a Vec is an array");
    assert!(matches!(
        error,
        RecordError::NotAnObject { found: "array", .. }
    ));
    assert_eq!(capture.names(), Vec::<String>::new());
}

#[derive(Serialize)]
struct Flagged {
    order_id: u64,
    reason: &'static str,
    tags: Vec<&'static str>,
}

#[derive(Serialize)]
struct Marker;

#[test]
fn structs_maps_and_empty_payloads_are_accepted() {
    let capture = Capture::new();
    let map: HashMap<String, u32> = HashMap::from([("units".to_owned(), 4)]);

    capture.run(|| {
        record(
            "app.struct",
            Flagged {
                order_id: 42,
                reason: "manual review",
                tags: vec!["vip", "fragile"],
            },
        )
        .expect("a struct is an object");
        record("app.map", &map).expect("a map is an object");
        record("app.unit", ()).expect("() is an empty payload");
        record("app.none", None::<Flagged>).expect("None is an empty payload");
        record("app.marker", Marker).expect("a unit struct is an empty payload");
    });

    let events = capture.events();
    let payloads: Vec<Value> = events
        .iter()
        .map(|event| Value::Object(event.payload().expect("a custom event").clone()))
        .collect();
    assert_eq!(
        payloads,
        [
            json!({ "order_id": 42, "reason": "manual review", "tags": ["vip", "fragile"] }),
            json!({ "units": 4 }),
            json!({}),
            json!({}),
            json!({}),
        ]
    );
    assert_eq!(
        stable(events[2].to_json()),
        json!({
            "event": "app.unit",
            "timestamp": "<timestamp>",
            "task_id": null,
            "task_name": null,
            "task_version": null,
        })
    );
}

#[test]
fn reserved_payload_keys_are_refused() {
    let capture = Capture::new();
    for key in [
        "event",
        "timestamp",
        "task_id",
        "task_name",
        "task_version",
        "step_id",
        "step_name",
    ] {
        let mut payload = serde_json::Map::new();
        payload.insert("units".into(), json!(1));
        payload.insert(key.into(), json!("spoofed"));
        let error = capture
            .run(|| record("app.reserved_key", &payload))
            .expect_err("a reserved key");
        assert!(
            matches!(&error, RecordError::ReservedKey { name, key: k } if name == "app.reserved_key" && k == key),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "the payload of custom event `app.reserved_key` uses the key `{key}`, which every \
                 event carries; reserved keys are: event, timestamp, task_id, task_name, \
                 task_version, step_id, step_name"
            )
        );
    }
    assert_eq!(capture.names(), Vec::<String>::new());
}

#[test]
fn reserved_keys_nested_below_the_top_level_are_accepted() {
    let capture = Capture::new();
    capture
        .run(|| {
            record(
                "app.nested_keys",
                json!({ "source": { "task_id": "upstream-7" } }),
            )
        })
        .expect("only top-level keys are reserved");
    assert_eq!(
        capture.json()[0]["source"],
        json!({ "task_id": "upstream-7" })
    );
}

/// A payload whose `Serialize` fails, as a lazily fetched value might.
struct VaultLookup;

impl Serialize for VaultLookup {
    fn serialize<S: Serializer>(&self, _serializer: S) -> Result<S::Ok, S::Error> {
        Err(S::Error::custom("card vault unavailable"))
    }
}

#[test]
fn payload_whose_serialize_fails_is_refused_with_serdes_message() {
    let capture = Capture::new();

    let error = capture
        .run(|| record("app.unserializable", VaultLookup))
        .expect_err("Serialize fails");
    assert!(matches!(&error, RecordError::Payload { name, .. } if name == "app.unserializable"));
    assert_eq!(
        error.to_string(),
        "the payload of custom event `app.unserializable` does not serialize to JSON: card vault \
         unavailable"
    );

    let tuple_keys: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
    let error = capture
        .run(|| record("app.tuple_keys", &tuple_keys))
        .expect_err("JSON keys must be strings");
    assert_eq!(
        error.to_string(),
        "the payload of custom event `app.tuple_keys` does not serialize to JSON: key must be a \
         string"
    );
    assert_eq!(capture.names(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Masking.

fn sensitive_payload() -> Value {
    json!({
        "order_id": 42,
        "Password": "hunter2",
        "customer": {
            "name": "Ada",
            "email_address": "ada@example.com",
            "iban": "DE89370400440532013000",
            "cards": [
                { "card_number": "4242424242424242", "last4": "4242", "api_key": "k_live" },
                { "card_number": "5555555555554444", "last4": "4444" },
            ],
        },
        "secrets": { "anything": "inside" },
        "notes": ["plain", { "auth_token": "t0k" }],
    })
}

#[test]
fn default_filter_masks_sensitive_keys_at_any_depth() {
    let _guard = exclusive();
    let capture = Capture::new();

    capture
        .run(|| record("app.masked", sensitive_payload()))
        .expect("a valid custom event");

    let json = capture.json();
    assert_eq!(
        stable(json[0].clone()),
        json!({
            "event": "app.masked",
            "timestamp": "<timestamp>",
            "task_id": null,
            "task_name": null,
            "task_version": null,
            "order_id": 42,
            "Password": "[FILTERED]",
            "customer": {
                "name": "Ada",
                "email_address": "[FILTERED]",
                "iban": "DE89370400440532013000",
                "cards": [
                    { "card_number": "4242424242424242", "last4": "4242", "api_key": "[FILTERED]" },
                    { "card_number": "5555555555554444", "last4": "4444" },
                ],
            },
            "secrets": "[FILTERED]",
            "notes": ["plain", { "auth_token": "[FILTERED]" }],
        })
    );
}

#[test]
fn configured_filter_parameters_replace_the_defaults() {
    let _guard = exclusive();
    tasker::configure(|config| {
        config.filter_parameters = vec!["IBAN".into(), "card_number".into()];
    })
    .expect("a valid configuration");
    let capture = Capture::new();

    capture
        .run(|| record("app.masked", sensitive_payload()))
        .expect("a valid custom event");

    let json = capture.json();
    assert_eq!(
        stable(json[0].clone()),
        json!({
            "event": "app.masked",
            "timestamp": "<timestamp>",
            "task_id": null,
            "task_name": null,
            "task_version": null,
            "order_id": 42,
            "Password": "hunter2",
            "customer": {
                "name": "Ada",
                "email_address": "ada@example.com",
                "iban": "[FILTERED]",
                "cards": [
                    { "card_number": "[FILTERED]", "last4": "4242", "api_key": "k_live" },
                    { "card_number": "[FILTERED]", "last4": "4444" },
                ],
            },
            "secrets": { "anything": "inside" },
            "notes": ["plain", { "auth_token": "t0k" }],
        })
    );
}

#[test]
fn masking_applies_inside_a_task_too() {
    let _guard = exclusive();
    let capture = Capture::new();

    capture
        .run(checkout_with_secret)
        .expect("the task succeeds");

    let json = capture.json();
    let login = json
        .iter()
        .find(|event| event["event"] == "app.login")
        .expect("the custom event was captured");
    assert_eq!(login["user"], "ada");
    assert_eq!(login["one_time_otp"], "[FILTERED]");
    assert_eq!(login["task_name"], "manual_login");
}

#[tasker::task(name = "manual_login", version = "1.0.0")]
fn checkout_with_secret() -> Result<(), std::io::Error> {
    record(
        "app.login",
        json!({ "user": "ada", "one_time_otp": "123456" }),
    )
    .expect("a valid custom event");
    Ok(())
}
