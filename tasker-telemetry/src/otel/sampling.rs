//! The sampling decision of the direct export path, made by the adapter itself from the
//! [`SamplerSetting`] as the SDK's `Sampler` of that setting would make it.

use opentelemetry::trace::{SpanContext, TraceId};

use super::settings::SamplerSetting;

impl SamplerSetting {
    /// Whether a span of trace `trace_id` whose parent is `parent` (invalid for a root) is
    /// recorded and exported.
    pub(crate) fn samples(self, parent: &SpanContext, trace_id: TraceId) -> bool {
        let root = |ratio: f64| ratio_samples(ratio, trace_id);
        match self {
            SamplerSetting::AlwaysOn => true,
            SamplerSetting::AlwaysOff => false,
            SamplerSetting::TraceIdRatio(ratio) => root(ratio),
            _ if parent.is_valid() => parent.is_sampled(),
            SamplerSetting::ParentBasedAlwaysOn => true,
            SamplerSetting::ParentBasedAlwaysOff => false,
            SamplerSetting::ParentBasedTraceIdRatio(ratio) => root(ratio),
        }
    }
}

/// The SDK's `TraceIdRatioBased` rule: the trace id's low 63 bits below `ratio` × 2^63.
fn ratio_samples(ratio: f64, trace_id: TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let upper_bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let low = u128::from_be_bytes(trace_id.to_bytes()) as u64;
    (low >> 1) < upper_bound
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceState};

    fn parent(sampled: bool) -> SpanContext {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(
            TraceId::from(7),
            SpanId::from(9),
            flags,
            true,
            TraceState::default(),
        )
    }

    #[test]
    fn parent_based_settings_follow_a_valid_parent_and_decide_roots_themselves() {
        let root = SpanContext::empty_context();
        let trace = TraceId::from(0x0123_u128);
        for setting in [
            SamplerSetting::ParentBasedAlwaysOn,
            SamplerSetting::ParentBasedAlwaysOff,
            SamplerSetting::ParentBasedTraceIdRatio(0.5),
        ] {
            assert!(setting.samples(&parent(true), trace), "{setting:?}");
            assert!(!setting.samples(&parent(false), trace), "{setting:?}");
        }
        assert!(SamplerSetting::ParentBasedAlwaysOn.samples(&root, trace));
        assert!(!SamplerSetting::ParentBasedAlwaysOff.samples(&root, trace));
        assert!(!SamplerSetting::AlwaysOff.samples(&parent(true), trace));
        assert!(SamplerSetting::AlwaysOn.samples(&parent(false), trace));
    }

    #[test]
    fn ratios_decide_by_the_trace_ids_low_bits_as_the_sdk_does() {
        // Low 64 bits 0x…02 → 1 after the shift: below any positive bound.
        assert!(ratio_samples(0.001, TraceId::from(2)));
        assert!(!ratio_samples(0.0, TraceId::from(2)));
        // Low bits all ones: above every bound below 1.
        assert!(!ratio_samples(0.999, TraceId::from(u128::from(u64::MAX))));
        assert!(ratio_samples(1.0, TraceId::from(u128::from(u64::MAX))));
        let sampled = (1..=10_000u128)
            .filter(|i| {
                ratio_samples(
                    0.25,
                    TraceId::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)),
                )
            })
            .count();
        assert!(
            (2_000..3_000).contains(&sampled),
            "{sampled} of 10000 at 0.25"
        );
    }
}
