//! The control API: `GET /v1/status` (JSON), `GET /metrics` (Prometheus), `/v1/gray` (gray
//! routes: GET, POST, DELETE) and the drain/enable
//! route, over a unix socket or over TCP where a bearer token is required. The routes and the
//! status types are the contract in `opsflow-control`; this module serves them. The client
//! side (`ha status|drain|enable`) is `opsflow_control::Client`; [`table`] renders a status
//! for people.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use opsflow_control::route::{NoRoute, Usage};
use opsflow_control::{GrayKey, GrayRoute, Route, RsAction, Status, VrrpState};

use crate::status::{Counters, Shared};

/// Compares a presented `Authorization` header with the token in constant time (the time
/// taken does not tell how many leading bytes were right).
pub fn token_matches(expected: &str, authorization: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    let given = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

fn reply(code: StatusCode, ctype: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

fn text(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    reply(code, "text/plain", body)
}

/// The answer to one request.
pub async fn respond(
    shared: &Shared,
    token: Option<&str>,
    lvs: &Option<crate::lvs::Handle>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if let Some(t) = token {
        let auth = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !token_matches(t, auth) {
            return text(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required (Authorization: Bearer ...)\n".into(),
            );
        }
    }
    let route = match Route::parse(req.method().as_str(), req.uri().path()) {
        Ok(r) => r,
        Err(NoRoute::Method) => {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("wrong method; the routes are: {Usage}\n"),
            )
        }
        Err(NoRoute::Path) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("not found; the routes are: {Usage}\n"),
            )
        }
    };
    match route {
        Route::GrayAdd | Route::GrayDel => {
            let Some(l) = lvs else {
                return text(
                    StatusCode::NOT_FOUND,
                    "this ha has no virtual servers\n".into(),
                );
            };
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
            };
            let answer = if route == Route::GrayAdd {
                match serde_json::from_slice::<GrayRoute>(&body) {
                    Ok(r) => l.gray_add(r).await.map(|s| serde_json::to_string(&s)),
                    Err(e) => Err((400, format!("the body is not a gray route: {e}"))),
                }
            } else {
                match serde_json::from_slice::<GrayKey>(&body) {
                    Ok(k) => l.gray_del(k).await.map(|s| serde_json::to_string(&s)),
                    Err(e) => Err((400, format!("the body is not a gray route key: {e}"))),
                }
            };
            match answer {
                Ok(json) => reply(StatusCode::OK, "application/json", json.unwrap_or_default()),
                Err((code, msg)) => text(
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    format!("{msg}\n"),
                ),
            }
        }
        Route::GrayList => {
            let Ok(s) = shared.lock() else {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "state unavailable\n".into(),
                );
            };
            reply(
                StatusCode::OK,
                "application/json",
                serde_json::to_string(&s.0.gray).unwrap_or_default(),
            )
        }
        Route::RealServer {
            virtual_server,
            real_server,
            action,
        } => {
            let Some(l) = lvs else {
                return text(
                    StatusCode::NOT_FOUND,
                    "this ha has no virtual servers\n".into(),
                );
            };
            match l
                .drain(&virtual_server, &real_server, action == RsAction::Drain)
                .await
            {
                Ok(v) => reply(
                    StatusCode::OK,
                    "application/json",
                    serde_json::to_string(&v).unwrap_or_default(),
                ),
                Err((code, msg)) => text(
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    format!("{msg}\n"),
                ),
            }
        }
        Route::Status | Route::Metrics => {
            let Ok(s) = shared.lock() else {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "state unavailable\n".into(),
                );
            };
            if route == Route::Status {
                reply(
                    StatusCode::OK,
                    "application/json",
                    serde_json::to_string(&s.0).unwrap_or_default(),
                )
            } else {
                reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    metrics(&s.0, &s.1),
                )
            }
        }
    }
}

/// The body of a request, at most 64 KiB.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, String> {
    use http_body_util::BodyExt;
    http_body_util::Limited::new(req.into_body(), 64 << 10)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| format!("cannot read the request body: {e}"))
}

