//! What the SQL queues share.

use super::LeaseId;

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
