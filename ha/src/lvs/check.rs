//! Health checkers: HTTP_GET, SSL_GET, TCP_CHECK, SMTP_CHECK, MISC_CHECK, FILE_CHECK, PING_CHECK,
//! UDP_CHECK, DNS_CHECK, and the
//! page digest `ha genhash` prints. Every network step has a deadline (`connect_timeout`), so
//! a hung server costs its own checker that long and nothing else.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

use crate::conf::lvs::{CheckKind, Checker};

/// Largest page a checker reads (keepalived reads the whole page for its digest too).
const MAX_BODY: usize = 16 << 20;

/// The result of one check: healthy (with a weight from `misc_dynamic`), or why not.
pub type Outcome = Result<Option<u32>, String>;

async fn connect(
    addr: IpAddr,
    port: u16,
    bind: Option<(IpAddr, u16)>,
    limit: Duration,
) -> Result<TcpStream, String> {
    let to = SocketAddr::new(addr, port);
    let sock = match addr {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let Some((a, p)) = bind {
        let from = SocketAddr::new(a, p);
        sock.bind(from).map_err(|e| format!("bind {from}: {e}"))?;
    }
    match timeout(limit, sock.connect(to)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("connect {to}: {e}")),
        Err(_) => Err(format!("connect {to}: no answer within {limit:?}")),
    }
}

/// A local UDP socket of `addr`'s family (bound to `bind` if given), connected to
/// `addr:port`; `what` names the check in errors.
async fn udp_socket(
    what: &str,
    addr: IpAddr,
    port: u16,
    bind: Option<IpAddr>,
) -> Result<tokio::net::UdpSocket, String> {
    let any = match addr {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let local = SocketAddr::new(bind.unwrap_or(any), 0);
    let to = SocketAddr::new(addr, port);
    let sock = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|e| format!("{what} bind {local}: {e}"))?;
    sock.connect(to)
        .await
        .map_err(|e| format!("{what} {to}: {e}"))?;
    Ok(sock)
}

/// Accepts any certificate, as keepalived's SSL_GET does: the check is about the service
/// answering, and the digest pins the content.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONNECTOR: std::sync::OnceLock<tokio_rustls::TlsConnector> = std::sync::OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.dangerous()
                        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
                        .with_no_client_auth()
                });
            match cfg {
                Ok(c) => tokio_rustls::TlsConnector::from(Arc::new(c)),
                // the ring provider always supports the default versions
                Err(_) => tokio_rustls::TlsConnector::from(Arc::new(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                )),
            }
        })
        .clone()
}

/// An HTTP response: status, headers, body.
pub struct Page {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    req: &[u8],
) -> Result<Vec<u8>, String> {
    s.write_all(req).await.map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_BODY {
                    return Err(format!("page larger than {MAX_BODY} bytes"));
                }
            }
            // a TLS server that closes without close_notify still sent the whole page
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(raw)
}

