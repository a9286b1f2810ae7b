//! A log rate limiter: at most `burst` lines per `per`, and a count of what was suppressed, so a
//! flood (connections, packets, accept errors) costs a few lines and a number instead of gigabytes
//! of log. Hand-written because the crates for the job (governor, ratelimit) meter requests and do
//! not count what they refused, which is the one thing a log line needs.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A fixed-window limiter, shared behind `&self` (a `Mutex` inside) so one value can sit in an
/// `Arc` or a `static` and be checked from every task.
#[derive(Debug)]
pub struct RateLimit {
    burst: u32,
    per: Duration,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl RateLimit {
    /// Allows `burst` events in every window of length `per`. `burst` 0 is taken as 1.
    pub const fn new(burst: u32, per: Duration) -> Self {
        RateLimit {
            burst: if burst == 0 { 1 } else { burst },
            per,
            state: Mutex::new(Window {
                start: None,
                used: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when this event may be logged, with `n` the events suppressed since the last
    /// allowed one (log it as a field); `None` when it must be dropped (it is counted).
    pub fn check(&self) -> Option<u64> {
        self.check_at(Instant::now())
    }

    /// [`check`](Self::check) at the given time (for tests).
    pub fn check_at(&self, now: Instant) -> Option<u64> {
        let mut w = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let fresh = match w.start {
            None => true,
            Some(s) => now.saturating_duration_since(s) >= self.per,
        };
        if fresh {
            w.start = Some(now);
            w.used = 0;
        }
        if w.used < self.burst {
            w.used += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_suppressed_then_counted() {
        let rl = RateLimit::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(rl.check_at(t0), Some(0));
        assert_eq!(rl.check_at(t0), Some(0));
        assert_eq!(rl.check_at(t0 + Duration::from_secs(1)), Some(0));
        for i in 0..100 {
            assert_eq!(rl.check_at(t0 + Duration::from_millis(2000 + i)), None);
        }
        // a new window: the first allowed line carries the 100 suppressed ones, once
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(rl.check_at(t1), Some(100));
        assert_eq!(rl.check_at(t1), Some(0));
        assert_eq!(rl.check_at(t1), Some(0));
        assert_eq!(rl.check_at(t1), None);
        assert_eq!(rl.check_at(t1 + Duration::from_secs(30)), Some(1));
    }

    #[test]
    fn zero_burst_still_lets_one_through() {
        let rl = RateLimit::new(0, Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(rl.check_at(t0), Some(0));
        assert_eq!(rl.check_at(t0), None);
    }

    #[test]
    fn time_going_backwards_does_not_panic_or_reset() {
        let rl = RateLimit::new(1, Duration::from_secs(1));
        let t0 = Instant::now() + Duration::from_secs(5);
        assert_eq!(rl.check_at(t0), Some(0));
        assert_eq!(rl.check_at(t0 - Duration::from_secs(3)), None);
    }
}
