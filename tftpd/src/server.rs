//! The tokio adapter: listening sockets, one task per transfer, timers, files.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opsflow_common::ratelimit::RateLimit;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::fs::{OpenError, Root};
use crate::metrics::Metrics;
use crate::options::{self, Limits, Negotiated, HEADER_OVERHEAD};
use crate::packet::{self, ErrorCode, Mode, NetasciiDecoder, NetasciiEncoder, Packet, Request};
use crate::remap::{Mapped, Remap};
use crate::slots::{Caps, Refusal, Slots};
use crate::window::{Ack, Rto, SendWindow};

/// Server settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub root: PathBuf,
    pub allow_write: bool,
    /// Create files that do not exist (tftp-hpa's `-c`); without it a write needs an
    /// existing world-writable file.
    pub create: bool,
    /// Largest upload accepted, in bytes.
    pub max_upload: Option<u64>,
    pub remap: Option<Remap>,
    pub max_blksize: u16,
    pub max_window: u16,
    pub port_range: Option<(u16, u16)>,
    /// Retransmission timeout when the client negotiates none.
    pub timeout: Duration,
    /// Retransmissions of one packet before the transfer is abandoned.
    pub retries: u32,
    /// A transfer without progress for this long is abandoned, whatever `timeout` the
    /// client negotiated (which then only sets the retransmission interval).
    pub give_up: Duration,
    /// Transfers at once, in total and per client address.
    pub caps: Caps,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/srv/tftp"),
            allow_write: false,
            create: false,
            max_upload: None,
            remap: None,
            max_blksize: options::MAX_BLKSIZE,
            max_window: 64,
            port_range: None,
            timeout: Duration::from_secs(1),
            retries: 6,
            give_up: Duration::from_secs(30),
            caps: Caps {
                total: 0,
                per_client: 0,
            },
        }
    }
}

struct Shared {
    cfg: Config,
    root: Root,
    metrics: Arc<Metrics>,
    remap: std::sync::RwLock<Option<Arc<Remap>>>,
    slots: Arc<Slots>,
}

/// Refusals for lack of a slot come in floods: a few log lines, then a count.
static BUSY_LOG: RateLimit = RateLimit::new(5, Duration::from_secs(10));

/// A server bound to its root; cheap to clone.
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    /// Opens the root (it must exist) with the given settings.
    pub fn new(mut cfg: Config, metrics: Arc<Metrics>) -> anyhow::Result<Server> {
        let root = Root::open(&cfg.root).map_err(|e| {
            anyhow::anyhow!("cannot open the TFTP root {}: {e}", cfg.root.display())
        })?;
        let remap = cfg.remap.take().map(Arc::new);
        let slots = Slots::new(cfg.caps);
        Ok(Server {
            shared: Arc::new(Shared {
                cfg,
                root,
                metrics,
                remap: std::sync::RwLock::new(remap),
                slots,
            }),
        })
    }

    /// Replaces the remap rules (SIGHUP); transfers already running keep their name.
    pub fn set_remap(&self, remap: Option<Remap>) {
        if let Ok(mut r) = self.shared.remap.write() {
            *r = remap.map(Arc::new);
        }
    }

    /// Serves until `shutdown` resolves, then waits up to `grace` for running transfers.
    pub async fn run(
        &self,
        listeners: Vec<std::net::UdpSocket>,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
    ) -> anyhow::Result<()> {
        run(self.shared.clone(), listeners, shutdown, grace).await
    }
}