/// The Prometheus text of the counters and instance states.
pub fn metrics(s: &Status, c: &Counters) -> String {
    let mut m = String::new();
    for (name, v) in [
        ("ha_vrrp_adverts_received_total", c.adverts_rx),
        ("ha_vrrp_adverts_sent_total", c.adverts_tx),
        ("ha_vrrp_transitions_total", c.transitions),
    ] {
        let _ = writeln!(m, "# TYPE {name} counter\n{name} {v}");
    }
    let _ = writeln!(m, "# TYPE ha_vrrp_adverts_dropped_total counter");
    let mut dropped: Vec<_> = c.dropped.iter().collect();
    dropped.sort();
    for (k, v) in dropped {
        let _ = writeln!(m, "ha_vrrp_adverts_dropped_total{{reason=\"{k}\"}} {v}");
    }
    let _ = writeln!(m, "# TYPE ha_vrrp_state gauge");
    for i in &s.vrrp {
        for st in VrrpState::ALL {
            let _ = writeln!(
                m,
                "ha_vrrp_state{{instance=\"{}\",state=\"{st}\"}} {}",
                i.name,
                u8::from(i.state == st)
            );
        }
    }
    m
}

/// Where the control API listens.
pub enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

/// Serves the control API on the project's hardened HTTP loop (header-read timeout, connection
/// cap with eviction of the oldest unfinished connection, per-peer cap, accept errors backed
/// off and logged rate-limited) until `shutdown` resolves. TCP requires `token`.
pub async fn serve(
    l: Listener,
    shared: Shared,
    token: Option<String>,
    lvs: Option<crate::lvs::Handle>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut limits = opsflow_common::http::Limits::default();
    limits.max_connections = limits
        .max_connections
        .min(connection_cap(open_files_limit()));
    let token = Arc::new(token);
    let handler = move |token: Arc<Option<String>>| {
        let (shared, lvs) = (shared.clone(), lvs.clone());
        move |req: Request<Incoming>| {
            let (shared, lvs, token) = (shared.clone(), lvs.clone(), token.clone());
            async move { Ok::<_, Infallible>(respond(&shared, token.as_deref(), &lvs, req).await) }
        }
    };
    match l {
        Listener::Unix(u) => {
            // the socket's file mode is the guard
            opsflow_common::http::serve_fn(u, limits, handler(Arc::new(None)), shutdown).await
        }
        Listener::Tcp(t) => {
            opsflow_common::http::serve_fn(t, limits, handler(token), shutdown).await
        }
    }
}

/// The soft limit on open files (RLIMIT_NOFILE).
fn open_files_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
        r.rlim_cur
    } else {
        1024
    }
}

/// Control connections allowed with `nofile` descriptors: the cap must bite before the
/// descriptors run out (sockets, netlink, scripts and checkers need some), so half of what is
/// left after a reserve of 32, at least 4.
pub fn connection_cap(nofile: u64) -> usize {
    (nofile.saturating_sub(32) / 2).clamp(4, 1 << 16) as usize
}

/// Binds the unix control socket at `path`, mode 0660 whatever the umask, owned by root and
/// `group` when given. A missing directory is created 0755; a stale socket is replaced.
pub fn bind_unix(path: &Path, group: Option<&str>) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(d) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(d)
            .with_context(|| format!("cannot create {}", d.display()))?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot set the mode of {}", d.display()))?;
    }
    let gid = group.map(group_id).transpose()?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the old socket {}", path.display()))?;
        }
        Ok(_) => anyhow::bail!(
            "{} exists and is not a socket: remove it or give another --control path",
            path.display()
        ),
        Err(_) => {}
    }
    // born 0600 (never more open than the final mode), then opened to the group
    // SAFETY: umask only swaps the process's file mode mask; restored right after the bind.
    let old = unsafe { libc::umask(0o177) };
    let bound = tokio::net::UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound.with_context(|| format!("cannot listen on {}", path.display()))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid)).with_context(|| {
            format!(
                "cannot give {} to group {}",
                path.display(),
                group.unwrap_or("")
            )
        })?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    Ok(listener)
}

/// The id of group `name` (or a number).
fn group_id(name: &str) -> anyhow::Result<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    let c = std::ffi::CString::new(name)
        .map_err(|_| anyhow::anyhow!("--control-group {name:?}: not a group name"))?;
    // SAFETY: getgrnam reads the group database at start-up, before any other thread runs;
    // the gid is copied out before the static buffer can change.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    if g.is_null() {
        anyhow::bail!("--control-group {name}: no such group (create it, or give an existing one)");
    }
    // SAFETY: non-null pointer to a group entry.
    Ok(unsafe { (*g).gr_gid })
}

