//! VRRP (RFC 3768 v2, RFC 5798 v3) for IPv4 and IPv6: adverts on the wire and the state
//! machine of RFC 5798 §6.4, pure: input and the time in, actions out. Timing in
//! centiseconds. IPsec AH (keepalived's VRRPv2 authentication) is in [`crate::ah`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::conf::Auth;

pub const PROTO: i32 = 112;

/// A received or sent advertisement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    pub version: u8,
    pub vrid: u8,
    pub priority: u8,
    /// Centiseconds (v2: seconds × 100).
    pub interval_cs: u32,
    pub addrs: Vec<IpAddr>,
}

/// Why an advert was dropped (metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    Short,
    Ttl,
    Version,
    Type,
    Checksum,
    Auth,
    Count,
    Interval,
    /// AH: the sequence number was seen already (a replay, or our own advert).
    Replay,
}

impl Reject {
    pub fn reason(self) -> &'static str {
        match self {
            Reject::Short => "short",
            Reject::Ttl => "ttl_not_255",
            Reject::Version => "version_mismatch",
            Reject::Type => "not_an_advert",
            Reject::Checksum => "bad_checksum",
            Reject::Auth => "auth_mismatch",
            Reject::Count => "address_count",
            Reject::Interval => "interval_mismatch",
            Reject::Replay => "ah_replay",
        }
    }
}

