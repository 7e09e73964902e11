//! What the SQL queues share.

use std::borrow::Cow;
use std::time::SystemTime;

use super::envelope::MAX_ENVELOPE_BYTES;
use super::{Envelope, LeaseId};

/// How many envelopes of a durable queue are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Waiting for a worker, available now.
    pub ready: u64,
    /// Requeued with a delay that has not passed yet.
    pub delayed: u64,
    /// Claimed by a worker (including leases that expired and were not taken again yet).
    pub leased: u64,
    /// Delivered as many times as allowed and set aside.
    pub dead: u64,
}

/// How many bytes of a dead row's stored envelope [`DeadLetter::raw`] keeps.
pub const DEAD_LETTER_RAW_BYTES: usize = 1024;

/// A dead row's stored envelope up to this size (on PostgreSQL, as stored, which may be
/// compressed) is read whole and decoded into [`DeadLetter::envelope`]; of a larger one a
/// dead-letter listing reads only the first [`DEAD_LETTER_RAW_BYTES`] and the size.
pub const DEAD_LETTER_DECODED_BYTES: usize = 64 * 1024;

/// A row of a durable queue in the dead-letter state, as `dead_letters()` lists it: an envelope
/// delivered as many times as allowed, or a row no worker could read (buried when a claim came
/// to it). The same on every SQL backend.
///
/// ```
/// use tasker::queue::DeadLetter;
///
/// /// One line per dead row, as `queue.dead_letters().await?` lists them.
/// fn show(dead_letters: &[DeadLetter]) {
///     for dead in dead_letters {
///         println!(
///             "row {} task {} ({}): {} at delivery {}, {} bytes",
///             dead.id,
///             dead.task_id,
///             dead.task_name.as_deref().unwrap_or("?"),
///             dead.reason,
///             dead.delivery_attempt,
///             dead.size,
///         );
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The row's id in the envelopes table.
    pub id: i64,
    /// The row's `task_id` column, as stored (not necessarily a UUID, for a row written by
    /// something other than tasker).
    pub task_id: String,
    /// The task's name: the envelope's, or read from the stored JSON when the rest of it does
    /// not decode; `None` when there is none to read, or when the envelope was too large to be
    /// read whole ([`DEAD_LETTER_DECODED_BYTES`]).
    pub task_name: Option<String>,
    /// The envelope, when the stored one decodes (its `delivery_attempt` is the row's); `None`
    /// for a row buried because it does not, and for one over [`DEAD_LETTER_DECODED_BYTES`]
    /// (the listing reads only its start).
    pub envelope: Option<Envelope>,
    /// The first [`DEAD_LETTER_RAW_BYTES`] bytes of the stored envelope, as stored (empty for
    /// NULL).
    pub raw: Vec<u8>,
    /// The stored envelope's full size in bytes.
    pub size: usize,
    /// Why the row was set aside: its last delivery ended, or what is wrong with it.
    pub reason: String,
    /// The row's `delivery_attempt`: the delivery it was on when it was set aside (one more
    /// than the last for an envelope requeued after its last delivery).
    pub delivery_attempt: u32,
    /// When it was set aside.
    pub dead_at: Option<SystemTime>,
}

/// How many envelopes of one task name are in each state, as `counts_by_task()` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskCounts {
    /// The task name in the stored envelope; `None` for rows whose envelope names none that can
    /// be read (not JSON, not text, no `task_name` string).
    pub task_name: Option<String>,
    /// Its envelopes in each state.
    pub counts: Counts,
}

/// What `retry_dead_letters()` did: the dead letters it made ready again, and those it left
/// dead because their envelope does not decode (no worker could read them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetriedDeadLetters {
    /// The ids of the rows made ready again, in id order.
    pub retried: Vec<i64>,
    /// The rows left dead, in id order, each with what is wrong with its envelope.
    pub unreadable: Vec<(i64, String)>,
}