/// Binds a listening socket that reports each datagram's destination address, so replies
/// come from the address the request was sent to.
pub fn bind_listener(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv4() {
        setsockopt_int(&sock, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
    } else {
        setsockopt_int(&sock, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
    }
    sock.bind(&addr.into())?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

fn setsockopt_int(sock: &impl AsRawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: a valid socket and a pointer to an int of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// recvmsg with the IPv4/IPv6 packet-info control message: (length, peer, local address).
fn recv_pktinfo(fd: i32, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<IpAddr>)> {
    // SAFETY: all structures are zeroed plain C data with correct lengths; the kernel
    // writes at most the sizes we give it.
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut cbuf = [0u64; 16];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = &mut addr as *mut _ as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
        let n = libc::recvmsg(fd, &mut msg, 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let peer = match addr.ss_family as i32 {
            libc::AF_INET => {
                let a = &*(&addr as *const _ as *const libc::sockaddr_in);
                SocketAddr::from((
                    u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                    u16::from_be(a.sin_port),
                ))
            }
            libc::AF_INET6 => {
                let a = &*(&addr as *const _ as *const libc::sockaddr_in6);
                SocketAddr::from((a.sin6_addr.s6_addr, u16::from_be(a.sin6_port)))
            }
            _ => return Err(io::Error::from(io::ErrorKind::InvalidData)),
        };
        let mut local = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_PKTINFO {
                let info = &*(libc::CMSG_DATA(cmsg) as *const libc::in_pktinfo);
                local = Some(IpAddr::from(
                    u32::from_be(info.ipi_addr.s_addr).to_be_bytes(),
                ));
            } else if c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_PKTINFO {
                let info = &*(libc::CMSG_DATA(cmsg) as *const libc::in6_pktinfo);
                local = Some(IpAddr::from(info.ipi6_addr.s6_addr));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Ok((n as usize, peer, local))
    }
}

async fn run(
    shared: Arc<Shared>,
    listeners: Vec<std::net::UdpSocket>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for l in listeners {
        let sock = UdpSocket::from_std(l)?;
        info!(listen = %sock.local_addr()?, root = %shared.root.path().display(), "tftpd ready");
        let shared = shared.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let got = tokio::select! {
                    r = sock.async_io(Interest::READABLE, || recv_pktinfo(sock.as_raw_fd(), &mut buf)) => r,
                    _ = stop.changed() => break,
                };
                match got {
                    Ok((n, peer, local)) => on_request(&shared, &sock, &buf[..n], peer, local),
                    Err(e) => warn!(error = %e, "receive failed on the listening socket"),
                }
            }
        }));
    }
    shutdown.await;
    info!("shutting down: no new transfers");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let end = Instant::now() + grace;
    while shared.metrics.active() > 0 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn on_request(
    shared: &Arc<Shared>,
    listener: &UdpSocket,
    buf: &[u8],
    peer: SocketAddr,
    local: Option<IpAddr>,
) {
    let req = match packet::parse(buf) {
        Ok(Packet::Request(r)) => r,
        Ok(_) => {
            shared.metrics.dropped("not_a_request");
            debug!(%peer, "dropped a non-request packet on the listening port");
            return;
        }
        Err(e) => {
            shared.metrics.dropped(e.reason());
            debug!(%peer, error = %e, "dropped a malformed packet");
            return;
        }
    };
    let slot = match shared.slots.try_take(peer.ip()) {
        Ok(slot) => slot,
        Err(refusal) => return refuse_busy(shared, peer, local, refusal),
    };
    let sock = match bound_socket(&shared.cfg, peer, local) {
        Ok(sock) => sock,
        Err(e) => return refuse_no_socket(shared, listener, peer, e),
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let _slot = slot;
        shared.metrics.start(req.write);
        let _guard = shared.metrics.active_guard();
        let started = Instant::now();
        let file = req.filename.clone();
        let result = match UdpSocket::from_std(sock.into()) {
            Ok(sock) => transfer(&shared, req.clone(), peer, sock).await,
            Err(e) => Err(Fail::from(e)),
        };
        match result {
            Ok(Done { bytes, retransmits }) => {
                shared.metrics.complete(req.write);
                let secs = started.elapsed().as_secs_f64();
                info!(%peer, file = %file, write = req.write, bytes, retransmits,
                      secs = format!("{secs:.3}"), "transfer complete");
            }
            Err(e) => {
                shared.metrics.fail(req.write);
                match e {
                    Fail::Refused(reason) => warn!(%peer, file = %file, reason, "request refused"),
                    Fail::Client(msg) => {
                        info!(%peer, file = %file, msg, "client ended the transfer")
                    }
                    Fail::Timeout => {
                        warn!(%peer, file = %file, "transfer abandoned: client stopped answering")
                    }
                    Fail::Io(e) => warn!(%peer, file = %file, error = %e, "transfer failed"),
                }
            }
        }
    });
}

/// Answers a request that found no free slot with an ERROR at once, from the address it was
/// sent to, so the client stops asking instead of waiting for a timeout.
fn refuse_busy(shared: &Shared, peer: SocketAddr, local: Option<IpAddr>, refusal: Refusal) {
    shared.metrics.dropped(match refusal {
        Refusal::Busy { .. } => "busy",
        Refusal::ClientBusy { .. } => "client_busy",
    });
    let sent = bound_socket(&shared.cfg, peer, local)
        .and_then(|sock| sock.send(&packet::error(ErrorCode::NotDefined, &refusal.to_string())));
    if let Some(suppressed) = BUSY_LOG.check() {
        match sent {
            Ok(_) => {
                warn!(%peer, suppressed, running = shared.slots.running(), "request refused: {refusal}")
            }
            Err(e) => {
                warn!(%peer, suppressed, error = %e, "request refused ({refusal}); the ERROR could not be sent")
            }
        }
    }
}

/// No socket for the transfer (every port of `--port-range` in use, or no descriptors
/// left): the ERROR goes out from the listening socket, the only one there is.
fn refuse_no_socket(shared: &Shared, listener: &UdpSocket, peer: SocketAddr, e: io::Error) {
    shared.metrics.dropped("no_socket");
    let text = if e.kind() == io::ErrorKind::AddrInUse {
        "server busy: no free port for the transfer; try again later"
    } else {
        "server busy: cannot open a socket for the transfer; try again later"
    };
    let _ = socket2::SockRef::from(listener)
        .send_to(&packet::error(ErrorCode::NotDefined, text), &peer.into());
    if let Some(suppressed) = BUSY_LOG.check() {
        warn!(%peer, suppressed, error = %e, "request refused: no socket for the transfer");
    }
}

struct Done {
    bytes: u64,
    retransmits: u64,
}

enum Fail {
    Refused(String),
    Client(String),
    Timeout,
    Io(io::Error),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        if e.raw_os_error() == Some(libc::ECONNREFUSED) {
            Fail::Client("the client's port is closed (ICMP unreachable)".into())
        } else {
            Fail::Io(e)
        }
    }
}