pub(crate) fn csum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for c in chunks {
        for &b in c.iter() {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[..4].copy_from_slice(&src.octets());
    p[4..8].copy_from_slice(&dst.octets());
    p[9] = PROTO as u8;
    p[10..12].copy_from_slice(&(len as u16).to_be_bytes());
    p
}

/// Encodes the VRRP payload (no IP header). v3 checksums cover the IPv4 pseudo-header.
pub fn encode(a: &Advert, auth: &Auth, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut b = vec![
        (a.version << 4) | 1,
        a.vrid,
        a.priority,
        a.addrs.len() as u8,
    ];
    if a.version == 3 {
        let iv = (a.interval_cs.min(4095)) as u16;
        b.extend_from_slice(&iv.to_be_bytes());
    } else {
        let atype = match auth {
            Auth::None => 0,
            Auth::Pass(_) => 1,
            Auth::Ah(_) => 2,
        };
        b.push(atype);
        b.push((a.interval_cs / 100).clamp(1, 255) as u8);
    }
    b.extend_from_slice(&[0, 0]);
    push_addrs(&mut b, &a.addrs);
    if a.version == 2 {
        match auth {
            Auth::Pass(p) => b.extend_from_slice(p),
            Auth::None | Auth::Ah(_) => b.extend_from_slice(&[0; 8]),
        }
    }
    let c = if a.version == 3 {
        csum(&[&pseudo(src, dst, b.len()), &b])
    } else {
        csum(&[&b])
    };
    b[6..8].copy_from_slice(&c.to_be_bytes());
    b
}

/// Decodes an IP datagram carrying VRRP (raw socket reads include the IP header). Returns
/// the sender and the advert, after every check RFC 3768/5798 demands.
pub fn decode(
    pkt: &[u8],
    version: u8,
    auth: &Auth,
) -> Result<(Ipv4Addr, Ipv4Addr, Advert), Reject> {
    if pkt.len() < 20 {
        return Err(Reject::Short);
    }
    let ihl = ((pkt[0] & 0x0f) as usize) * 4;
    if ihl < 20 || pkt.len() < ihl + 8 {
        return Err(Reject::Short);
    }
    let ttl = pkt[8];
    let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
    let total = (u16::from_be_bytes([pkt[2], pkt[3]]) as usize).min(pkt.len());
    // an AH datagram (its ICV checked by crate::ah::verify first) carries VRRP after 24 bytes
    let ah = pkt[9] == crate::ah::PROTO;
    if ah != matches!(auth, Auth::Ah(_)) {
        return Err(Reject::Auth);
    }
    let start = if ah { ihl + crate::ah::LEN } else { ihl };
    let v = pkt.get(start..total.max(start)).unwrap_or(&[]);
    if v.len() < 8 {
        return Err(Reject::Short);
    }
    if ttl != 255 {
        return Err(Reject::Ttl);
    }
    let ver = v[0] >> 4;
    if ver != version {
        return Err(Reject::Version);
    }
    if v[0] & 0x0f != 1 {
        return Err(Reject::Type);
    }
    let count = v[3] as usize;
    let need = 8 + 4 * count + if ver == 2 { 8 } else { 0 };
    if v.len() < need {
        return Err(Reject::Count);
    }
    let ok = if ver == 3 {
        csum(&[&pseudo(src, dst, v.len()), v]) == 0
    } else {
        csum(&[v]) == 0
    };
    if !ok {
        return Err(Reject::Checksum);
    }
    let interval_cs = if ver == 3 {
        (u16::from_be_bytes([v[4], v[5]]) & 0x0fff) as u32
    } else {
        v[5] as u32 * 100
    };
    if ver == 2 {
        let atype = v[4];
        let data = &v[8 + 4 * count..8 + 4 * count + 8];
        let good = match auth {
            Auth::None => atype == 0,
            Auth::Pass(p) => atype == 1 && data == p,
            // the ICV was checked before (crate::ah::verify)
            Auth::Ah(_) => atype == 2,
        };
        if !good {
            return Err(Reject::Auth);
        }
    }
    let addrs = (0..count)
        .map(|k| Ipv4Addr::new(v[8 + 4 * k], v[9 + 4 * k], v[10 + 4 * k], v[11 + 4 * k]).into())
        .collect();
    Ok((
        src,
        dst,
        Advert {
            version: ver,
            vrid: v[1],
            priority: v[2],
            interval_cs,
            addrs,
        },
    ))
}

fn push_addrs(b: &mut Vec<u8>, addrs: &[IpAddr]) {
    for ip in addrs {
        match ip {
            IpAddr::V4(a) => b.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => b.extend_from_slice(&a.octets()),
        }
    }
}

fn pseudo6(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> [u8; 40] {
    let mut p = [0u8; 40];
    p[..16].copy_from_slice(&src.octets());
    p[16..32].copy_from_slice(&dst.octets());
    p[32..36].copy_from_slice(&(len as u32).to_be_bytes());
    p[39] = PROTO as u8;
    p
}

/// Encodes a VRRPv3 advert for IPv6 (RFC 5798 §5): the payload of the IPv6 datagram, its
/// checksum over the IPv6 pseudo-header (source, destination, length, next header 112).
pub fn encode6(a: &Advert, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut b = vec![(3 << 4) | 1, a.vrid, a.priority, a.addrs.len() as u8];
    b.extend_from_slice(&(a.interval_cs.min(4095) as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    push_addrs(&mut b, &a.addrs);
    let c = csum(&[&pseudo6(src, dst, b.len()), &b]);
    b[6..8].copy_from_slice(&c.to_be_bytes());
    b
}

/// Decodes the payload of an IPv6 datagram carrying VRRPv3 (raw IPv6 sockets deliver no IP
/// header: the source, destination and hop limit come from the socket). A hop limit other
/// than 255 is refused (RFC 5798 §7.1); `None` means the kernel did not say.
pub fn decode6(
    v: &[u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: Option<u8>,
) -> Result<Advert, Reject> {
    if v.len() < 8 {
        return Err(Reject::Short);
    }
    if hop_limit.is_some_and(|h| h != 255) {
        return Err(Reject::Ttl);
    }
    if v[0] >> 4 != 3 {
        return Err(Reject::Version);
    }
    if v[0] & 0x0f != 1 {
        return Err(Reject::Type);
    }
    let count = v[3] as usize;
    if v.len() < 8 + 16 * count {
        return Err(Reject::Count);
    }
    if csum(&[&pseudo6(src, dst, v.len()), v]) != 0 {
        return Err(Reject::Checksum);
    }
    let addrs = (0..count)
        .map(|k| {
            let mut o = [0u8; 16];
            o.copy_from_slice(&v[8 + 16 * k..24 + 16 * k]);
            IpAddr::V6(Ipv6Addr::from(o))
        })
        .collect();
    Ok(Advert {
        version: 3,
        vrid: v[1],
        priority: v[2],
        interval_cs: (u16::from_be_bytes([v[4], v[5]]) & 0x0fff) as u32,
        addrs,
    })
}

/// The bytes of a hex fixture (lines starting with `#` are comments).
#[cfg(test)]
pub(crate) fn fixture_hex(text: &str) -> Vec<u8> {
    let hex: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<String>();
    (0..hex.trim().len() / 2)
        .map(|k| u8::from_str_radix(&hex[2 * k..2 * k + 2], 16).expect("hex fixture"))
        .collect()
}

/// An address as a number, for RFC 5798's "higher primary address wins" (same family).
fn addr_key(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// VRRP states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Init,
    Backup,
    Master,
    Fault,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

/// What the adapter must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority.
    Advertise(u8),
    /// Entered a state (add or remove VIPs, gratuitous ARP, notify).
    Became(State),
}

/// Static settings of a router.
#[derive(Clone, Debug)]
pub struct Settings {
    pub version: u8,
    pub advert_cs: u32,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub initial_master: bool,
}

/// One virtual router's protocol state.
#[derive(Clone, Debug)]
pub struct Router {
    pub s: Settings,
    pub state: State,
    /// Effective priority (tracking applied); 255 = address owner.
    pub priority: u8,
    pub my_ip: IpAddr,
    pub master_ip: Option<IpAddr>,
    master_adver_cs: u32,
    adver_timer: Option<Instant>,
    master_down: Option<Instant>,
    started: Instant,
    /// Sync groups: the master-down timer ran out while the group was not ready.
    deferred: bool,
    /// The router's own tracking says FAULT (in a sync group, any member's fault puts the
    /// whole group in FAULT; see [`Groups`]).
    own_fault: bool,
}

fn cs(n: u32) -> Duration {
    Duration::from_millis(n as u64 * 10)
}

impl Router {
    pub fn new(s: Settings, priority: u8, my_ip: impl Into<IpAddr>, now: Instant) -> Router {
        let my_ip = my_ip.into();
        let adv = s.advert_cs;
        Router {
            s,
            state: State::Init,
            priority,
            my_ip,
            master_ip: None,
            master_adver_cs: adv,
            adver_timer: None,
            master_down: None,
            started: now,
            deferred: false,
            own_fault: false,
        }
    }

    /// Skew time (centiseconds, fractional): v2 (256-prio)/256 s, v3 (256-prio)*MAI/256.
    fn skew(&self) -> Duration {
        let p = 256 - self.priority as u64;
        if self.s.version == 3 {
            Duration::from_micros(p * self.master_adver_cs as u64 * 10_000 / 256)
        } else {
            Duration::from_micros(p * 1_000_000 / 256)
        }
    }

    /// Master down interval: 3 × advert interval + skew.
    pub fn master_down_interval(&self) -> Duration {
        let mai = if self.s.version == 3 {
            self.master_adver_cs
        } else {
            self.s.advert_cs
        };
        cs(3 * mai) + self.skew()
    }

    fn become_master(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.deferred = false;
        self.state = State::Master;
        self.master_ip = Some(self.my_ip);
        self.master_down = None;
        self.adver_timer = Some(now + cs(self.s.advert_cs));
        out.push(Action::Advertise(self.priority));
        out.push(Action::Became(State::Master));
    }

    fn become_backup(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.deferred = false;
        let was = self.state;
        self.state = State::Backup;
        self.adver_timer = None;
        self.master_down = Some(now + self.master_down_interval());
        if was != State::Backup {
            out.push(Action::Became(State::Backup));
        }
    }

    /// Startup event.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.priority == 255 || self.s.initial_master {
            self.become_master(now, &mut out);
        } else {
            self.master_adver_cs = self.s.advert_cs;
            self.become_backup(now, &mut out);
        }
        out
    }

    /// Shutdown: a master sends priority 0 so a backup takes over after its skew time.
    pub fn shutdown(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == State::Master {
            out.push(Action::Advertise(0));
        }
        self.state = State::Init;
        self.adver_timer = None;
        self.master_down = None;
        out.push(Action::Became(State::Init));
        out
    }

    /// Fault (tracked interface or script says so) and recovery.
    pub fn set_fault(&mut self, fault: bool, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match (fault, self.state) {
            (true, State::Fault) | (false, State::Backup | State::Master | State::Init) => {}
            (true, prev) => {
                if prev == State::Master {
                    out.push(Action::Advertise(0));
                }
                self.state = State::Fault;
                self.adver_timer = None;
                self.master_down = None;
                out.push(Action::Became(State::Fault));
            }
            (false, State::Fault) => {
                self.master_adver_cs = self.s.advert_cs;
                self.become_backup(now, &mut out);
            }
        }
        out
    }

    /// A new effective priority (tracking). A master advertises it at once.
    pub fn set_priority(&mut self, p: u8, now: Instant) -> Vec<Action> {
        if p == self.priority {
            return Vec::new();
        }
        self.priority = p;
        let mut out = Vec::new();
        if self.state == State::Master {
            out.push(Action::Advertise(p));
            self.adver_timer = Some(now + cs(self.s.advert_cs));
        } else if self.state == State::Backup {
            // the master down timer's skew depends on priority
            self.master_down = Some(now + self.master_down_interval());
        }
        out
    }

    fn higher(&self, a: &Advert, from: IpAddr) -> bool {
        a.priority > self.priority
            || (a.priority == self.priority && addr_key(from) > addr_key(self.my_ip))
    }

    /// An advert from another router of this VRID.
    pub fn on_advert(&mut self, from: impl Into<IpAddr>, a: &Advert, now: Instant) -> Vec<Action> {
        let from = from.into();
        let mut out = Vec::new();
        match self.state {
            State::Backup => {
                if a.priority == 0 {
                    self.master_down = Some(now + self.skew());
                    return out;
                }
                let preempt = self.s.preempt && now >= self.started + self.s.preempt_delay;
                if !preempt || a.priority >= self.priority {
                    if self.s.version == 3 {
                        self.master_adver_cs = a.interval_cs.max(1);
                    }
                    self.master_ip = Some(from);
                    self.master_down = Some(now + self.master_down_interval());
                    self.deferred = false; // a live master: we no longer want to take over
                }
                // lower priority with preemption: ignore; our timer runs out and we take over
            }
            State::Master => {
                if a.priority == 0 {
                    out.push(Action::Advertise(self.priority));
                    self.adver_timer = Some(now + cs(self.s.advert_cs));
                } else if self.higher(a, from) {
                    if self.s.version == 3 {
                        self.master_adver_cs = a.interval_cs.max(1);
                    }
                    self.master_ip = Some(from);
                    self.become_backup(now, &mut out);
                }
            }
            State::Init | State::Fault => {}
        }
        out
    }

    /// Sync groups: whether this backup wants to become master (its master-down timer ran
    /// out, now or earlier while the group was not ready).
    pub fn wants_master(&self, now: Instant) -> bool {
        self.state == State::Backup && (self.deferred || self.master_down.is_some_and(|t| now >= t))
    }

    /// Sync groups: stay backup for now (another member still hears its master), keep
    /// wanting, and look again after another master-down interval.
    pub fn defer_master(&mut self, now: Instant) {
        if self.state == State::Backup {
            self.deferred = true;
            self.master_down = Some(now + self.master_down_interval());
        }
    }

    /// Sync groups: every member wants master, so all go together.
    pub fn force_master(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == State::Backup {
            self.become_master(now, &mut out);
        }
        out
    }

    /// Sync groups: a member went back to BACKUP, so a master member follows it.
    pub fn force_backup(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == State::Master {
            out.push(Action::Advertise(0));
            self.become_backup(now, &mut out);
        }
        out
    }

    /// When the next timer fires.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Master => self.adver_timer,
            State::Backup => self.master_down,
            _ => None,
        }
    }

    /// Timers that are due at `now`.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Master if self.adver_timer.is_some_and(|t| now >= t) => {
                out.push(Action::Advertise(self.priority));
                self.adver_timer = Some(now + cs(self.s.advert_cs));
            }
            State::Backup if self.master_down.is_some_and(|t| now >= t) => {
                self.become_master(now, &mut out)
            }
            _ => {}
        }
        out
    }
}