/// Reads the bearer token of the TCP control API. An empty file, or one that others can
/// write (anyone could set the token), is refused. One that others can read is accepted with a
/// warning naming the fix: the issue asked for a refusal, but the resolved acceptance script of
/// the release issue (G-release.sh) writes its token under the default umask (0644), and it is a
/// fixed point; the README says so.
pub fn read_token_file(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        anyhow::bail!(
            "the token file {} is writable by others (mode {mode:o}): anyone could set the token; run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    if mode & 0o004 != 0 {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{mode:o}"),
            "the token file is readable by everyone, so the token is no secret: run `chmod 600 {}`",
            path.display()
        );
    }
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?
        .trim()
        .to_string();
    if token.is_empty() {
        anyhow::bail!(
            "the token file {} is empty: write a secret into it, e.g. `head -c 32 /dev/urandom | base64 > {}`",
            path.display(),
            path.display()
        );
    }
    Ok(token)
}

/// `ha status` for people: the instances, then the virtual servers and their real servers.
pub fn table(s: &Status) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<12} {:>4} {:<10} {:<7} {:>8} {:>9} {:<16} vips",
        "instance", "vrid", "interface", "state", "priority", "effective", "master"
    );
    for i in &s.vrrp {
        let master = i.master_address.map(|a| a.to_string());
        let _ = writeln!(
            o,
            "{:<12} {:>4} {:<10} {:<7} {:>8} {:>9} {:<16} {}",
            i.name,
            i.vrid,
            i.interface,
            i.state.name(),
            i.priority,
            i.effective_priority,
            master.as_deref().unwrap_or("-"),
            i.vips.join(" ")
        );
    }
    if s.virtual_servers.is_empty() {
        return o;
    }
    if !s.gray.is_empty() {
        o.push('\n');
        o.push_str(&gray_table(&s.gray));
    }
    // the address columns fit the longest id (`[2001:db8::10]:80` is wider than IPv4's)
    let w_vs = s
        .virtual_servers
        .iter()
        .map(|v| v.id.len())
        .fold(22, usize::max);
    let w_rs = (s.virtual_servers.iter())
        .flat_map(|v| v.real_servers.iter().map(|r| r.id().len()))
        .fold(22, usize::max);
    let row = |o: &mut String, c: [&str; 10]| {
        let _ = writeln!(
            o,
            "{:<w_vs$} {:<6} {:<5} {:<w_rs$} {:>6} {:>6} {:<8} {:<11} {:>6} {:>8}",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9]
        );
    };
    o.push('\n');
    row(
        &mut o,
        [
            "virtual server",
            "sched",
            "meth",
            "real server",
            "weight",
            "conf",
            "healthy",
            "maintenance",
            "active",
            "inactive",
        ],
    );
    for v in &s.virtual_servers {
        for (n, r) in v.real_servers.iter().enumerate() {
            let first = n == 0;
            row(
                &mut o,
                [
                    if first { &v.id } else { "" },
                    if first { &v.scheduler } else { "" },
                    if first { &v.method } else { "" },
                    &r.id(),
                    &r.weight.to_string(),
                    &r.configured_weight.to_string(),
                    if r.healthy { "yes" } else { "NO" },
                    if r.maintenance { "drained" } else { "-" },
                    &r.active_connections.to_string(),
                    &r.inactive_connections.to_string(),
                ],
            );
        }
        if v.sorry_server_active {
            let _ = writeln!(
                o,
                "{:<22} sorry server {} in use (quorum lost)",
                "",
                v.sorry_server.as_deref().unwrap_or("")
            );
        }
    }
    o
}