fn parse_page(raw: &[u8]) -> Result<Page, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete HTTP header in the answer")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP status line: {:?}",
                head.lines().next().unwrap_or("")
            )
        })?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked")
    {
        body = dechunk(&body).ok_or("bad chunked encoding")?;
    }
    Ok(Page { status, head, body })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..nl]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[nl + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// GET `path` over HTTP/1.0 (as keepalived does, so no chunking), optionally over TLS.
pub async fn fetch(
    addr: IpAddr,
    port: u16,
    path: &str,
    vhost: Option<&str>,
    ssl: bool,
    bind: Option<(IpAddr, u16)>,
    limit: Duration,
) -> Result<Page, String> {
    let stream = connect(addr, port, bind, limit).await?;
    // `[2001:db8::10]:80` for IPv6, as a Host header writes it
    let at = SocketAddr::new(addr, port);
    let host = vhost.map_or_else(|| at.to_string(), str::to_string);
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: ha-checker/{}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let raw = if ssl {
        let name = match vhost {
            Some(h) => rustls::pki_types::ServerName::try_from(h.to_string())
                .map_err(|e| format!("virtualhost {h:?}: {e}"))?,
            None => rustls::pki_types::ServerName::IpAddress(addr.into()),
        };
        let tls = timeout(limit, tls_connector().connect(name, stream))
            .await
            .map_err(|_| format!("TLS handshake with {at}: no answer within {limit:?}"))?
            .map_err(|e| format!("TLS handshake with {at}: {e}"))?;
        timeout(limit, exchange(tls, req.as_bytes())).await
    } else {
        timeout(limit, exchange(stream, req.as_bytes())).await
    }
    .map_err(|_| format!("{at}{path}: no complete answer within {limit:?}"))??;
    parse_page(&raw)
}

/// Hex MD5, as genhash prints and `digest` expects.
pub fn md5_hex(b: &[u8]) -> String {
    Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

async fn smtp(stream: TcpStream, helo: &str) -> Result<(), String> {
    let mut r = BufReader::new(stream);
    async fn reply<S: AsyncRead + Unpin>(r: &mut BufReader<S>) -> Result<String, String> {
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
                return Err("connection closed".into());
            }
            // "250-..." continues, "250 ..." is the last line
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(line.trim_end().to_string());
            }
        }
    }
    let banner = reply(&mut r).await?;
    if !banner.starts_with("220") {
        return Err(format!("banner {banner:?}, expected 220"));
    }
    r.get_mut()
        .write_all(format!("HELO {helo}\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let ans = reply(&mut r).await?;
    if !ans.starts_with("250") {
        return Err(format!("HELO answered {ans:?}, expected 250"));
    }
    let _ = r.get_mut().write_all(b"QUIT\r\n").await;
    Ok(())
}

/// keepalived's UDP_CHECK: a connected socket sends the payload; an ICMP port unreachable
/// (ECONNREFUSED) is down; with `require_reply` a reply (starting with the given bytes) must
/// arrive within `limit`, without it silence is up.
async fn udp(
    addr: IpAddr,
    port: u16,
    bind: Option<IpAddr>,
    payload: &[u8],
    require_reply: Option<&[u8]>,
    limit: Duration,
) -> Result<(), String> {
    let sock = udp_socket("udp", addr, port, bind).await?;
    let at = SocketAddr::new(addr, port);
    sock.send(payload)
        .await
        .map_err(|e| format!("udp {at}: {e}"))?;
    let mut buf = vec![0u8; 65536];
    match timeout(limit, sock.recv(&mut buf)).await {
        Ok(Ok(n)) => match require_reply {
            Some(want) if !buf[..n].starts_with(want) => Err(format!(
                "udp {at}: the reply does not start with the required bytes"
            )),
            _ => Ok(()),
        },
        Ok(Err(e)) => Err(format!("udp {at}: {e}")),
        Err(_) if require_reply.is_some() => Err(format!("udp {at}: no reply within {limit:?}")),
        Err(_) => Ok(()),
    }
}

/// The query keepalived's DNS_CHECK sends: recursion desired, one question of `qtype`,
/// class IN, for `name`.
pub fn dns_query(id: u16, qtype: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let l = &label.as_bytes()[..label.len().min(63)];
        q.push(l.len() as u8);
        q.extend_from_slice(l);
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// DNS_CHECK: healthy when an answer with our id, QR set and RCODE 0 arrives in time.
async fn dns(
    addr: IpAddr,
    port: u16,
    bind: Option<IpAddr>,
    qtype: u16,
    name: &str,
    limit: Duration,
) -> Result<(), String> {
    static ID: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0x4841);
    let id = ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let sock = udp_socket("dns", addr, port, bind).await?;
    let at = SocketAddr::new(addr, port);
    sock.send(&dns_query(id, qtype, name))
        .await
        .map_err(|e| format!("dns {at}: {e}"))?;
    let wait = async {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = sock
                .recv(&mut buf)
                .await
                .map_err(|e| format!("dns {at}: {e}"))?;
            // keepalived skips what is not an answer to this query and waits on
            if n < 12 || buf[..2] != id.to_be_bytes() || buf[2] & 0x80 == 0 {
                continue;
            }
            return match buf[3] & 0x0f {
                0 => Ok(()),
                rc => Err(format!("dns {at}: {name} answered with rcode {rc}")),
            };
        }
    };
    timeout(limit, wait)
        .await
        .map_err(|_| format!("dns {at}: no answer within {limit:?}"))?
}