/// Sync groups over routers indexed `0..n`, pure: events in, `(router index, action)` out,
/// as keepalived's vrrp_sync.c decides them: a member entering FAULT takes every member to
/// FAULT, the group leaves FAULT when no member has a fault of its own; a member that loses
/// mastership takes the group's masters to BACKUP; the group becomes MASTER only when every
/// member wants to (no split, no flap). A router in no group is driven on its own.
#[derive(Clone, Debug, Default)]
pub struct Groups {
    groups: Vec<Vec<usize>>,
}

/// Actions for several routers, in order.
pub type Acts = Vec<(usize, Action)>;

fn tag(idx: usize, acts: Vec<Action>, out: &mut Acts) {
    out.extend(acts.into_iter().map(|a| (idx, a)));
}

impl Groups {
    /// `groups`: the member indices of each group (members absent at run time left out).
    pub fn new(groups: Vec<Vec<usize>>) -> Groups {
        Groups { groups }
    }

    fn members(&self, idx: usize) -> Option<&[usize]> {
        self.groups
            .iter()
            .find(|g| g.contains(&idx))
            .map(|g| g.as_slice())
    }

    /// A router's own tracking says FAULT (`true`) or healthy, with the effective priority
    /// to use when healthy.
    pub fn track(
        &self,
        rs: &mut [&mut Router],
        idx: usize,
        fault: bool,
        priority: u8,
        now: Instant,
    ) -> Acts {
        let mut out = Vec::new();
        rs[idx].own_fault = fault;
        if !fault {
            tag(idx, rs[idx].set_priority(priority, now), &mut out);
        }
        let members = self
            .members(idx)
            .map(<[usize]>::to_vec)
            .unwrap_or(vec![idx]);
        let group_fault = members.iter().any(|&m| rs[m].own_fault);
        for m in members {
            tag(m, rs[m].set_fault(group_fault, now), &mut out);
        }
        out
    }

