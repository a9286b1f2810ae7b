//! The LVS-DR real servers, seen from the director: the VIP on `lo` (so the real server
//! accepts packets for it) and ARP kept quiet about it (`arp_ignore` 1 or 2, `arp_announce` 2
//! on the interfaces that face the director; the kernel takes the larger of `all` and the
//! interface's value).
//!
//! The probe is one `sh -c` script over OpenSSH with the options release uses (BatchMode, a
//! connect timeout); it is a small call of its own rather than release's transport, because
//! ha must not depend on the release tool (release is the one that talks to ha).

use std::net::Ipv4Addr;
use std::process::Command;

use super::{Check, Finding, Status};
use crate::conf::lvs::VsKey;
use crate::conf::Config;

/// How the probe reaches a real server.
#[derive(Clone, Debug)]
pub enum Transport {
    /// `ssh [OPTIONS] USER@RIP -- sh -c SCRIPT`.
    Ssh { user: String, options: Vec<String> },
}

/// What the probe prints: `lo ADDR/LEN...`, then `conf IFACE ARP_IGNORE ARP_ANNOUNCE` per
/// interface.
pub const PROBE: &str = "echo \"lo $(ip -o -4 addr show dev lo | awk '{print $4}' | tr '\\n' ' ')\"; \
for d in /proc/sys/net/ipv4/conf/*; do echo \"conf ${d##*/} $(cat $d/arp_ignore) $(cat $d/arp_announce)\"; done";

impl Transport {
    fn command(&self, host: Ipv4Addr) -> Command {
        match self {
            Transport::Ssh { user, options } => {
                let mut c = Command::new("ssh");
                c.args(options)
                    .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"])
                    .arg(format!("{user}@{host}"))
                    .arg("--")
                    // ssh joins its arguments into one line for the remote shell: quote once
                    .arg(format!(
                        "sh -c {}",
                        shlex::try_quote(PROBE).unwrap_or_default()
                    ));
                c
            }
        }
    }

    /// Runs the probe on `host`: its output, or why it could not run.
    pub fn probe(&self, host: Ipv4Addr) -> Result<String, String> {
        let out = self
            .command(host)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run ssh: {e} (apt-get install openssh-client)"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "ssh {host} failed (exit {}): {}",
                out.status.code().unwrap_or(-1),
                err.trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The probe's output, read.
#[derive(Debug, Default, PartialEq)]
pub struct Seen {
    pub lo: Vec<Ipv4Addr>,
    /// (interface, arp_ignore, arp_announce), `all` included.
    pub conf: Vec<(String, u32, u32)>,
}

pub fn parse(out: &str) -> Seen {
    let mut s = Seen::default();
    for line in out.lines() {
        let mut w = line.split_whitespace();
        match w.next() {
            Some("lo") => {
                s.lo = w
                    .filter_map(|a| a.split('/').next()?.parse().ok())
                    .collect()
            }
            Some("conf") => {
                let (Some(i), Some(ig), Some(an)) = (w.next(), w.next(), w.next()) else {
                    continue;
                };
                if let (Ok(ig), Ok(an)) = (ig.parse(), an.parse()) {
                    s.conf.push((i.to_string(), ig, an));
                }
            }
            _ => {}
        }
    }
    s
}

/// The problems of a DR real server that must accept `vip` (None for fwmark services).
pub fn judge(seen: &Seen, vip: Option<Ipv4Addr>) -> Vec<String> {
    let mut bad = Vec::new();
    if let Some(v) = vip {
        if !seen.lo.contains(&v) {
            bad.push(format!("the VIP {v} is not on lo"));
        }
    }
    let all = seen.conf.iter().find(|c| c.0 == "all");
    let (ai, aa) = all.map_or((0, 0), |c| (c.1, c.2));
    for (name, ig, an) in seen
        .conf
        .iter()
        .filter(|c| !matches!(c.0.as_str(), "all" | "default" | "lo"))
    {
        let (ig, an) = ((*ig).max(ai), (*an).max(aa));
        if !(1..=2).contains(&ig) {
            bad.push(format!("arp_ignore is {ig} on {name} (needs 1)"));
        }
        if an != 2 {
            bad.push(format!("arp_announce is {an} on {name} (needs 2)"));
        }
    }
    bad
}

const FIX: &str =
    "on the real server: ip addr add VIP/32 dev lo; sysctl -w net.ipv4.conf.all.arp_ignore=1 \
net.ipv4.conf.all.arp_announce=2 (and in /etc/sysctl.d/90-lvs-realserver.conf; kickstart's \
template does both)";

/// Every real server of every DR service of `cfg`, once per (real server, VIP).
pub fn check_all(cfg: &Config, t: &Transport) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut seen_pairs = Vec::new();
    for vs in cfg.lvs.iter().filter(|v| v.method == "DR") {
        let vip = match &vs.key {
            VsKey::Addr(std::net::IpAddr::V4(a), _, _) => Some(*a),
            VsKey::Addr(std::net::IpAddr::V6(_), _, _) => {
                // arp_ignore/arp_announce are IPv4's; an IPv6 DR real server needs other care
                out.push(Finding::new(
                    Check::RealServer,
                    &vs.key.id(),
                    Status::Warn,
                    "an IPv6 DR service: its real servers are not checked (the VIP on lo and ARP settings are IPv4's)",
                ));
                continue;
            }
            VsKey::Fwmark(..) => None,
        };
        for rs in &vs.real_servers {
            let std::net::IpAddr::V4(addr) = rs.addr else {
                continue;
            };
            if seen_pairs.contains(&(addr, vip)) {
                continue;
            }
            seen_pairs.push((addr, vip));
            let subject = format!("{} ({})", rs.addr, vs.key.id());
            let f = |st, msg: String| Finding::new(Check::RealServer, &subject, st, msg);
            out.push(match t.probe(addr) {
                Err(e) => f(Status::Fail, e).fix(format!(
                    "make {} reachable over ssh from this director (key, --ssh-user, --ssh-option)",
                    rs.addr
                )),
                Ok(text) => {
                    let bad = judge(&parse(&text), vip);
                    if bad.is_empty() {
                        f(Status::Ok, "VIP on lo, arp_ignore 1, arp_announce 2".into())
                    } else {
                        f(Status::Fail, bad.join("; ")).fix(
                            FIX.replace("VIP", &vip.map_or("VIP".to_string(), |v| v.to_string())),
                        )
                    }
                }
            });
        }
    }
    out
}
