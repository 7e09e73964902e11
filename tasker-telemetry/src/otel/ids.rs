//! Trace and span ids picked by the adapter itself when a task or step starts, so that the
//! span's context is known (current while the step runs, carried by an envelope) before any
//! span object exists.

use opentelemetry::trace::{SpanId, TraceId};

/// A random, valid (non-zero) W3C trace id from the thread's fast RNG.
pub(crate) fn new_trace_id() -> TraceId {
    loop {
        let id = fastrand::u128(..);
        // All zeroes is the one invalid id: draw again (once in 2^128).
        if id != 0 {
            return TraceId::from(id);
        }
    }
}

/// A random, valid (non-zero) W3C span id from the thread's fast RNG.
pub(crate) fn new_span_id() -> SpanId {
    loop {
        let id = fastrand::u64(..);
        if id != 0 {
            return SpanId::from(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_and_distinct() {
        let traces: std::collections::HashSet<_> = (0..1000).map(|_| new_trace_id()).collect();
        let spans: std::collections::HashSet<_> = (0..1000).map(|_| new_span_id()).collect();
        assert_eq!(traces.len(), 1000);
        assert_eq!(spans.len(), 1000);
        assert!(!traces.contains(&TraceId::INVALID));
        assert!(!spans.contains(&SpanId::INVALID));
    }
}
