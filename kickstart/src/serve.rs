//! `kickstart serve`: kickstarts, iPXE scripts, HA configs, boot files and repositories over
//! HTTP, and the installed callback.

use std::convert::Infallible;
use std::io::SeekFrom;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use opsflow_common::http::{self, Peer};
use opsflow_common::ratelimit::RateLimit;
use opsflow_common::{notify, pidfile};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::confine::{self, OpenError};
use crate::inventory::normalize_mac;
use crate::render::{Global, Site, What};
use crate::sync;

type Body = BoxBody<Bytes, std::io::Error>;

/// What the server shares between connections.
pub struct Served {
    pub site: RwLock<Site>,
    /// Prefix of the TFTP root the installed callback rewrites (`serve --root`).
    pub root: Option<PathBuf>,
    /// The `ha` binary served at `/bin/ha`.
    pub ha_binary: Option<PathBuf>,
}

impl Served {
    pub fn new(site: Site, root: Option<PathBuf>) -> Served {
        let ha_binary = site.inv.server.ha_binary.clone().or_else(|| {
            let p = std::env::current_exe().ok()?.with_file_name("ha");
            p.is_file().then_some(p)
        });
        Served {
            site: RwLock::new(site),
            root,
            ha_binary,
        }
    }

    /// Replaces the site (SIGHUP).
    pub fn replace(&self, site: Site) {
        if let Ok(mut s) = self.site.write() {
            *s = site;
        }
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let body: String = body.into();
    let mut r = Response::new(full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed()
}

/// How `kickstart serve` runs (the command line's options).
pub struct Options {
    pub listen: Option<SocketAddr>,
    pub root: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    /// Reloaded on SIGHUP.
    pub inventory: PathBuf,
    pub state_dir: Option<PathBuf>,
}

/// `kickstart serve` as a daemon: takes the pid file before binding, tells systemd READY when
/// listening, reloads the inventory on SIGHUP (RELOADING, then READY; a bad inventory keeps the
/// old one), stops on SIGTERM or ^C (STOPPING) after open requests finish.
/// Starts dhcpd's router-advertisement responder on every interface with an address in the
/// provisioning network, when the inventory asks for it (the default). Serving HTTP does not
/// depend on it: a failure is a warning.
fn router_advertisements(net: &crate::inventory::Network) {
    if !net.router_advertisements {
        return;
    }
    let mut ifaces: Vec<String> = opsflow_common::ipv4_interfaces()
        .into_iter()
        .filter(|(_, a, _)| net.contains(*a))
        .map(|(n, _, _)| n)
        .collect();
    ifaces.sort();
    ifaces.dedup();
    if ifaces.is_empty() {
        info!(
            network = %format!("{}/{}", net.subnet, net.prefix),
            "no interface in the provisioning network: no router advertisements"
        );
        return;
    }
    if let Err(e) = dhcpd::ra::spawn(&ifaces, net.ra_router_lifetime) {
        warn!("{e:#}; PXE clients that wait for IPv6 autoconfiguration (iPXE) boot ~13 s later (set network.router_advertisements = false to silence this)");
    }
}

pub fn run_daemon(site: Site, opts: Options) -> anyhow::Result<()> {
    let addr = opts.listen.unwrap_or(site.inv.server.listen);
    if site.callback.path().is_none() {
        anyhow::bail!(
            "cannot keep the callback secret in {}: serve needs a state directory it can write",
            site.inv.server.state_dir.display()
        );
    }
    let pid_path = opts
        .pid_file
        .clone()
        .unwrap_or_else(|| pidfile::default_path("kickstart", &addr.to_string()));
    let _pid = pidfile::PidFile::acquire(&pid_path)?;
    router_advertisements(&site.inv.network);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let systems = site.inv.systems.len();
        let served = Arc::new(Served::new(site, opts.root.clone()));
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let s2 = served.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                notify::reloading();
                match crate::load_site(&opts.inventory, opts.state_dir.as_deref()) {
                    Ok(site) => {
                        let n = site.inv.systems.len();
                        info!(inventory = %opts.inventory.display(), systems = n, "reloaded");
                        s2.replace(site);
                        notify::ready(&format!("serving {n} systems on {addr}"));
                    }
                    Err(e) => {
                        error!(error = %format!("{e:#}"), "reload failed; keeping the old inventory");
                        notify::ready(&format!("reload failed, serving the old inventory on {addr}"));
                    }
                }
            }
        });
        notify::ready(&format!("serving {systems} systems on {addr}"));
        serve(listener, served, async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            notify::stopping();
            info!("shutting down");
        })
        .await;
        anyhow::Ok(())
    })
}

