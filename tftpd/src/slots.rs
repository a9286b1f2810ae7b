//! Admission of transfers: at most `--max-transfers` at once, and at most
//! `--max-transfers-per-client` from one client address. Pure bookkeeping: a [`Slot`] is
//! held for the life of a transfer and given back when dropped.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The limits; 0 means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub total: usize,
    pub per_client: usize,
}

/// Why a request was not admitted; the text goes to the client in the ERROR packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Busy { max: usize },
    ClientBusy { max: usize },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Busy { max } => {
                write!(f, "server busy: {max} transfers running; try again later")
            }
            Refusal::ClientBusy { max } => write!(
                f,
                "too many transfers from your address (limit {max}); finish one first"
            ),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// The running transfers, counted.
#[derive(Debug)]
pub struct Slots {
    caps: Caps,
    state: Mutex<State>,
}

/// One admitted transfer; gives its place back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    client: IpAddr,
}

impl Slots {
    pub fn new(caps: Caps) -> Arc<Slots> {
        Arc::new(Slots {
            caps,
            state: Mutex::new(State::default()),
        })
    }

    /// Admits a transfer from `client`, or says why not.
    pub fn try_take(self: &Arc<Self>, client: IpAddr) -> Result<Slot, Refusal> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if self.caps.total > 0 && st.total >= self.caps.total {
            return Err(Refusal::Busy {
                max: self.caps.total,
            });
        }
        let mine = st.per_client.get(&client).copied().unwrap_or(0);
        if self.caps.per_client > 0 && mine >= self.caps.per_client {
            return Err(Refusal::ClientBusy {
                max: self.caps.per_client,
            });
        }
        st.total += 1;
        st.per_client.insert(client, mine + 1);
        Ok(Slot {
            slots: self.clone(),
            client,
        })
    }

    /// Transfers running now.
    pub fn running(&self) -> usize {
        self.state.lock().map(|s| s.total).unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.slots.state.lock().unwrap_or_else(|p| p.into_inner());
        st.total = st.total.saturating_sub(1);
        if let Some(n) = st.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                st.per_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_client_and_total_caps() {
        let s = Slots::new(Caps {
            total: 3,
            per_client: 2,
        });
        let a1 = s.try_take(ip("10.0.0.1")).unwrap();
        let _a2 = s.try_take(ip("10.0.0.1")).unwrap();
        assert_eq!(
            s.try_take(ip("10.0.0.1")).unwrap_err(),
            Refusal::ClientBusy { max: 2 }
        );
        let _b1 = s.try_take(ip("10.0.0.2")).unwrap();
        assert_eq!(
            s.try_take(ip("10.0.0.3")).unwrap_err(),
            Refusal::Busy { max: 3 }
        );
        drop(a1);
        assert_eq!(s.running(), 2);
        let _a3 = s.try_take(ip("10.0.0.1")).unwrap();
        assert_eq!(s.running(), 3);
    }

    #[test]
    fn zero_means_unlimited_and_the_map_does_not_grow() {
        let s = Slots::new(Caps {
            total: 0,
            per_client: 0,
        });
        let held: Vec<_> = (0..1000)
            .map(|i| {
                s.try_take(IpAddr::from([10, 0, (i / 256) as u8, i as u8]))
                    .unwrap()
            })
            .collect();
        assert_eq!(s.running(), 1000);
        drop(held);
        assert_eq!(s.running(), 0);
        assert!(s.state.lock().unwrap().per_client.is_empty());
    }
}