/// Adds `row`'s counts to the group of its task name; the groups sorted by name, the unnamed
/// group last. Two raw names that read the same (after a lossy UTF-8 conversion) are one group.
pub(crate) fn group_by_task(rows: Vec<(Option<String>, Counts)>) -> Vec<TaskCounts> {
    let mut groups: std::collections::BTreeMap<(bool, Option<String>), Counts> =
        std::collections::BTreeMap::new();
    for (task_name, counts) in rows {
        let group = groups.entry((task_name.is_none(), task_name)).or_default();
        group.ready += counts.ready;
        group.delayed += counts.delayed;
        group.leased += counts.leased;
        group.dead += counts.dead;
    }
    groups
        .into_iter()
        .map(|((_, task_name), counts)| TaskCounts { task_name, counts })
        .collect()
}

/// An envelope column as the database handed it back, before anything assumes its type.
pub(crate) enum StoredEnvelope<'a> {
    /// Text, as bytes: SQLite keeps text that is not UTF-8 as it was written.
    Text(&'a [u8]),
    /// A value of another type (`kind` says which, as "a BLOB of 4 bytes"), or NULL.
    Other { kind: String, bytes: Cow<'a, [u8]> },
}

impl StoredEnvelope<'_> {
    /// The stored bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            StoredEnvelope::Text(bytes) => bytes,
            StoredEnvelope::Other { bytes, .. } => bytes,
        }
    }

    /// The envelope, or why the column holds none: the reason a buried row keeps.
    pub(crate) fn decode(&self) -> Result<Envelope, String> {
        let bytes = match self {
            StoredEnvelope::Text(bytes) => *bytes,
            StoredEnvelope::Other { kind, .. } => {
                return Err(format!(
                    "unreadable envelope: the `envelope` column holds {kind}, not text"
                ))
            }
        };
        // Oversized input is refused by `decode` before anything reads it.
        if bytes.len() <= MAX_ENVELOPE_BYTES {
            if let Err(error) = std::str::from_utf8(bytes) {
                return Err(format!(
                    "unreadable envelope: the `envelope` column is not valid UTF-8 ({error})"
                ));
            }
        }
        Envelope::decode(bytes).map_err(|error| error.to_string())
    }
}

/// What a dead-letter listing reads from one row.
pub(crate) struct DeadRow<'a> {
    pub(crate) id: i64,
    pub(crate) task_id: String,
    /// The stored envelope, or only its start when it is larger than `size` says.
    pub(crate) envelope: StoredEnvelope<'a>,
    /// The stored envelope's size in bytes, as the database measured it.
    pub(crate) size: usize,
    pub(crate) reason: Option<String>,
    pub(crate) delivery_attempt: i64,
    pub(crate) dead_at: Option<SystemTime>,
}

impl DeadRow<'_> {
    /// The row as an operator reads it, whatever its envelope holds.
    pub(crate) fn into_dead_letter(self) -> DeadLetter {
        let delivery_attempt = u32::try_from(self.delivery_attempt).unwrap_or(1).max(1);
        let bytes = self.envelope.bytes();
        // Only the start of a large one was read: it is listed, not decoded.
        let whole = bytes.len() >= self.size;
        let envelope = self
            .envelope
            .decode()
            .ok()
            .filter(|_| whole)
            .map(|mut envelope| {
                envelope.delivery_attempt = delivery_attempt;
                envelope
            });
        DeadLetter {
            id: self.id,
            task_id: self.task_id,
            task_name: match &envelope {
                Some(envelope) => Some(envelope.task_name.clone()),
                None if whole => task_name_in(bytes),
                None => None,
            },
            envelope,
            raw: bytes[..bytes.len().min(DEAD_LETTER_RAW_BYTES)].to_vec(),
            size: self.size.max(bytes.len()),
            reason: self
                .reason
                .unwrap_or_else(|| "no reason was recorded".to_owned()),
            delivery_attempt,
            dead_at: self.dead_at,
        }
    }
}

