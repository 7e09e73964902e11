//! Span names (`task.<name>`, `step.<name>`) built once per task or step name, not per call.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{OnceLock, RwLock};

/// Names beyond this many are formatted per call instead of kept: task and step names are
/// `&'static str` from the macros, so the table only grows this far if names are generated.
const MAX_KEPT: usize = 4096;

/// Keyed by the addresses and length of the prefix and the name: three words, hashed by
/// multiplying and rotating (the default SipHash would cost more than the lookup saves).
type Table = HashMap<(usize, usize, usize), &'static str, BuildHasherDefault<WordHasher>>;

#[derive(Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

fn table() -> &'static RwLock<Table> {
    static TABLE: OnceLock<RwLock<Table>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

/// `prefix` + `name`, such as `step.charge`, without allocating after the first call.
pub(crate) fn span_name(prefix: &'static str, name: &'static str) -> Cow<'static, str> {
    // Keyed by the name's address: the same literal is the same key; an equal string elsewhere
    // merely gets an entry of its own.
    let key = (prefix.as_ptr() as usize, name.as_ptr() as usize, name.len());
    if let Some(kept) = table().read().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Cow::Borrowed(kept);
    }
    let mut table = table().write().unwrap_or_else(|e| e.into_inner());
    if let Some(kept) = table.get(&key) {
        return Cow::Borrowed(kept);
    }
    let full = format!("{prefix}{name}");
    if table.len() >= MAX_KEPT {
        return Cow::Owned(full);
    }
    let kept: &'static str = Box::leak(full.into_boxed_str());
    table.insert(key, kept);
    Cow::Borrowed(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_built_once_and_reused() {
        let first = span_name("step.", "charge");
        let second = span_name("step.", "charge");
        assert_eq!(first, "step.charge");
        match (first, second) {
            (Cow::Borrowed(a), Cow::Borrowed(b)) => assert!(std::ptr::eq(a, b)),
            other => panic!("expected kept names, got {other:?}"),
        }
    }
}