    /// An advert for router `idx`.
    pub fn on_advert(
        &self,
        rs: &mut [&mut Router],
        idx: usize,
        from: impl Into<IpAddr>,
        a: &Advert,
        now: Instant,
    ) -> Acts {
        let mut out = Vec::new();
        let before = rs[idx].state;
        tag(idx, rs[idx].on_advert(from, a, now), &mut out);
        if before == State::Master && rs[idx].state == State::Backup {
            for &m in self.members(idx).unwrap_or(&[]) {
                tag(m, rs[m].force_backup(now), &mut out);
            }
        }
        out
    }

    /// Timers due at `now`.
    pub fn on_timer(&self, rs: &mut [&mut Router], now: Instant) -> Acts {
        let mut out = Vec::new();
        for idx in 0..rs.len() {
            match self.members(idx) {
                Some(members) if rs[idx].wants_master(now) => {
                    let ready = members
                        .iter()
                        .all(|&m| rs[m].state == State::Master || rs[m].wants_master(now));
                    if ready {
                        for &m in members {
                            tag(m, rs[m].force_master(now), &mut out);
                        }
                    } else {
                        rs[idx].defer_master(now);
                    }
                }
                _ => tag(idx, rs[idx].on_timer(now), &mut out),
            }
        }
        out
    }
}

/// What a tracked file's number means, as keepalived's vrrp_track.c reads it: with weight 0
/// a non-zero value (a zero one when `reverse`) is a failure; otherwise value × weight
/// (negated when `reverse`) is added to the priority, clamped to -254..=253, and -254 is a
/// failure. `None`: FAULT; `Some(d)`: the priority delta.
pub fn file_delta(value: i64, weight: i32, reverse: bool) -> Option<i32> {
    if weight == 0 {
        return ((value != 0) == reverse).then_some(0);
    }
    let sign = if reverse { -1 } else { 1 };
    let d = value
        .saturating_mul(i64::from(weight))
        .saturating_mul(sign)
        .clamp(-254, 253) as i32;
    (d != -254).then_some(d)
}

/// How `track_process` parameters must match a command line's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamMatch {
    /// All of them, exactly.
    Exact,
    /// The first ones (`param_match initial`).
    Initial,
    /// A run of them anywhere (`param_match partial`).
    Partial,
}

/// One running process: its `comm` and its argv.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    pub comm: String,
    pub argv: Vec<String>,
}