/// Sends one packet. A local drop (a firewall rule answers EPERM, a full queue ENOBUFS) is
/// the same as a loss on the wire: the retransmission timer covers it. Other errors end the
/// transfer (ECONNREFUSED means the client has gone).
async fn xmit(sock: &UdpSocket, pkt: &[u8]) -> io::Result<()> {
    match sock.send(pkt).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::ENOBUFS)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn too_large(max: u64) -> String {
    format!("the file is larger than this server's upload limit of {max} bytes")
}

/// Sends an ERROR packet, best effort.
async fn refuse(sock: &UdpSocket, code: ErrorCode, msg: &str) {
    let _ = xmit(sock, &packet::error(code, msg)).await;
}

/// A socket for one transfer: bound to the address the request came in on (a port from
/// `--port-range` or any), connected to the client, non-blocking.
fn bound_socket(cfg: &Config, peer: SocketAddr, local: Option<IpAddr>) -> io::Result<Socket> {
    let ip = local.unwrap_or(match peer {
        SocketAddr::V4(_) => IpAddr::from([0, 0, 0, 0]),
        SocketAddr::V6(_) => IpAddr::from([0u16; 8]),
    });
    let sock = Socket::new(Domain::for_address(peer), Type::DGRAM, Some(Protocol::UDP))?;
    match cfg.port_range {
        None => sock.bind(&SocketAddr::new(ip, 0).into())?,
        Some((lo, hi)) => {
            let span = (hi - lo) as u32 + 1;
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let start = (std::process::id() ^ nanos) % span;
            let mut bound = false;
            for i in 0..span {
                let port = lo + ((start + i) % span) as u16;
                if sock.bind(&SocketAddr::new(ip, port).into()).is_ok() {
                    bound = true;
                    break;
                }
            }
            if !bound {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "every port of --port-range is in use",
                ));
            }
        }
    }
    sock.connect(&peer.into())?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// The path MTU towards the connected peer (IP_MTU), or 1500 if unknown.
