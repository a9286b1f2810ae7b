//! What the event loop ([`crate::daemon`]) and the LVS task ([`crate::lvs`]) publish, and the
//! control API and the signal dumps read: the status document and the counters, behind one
//! lock. Its own module so that neither publisher depends on the other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What `GET /v1/status` reports: the control contract's types, filled by the daemon (VRRP)
/// and by the LVS task (virtual servers).
pub use opsflow_control::Status;

/// Counters for /metrics and the SIGUSR2 stats.
#[derive(Default, Debug)]
pub struct Counters {
    pub adverts_rx: u64,
    pub adverts_tx: u64,
    pub dropped: HashMap<&'static str, u64>,
    pub transitions: u64,
}

pub type Shared = Arc<Mutex<(Status, Counters)>>;