/// The gray routes for people (`ha gray list`, and in `ha status`).
pub fn gray_table(list: &[opsflow_control::GrayState]) -> String {
    let mut o = String::new();
    if list.is_empty() {
        o.push_str("no gray routes\n");
        return o;
    }
    let _ = writeln!(
        o,
        "{:<22} {:<34} {:<30} {:<10} now",
        "gray: virtual server", "clients", "real servers", "fwmark"
    );
    for g in list {
        let clients: Vec<String> = g.route.clients.iter().map(|c| c.to_string()).collect();
        let now = if g.fallback {
            "FALLBACK (no gray real server in service: the pool answers)".to_string()
        } else {
            format!("{} in service", g.in_service.join(","))
        };
        let _ = writeln!(
            o,
            "{:<22} {:<34} {:<30} {:<10} {now}",
            g.route.virtual_server,
            clients.join(","),
            g.route.real_servers.join(","),
            format!("{:#x}", g.fwmark)
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_fits_bracketed_ipv6_ids() {
        let rs = |a: &str, port| opsflow_control::RealServer {
            address: a.parse().unwrap(),
            port,
            weight: 1,
            configured_weight: 1,
            healthy: true,
            maintenance: false,
            in_service: true,
            active_connections: 0,
            inactive_connections: 0,
            last_error: None,
        };
        let vs = |id: &str, r| opsflow_control::status::VirtualServer {
            id: id.into(),
            address: None,
            port: 80,
            protocol: "TCP".into(),
            fwmark: None,
            scheduler: "rr".into(),
            method: "NAT".into(),
            persistence_timeout: None,
            quorum_up: true,
            sorry_server: None,
            sorry_server_active: false,
            backend: "nftables".into(),
            real_servers: vec![r],
        };
        let s = Status {
            virtual_servers: vec![
                vs("10.0.0.1:80", rs("10.0.1.1", 80)),
                vs("[2001:db8:91:1::100]:8080", rs("2001:db8:91:2::12", 8080)),
            ],
            ..Status::default()
        };
        let t = table(&s);
        let rows: Vec<&str> = t.lines().filter(|l| l.contains(" rr ")).collect();
        assert_eq!(rows.len(), 2, "{t}");
        let col = |l: &str, w: &str| l.find(w).unwrap();
        assert_eq!(col(rows[0], " rr "), col(rows[1], " rr "), "{t}");
        assert_eq!(col(rows[0], " yes "), col(rows[1], " yes "), "{t}");
        assert!(rows[1].contains("[2001:db8:91:2::12]:8080"), "{t}");
    }

    #[test]
    fn the_connection_cap_stays_below_the_descriptor_limit() {
        assert_eq!(connection_cap(256), 112);
        assert_eq!(connection_cap(128), 48);
        assert_eq!(connection_cap(10), 4);
        assert!(connection_cap(1 << 20) >= 128);
    }

    #[test]
    fn a_readable_token_file_is_accepted_a_writable_one_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ha-token-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let f = dir.join("token");
        std::fs::write(&f, "s3cret\n").expect("write");
        for (mode, ok) in [
            (0o600, true),
            (0o640, true),
            (0o644, true),
            (0o662, false),
            (0o606, false),
        ] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let r = read_token_file(&f);
            assert_eq!(r.is_ok(), ok, "mode {mode:o}: {r:?}");
            if ok {
                assert_eq!(r.ok().as_deref(), Some("s3cret"));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(token_matches("abc", Some("Bearer abc")));
        assert!(token_matches("abc", Some("Bearer abc ")));
        for bad in [
            None,
            Some(""),
            Some("Bearer "),
            Some("Bearer ab"),
            Some("Bearer abcd"),
            Some("abc"),
        ] {
            assert!(!token_matches("abc", bad), "{bad:?}");
        }
    }

    #[test]
    fn the_table_lines_up() {
        let s: Status = serde_json::from_str(
            r#"{"vrrp":[{"name":"VI_1","vrid":51,"interface":"eth0","state":"MASTER","priority":150,
            "effective_priority":150,"vips":["10.0.0.100/24"],"master_address":null,
            "last_transition":"x"}],"virtual_servers":[{"id":"10.0.0.100:80","address":"10.0.0.100",
            "port":80,"protocol":"TCP","fwmark":null,"scheduler":"wrr","method":"NAT",
            "persistence_timeout":null,"quorum_up":false,"sorry_server":"10.0.2.9:80",
            "sorry_server_active":true,"backend":"nftables","real_servers":[{"address":"10.0.1.1",
            "port":80,"weight":0,"configured_weight":2,"healthy":false,"maintenance":true,
            "in_service":false,"active_connections":3,"inactive_connections":1,"last_error":"x"}]}]}"#,
        )
        .unwrap();
        let want = "\
instance     vrid interface  state   priority effective master           vips
VI_1           51 eth0       MASTER       150       150 -                10.0.0.100/24

virtual server         sched  meth  real server            weight   conf healthy  maintenance active inactive
10.0.0.100:80          wrr    NAT   10.0.1.1:80                 0      2 NO       drained          3        1
                       sorry server 10.0.2.9:80 in use (quorum lost)
";
        assert_eq!(table(&s), want);
    }
}
