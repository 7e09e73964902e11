//! Masking of values under sensitive keys.

use serde_json::Value;

/// What a masked value is replaced with.
pub const FILTERED: &str = "[FILTERED]";

/// The default sensitive-key patterns (Tasker's): a key matches when it contains one of them,
/// ignoring case.
pub const DEFAULT_FILTER_PARAMETERS: [&str; 10] = [
    "passw",
    "secret",
    "token",
    "_key",
    "crypt",
    "salt",
    "certificate",
    "otp",
    "ssn",
    "email",
];

/// Whether `key` contains one of `patterns`, ignoring ASCII case.
pub fn is_sensitive(key: &str, patterns: &[String]) -> bool {
    patterns
        .iter()
        .any(|pattern| contains_ignore_case(key, pattern))
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle))
}

/// Replaces, at any depth of objects and arrays, every value under a sensitive key by
/// [`FILTERED`].
pub fn mask(value: &mut Value, patterns: &[String]) {
    match value {
        Value::Object(map) => mask_map(map, patterns),
        Value::Array(items) => items.iter_mut().for_each(|item| mask(item, patterns)),
        _ => {}
    }
}

/// [`mask`] for the keys of an object.
pub fn mask_map(map: &mut serde_json::Map<String, Value>, patterns: &[String]) {
    for (key, value) in map.iter_mut() {
        if is_sensitive(key, patterns) {
            *value = Value::String(FILTERED.to_owned());
        } else {
            mask(value, patterns);
        }
    }
}

/// [`mask_map`] with the `filter_parameters` of the configuration in force.
pub fn mask_configured(map: &mut serde_json::Map<String, Value>) {
    crate::config::with_filter_parameters(|patterns| mask_map(map, patterns));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaults() -> Vec<String> {
        DEFAULT_FILTER_PARAMETERS.map(String::from).to_vec()
    }

    #[test]
    fn keys_containing_a_pattern_are_masked_at_any_depth() {
        let mut value = json!({
            "order_id": 42,
            "Password": "hunter2",
            "customer": {"email_address": "a@b.c", "name": "Ada"},
            "cards": [{"api_key": "k", "last4": "4242"}],
        });
        mask(&mut value, &defaults());
        assert_eq!(
            value,
            json!({
                "order_id": 42,
                "Password": "[FILTERED]",
                "customer": {"email_address": "[FILTERED]", "name": "Ada"},
                "cards": [{"api_key": "[FILTERED]", "last4": "4242"}],
            })
        );
    }

    #[test]
    fn a_whole_object_under_a_sensitive_key_is_masked() {
        let mut value = json!({"secrets": {"a": 1}});
        mask(&mut value, &defaults());
        assert_eq!(value, json!({"secrets": "[FILTERED]"}));
    }

    #[test]
    fn custom_patterns_replace_the_defaults() {
        let mut value = json!({"iban": "DE00", "password": "p"});
        mask(&mut value, &["iban".to_owned()]);
        assert_eq!(value, json!({"iban": "[FILTERED]", "password": "p"}));
    }
}