fn icmp_sum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One ICMP (ICMPv6 for an IPv6 address) echo to `addr`, answered within `limit`. An
/// unprivileged ICMP datagram socket when `net.ipv4.ping_group_range` allows it, else a raw
/// socket (root). Blocking: run it on a blocking thread.
pub fn ping(addr: IpAddr, bind: Option<IpAddr>, limit: Duration) -> Result<(), String> {
    use socket2::{Domain, Protocol, Socket, Type};
    static SEQ: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let v6 = addr.is_ipv6();
    // ICMPv6: echo request 128, reply 129, checksum filled in by the kernel
    let (domain, proto, request, reply) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6, 128, 129)
    } else {
        (Domain::IPV4, Protocol::ICMPV4, 8, 0)
    };
    let (sock, raw) = match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => (s, false),
        Err(_) => (
            Socket::new(domain, Type::RAW, Some(proto))
                .map_err(|e| format!("ICMP socket: {e} (needs root or ping_group_range)"))?,
            true,
        ),
    };
    if let Some(b) = bind {
        sock.bind(&SocketAddr::new(b, 0).into())
            .map_err(|e| format!("bind {b}: {e}"))?;
    }
    let id = (std::process::id() as u16).to_be_bytes();
    let seq = SEQ
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .to_be_bytes();
    let mut pkt = vec![request, 0, 0, 0, id[0], id[1], seq[0], seq[1]];
    pkt.extend_from_slice(b"ha PING_CHECK");
    if !v6 {
        let sum = icmp_sum(&pkt).to_be_bytes();
        pkt[2..4].copy_from_slice(&sum);
    }
    sock.send_to(&pkt, &SocketAddr::new(addr, 0).into())
        .map_err(|e| format!("ping {addr}: {e}"))?;
    let deadline = std::time::Instant::now() + limit;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(format!("ping {addr}: no echo reply within {limit:?}"));
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| format!("ping {addr}: {e}"))?;
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("ping {addr}: no echo reply within {limit:?}"))
            }
            // a signal (a reload's SIGHUP) that reached this thread: a read with SO_RCVTIMEO
            // is not restarted; it is no failed check, so wait out the rest of the limit
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("ping {addr}: {e}")),
        };
        // SAFETY: recv_from initialised the first n bytes.
        let data: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        // a raw IPv4 socket hands over the IP header too; IPv6 sockets never do
        let icmp = if raw && !v6 {
            let ihl = usize::from(data.first().copied().unwrap_or(0) & 0x0f) * 4;
            data.get(ihl..).unwrap_or(&[])
        } else {
            &data[..]
        };
        let from_ok = from.as_socket().is_some_and(|f| f.ip() == addr);
        // a datagram socket's id is the kernel's, so only the sequence is ours to match
        if from_ok
            && icmp.len() >= 8
            && icmp[0] == reply
            && icmp[6..8] == seq
            && (!raw || icmp[4..6] == id)
        {
            return Ok(());
        }
    }
}

