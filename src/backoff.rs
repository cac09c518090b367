//! One retry schedule for everything that waits: exponential from `initial` to `max`, each pause
//! jittered by ±20% so a fleet that boots together does not poll in lockstep. The overall
//! deadline is the caller's; this only says how long the next pause is.
//!
//! With the defaults (1 s to 15 s) the pauses are about 1, 2, 4, 8, 15, 15, ... seconds.

use std::time::Duration;

pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
            rng: seed | 1,
        }
    }

    /// Seeded from the clock and the process id: different on every machine and every run.
    pub fn from_entropy(initial: Duration, max: Duration) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self::new(initial, max, nanos ^ (u64::from(std::process::id()) << 32))
    }

    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        // xorshift64: plenty for jitter, and no dependency.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let factor = 0.8 + (self.rng % 1000) as f64 / 2500.0; // 0.8 ..= 1.2
        base.mul_f64(factor)
    }

    /// After progress, start again from the shortest pause.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_bounded_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(15), 42);
        let delays: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        for (d, base) in delays.iter().zip([1, 2, 4, 8, 15, 15, 15, 15]) {
            let base = Duration::from_secs(base);
            assert!(
                *d >= base.mul_f64(0.8) && *d <= base.mul_f64(1.2),
                "{d:?} vs {base:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(1200));
    }

    #[test]
    fn different_seeds_spread_out() {
        let a = Backoff::new(Duration::from_secs(10), Duration::from_secs(10), 1).next_delay();
        let b = Backoff::new(Duration::from_secs(10), Duration::from_secs(10), 99).next_delay();
        assert_ne!(a, b);
    }
}
