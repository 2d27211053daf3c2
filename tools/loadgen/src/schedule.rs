//! The fixed-rate send schedule: when each message of a producer is meant
//! to be sent. Latency at a fixed rate is measured from these intended
//! times, not from when `send` actually ran, so a stall that delays sends
//! shows up in the latency of every message it delayed (no coordinated
//! omission). Pure arithmetic on nanoseconds; no clock.

/// Message `i` of a producer is due at `start_ns + offset_ns + i * 1e9 / rate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Messages per second of this producer (> 0).
    rate_per_s: f64,
    /// When message 0 is due, in the run's clock (ns).
    first_ns: u64,
}

impl Schedule {
    /// The schedule of producer `index` of `producers` sharing
    /// `total_rate_per_s` equally, starting at `start_ns`. Producers are
    /// staggered by a fraction of one period so their sends interleave
    /// instead of arriving in bursts.
    pub fn for_producer(total_rate_per_s: f64, producers: u32, index: u32, start_ns: u64) -> Schedule {
        assert!(total_rate_per_s > 0.0 && producers > 0 && index < producers);
        let rate_per_s = total_rate_per_s / f64::from(producers);
        let period_ns = 1e9 / rate_per_s;
        let offset_ns = (period_ns * f64::from(index) / f64::from(producers)) as u64;
        Schedule {
            rate_per_s,
            first_ns: start_ns + offset_ns,
        }
    }

    /// When message `i` is meant to be sent.
    pub fn intended_ns(&self, i: u64) -> u64 {
        // f64 keeps ~15 significant digits: exact to the ns for runs of
        // hours at millions of messages per second.
        self.first_ns + (i as f64 * 1e9 / self.rate_per_s) as u64
    }

    /// How many messages are due by `now_ns` (those with intended time
    /// `<= now_ns`).
    pub fn due_by(&self, now_ns: u64) -> u64 {
        if now_ns < self.first_ns {
            return 0;
        }
        let mut n = ((now_ns - self.first_ns) as f64 * self.rate_per_s / 1e9) as u64 + 1;
        // Correct the float rounding at the boundary so that due_by agrees
        // with intended_ns exactly.
        while n > 0 && self.intended_ns(n - 1) > now_ns {
            n -= 1;
        }
        while self.intended_ns(n) <= now_ns {
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_are_evenly_spaced() {
        let s = Schedule::for_producer(1000.0, 1, 0, 5_000);
        assert_eq!(s.intended_ns(0), 5_000);
        assert_eq!(s.intended_ns(1), 5_000 + 1_000_000);
        assert_eq!(s.intended_ns(1000), 5_000 + 1_000_000_000);
        for i in 0..10_000 {
            assert!(s.intended_ns(i + 1) > s.intended_ns(i));
        }
    }

    #[test]
    fn producers_share_the_rate_and_are_staggered() {
        let a = Schedule::for_producer(1000.0, 4, 0, 0);
        let b = Schedule::for_producer(1000.0, 4, 1, 0);
        let d = Schedule::for_producer(1000.0, 4, 3, 0);
        assert_eq!(a.intended_ns(1), 4_000_000);
        assert_eq!(b.intended_ns(0), 1_000_000);
        assert_eq!(d.intended_ns(0), 3_000_000);
        // Together, the four send 1000 messages in the first second.
        let due: u64 = (0..4)
            .map(|i| Schedule::for_producer(1000.0, 4, i, 0).due_by(999_999_999))
            .sum();
        assert_eq!(due, 1000);
    }

    #[test]
    fn due_by_agrees_with_intended_times() {
        for rate in [1.0, 3.0, 7.5, 1000.0, 333_333.0, 2_000_000.0] {
            let s = Schedule::for_producer(rate, 3, 1, 123_456);
            assert_eq!(s.due_by(0), 0);
            for i in [0u64, 1, 2, 10, 999, 123_457] {
                let t = s.intended_ns(i);
                assert_eq!(s.due_by(t), i + 1, "rate {rate} i {i}");
                if t > 0 && s.intended_ns(i.saturating_sub(1)) < t {
                    assert_eq!(s.due_by(t - 1), i, "rate {rate} i {i}");
                }
            }
        }
    }

    #[test]
    fn fractional_rates_keep_their_average() {
        let s = Schedule::for_producer(10.0, 3, 2, 0);
        // 3.33 msgs/s: 100 s hold 333 or 334 messages.
        let n = s.due_by(100_000_000_000);
        assert!((333..=334).contains(&n), "{n}");
    }
}