fn path_mtu(sock: &UdpSocket, peer: SocketAddr) -> usize {
    let (level, name) = if peer.is_ipv4() {
        (libc::IPPROTO_IP, libc::IP_MTU)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU)
    };
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: valid socket; v and len are sized for an int.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            name,
            &mut v as *mut i32 as *mut libc::c_void,
            &mut len,
        )
    };
    if rc == 0 && v > 0 {
        v as usize
    } else {
        1500
    }
}

async fn transfer(
    shared: &Shared,
    req: Request,
    peer: SocketAddr,
    sock: UdpSocket,
) -> Result<Done, Fail> {
    let cfg = &shared.cfg;
    if req.write && !cfg.allow_write {
        refuse(
            &sock,
            ErrorCode::AccessViolation,
            "writes are disabled on this server",
        )
        .await;
        return Err(Fail::Refused(
            "write request while --allow-write is off".into(),
        ));
    }
    let remap = shared.remap.read().ok().and_then(|r| r.clone());
    let mapped = match remap {
        Some(r) => match r.apply(&req.filename, req.write, peer.ip()) {
            Mapped::Name(n) => Ok(n),
            Mapped::Refused(line) => Err(format!("refused by remap rule on line {line}")),
            Mapped::TooLong(line) => Err(format!(
                "remap rule on line {line} made the name longer than {} bytes",
                crate::remap::MAX_NAME
            )),
        },
        None => Ok(req.filename.clone()),
    };
    let name = match mapped {
        Ok(n) => n,
        Err(why) => {
            refuse(&sock, ErrorCode::AccessViolation, "access violation").await;
            return Err(Fail::Refused(why));
        }
    };
    let mtu = path_mtu(&sock, peer);
    let extra = if peer.is_ipv6() { 20 } else { 0 };
    let limits = Limits {
        max_blksize: cfg
            .max_blksize
            .min((mtu.saturating_sub(HEADER_OVERHEAD + extra)).max(8) as u16),
        max_window: cfg.max_window,
        default_timeout: cfg.timeout,
    };
    let fail_open = |e: OpenError| {
        let (code, text, fail) = match e {
            OpenError::NotFound => (
                ErrorCode::FileNotFound,
                "file not found",
                Fail::Refused(format!("file not found (as {name})")),
            ),
            OpenError::Denied(why) => (
                ErrorCode::AccessViolation,
                "access violation",
                Fail::Refused(format!("access violation: {why} (as {name})")),
            ),
            OpenError::Io(e) => (ErrorCode::NotDefined, "cannot open the file", Fail::Io(e)),
        };
        (packet::error(code, text), fail)
    };
    if req.write {
        let neg = options::negotiate(&req.options, true, None, limits);
        if let (Some(max), Some(size)) = (cfg.max_upload, neg.tsize) {
            if size > max {
                refuse(&sock, ErrorCode::DiskFull, &too_large(max)).await;
                return Err(Fail::Refused(format!(
                    "upload of {size} bytes is over --max-upload-size {max} (as {name})"
                )));
            }
        }
        let upload = match shared.root.create(&name, cfg.create) {
            Ok(u) => u,
            Err(OpenError::NotFound) if !cfg.create => {
                refuse(&sock, ErrorCode::FileNotFound, "file not found").await;
                return Err(Fail::Refused(format!(
                    "write to a missing file while --create is off (as {name})"
                )));
            }
            Err(e) => {
                let (pkt, fail) = fail_open(e);
                xmit(&sock, &pkt).await?;
                return Err(fail);
            }
        };
        debug!(%peer, file = %name, ?neg, "write request");
        receive(shared, &sock, upload, req.mode, neg).await
    } else {
        let (file, size) = match shared.root.open_read(&name) {
            Ok(f) => f,
            Err(e) => {
                let (pkt, fail) = fail_open(e);
                xmit(&sock, &pkt).await?;
                return Err(fail);
            }
        };
        let announce = (req.mode == Mode::Octet).then_some(size);
        let neg = options::negotiate(&req.options, false, announce, limits);
        debug!(%peer, file = %name, size, ?neg, "read request");
        send(shared, &sock, file, req.mode, neg).await
    }
}