/// Serves until `shutdown` resolves, on opsflow-common's hardened loop (header-read timeout,
/// connection caps, accept backoff).
pub async fn serve(
    listener: TcpListener,
    served: Arc<Served>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    if let Ok(a) = listener.local_addr() {
        info!(listen = %a, "kickstart serving");
    }
    let f = move |req: Request<Incoming>| {
        let served = served.clone();
        async move {
            let peer = match req.extensions().get::<Peer>() {
                Some(Peer::Tcp(a)) => *a,
                _ => SocketAddr::from(([0, 0, 0, 0], 0)),
            };
            Ok::<_, Infallible>(handle(&served, peer, req).await)
        }
    };
    http::serve_fn(listener, http::Limits::default(), f, shutdown).await;
}

/// Log lines about refused requests (403, symlinks) and every request line, limited so a flood
/// costs a few lines and a count.
static REFUSED_LOG: RateLimit = RateLimit::new(10, Duration::from_secs(10));
static REQUEST_LOG: RateLimit = RateLimit::new(100, Duration::from_secs(10));

async fn handle(served: &Served, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut resp = match callback_system(&method, &path) {
        Some(name) => {
            let name = name.to_string();
            callback(served, peer, &name, req).await
        }
        None => route(served, peer, &req).await,
    };
    if method == Method::HEAD {
        // same headers, no body
        let len = resp.headers().get(header::CONTENT_LENGTH).cloned();
        let (parts, _) = resp.into_parts();
        resp = Response::from_parts(parts, full(Bytes::new()));
        if let Some(l) = len {
            resp.headers_mut().insert(header::CONTENT_LENGTH, l);
        }
    }
    let status = resp.status();
    if let Some(suppressed) = REQUEST_LOG.check() {
        if status.is_server_error() {
            error!(%peer, %method, path, status = status.as_u16(), suppressed, "request failed");
        } else {
            info!(%peer, %method, path, status = status.as_u16(), suppressed, "request");
        }
    }
    resp
}

async fn route(served: &Served, peer: SocketAddr, req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let m = req.method();
    let get = m == Method::GET || m == Method::HEAD;
    match (segs.as_slice(), get, m == Method::POST) {
        ([""], true, _) => index(served),
        (["ks", name], true, _) => system_file(served, name, What::Kickstart),
        (["ipxe", "menu" | "boot"], true, _) => {
            let base = match served.site.read() {
                Ok(s) => s.inv.server.base_url.clone(),
                Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "state lock poisoned\n"),
            };
            text(
                StatusCode::OK,
                format!("#!ipxe\n# ask kickstart what this machine boots\nchain {base}/ipxe/${{net0/mac}}\n"),
            )
        }
        // iPXE escapes the colons of ${net0/mac}
        (["ipxe", mac], true, _) => match percent_decode(mac) {
            Some(m) => ipxe(served, &m),
            None => text(StatusCode::BAD_REQUEST, "bad percent-encoding\n"),
        },
        (["ha", name, file], true, _) => {
            let what = match *file {
                "keepalived.conf" => What::Keepalived,
                "notify.sh" => What::Notify,
                "ha.service" => What::HaService,
                _ => {
                    return text(
                        StatusCode::NOT_FOUND,
                        format!("no {file}: /ha/{name}/ serves keepalived.conf, notify.sh and ha.service\n"),
                    )
                }
            };
            system_file(served, name, what)
        }
        (["callback", _, "installed"], true, _) => {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "the installed callback is a POST\n",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            r
        }
        (["bin", "ha"], true, _) => match &served.ha_binary {
            Some(p) => static_file(req, p).await,
            None => text(
                StatusCode::NOT_FOUND,
                "no ha binary to serve: set server.ha_binary in the inventory, or install ha next to kickstart\n",
            ),
        },
        (["boot", distro, file @ ("vmlinuz" | "initrd.img")], true, _) => {
            let src = match served.site.read() {
                Ok(s) => s.inv.distros.get(*distro).map(|d| {
                    if *file == "vmlinuz" {
                        d.kernel.clone()
                    } else {
                        d.initrd.clone()
                    }
                }),
                Err(_) => None,
            };
            match src {
                Some(p) if !p.starts_with("http") => static_file(req, Path::new(&p)).await,
                Some(url) => {
                    let mut r = text(StatusCode::FOUND, format!("{url}\n"));
                    if let Ok(v) = HeaderValue::from_str(&url) {
                        r.headers_mut().insert(header::LOCATION, v);
                    }
                    r
                }
                None => text(StatusCode::NOT_FOUND, format!("no distro {distro:?}\n")),
            }
        }
        (["files", rest @ ..], true, _) => {
            let dir = served
                .site
                .read()
                .ok()
                .and_then(|s| s.inv.server.files.clone());
            match dir {
                Some(d) => tree_file(req, peer, &d, rest, path).await,
                None => text(
                    StatusCode::NOT_FOUND,
                    "no files directory: set server.files in the inventory\n",
                ),
            }
        }
        (["repo", distro, rest @ ..], true, _) => {
            let dir = served
                .site
                .read()
                .ok()
                .and_then(|s| s.inv.distros.get(*distro).and_then(|d| d.repo_dir.clone()));
            match dir {
                Some(d) => tree_file(req, peer, &d, rest, path).await,
                None => text(
                    StatusCode::NOT_FOUND,
                    format!("no local repository for distro {distro:?} (its repo is not a directory)\n"),
                ),
            }
        }
        (_, false, false) => text(StatusCode::METHOD_NOT_ALLOWED, "GET, HEAD or POST only\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            format!("nothing at {path}; see / for what is served\n"),
        ),
    }
}

