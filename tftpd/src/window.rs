//! The sending side of a transfer as a pure state machine (RFC 1350 lock-step, RFC 7440
//! windows). Block numbers are absolute (u64) inside, 16-bit on the wire, so transfers past
//! block 65535 roll over to 0 and keep going.

/// What an ACK did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ack {
    /// A duplicate or stray ACK: nothing to do. Never answered with data, which is what keeps
    /// a duplicate ACK from doubling the traffic (the Sorcerer's Apprentice bug).
    Ignored,
    /// `n` more blocks are acknowledged. `lost` is true when the client acknowledged less
    /// than everything in flight: under RFC 7440 that signals a loss, and the rest of the
    /// window must be sent again now.
    Advanced { n: u64, lost: bool },
    /// The final block is acknowledged.
    Done,
}

#[derive(Clone, Debug)]
pub struct SendWindow {
    window: u64,
    acked: u64,
    sent: u64,
    last: Option<u64>,
}

impl SendWindow {
    pub fn new(window: u16) -> SendWindow {
        SendWindow {
            window: window.max(1) as u64,
            acked: 0,
            sent: 0,
            last: None,
        }
    }

    /// Whether another new block may go out now.
    pub fn can_send(&self) -> bool {
        self.sent < self.acked + self.window && self.last.is_none_or(|l| self.sent < l)
    }

    /// Records that the next block went out; `short` marks the final block. Returns its
    /// wire number.
    pub fn sent(&mut self, short: bool) -> u16 {
        self.sent += 1;
        if short {
            self.last = Some(self.sent);
        }
        self.sent as u16
    }

    /// Blocks sent and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.sent - self.acked
    }

    /// Absolute number of the highest acknowledged block.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Handles an ACK with wire block number `block`.
    pub fn on_ack(&mut self, block: u16) -> Ack {
        // how far past the last acknowledged block this ACK reaches, modulo 2^16
        let delta = block.wrapping_sub(self.acked as u16) as u64;
        if delta == 0 || delta > self.in_flight() {
            return Ack::Ignored;
        }
        self.acked += delta;
        if Some(self.acked) == self.last {
            return Ack::Done;
        }
        Ack::Advanced {
            n: delta,
            lost: self.acked < self.sent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_step_and_duplicate_acks() {
        let mut w = SendWindow::new(1);
        assert!(w.can_send());
        assert_eq!(w.sent(false), 1);
        assert!(!w.can_send());
        assert_eq!(w.on_ack(0), Ack::Ignored, "ACK of the OACK/previous block");
        assert_eq!(w.on_ack(1), Ack::Advanced { n: 1, lost: false });
        assert_eq!(
            w.on_ack(1),
            Ack::Ignored,
            "duplicate ACK must not trigger a resend"
        );
        assert_eq!(w.sent(true), 2);
        assert_eq!(w.on_ack(7), Ack::Ignored, "ACK for a block never sent");
        assert_eq!(w.on_ack(2), Ack::Done);
    }

    #[test]
    fn window_advances_and_detects_loss() {
        let mut w = SendWindow::new(4);
        for _ in 0..4 {
            w.sent(false);
        }
        assert!(!w.can_send());
        // the client got 1 and 2, lost 3: it acknowledges 2
        assert_eq!(w.on_ack(2), Ack::Advanced { n: 2, lost: true });
        assert_eq!(w.in_flight(), 2);
        assert!(w.can_send());
        assert_eq!(w.on_ack(2), Ack::Ignored);
        assert_eq!(w.on_ack(4), Ack::Advanced { n: 2, lost: false });
    }

    #[test]
    fn block_numbers_roll_over() {
        let mut w = SendWindow::new(8);
        let mut wire = Vec::new();
        for i in 0..70_000u64 {
            let b = w.sent(i == 69_999);
            wire.push(b);
            let r = w.on_ack(b);
            if i == 69_999 {
                assert_eq!(r, Ack::Done);
            } else {
                assert_eq!(r, Ack::Advanced { n: 1, lost: false }, "block {i}");
            }
        }
        assert_eq!(wire[65_534], 65_535);
        assert_eq!(wire[65_535], 0);
        assert_eq!(wire[65_536], 1);
    }
}

/// Retransmission timer in the manner of RFC 6298: smoothed RTT plus four deviations,
/// doubled on each timeout, kept between `min` and `max` (the timeout the client negotiated,
/// or the server default). Samples come only from blocks sent once (Karn's rule).
///
/// A fixed timer equal to the negotiated timeout (what RFC 1350 servers do) costs a whole
/// timeout per lost packet: curl asks for 5 s, so 5% loss on a LAN turned a 256 KiB file
/// into a minute. The adaptive timer recovers in a few round trips instead, and because a
/// duplicate ACK never triggers a send, early retransmissions cannot snowball.
#[derive(Clone, Debug)]
pub struct Rto {
    srtt: Option<f64>,
    rttvar: f64,
    rto: f64,
    min: f64,
    max: f64,
}

impl Rto {
    pub fn new(
        initial: std::time::Duration,
        min: std::time::Duration,
        max: std::time::Duration,
    ) -> Rto {
        let max = max.as_secs_f64().max(min.as_secs_f64());
        Rto {
            srtt: None,
            rttvar: 0.0,
            rto: initial.as_secs_f64().clamp(min.as_secs_f64(), max),
            min: min.as_secs_f64(),
            max,
        }
    }

    /// Feeds a round-trip sample.
    pub fn sample(&mut self, rtt: std::time::Duration) {
        let r = rtt.as_secs_f64();
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2.0;
            }
            Some(s) => {
                self.rttvar = 0.75 * self.rttvar + 0.25 * (s - r).abs();
                self.srtt = Some(0.875 * s + 0.125 * r);
            }
        }
        let s = self.srtt.unwrap_or(r);
        self.rto = (s + 4.0 * self.rttvar).clamp(self.min, self.max);
    }

    /// Doubles the timer after a timeout.
    pub fn backoff(&mut self) {
        self.rto = (self.rto * 2.0).clamp(self.min, self.max);
    }

    pub fn current(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.rto)
    }
}

#[cfg(test)]
mod rto_tests {
    use super::Rto;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn converges_to_the_path_and_backs_off_to_the_ceiling() {
        let mut r = Rto::new(Duration::from_secs(1), ms(10), Duration::from_secs(5));
        assert_eq!(r.current(), Duration::from_secs(1));
        for _ in 0..20 {
            r.sample(ms(2));
        }
        assert_eq!(r.current(), ms(10), "a 2 ms path is floored at the minimum");
        for _ in 0..20 {
            r.sample(ms(100));
        }
        assert!(
            r.current() >= ms(100) && r.current() < ms(300),
            "{:?}",
            r.current()
        );
        for _ in 0..10 {
            r.backoff();
        }
        assert_eq!(
            r.current(),
            Duration::from_secs(5),
            "never above the negotiated timeout"
        );
    }
}