/// Reads the file block by block (positional reads for octet, a stream for netascii).
struct Source {
    file: std::fs::File,
    pos: u64,
    netascii: Option<(NetasciiEncoder, Vec<u8>, usize, bool)>,
}

impl Source {
    fn fill(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match &mut self.netascii {
            None => {
                let mut n = 0;
                while n < out.len() {
                    let r = self.file.read_at(&mut out[n..], self.pos)?;
                    if r == 0 {
                        break;
                    }
                    n += r;
                    self.pos += r as u64;
                }
                Ok(n)
            }
            Some((enc, inbuf, off, eof)) => {
                let mut n = 0;
                while n < out.len() {
                    if *off == inbuf.len() && !*eof && !enc.has_pending() {
                        inbuf.resize(16384, 0);
                        let r = self.file.read(inbuf)?;
                        inbuf.truncate(r);
                        *off = 0;
                        if r == 0 {
                            *eof = true;
                        }
                    }
                    let (used, wrote) = enc.encode(&inbuf[*off..], &mut out[n..]);
                    *off += used;
                    n += wrote;
                    if wrote == 0 && *eof {
                        break;
                    }
                }
                Ok(n)
            }
        }
    }
}

/// Sends the OACK until the client answers: for a read, with ACK 0; for a write, with
/// DATA 1 (its length is returned for the caller to handle). Returns (length, resends,
/// round trip of an answered first attempt).
async fn send_oack(
    sock: &UdpSocket,
    neg: &Negotiated,
    rto: &mut Rto,
    give_up: Duration,
    buf: &mut [u8],
    expect_ack: bool,
) -> Result<(usize, u64), Fail> {
    let pkt = packet::oack(&neg.oack);
    let mut resent = 0u64;
    let start = Instant::now();
    loop {
        let sent_at = Instant::now();
        xmit(sock, &pkt).await?;
        let deadline = (tokio::time::Instant::now() + rto.current())
            .min(tokio::time::Instant::from_std(start + give_up));
        loop {
            let n = match tokio::time::timeout_at(deadline, sock.recv(buf)).await {
                Err(_) => break,
                Ok(r) => r?,
            };
            let answered = match packet::parse(&buf[..n]) {
                Ok(Packet::Ack { block: 0 }) if expect_ack => true,
                Ok(Packet::Data { block: 1, .. }) if !expect_ack => true,
                Ok(Packet::Error { code, message }) => {
                    return Err(Fail::Client(format!("error {code} after OACK: {message}")))
                }
                _ => false,
            };
            if answered {
                if resent == 0 {
                    rto.sample(sent_at.elapsed());
                }
                return Ok((n, resent));
            }
        }
        if start.elapsed() >= give_up {
            refuse(sock, ErrorCode::NotDefined, "timeout").await;
            return Err(Fail::Timeout);
        }
        rto.backoff();
        resent += 1;
    }
}

/// How long a transfer may go without progress: the client's timeout times our retries,
/// but never more than the server's `--give-up`.
fn give_up(cfg: &Config, neg: &Negotiated) -> Duration {
    (neg.timeout * cfg.retries.max(1)).min(cfg.give_up)
}

/// Shortest retransmission timeout: below this, scheduling noise looks like loss.
const MIN_RTO: Duration = Duration::from_millis(20);

struct Sent {
    pkt: Vec<u8>,
    at: Instant,
    resent: bool,
}