fn index(served: &Served) -> Response<Body> {
    let Ok(site) = served.site.read() else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "state lock poisoned\n");
    };
    let mut s = format!(
        "kickstart: {} systems from {}\n\nGET  /ks/SYSTEM /ipxe/MAC /ipxe/menu /ha/SYSTEM/{{keepalived.conf,notify.sh,ha.service}}\nGET  /boot/DISTRO/{{vmlinuz,initrd.img}} /files/... /repo/DISTRO/... /bin/ha\nPOST /callback/SYSTEM/installed\n\n",
        site.inv.systems.len(),
        site.inv.path.display()
    );
    for sys in &site.inv.systems {
        s.push_str(&format!(
            "{:<16} {} {:<15} {:<10} netboot={}\n",
            sys.name,
            sys.mac,
            sys.ip,
            sys.profile,
            site.netboot(sys)
        ));
    }
    text(StatusCode::OK, s)
}

fn system_file(served: &Served, name: &str, what: What) -> Response<Body> {
    let Ok(site) = served.site.read() else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "state lock poisoned\n");
    };
    let Some(sys) = site.inv.system(name) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no system {name:?} in {}\n", site.inv.path.display()),
        );
    };
    if !site.has(sys, what) {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "system {name} is not a member of any cluster, so it has no {}\n",
                what.name()
            ),
        );
    }
    rendered(site.render(sys, what))
}

fn rendered(r: Result<String, crate::render::RenderError>) -> Response<Body> {
    match r {
        Ok(t) => text(StatusCode::OK, t),
        Err(e) => {
            error!(error = %e, "template failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("template failed: {e}\n"),
            )
        }
    }
}

fn ipxe(served: &Served, mac: &str) -> Response<Body> {
    let Ok(site) = served.site.read() else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "state lock poisoned\n");
    };
    if normalize_mac(mac).is_none() {
        return text(
            StatusCode::NOT_FOUND,
            format!("{mac:?} is not a MAC address (use /ipxe/52:54:00:aa:00:01)\n"),
        );
    }
    match site.inv.system_by_mac(mac) {
        Some(sys) => rendered(site.render(sys, What::Ipxe)),
        None => rendered(site.render_global(Global::IpxeMenu)),
    }
}

/// The credential a callback carries: `?token=` on the URL or `Authorization: Bearer`.
fn callback_token<B>(req: &Request<B>) -> Option<String> {
    let from_query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::to_string)
    });
    from_query.or_else(|| {
        let h = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = h.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string())
    })
}

