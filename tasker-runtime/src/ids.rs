//! Ids of task runs and step calls: UUIDv7.
//!
//! `Uuid::now_v7()` asks the operating system for randomness on every call (a `getrandom`
//! system call, about a microsecond); ids here take their 74 random bits from a thread-local
//! generator instead, seeded once per thread by the operating system.

use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// A new UUIDv7: unique, and sortable by creation time to the millisecond.
#[inline]
pub fn new_id() -> Uuid {
    new_id_at(tasker_telemetry::clock::now().system)
}

/// A new UUIDv7 created at `time` (read by the caller, who needs the clock anyway).
#[inline]
pub fn new_id_at(time: SystemTime) -> Uuid {
    let millis = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    let random = fastrand::u128(..).to_le_bytes();
    let mut bytes = [0u8; 10];
    bytes.copy_from_slice(&random[..10]);
    uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_7_and_distinct() {
        let ids: Vec<Uuid> = (0..10_000).map(|_| new_id()).collect();
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        assert!(ids
            .iter()
            .all(|id| id.get_variant() == uuid::Variant::RFC4122));
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
    }

    #[test]
    fn ids_carry_their_creation_time() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let id = new_id();
        let (seconds, nanos) = id.get_timestamp().unwrap().to_unix();
        let millis = seconds * 1000 + u64::from(nanos) / 1_000_000;
        assert!(
            millis >= before && millis <= before + 1000,
            "{millis} vs {before}"
        );
    }
}