/// Whether a process is one `track_process` counts: by `comm` (15 characters, as the kernel
/// keeps it) or, with `full_command`, by `argv[0]`; and by parameters when given.
pub fn process_matches(
    p: &Proc,
    name: &str,
    params: Option<&[String]>,
    how: ParamMatch,
    full_command: bool,
) -> bool {
    let named = if full_command {
        p.argv.first().is_some_and(|a| a == name)
    } else {
        let short: String = name.chars().take(15).collect();
        p.comm == short
    };
    let args = p.argv.get(1..).unwrap_or(&[]);
    named
        && match (params, how) {
            (None, _) => true,
            (Some(want), ParamMatch::Exact) => args == want,
            (Some(want), ParamMatch::Initial) => args.starts_with(want),
            (Some(want), ParamMatch::Partial) => {
                want.is_empty() || args.windows(want.len()).any(|w| w == want)
            }
        }
}

/// A tracked condition that must hold for a while before it counts (track_process's
/// `fork_delay`/`terminate_delay`): feed observations, get the state that counts.
#[derive(Clone, Debug)]
pub struct Debounce {
    pub ok: bool,
    pending: Option<(bool, Instant)>,
}

impl Debounce {
    pub fn new(ok: bool) -> Debounce {
        Debounce { ok, pending: None }
    }

    /// Whether a change is waiting for its delay (it needs another look when that ends).
    pub fn pending(&self) -> bool {
        self.pending.is_some()
    }

    /// An observation at `now`; `delays` = (to healthy, to unhealthy). Returns whether the
    /// state that counts changed.
    pub fn observe(&mut self, seen: bool, delays: (Duration, Duration), now: Instant) -> bool {
        if seen == self.ok {
            self.pending = None;
            return false;
        }
        let since = match self.pending {
            Some((p, t)) if p == seen => t,
            _ => {
                self.pending = Some((seen, now));
                now
            }
        };
        let wait = if seen { delays.0 } else { delays.1 };
        if now.duration_since(since) >= wait {
            self.ok = seen;
            self.pending = None;
            return true;
        }
        false
    }
}

/// A tracked file's number as keepalived reads it: the leading integer of the contents
/// (strtol: blanks first, anything after the digits ignored), 0 when there is none.
pub fn file_value(text: &str) -> i64 {
    let t = text.trim_start();
    let end = t
        .char_indices()
        .find(|&(k, c)| !(c.is_ascii_digit() || (k == 0 && (c == '-' || c == '+'))))
        .map_or(t.len(), |(k, _)| k);
    t[..end].parse().unwrap_or(0)
}

