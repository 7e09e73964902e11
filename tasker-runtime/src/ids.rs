//! Ids of task runs and step calls.

use uuid::Uuid;

/// A new UUIDv7: unique, and sortable by creation time.
#[inline]
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}