/// The system of a POST to `/callback/SYSTEM/installed`.
fn callback_system<'a>(method: &Method, path: &'a str) -> Option<&'a str> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method == Method::POST, segs.as_slice()) {
        (true, ["callback", name, "installed"]) => Some(name),
        _ => None,
    }
}

/// The largest `ha doctor --json` report the installed callback takes.
const DOCTOR_REPORT_MAX: usize = 256 * 1024;

/// The installed callback: its body (the node's `ha doctor --json` report, may be empty) is
/// read first, within [`DOCTOR_REPORT_MAX`].
async fn callback(
    served: &Served,
    peer: SocketAddr,
    name: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match http_body_util::Limited::new(body, DOCTOR_REPORT_MAX)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{name}: the callback body (the doctor report) is not readable or larger than {DOCTOR_REPORT_MAX} bytes: {e}\n"),
            )
        }
    };
    installed(served, peer, name, &Request::from_parts(parts, ()), &body)
}

/// `?doctor=EXIT` of the installed callback: `ha doctor`'s exit status on the node.
fn doctor_exit<B>(req: &Request<B>) -> Option<Option<i32>> {
    let q = req.uri().query()?;
    q.split('&')
        .find_map(|kv| kv.strip_prefix("doctor="))
        .map(|v| v.parse().ok())
}

fn installed<B>(
    served: &Served,
    peer: SocketAddr,
    name: &str,
    req: &Request<B>,
    body: &[u8],
) -> Response<Body> {
    let Ok(mut site) = served.site.write() else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "state lock poisoned\n");
    };
    let Some(sys) = site.inv.system(name).cloned() else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no system {name:?} in {}\n", site.inv.path.display()),
        );
    };
    let token = callback_token(req);
    if !token
        .as_deref()
        .is_some_and(|t| site.callback.verify(name, t))
    {
        let why = if token.is_some() {
            "a wrong token"
        } else {
            "no token"
        };
        if let Some(suppressed) = REFUSED_LOG.check() {
            warn!(system = name, %peer, suppressed, "installed callback refused: {why}");
        }
        return text(
            StatusCode::FORBIDDEN,
            format!("{name}: the installed callback needs the token from this system's kickstart (the callback URL's ?token=)\n"),
        );
    }
    if let Err(e) = site.state.set(
        name,
        false,
        &format!("installed callback from {}", peer.ip()),
    ) {
        error!(error = %e, system = name, "cannot record the installed callback");
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot record netboot off: {e}\n"),
        );
    }
    info!(system = name, %peer, "installed: netboot off");
    let exit = doctor_exit(req);
    if exit.is_some() || !body.is_empty() {
        let d = crate::state::Doctor::from_callback(exit.flatten(), body);
        if d.status == "ok" {
            info!(system = name, "ha doctor: ok");
        } else {
            warn!(system = name, status = d.status, problems = ?d.problems, "ha doctor at the end of %post");
        }
        if let Err(e) = site.state.set_doctor(name, d) {
            error!(error = %e, system = name, "cannot record the doctor report");
        }
    }
    match sync::sync_system(&site, served.root.as_deref(), &sys) {
        Ok(changes) => {
            for c in &changes {
                info!(system = name, "{c}");
            }
            text(
                StatusCode::OK,
                format!("{name}: netboot off; the next boot is from the local disk\n"),
            )
        }
        Err(e) => {
            error!(error = %e, system = name, "cannot rewrite the boot config");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("netboot off recorded, but the boot config was not rewritten: {e}\n"),
            )
        }
    }
}