/// The `task_name` of stored JSON that is not an envelope of this version (another format, a
/// missing field), if it has one.
fn task_name_in(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct NameProbe {
        task_name: Option<String>,
    }
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return None;
    }
    serde_json::from_slice::<NameProbe>(bytes)
        .ok()
        .and_then(|probe| probe.task_name)
}

/// A lease id as stored in a row.
pub(crate) fn lease_text(lease: LeaseId) -> String {
    format!("{:032x}", lease.0)
}

/// FNV-1a, 64 bits: a stable hash for names derived from user input.
#[cfg(feature = "postgres")]
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dead letter of `envelope`, read whole.
    fn dead(envelope: StoredEnvelope<'_>) -> DeadLetter {
        DeadRow {
            id: 7,
            task_id: "t".to_owned(),
            size: envelope.bytes().len(),
            envelope,
            reason: None,
            delivery_attempt: 3,
            dead_at: None,
        }
        .into_dead_letter()
    }

    #[test]
    fn task_groups_merge_equal_names_and_put_the_unnamed_last() {
        let counts = |ready, dead| Counts {
            ready,
            dead,
            ..Counts::default()
        };
        let groups = group_by_task(vec![
            (None, counts(1, 0)),
            (Some("ship".to_owned()), counts(2, 0)),
            (Some("charge".to_owned()), counts(0, 1)),
            (Some("ship".to_owned()), counts(0, 3)),
        ]);
        assert_eq!(
            groups,
            vec![
                TaskCounts {
                    task_name: Some("charge".to_owned()),
                    counts: counts(0, 1)
                },
                TaskCounts {
                    task_name: Some("ship".to_owned()),
                    counts: counts(2, 3)
                },
                TaskCounts {
                    task_name: None,
                    counts: counts(1, 0)
                },
            ]
        );
    }

    #[test]
    fn a_value_that_is_not_text_is_named_by_its_kind() {
        let stored = StoredEnvelope::Other {
            kind: "a BLOB of 2 bytes".to_owned(),
            bytes: Cow::Borrowed(b"{}"),
        };
        assert_eq!(
            stored.decode().unwrap_err(),
            "unreadable envelope: the `envelope` column holds a BLOB of 2 bytes, not text"
        );
    }

    #[test]
    fn text_that_is_not_utf8_says_where() {
        let stored = StoredEnvelope::Text(b"{\"format\": \xff}");
        assert_eq!(
            stored.decode().unwrap_err(),
            "unreadable envelope: the `envelope` column is not valid UTF-8 (invalid utf-8 \
             sequence of 1 bytes from index 11)"
        );
    }

    #[test]
    fn a_dead_envelope_keeps_its_name_and_the_rows_delivery_attempt() {
        let envelope = Envelope::new("ship", "1", serde_json::Value::Null);
        let bytes = envelope.encode();
        let dead = dead(StoredEnvelope::Text(&bytes));
        assert_eq!(dead.task_name.as_deref(), Some("ship"));
        assert_eq!(dead.envelope.as_ref().map(|e| e.delivery_attempt), Some(3));
        assert_eq!((dead.raw, dead.size), (bytes.clone(), bytes.len()));
        assert_eq!(dead.reason, "no reason was recorded");
    }

    #[test]
    fn json_of_another_format_still_names_its_task_and_raw_is_a_prefix() {
        let text = format!(
            r#"{{"format": 2, "task_name": "ship", "pad": "{}"}}"#,
            "x".repeat(2000)
        );
        let dead = dead(StoredEnvelope::Text(text.as_bytes()));
        assert_eq!(dead.envelope, None);
        assert_eq!(dead.task_name.as_deref(), Some("ship"));
        assert_eq!(dead.raw, text.as_bytes()[..DEAD_LETTER_RAW_BYTES]);
        assert_eq!(dead.size, text.len());
    }
}