/// Sends every unacknowledged block again; returns how many.
async fn resend(
    sock: &UdpSocket,
    ring: &mut std::collections::VecDeque<Sent>,
    metrics: &Metrics,
) -> io::Result<u64> {
    for s in ring.iter_mut() {
        xmit(sock, &s.pkt).await?;
        s.resent = true;
    }
    metrics.retransmits(ring.len() as u64);
    Ok(ring.len() as u64)
}

async fn send(
    shared: &Shared,
    sock: &UdpSocket,
    file: std::fs::File,
    mode: Mode,
    neg: Negotiated,
) -> Result<Done, Fail> {
    let metrics = &shared.metrics;
    // without progress for this long, the client is gone
    let give_up = give_up(&shared.cfg, &neg);
    let mut rto = Rto::new(
        neg.timeout.min(Duration::from_secs(1)),
        MIN_RTO,
        neg.timeout,
    );
    let mut rbuf = vec![0u8; 1024];
    let mut retransmits = 0u64;
    if !neg.oack.is_empty() {
        let (_, r) = send_oack(sock, &neg, &mut rto, give_up, &mut rbuf, true).await?;
        retransmits += r;
    }
    let mut src = Source {
        file,
        pos: 0,
        netascii: (mode == Mode::Netascii)
            .then(|| (NetasciiEncoder::default(), Vec::new(), 0, false)),
    };
    let blksize = neg.blksize;
    let mut win = SendWindow::new(neg.window);
    let mut ring: std::collections::VecDeque<Sent> = std::collections::VecDeque::new();
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0u64;
    let mut progress = Instant::now();
    let mut deadline = tokio::time::Instant::now() + rto.current();
    loop {
        let mut sent_new = false;
        while win.can_send() {
            let mut pkt = spare.pop().unwrap_or_default();
            pkt.resize(4 + blksize, 0);
            let n = src.fill(&mut pkt[4..])?;
            pkt.truncate(4 + n);
            let block = win.sent(n < blksize);
            packet::put_data_header(&mut pkt, block);
            xmit(sock, &pkt).await?;
            bytes += n as u64;
            metrics.sent_bytes(n as u64);
            ring.push_back(Sent {
                pkt,
                at: Instant::now(),
                resent: false,
            });
            sent_new = true;
        }
        if sent_new {
            deadline = tokio::time::Instant::now() + rto.current();
        }
        let limit = tokio::time::Instant::from_std(progress + give_up);
        match tokio::time::timeout_at(deadline.min(limit), sock.recv(&mut rbuf)).await {
            Ok(r) => {
                let n = r?;
                match packet::parse(&rbuf[..n]) {
                    Ok(Packet::Ack { block }) => match win.on_ack(block) {
                        Ack::Ignored => {}
                        Ack::Done => return Ok(Done { bytes, retransmits }),
                        Ack::Advanced { n, lost } => {
                            progress = Instant::now();
                            let mut newest = None;
                            for _ in 0..n {
                                if let Some(s) = ring.pop_front() {
                                    newest = Some((s.at, s.resent));
                                    spare.push(s.pkt);
                                }
                            }
                            if let Some((at, false)) = newest {
                                rto.sample(at.elapsed());
                            }
                            if lost {
                                retransmits += resend(sock, &mut ring, metrics).await?;
                            }
                            deadline = tokio::time::Instant::now() + rto.current();
                        }
                    },
                    Ok(Packet::Error { code, message }) => {
                        return Err(Fail::Client(format!("error {code}: {message}")))
                    }
                    Ok(_) => metrics.dropped("unexpected_opcode"),
                    Err(e) => metrics.dropped(e.reason()),
                }
            }
            Err(_) => {
                if progress.elapsed() >= give_up {
                    refuse(sock, ErrorCode::NotDefined, "timeout").await;
                    return Err(Fail::Timeout);
                }
                rto.backoff();
                retransmits += resend(sock, &mut ring, metrics).await?;
                deadline = tokio::time::Instant::now() + rto.current();
            }
        }
    }
}