/// A file below `dir` named by URL path segments; no `..`, no hidden files, and nothing
/// outside `dir` even through a symlink ([`confine::open_beneath`]).
async fn tree_file(
    req: &Request<Incoming>,
    peer: SocketAddr,
    dir: &Path,
    rest: &[&str],
    url_path: &str,
) -> Response<Body> {
    let mut rel = PathBuf::new();
    for seg in rest.iter().filter(|s| !s.is_empty()) {
        let seg = percent_decode(seg);
        let Some(seg) = seg else {
            return text(StatusCode::BAD_REQUEST, "bad percent-encoding\n");
        };
        let c: Vec<Component> = Path::new(&seg).components().collect();
        if seg.starts_with('.') || c.len() != 1 || !matches!(c[0], Component::Normal(_)) {
            return text(StatusCode::NOT_FOUND, format!("nothing at {url_path}\n"));
        }
        rel.push(seg);
    }
    let file = match confine::open_beneath(dir, &rel) {
        Ok(f) => f,
        Err(OpenError::NotFound) => {
            return text(StatusCode::NOT_FOUND, format!("nothing at {url_path}\n"))
        }
        Err(OpenError::Denied(why)) => {
            if let Some(suppressed) = REFUSED_LOG.check() {
                warn!(%peer, path = url_path, suppressed, "refused: {why}");
            }
            return text(StatusCode::FORBIDDEN, format!("{url_path}: {why}\n"));
        }
        Err(OpenError::Io(e)) => {
            error!(%peer, path = url_path, error = %e, "cannot open");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot open {url_path}: {e}\n"),
            );
        }
    };
    match file.metadata() {
        Ok(m) if m.is_dir() => listing(&file, url_path),
        Ok(_) => open_file(req, file, &rel).await,
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot stat {url_path}: {e}\n"),
        ),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// An HTML listing of a directory opened below a tree; names escaped.
fn listing(dir: &std::fs::File, url_path: &str) -> Response<Body> {
    let names = match confine::list(dir) {
        Ok(n) => n,
        Err(e) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("cannot list {url_path}: {e}\n"),
            )
        }
    };
    let base = url_path.trim_end_matches('/');
    let base_html = confine::html_escape(base);
    let mut html = format!("<html><body><h1>{base_html}/</h1><ul>\n");
    for (n, is_dir) in names {
        let slash = if is_dir { "/" } else { "" };
        html.push_str(&format!(
            "<li><a href=\"{base_html}/{}{slash}\">{}{slash}</a></li>\n",
            confine::html_escape(&confine::percent_encode(&n)),
            confine::html_escape(&n)
        ));
    }
    html.push_str("</ul></body></html>\n");
    let mut r = text(StatusCode::OK, html);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "xml" => "application/xml",
        "rpm" => "application/x-rpm",
        "gz" => "application/gzip",
        "txt" | "ks" | "cfg" | "conf" | "sh" | "ipxe" | "repo" => "text/plain; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// The byte range a `Range` header asks for: `None` to serve the whole file (no header, or a
/// form we do not serve such as several ranges), `Some(Err)` when unsatisfiable.
pub fn parse_range(h: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(()));
        }
        return Some(Ok((len - n.min(len), len - 1)));
    }
    let start: u64 = a.parse().ok()?;
    let end: u64 = if b.is_empty() {
        len.saturating_sub(1)
    } else {
        b.parse().ok()?
    };
    if start >= len {
        return Some(Err(()));
    }
    if end < start {
        return None;
    }
    Some(Ok((start, end.min(len - 1))))
}

/// A file named in the inventory (the ha binary, a distro's kernel and initrd).
async fn static_file(req: &Request<Incoming>, p: &Path) -> Response<Body> {
    match std::fs::File::open(p) {
        Ok(f) => open_file(req, f, p).await,
        Err(_) => text(
            StatusCode::NOT_FOUND,
            format!("no file {}\n", req.uri().path()),
        ),
    }
}

/// An open file with `Range`, `ETag`/`If-None-Match` and streaming; `p` names its type.
async fn open_file(req: &Request<Incoming>, file: std::fs::File, p: &Path) -> Response<Body> {
    let meta = match file.metadata() {
        Ok(m) if m.is_file() => m,
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                format!("no file {}\n", req.uri().path()),
            )
        }
    };
    let len = meta.len();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let etag = format!("\"{len:x}-{mtime:x}\"");
    if req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        if let Ok(v) = HeaderValue::from_str(&etag) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return r;
    }
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| parse_range(h, len));
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, len.saturating_sub(1)),
        Some(Ok((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Some(Err(())) => {
            let mut r = text(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the file has {len} bytes\n"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    let mut file = tokio::fs::File::from_std(file);
    if start > 0 {
        if let Err(e) = file.seek(SeekFrom::Start(start)).await {
            return text(StatusCode::INTERNAL_SERVER_ERROR, format!("seek: {e}\n"));
        }
    }
    let stream =
        tokio_util::io::ReaderStream::with_capacity(file.take(count), 1 << 16).map_ok(Frame::data);
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(p)),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-500", 100), Some(Ok((0, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Some(Ok((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=-0", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=9-1", 100), None);
    }
}