/// One attempt of one checker against a real server.
pub async fn check_once(c: &Checker, rs_addr: IpAddr, rs_port: u16, delay_loop: f64) -> Outcome {
    let addr = c.connect_ip.unwrap_or(rs_addr);
    let port = c.connect_port.unwrap_or(rs_port);
    let bind = c.bindto.map(|a| (a, c.bind_port.unwrap_or(0)));
    let limit = Duration::from_secs_f64(c.connect_timeout.max(0.01));
    match &c.kind {
        CheckKind::Tcp => connect(addr, port, bind, limit).await.map(|_| None),
        CheckKind::Udp {
            payload,
            require_reply,
        } => udp(
            addr,
            port,
            c.bindto,
            payload,
            require_reply.as_deref(),
            limit,
        )
        .await
        .map(|()| None),
        CheckKind::Dns { qtype, name } => dns(addr, port, c.bindto, *qtype, name, limit)
            .await
            .map(|()| None),
        CheckKind::Ping => {
            let from = c.bindto;
            tokio::task::spawn_blocking(move || ping(addr, from, limit))
                .await
                .map_err(|e| format!("ping task failed: {e}"))?
                .map(|()| None)
        }
        CheckKind::Http {
            ssl,
            urls,
            virtualhost,
        } => {
            for u in urls {
                let page = fetch(
                    addr,
                    port,
                    &u.path,
                    virtualhost.as_deref(),
                    *ssl,
                    bind,
                    limit,
                )
                .await?;
                let want = |(lo, hi): &(u16, u16)| (*lo..=*hi).contains(&page.status);
                if u.status_code.is_empty() && !(200..300).contains(&page.status) {
                    return Err(format!("{}: status {}", u.path, page.status));
                }
                if !u.status_code.is_empty() && !u.status_code.iter().any(want) {
                    let expected: Vec<String> = u
                        .status_code
                        .iter()
                        .map(|(a, b)| {
                            if a == b {
                                a.to_string()
                            } else {
                                format!("{a}-{b}")
                            }
                        })
                        .collect();
                    return Err(format!(
                        "{}: status {} (expected {})",
                        u.path,
                        page.status,
                        expected.join(" ")
                    ));
                }
                if let Some(d) = &u.digest {
                    let got = md5_hex(&page.body);
                    if &got != d {
                        return Err(format!("{}: digest {got}, expected {d}", u.path));
                    }
                }
            }
            Ok(None)
        }
        CheckKind::Smtp { helo } => {
            let s = connect(addr, port, bind, limit).await?;
            timeout(limit, smtp(s, helo))
                .await
                .map_err(|_| {
                    format!(
                        "SMTP {}: no answer within {limit:?}",
                        SocketAddr::new(addr, port)
                    )
                })?
                .map_err(|e| format!("SMTP {}: {e}", SocketAddr::new(addr, port)))
                .map(|()| None)
        }
        CheckKind::Misc {
            path,
            timeout: t,
            dynamic,
            user,
        } => {
            let limit = Duration::from_secs_f64(t.unwrap_or(delay_loop).max(0.1));
            // a script keepalived would disable fails the check: never fail open
            let run = crate::script::current()
                .prepare(path, user.as_deref())
                .map_err(|e| format!("MISC_CHECK script disabled: {e}"))?;
            let mut cmd = run.command(&[]);
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let status = match timeout(limit, cmd.status()).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(format!("cannot run {path}: {e}")),
                Err(_) => return Err(format!("{path} still running after {limit:?}; killed")),
            };
            match (status.code(), dynamic) {
                (Some(0), _) => Ok(None),
                (Some(1), true) => Err(format!("{path} exited 1")),
                (Some(c), true) if c >= 2 => Ok(Some((c - 2) as u32)),
                (Some(c), _) => Err(format!("{path} exited {c}")),
                (None, _) => Err(format!("{path} killed by a signal")),
            }
        }
        CheckKind::File {
            path,
            weight,
            reverse,
            ..
        } => {
            // keepalived: a missing file reads as 0
            let text = tokio::fs::read_to_string(path).await.unwrap_or_default();
            let v = crate::vrrp::file_value(&text);
            match crate::vrrp::file_delta(v, *weight, *reverse) {
                None => Err(format!("track file {path} holds {v}: down")),
                Some(_) => Ok(None),
            }
        }
    }
}