async fn receive(
    shared: &Shared,
    sock: &UdpSocket,
    mut upload: crate::fs::Upload,
    mode: Mode,
    neg: Negotiated,
) -> Result<Done, Fail> {
    let metrics = &shared.metrics;
    let retries = shared.cfg.retries;
    let give_up = give_up(&shared.cfg, &neg);
    let blksize = neg.blksize;
    let mut buf = vec![0u8; blksize + 4 + 1];
    let mut decoder = (mode == Mode::Netascii).then(NetasciiDecoder::default);
    let mut plain = Vec::new();
    let mut expected: u64 = 1;
    let mut since_ack: u16 = 0;
    let mut bytes = 0u64;
    let mut retransmits = 0u64;
    let mut tries = 0u32;
    let mut progress = Instant::now();
    // the first DATA may already be here (answer to our OACK)
    let mut pending: Option<usize> = None;
    if neg.oack.is_empty() {
        xmit(sock, &packet::ack(0)).await?;
    } else {
        let mut rto = Rto::new(neg.timeout, neg.timeout, neg.timeout);
        let (n, r) = send_oack(sock, &neg, &mut rto, give_up, &mut buf, false).await?;
        retransmits += r;
        pending = Some(n);
    }
    loop {
        let n = match pending.take() {
            Some(n) => n,
            None => match tokio::time::timeout(neg.timeout.min(give_up), sock.recv(&mut buf)).await
            {
                Ok(r) => r?,
                Err(_) => {
                    tries += 1;
                    if tries > retries || progress.elapsed() >= give_up {
                        refuse(sock, ErrorCode::NotDefined, "timeout").await;
                        return Err(Fail::Timeout);
                    }
                    xmit(sock, &packet::ack((expected - 1) as u16)).await?;
                    retransmits += 1;
                    metrics.retransmits(1);
                    continue;
                }
            },
        };
        match packet::parse(&buf[..n]) {
            Ok(Packet::Data { block, data }) if block == expected as u16 => {
                if data.len() > blksize {
                    refuse(sock, ErrorCode::IllegalOperation, "block too large").await;
                    return Err(Fail::Client("sent a block larger than negotiated".into()));
                }
                if let Some(max) = shared.cfg.max_upload {
                    if bytes + data.len() as u64 > max {
                        refuse(sock, ErrorCode::DiskFull, &too_large(max)).await;
                        return Err(Fail::Refused(format!(
                            "upload passed --max-upload-size {max} after {bytes} bytes"
                        )));
                    }
                }
                tries = 0;
                progress = Instant::now();
                let last = data.len() < blksize;
                match &mut decoder {
                    Some(d) => {
                        plain.clear();
                        d.decode(data, &mut plain);
                        if last {
                            d.finish(&mut plain);
                        }
                        upload.file().write_all(&plain)?;
                    }
                    None => upload.file().write_all(data)?,
                }
                bytes += data.len() as u64;
                metrics.received_bytes(data.len() as u64);
                expected += 1;
                since_ack += 1;
                if last {
                    upload.commit()?;
                    let final_ack = packet::ack(block);
                    xmit(sock, &final_ack).await?;
                    // dally: if our last ACK is lost the client sends the block again
                    let dally = tokio::time::Instant::now() + (neg.timeout * 2).min(give_up);
                    while let Ok(Ok(n)) = tokio::time::timeout_at(dally, sock.recv(&mut buf)).await
                    {
                        if matches!(packet::parse(&buf[..n]), Ok(Packet::Data { block: b, .. }) if b == block)
                        {
                            xmit(sock, &final_ack).await?;
                        }
                    }
                    return Ok(Done { bytes, retransmits });
                }
                if since_ack >= neg.window {
                    xmit(sock, &packet::ack(block)).await?;
                    since_ack = 0;
                }
            }
            Ok(Packet::Data { .. }) => {
                // out of order or a duplicate: acknowledge the last block in order
                xmit(sock, &packet::ack((expected - 1) as u16)).await?;
                since_ack = 0;
            }
            Ok(Packet::Error { code, message }) => {
                return Err(Fail::Client(format!("error {code}: {message}")))
            }
            Ok(_) => metrics.dropped("unexpected_opcode"),
            Err(e) => metrics.dropped(e.reason()),
        }
    }
}
