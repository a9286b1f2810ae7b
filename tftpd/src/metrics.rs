//! Counters and the Prometheus text endpoint (`--metrics ADDR` → `http://ADDR/metrics`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Server counters. Cheap to update from every transfer.
#[derive(Default, Debug)]
pub struct Metrics {
    started: [AtomicU64; 2],
    completed: [AtomicU64; 2],
    failed: [AtomicU64; 2],
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    retransmits: AtomicU64,
    active: AtomicU64,
    dropped: Mutex<BTreeMap<&'static str, u64>>,
}

/// Decrements the active-session gauge when dropped.
pub struct ActiveGuard<'a>(&'a Metrics);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
    }
}

fn dir(write: bool) -> usize {
    usize::from(write)
}

impl Metrics {
    pub fn start(&self, write: bool) {
        self.started[dir(write)].fetch_add(1, Relaxed);
    }
    pub fn complete(&self, write: bool) {
        self.completed[dir(write)].fetch_add(1, Relaxed);
    }
    pub fn fail(&self, write: bool) {
        self.failed[dir(write)].fetch_add(1, Relaxed);
    }
    pub fn sent_bytes(&self, n: u64) {
        self.bytes_sent.fetch_add(n, Relaxed);
    }
    pub fn received_bytes(&self, n: u64) {
        self.bytes_received.fetch_add(n, Relaxed);
    }
    pub fn retransmits(&self, n: u64) {
        self.retransmits.fetch_add(n, Relaxed);
    }
    pub fn dropped(&self, reason: &'static str) {
        if let Ok(mut m) = self.dropped.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }
    pub fn active_guard(&self) -> ActiveGuard<'_> {
        self.active.fetch_add(1, Relaxed);
        ActiveGuard(self)
    }
    pub fn active(&self) -> u64 {
        self.active.load(Relaxed)
    }
    /// Total packets dropped as malformed or unexpected.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.lock().map(|m| m.values().sum()).unwrap_or(0)
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let per_dir = |s: &mut String, name: &str, help: &str, v: &[AtomicU64; 2]| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
            for (i, d) in ["read", "write"].iter().enumerate() {
                let _ = writeln!(s, "{name}{{direction=\"{d}\"}} {}", v[i].load(Relaxed));
            }
        };
        per_dir(
            &mut s,
            "tftpd_transfers_started_total",
            "Transfers started.",
            &self.started,
        );
        per_dir(
            &mut s,
            "tftpd_transfers_completed_total",
            "Transfers completed.",
            &self.completed,
        );
        per_dir(
            &mut s,
            "tftpd_transfers_failed_total",
            "Transfers refused, abandoned or ended by the client.",
            &self.failed,
        );
        let single = |s: &mut String, name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        single(
            &mut s,
            "tftpd_bytes_sent_total",
            "counter",
            "File bytes sent in DATA packets.",
            self.bytes_sent.load(Relaxed),
        );
        single(
            &mut s,
            "tftpd_bytes_received_total",
            "counter",
            "File bytes received.",
            self.bytes_received.load(Relaxed),
        );
        single(
            &mut s,
            "tftpd_retransmits_total",
            "counter",
            "Packets sent again after a timeout or a reported loss.",
            self.retransmits.load(Relaxed),
        );
        single(
            &mut s,
            "tftpd_active_sessions",
            "gauge",
            "Transfers in progress.",
            self.active(),
        );
        let _ = writeln!(s, "# HELP tftpd_packets_dropped_total Packets dropped, by reason.\n# TYPE tftpd_packets_dropped_total counter");
        if let Ok(m) = self.dropped.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(s, "tftpd_packets_dropped_total{{reason=\"{reason}\"}} {n}");
            }
        }
        s
    }
}