/// [`check`] in a task of its own: a checker that panics (a bug, or a value the config
/// check missed) is a failed check, logged, so its real server leaves rotation: never open.
pub async fn check_guarded(c: &Checker, rs_addr: IpAddr, rs_port: u16, delay_loop: f64) -> Outcome {
    let one = c.clone();
    tokio::spawn(async move { check(&one, rs_addr, rs_port, delay_loop).await })
        .await
        .unwrap_or_else(|e| {
            tracing::error!(real_server = %rs_addr, port = rs_port, error = %e, "checker failed; the real server is out of rotation until it passes");
            Err(format!("checker failed: {e}"))
        })
}

/// A checker's verdict for one round: up to `retry` more attempts after a failure, with
/// `delay_before_retry` between them (keepalived's semantics).
pub async fn check(c: &Checker, rs_addr: IpAddr, rs_port: u16, delay_loop: f64) -> Outcome {
    let mut last = Err(String::new());
    for attempt in 0..=c.retry {
        last = check_once(c, rs_addr, rs_port, delay_loop).await;
        if last.is_ok() {
            return last;
        }
        if attempt < c.retry {
            tokio::time::sleep(Duration::from_secs_f64(c.delay_before_retry.max(0.0))).await;
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_chunks() {
        let p = parse_page(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(p.status, 200);
        assert_eq!(p.body, b"abcde");
        let p = parse_page(b"HTTP/1.0 503 Busy\r\n\r\nno").unwrap();
        assert_eq!((p.status, p.body.as_slice()), (503, &b"no"[..]));
        assert!(parse_page(b"garbage").is_err());
        assert_eq!(md5_hex(b"tls r1\n").len(), 32);
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn a_signal_during_a_ping_is_no_failed_check() {
        if !opsflow_tests::require(&["ip", "sysctl"]) {
            return;
        }
        extern "C" fn nothing(_: libc::c_int) {}
        // SAFETY: a handler that does nothing, for a signal no other test uses; sigaction
        // without SA_RESTART, as a daemon's signal handling may install it.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigaction(libc::SIGURG, &sa, std::ptr::null_mut());
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let pinger = std::thread::spawn(move || {
            // this thread alone moves to a new network namespace: lo up, echoes ignored
            // SAFETY: unshare of the calling thread's network namespace.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            for cmd in [
                &["ip", "link", "set", "lo", "up"][..],
                &["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1"],
            ] {
                let st = std::process::Command::new(cmd[0]).args(&cmd[1..]).status();
                assert!(st.is_ok_and(|s| s.success()), "{cmd:?}");
            }
            // SAFETY: pthread_self and gettid have no preconditions.
            tx.send(unsafe { (libc::pthread_self(), libc::gettid()) })
                .unwrap();
            let t0 = std::time::Instant::now();
            let r = ping("127.0.0.1".parse().unwrap(), None, Duration::from_secs(3));
            (r, t0.elapsed())
        });
        let (thread, tid) = rx.recv().unwrap();
        // signal it once it waits for the echo: blocked in recvfrom (first field of
        // /proc/.../syscall: the system call's number)
        let waiting = || {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
                .is_ok_and(|s| s.split_whitespace().next() == Some(&libc::SYS_recvfrom.to_string()))
        };
        assert!(
            opsflow_tests::wait_until(Duration::from_millis(2500), waiting),
            "the ping never waited in recvfrom"
        );
        // SAFETY: the thread is alive: it waits for the echo until its limit.
        unsafe { libc::pthread_kill(thread, libc::SIGURG) };
        let (r, took) = pinger.join().unwrap();
        let e = r.unwrap_err();
        assert!(e.contains("no echo reply within"), "{e}");
        assert!(took >= Duration::from_secs(3), "{took:?}");
    }
}