/// keepalived's priority arithmetic: base plus the weights of tracked items, kept within
/// 1..=254 (an owner at 255 stays 255). `None` means FAULT (a weight-0 item failed).
pub fn effective_priority(base: u8, items: &[(i32, bool)]) -> Option<u8> {
    if base == 255 {
        return if items.iter().any(|(w, ok)| *w == 0 && !ok) {
            None
        } else {
            Some(255)
        };
    }
    let mut p = base as i32;
    for &(w, ok) in items {
        match (w, ok) {
            (0, false) => return None,
            (w, true) if w > 0 => p += w,
            (w, false) if w < 0 => p += w,
            _ => {}
        }
    }
    Some(p.clamp(1, 254) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn router(
        prio: u8,
        master: bool,
        version: u8,
        advert_cs: u32,
        preempt: bool,
    ) -> (Router, Instant) {
        let t0 = Instant::now();
        let s = Settings {
            version,
            advert_cs,
            preempt,
            preempt_delay: Duration::ZERO,
            initial_master: master,
        };
        (Router::new(s, prio, Ipv4Addr::new(10, 0, 0, 1), t0), t0)
    }

    fn adv(prio: u8, cs: u32) -> Advert {
        Advert {
            version: 2,
            vrid: 51,
            priority: prio,
            interval_cs: cs,
            addrs: vec![],
        }
    }

    #[test]
    fn wire_round_trip_v2_v3_and_validation() {
        let a = Advert {
            version: 3,
            vrid: 51,
            priority: 150,
            interval_cs: 10,
            addrs: vec![Ipv4Addr::new(10, 80, 0, 100).into()],
        };
        let src = Ipv4Addr::new(10, 80, 0, 1);
        let dst = Ipv4Addr::new(224, 0, 0, 18);
        let payload = encode(&a, &Auth::None, src, dst);
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 255, 112, 0, 0];
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        let total = (ip.len() + payload.len()) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let mut pkt = ip.clone();
        pkt.extend_from_slice(&payload);
        assert_eq!(decode(&pkt, 3, &Auth::None), Ok((src, dst, a.clone())));
        let mut bad = pkt.clone();
        bad[8] = 64;
        assert_eq!(decode(&bad, 3, &Auth::None), Err(Reject::Ttl));
        let mut bad = pkt.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(decode(&bad, 3, &Auth::None), Err(Reject::Checksum));
        assert_eq!(decode(&pkt, 2, &Auth::None), Err(Reject::Version));
        // v2 with a password; the wrong one is refused
        let a2 = Advert {
            version: 2,
            interval_cs: 100,
            ..a
        };
        let p = Auth::Pass(*b"s3cr3t\0\0");
        let mut pkt2 = ip;
        pkt2.extend_from_slice(&encode(&a2, &p, src, dst));
        let total = pkt2.len() as u16;
        pkt2[2..4].copy_from_slice(&total.to_be_bytes());
        assert_eq!(decode(&pkt2, 2, &p).map(|x| x.2), Ok(a2));
        assert_eq!(
            decode(&pkt2, 2, &Auth::Pass(*b"wrong\0\0\0")),
            Err(Reject::Auth)
        );
        for n in 0..pkt2.len() {
            let _ = decode(&pkt2[..n], 2, &p);
        }
    }

    #[test]
    fn ipv6_adverts_match_keepalived_byte_for_byte() {
        // captured with tcpdump from keepalived 2.2.7 (ha/src/testdata/keepalived-vrrp6.hex)
        let pkt = fixture_hex(include_str!("testdata/keepalived-vrrp6.hex"));
        let ip6 = |o: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&pkt[o..o + 16]);
            Ipv6Addr::from(b)
        };
        let (src, dst, payload) = (ip6(8), ip6(24), &pkt[40..]);
        assert_eq!(pkt[6], PROTO as u8, "next header");
        assert_eq!(pkt[7], 255, "hop limit");
        assert_eq!(dst, "ff02::12".parse::<Ipv6Addr>().unwrap());
        let a = decode6(payload, src, dst, Some(255)).expect("keepalived's advert is valid");
        let want = Advert {
            version: 3,
            vrid: 52,
            priority: 150,
            interval_cs: 100,
            addrs: vec!["2001:db8:97::100".parse().unwrap()],
        };
        assert_eq!(a, want);
        assert_eq!(encode6(&want, src, dst), payload, "ours is byte-identical");
        assert_eq!(decode6(payload, src, dst, Some(64)), Err(Reject::Ttl));
        assert_eq!(decode6(payload, src, dst, None), Ok(want.clone()));
        // the pseudo-header counts: another destination or source breaks the checksum
        let other = "ff02::13".parse().unwrap();
        assert_eq!(
            decode6(payload, src, other, Some(255)),
            Err(Reject::Checksum)
        );
        let mut bad = payload.to_vec();
        bad[2] = 200;
        assert_eq!(decode6(&bad, src, dst, Some(255)), Err(Reject::Checksum));
        bad[0] = 0x21;
        assert_eq!(decode6(&bad, src, dst, Some(255)), Err(Reject::Version));
        assert_eq!(
            decode6(&payload[..20], src, dst, Some(255)),
            Err(Reject::Count)
        );
        for n in 0..payload.len() {
            let _ = decode6(&payload[..n], src, dst, Some(255));
        }
        // the higher address wins a tie, as with IPv4
        let (mut r, t0) = router(150, true, 3, 100, true);
        r.my_ip = src.into();
        r.start(t0);
        let lower: Ipv6Addr = "fe80::1".parse().unwrap();
        assert!(r.on_advert(lower, &want, t0).is_empty());
        let higher: Ipv6Addr = "fe80::ff:fe00:b".parse().unwrap();
        assert_eq!(
            r.on_advert(higher, &want, t0),
            vec![Action::Became(State::Backup)]
        );
    }

    #[test]
    fn backup_takes_over_after_the_master_down_interval() {
        let (mut r, t0) = router(100, false, 2, 100, true);
        assert_eq!(r.start(t0), vec![Action::Became(State::Backup)]);
        // v2, advert 1 s, priority 100: 3 s + (256-100)/256 s = 3.609375 s
        assert_eq!(r.master_down_interval(), Duration::from_micros(3_609_375));
        assert!(r.on_timer(t0 + ms(3600)).is_empty());
        let out = r.on_timer(t0 + ms(3610));
        assert_eq!(
            out,
            vec![Action::Advertise(100), Action::Became(State::Master)]
        );
        assert_eq!(r.deadline(), Some(t0 + ms(3610) + ms(1000)));
    }

    #[test]
    fn adverts_keep_a_backup_quiet_and_priority_zero_cuts_to_skew() {
        let (mut r, t0) = router(100, false, 2, 100, true);
        r.start(t0);
        r.on_advert(Ipv4Addr::new(10, 0, 0, 2), &adv(150, 100), t0 + ms(3000));
        assert!(
            r.on_timer(t0 + ms(6000)).is_empty(),
            "the advert reset the timer"
        );
        r.on_advert(Ipv4Addr::new(10, 0, 0, 2), &adv(0, 100), t0 + ms(6000));
        // skew = 156/256 s = 609.375 ms
        assert!(r.on_timer(t0 + ms(6609)).is_empty());
        assert_eq!(
            r.on_timer(t0 + ms(6610)).last(),
            Some(&Action::Became(State::Master))
        );
    }

    #[test]
    fn preemption_and_nopreempt() {
        // a higher-priority backup ignores a lower master's adverts and takes over
        let (mut r, t0) = router(150, false, 2, 100, true);
        r.start(t0);
        r.on_advert(Ipv4Addr::new(10, 0, 0, 2), &adv(100, 100), t0 + ms(1000));
        assert!(
            r.on_timer(t0 + ms(3414)).is_empty(),
            "3 s + 106/256 s = 3414.06 ms"
        );
        assert_eq!(
            r.on_timer(t0 + ms(3415)).last(),
            Some(&Action::Became(State::Master))
        );
        // with nopreempt the lower master is kept
        let (mut r, t0) = router(150, false, 2, 100, false);
        r.start(t0);
        for s in 1..10 {
            r.on_advert(
                Ipv4Addr::new(10, 0, 0, 2),
                &adv(100, 100),
                t0 + ms(s * 1000),
            );
            assert!(r.on_timer(t0 + ms(s * 1000 + 500)).is_empty());
        }
        assert_eq!(r.state, State::Backup);
    }

    #[test]
    fn master_yields_to_higher_and_answers_priority_zero() {
        let (mut r, t0) = router(100, true, 2, 100, true);
        assert_eq!(
            r.start(t0),
            vec![Action::Advertise(100), Action::Became(State::Master)]
        );
        assert!(r
            .on_advert(Ipv4Addr::new(10, 0, 0, 2), &adv(50, 100), t0)
            .is_empty());
        assert_eq!(
            r.on_advert(Ipv4Addr::new(10, 0, 0, 2), &adv(0, 100), t0),
            vec![Action::Advertise(100)]
        );
        // equal priority: the higher address wins
        assert_eq!(
            r.on_advert(Ipv4Addr::new(10, 0, 0, 2), &adv(100, 100), t0),
            vec![Action::Became(State::Backup)]
        );
        let (mut r, t0) = router(100, true, 2, 100, true);
        r.start(t0);
        assert!(r
            .on_advert(Ipv4Addr::new(10, 0, 0, 0), &adv(100, 100), t0)
            .is_empty());
    }

    #[test]
    fn v3_uses_the_masters_interval_and_centiseconds() {
        let (mut r, t0) = router(100, false, 3, 10, true);
        r.start(t0);
        // 3 × 10 cs + (156 × 10 / 256) cs = 300 ms + 60.9375 ms
        assert_eq!(r.master_down_interval(), Duration::from_micros(360_937));
        let mut a = adv(150, 20);
        a.version = 3;
        r.on_advert(Ipv4Addr::new(10, 0, 0, 2), &a, t0);
        assert_eq!(
            r.master_down_interval(),
            ms(600) + Duration::from_micros(121_875)
        );
    }

    #[test]
    fn sync_group_helpers_defer_and_force() {
        let (mut r, t0) = router(100, false, 2, 100, true);
        r.start(t0);
        let due = t0 + ms(3700);
        assert!(r.wants_master(due));
        r.defer_master(due);
        assert!(r.wants_master(due), "deferring keeps the wish");
        assert_eq!(r.state, State::Backup);
        r.on_advert(Ipv4Addr::new(10, 0, 0, 2), &adv(150, 100), due + ms(10));
        assert!(!r.wants_master(due + ms(10)), "a live master ends the wish");
        assert_eq!(
            r.force_master(due + ms(20)).last(),
            Some(&Action::Became(State::Master))
        );
        assert_eq!(
            r.force_backup(due + ms(30)),
            vec![Action::Advertise(0), Action::Became(State::Backup)]
        );
        assert!(r.force_backup(due + ms(40)).is_empty());
    }

    #[test]
    fn a_member_fault_takes_the_whole_sync_group_to_fault_and_back() {
        let (mut a, t0) = router(150, true, 2, 100, true);
        let (mut b, _) = router(150, true, 2, 100, true);
        let (mut lone, _) = router(150, true, 2, 100, true);
        let g = Groups::new(vec![vec![0, 1]]);
        a.start(t0);
        b.start(t0);
        lone.start(t0);
        let mut rs = [&mut a, &mut b, &mut lone];
        // member 1's tracked interface goes down: both members leave MASTER, the lone one stays
        let out = g.track(&mut rs, 1, true, 150, t0);
        for idx in [0, 1] {
            assert!(out.contains(&(idx, Action::Advertise(0))), "{out:?}");
            assert!(
                out.contains(&(idx, Action::Became(State::Fault))),
                "{out:?}"
            );
        }
        assert!(out.iter().all(|(i, _)| *i != 2));
        assert_eq!(rs[2].state, State::Master);
        // member 0 is healthy: the group stays in FAULT while member 1 is not
        assert!(g.track(&mut rs, 0, false, 150, t0).is_empty());
        assert_eq!((rs[0].state, rs[1].state), (State::Fault, State::Fault));
        // member 1 recovers: the group leaves FAULT together, then goes MASTER together
        let out = g.track(&mut rs, 1, false, 150, t0);
        assert_eq!(
            out,
            vec![
                (0, Action::Became(State::Backup)),
                (1, Action::Became(State::Backup))
            ]
        );
        let out = g.on_timer(&mut rs, t0 + ms(3500));
        assert!(out.contains(&(0, Action::Became(State::Master))), "{out:?}");
        assert!(out.contains(&(1, Action::Became(State::Master))), "{out:?}");
        // a higher master for member 0 takes member 1 to BACKUP too
        let out = g.on_advert(
            &mut rs,
            0,
            Ipv4Addr::new(10, 0, 0, 2),
            &adv(200, 100),
            t0 + ms(3600),
        );
        assert!(out.contains(&(1, Action::Advertise(0))), "{out:?}");
        assert_eq!((rs[0].state, rs[1].state), (State::Backup, State::Backup));
    }

    #[test]
    fn a_sync_group_goes_master_only_when_every_member_wants_to() {
        let (mut a, t0) = router(150, false, 2, 100, true);
        let (mut b, _) = router(150, false, 2, 100, true);
        let g = Groups::new(vec![vec![0, 1]]);
        a.start(t0);
        b.start(t0);
        let mut rs = [&mut a, &mut b];
        // member 1 still hears its master when member 0's timer runs out
        g.on_advert(
            &mut rs,
            1,
            Ipv4Addr::new(10, 0, 0, 2),
            &adv(200, 100),
            t0 + ms(3000),
        );
        assert!(g.on_timer(&mut rs, t0 + ms(3500)).is_empty());
        assert_eq!((rs[0].state, rs[1].state), (State::Backup, State::Backup));
        // once member 1's master is silent too, both go
        let out = g.on_timer(&mut rs, t0 + ms(6700));
        assert_eq!(
            (rs[0].state, rs[1].state),
            (State::Master, State::Master),
            "{out:?}"
        );
    }

    #[test]
    fn track_file_values_as_keepalived_reads_them() {
        assert_eq!(file_value("1\n"), 1);
        assert_eq!(file_value("  -7 apples"), -7);
        assert_eq!(file_value("x"), 0);
        assert_eq!(file_value(""), 0);
        // weight 0: non-zero means FAULT (zero when reversed)
        assert_eq!(file_delta(0, 0, false), Some(0));
        assert_eq!(file_delta(1, 0, false), None);
        assert_eq!(file_delta(0, 0, true), None);
        assert_eq!(file_delta(5, 0, true), Some(0));
        // otherwise value × weight, clamped; -254 is FAULT
        assert_eq!(file_delta(3, 10, false), Some(30));
        assert_eq!(file_delta(3, 10, true), Some(-30));
        assert_eq!(file_delta(100, 10, false), Some(253));
        assert_eq!(file_delta(-100, 10, false), None);
    }

    #[test]
    fn track_process_matching_and_delays() {
        let p = Proc {
            comm: "nginx".into(),
            argv: vec!["/usr/sbin/nginx".into(), "-g".into(), "daemon off;".into()],
        };
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(process_matches(&p, "nginx", None, ParamMatch::Exact, false));
        assert!(!process_matches(&p, "nginx", None, ParamMatch::Exact, true));
        assert!(process_matches(
            &p,
            "/usr/sbin/nginx",
            None,
            ParamMatch::Exact,
            true
        ));
        assert!(process_matches(
            &p,
            "nginx",
            Some(&v(&["-g", "daemon off;"])),
            ParamMatch::Exact,
            false
        ));
        assert!(!process_matches(
            &p,
            "nginx",
            Some(&v(&["-g"])),
            ParamMatch::Exact,
            false
        ));
        assert!(process_matches(
            &p,
            "nginx",
            Some(&v(&["-g"])),
            ParamMatch::Initial,
            false
        ));
        assert!(process_matches(
            &p,
            "nginx",
            Some(&v(&["daemon off;"])),
            ParamMatch::Partial,
            false
        ));
        let long = Proc {
            comm: "a-very-long-nam".into(),
            argv: vec![],
        };
        assert!(process_matches(
            &long,
            "a-very-long-name-indeed",
            None,
            ParamMatch::Exact,
            false
        ));
        // a change counts once it has lasted its delay
        let t0 = Instant::now();
        let d = (ms(500), ms(1000));
        let mut b = Debounce::new(true);
        assert!(!b.observe(false, d, t0));
        assert!(!b.observe(false, d, t0 + ms(999)));
        assert!(
            !b.observe(true, d, t0 + ms(999)),
            "back before the delay: no change"
        );
        assert!(!b.observe(false, d, t0 + ms(1000)));
        assert!(b.observe(false, d, t0 + ms(2000)));
        assert!(!b.ok);
        assert!(!b.observe(true, d, t0 + ms(2100)));
        assert!(b.observe(true, d, t0 + ms(2600)));
    }

    #[test]
    fn shutdown_fault_and_tracking() {
        let (mut r, t0) = router(100, true, 2, 100, true);
        r.start(t0);
        assert_eq!(
            r.shutdown(),
            vec![Action::Advertise(0), Action::Became(State::Init)]
        );
        let (mut r, t0) = router(100, true, 2, 100, true);
        r.start(t0);
        assert_eq!(
            r.set_fault(true, t0),
            vec![Action::Advertise(0), Action::Became(State::Fault)]
        );
        assert_eq!(r.set_fault(false, t0), vec![Action::Became(State::Backup)]);
        assert_eq!(effective_priority(150, &[(-60, false)]), Some(90));
        assert_eq!(
            effective_priority(150, &[(-60, true), (10, true)]),
            Some(160)
        );
        assert_eq!(effective_priority(250, &[(10, true)]), Some(254));
        assert_eq!(effective_priority(100, &[(0, false)]), None);
        assert_eq!(effective_priority(255, &[(-60, false)]), Some(255));
    }
}
