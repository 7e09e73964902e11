//! The open spans of one adapter, keyed by the 128-bit id of their task or step.
//!
//! Many tasks run at once, so the map is sharded: each shard is a `Mutex<HashMap>` chosen by the
//! id's random low bits (UUIDv7 ids end in 62 random bits), and the hasher is those bits too.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;

/// Spans held open by every OpenTelemetry adapter of the process.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// How many spans the OpenTelemetry adapters of this process hold open right now: tasks and
/// step calls that started and have not ended. Zero once every task has finished, whatever way
/// it ended (panics and cancellations included).
pub fn open_span_count() -> usize {
    OPEN.load(Ordering::Relaxed)
}

/// Hashes a `u128` id to its low 64 bits: random already, no need to mix them again.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only ids are hashed; fold anything else in anyway.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u128(&mut self, id: u128) {
        self.0 = id as u64 ^ (id >> 64) as u64;
    }
}

type Shard<V> = HashMap<u128, V, BuildHasherDefault<IdHasher>>;

/// A sharded map from task or step id to its open span.
pub(crate) struct SpanMap<V> {
    shards: [Mutex<Shard<V>>; SHARDS],
}

impl<V> SpanMap<V> {
    pub(crate) fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
        }
    }

    fn shard(&self, id: u128) -> MutexGuard<'_, Shard<V>> {
        // A panic while a shard is locked leaves a valid map; keep using it.
        self.shards[(id as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn insert(&self, id: u128, value: V) {
        if self.shard(id).insert(id, value).is_none() {
            OPEN.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn remove(&self, id: u128) -> Option<V> {
        let removed = self.shard(id).remove(&id);
        if removed.is_some() {
            OPEN.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Runs `f` on the value of `id`, if it is open, with its shard locked.
    pub(crate) fn with<R>(&self, id: u128, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        self.shard(id).get_mut(&id).map(f)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

impl<V> Drop for SpanMap<V> {
    fn drop(&mut self) {
        let held: usize = self
            .shards
            .iter_mut()
            .map(|shard| shard.get_mut().unwrap_or_else(|e| e.into_inner()).len())
            .sum();
        OPEN.fetch_sub(held, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_by_id_and_removed_once() {
        let map = SpanMap::new();
        map.insert(7, "seven");
        map.insert(u128::MAX, "max");
        assert_eq!(map.with(7, |value| *value), Some("seven"));
        assert_eq!(map.remove(7), Some("seven"));
        assert_eq!(map.remove(7), None);
        assert_eq!(map.with(7, |value| *value), None);
        assert_eq!(map.len(), 1);
    }
}
