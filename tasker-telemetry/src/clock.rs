//! One cheap clock read per event.
//!
//! An event needs a wall-clock timestamp and durations need a monotonic clock; two
//! `clock_gettime` calls were the largest part of an event's cost (about 24 ns each on this
//! project's machine). Here one read of the CPU's time-stamp counter (through `quanta`, about
//! 10 ns, falling back to the OS clock where the counter is unreliable) gives both: the wall
//! clock is derived from a per-thread anchor, a pair of readings of both clocks refreshed once a
//! second, so it never drifts by more than the system clock moves in a second.

use std::cell::Cell;
use std::time::{Duration, SystemTime};

/// A reading of the monotonic clock, for durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tick(quanta::Instant);

impl Tick {
    /// The time from `earlier` to this reading, zero if `earlier` is later.
    #[inline]
    pub fn duration_since(self, earlier: Tick) -> Duration {
        self.0.saturating_duration_since(earlier.0)
    }

    /// The time since this reading.
    pub fn elapsed(self) -> Duration {
        now().tick.duration_since(self)
    }
}

/// Both clocks, read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// The monotonic clock, for durations.
    pub tick: Tick,
    /// The wall clock, for timestamps.
    pub system: SystemTime,
}

const REFRESH: Duration = Duration::from_secs(1);

thread_local! {
    static ANCHOR: Cell<Option<(quanta::Instant, SystemTime)>> = const { Cell::new(None) };
}

/// Now, with one monotonic clock read (plus a wall-clock read once a second per thread).
#[inline]
pub fn now() -> Now {
    let instant = quanta::Instant::now();
    let system = match ANCHOR.with(Cell::get) {
        Some((at, system)) => {
            let elapsed = instant.saturating_duration_since(at);
            if elapsed < REFRESH {
                system + elapsed
            } else {
                refresh(instant)
            }
        }
        None => refresh(instant),
    };
    Now {
        tick: Tick(instant),
        system,
    }
}

#[cold]
fn refresh(instant: quanta::Instant) -> SystemTime {
    let system = SystemTime::now();
    ANCHOR.with(|anchor| anchor.set(Some((instant, system))));
    system
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_wall_clock_stays_within_a_millisecond_of_the_real_one() {
        for _ in 0..1000 {
            let before = SystemTime::now();
            let now = now();
            let after = SystemTime::now();
            let slack = Duration::from_millis(1);
            assert!(now.system + slack >= before && now.system <= after + slack);
        }
    }

    #[test]
    fn readings_are_monotonic_and_measure_durations() {
        let first = now();
        std::thread::sleep(Duration::from_millis(5));
        let second = now();
        assert!(second.tick >= first.tick);
        assert!(second.system >= first.system);
        let measured = second.tick.duration_since(first.tick);
        assert!(measured >= Duration::from_millis(5), "{measured:?}");
        assert_eq!(first.tick.duration_since(second.tick), Duration::ZERO);
    }
}
