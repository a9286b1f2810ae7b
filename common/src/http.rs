//! The one HTTP/1 server loop of the project (ha's control API on a unix socket or TCP,
//! `kickstart serve`, the metrics endpoints), hardened against clients that connect and never
//! finish: a header-read timeout (hyper's), an idle timeout for stalled transfers, a global
//! connection cap that closes the oldest connection that has not completed a request (a unix
//! socket has no peer address to cap), a per-peer cap for TCP, and accept errors (EMFILE, ...)
//! backed off and logged rate-limited instead of a tight loop.
//!
//! The listener, the service and the shutdown future come in as arguments (mini-redis' shape), so
//! tests bind port 0 or a temporary socket and stop the server deterministically. Each request
//! carries its [`Peer`] in its extensions.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::Service;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tracing::{debug, info, warn};

use crate::ratelimit::RateLimit;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What one server allows. `Limits::default()` suits every server of the project.
#[derive(Clone, Debug)]
pub struct Limits {
    /// A request's headers must be complete this long after the server starts waiting for them
    /// (on a new connection, or between requests on a kept-alive one).
    pub header_read_timeout: Duration,
    /// A connection with no handler running that moves no byte in either direction this long is
    /// closed (a client that stops reading a response or sending a body).
    pub idle_timeout: Duration,
    /// Connections held at once; when full, the oldest connection that has not completed a
    /// request (else the oldest idle kept-alive one) is closed to make room.
    pub max_connections: usize,
    /// Connections held at once per TCP peer address, with the same rule within the peer.
    pub max_per_peer: usize,
    /// On shutdown, how long open requests may run before their connections are closed.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(4),
            idle_timeout: Duration::from_secs(30),
            max_connections: 128,
            max_per_peer: 16,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Who is on the other end, in every request's extensions (`req.extensions().get::<Peer>()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    Tcp(std::net::SocketAddr),
    Unix,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{a}"),
            Peer::Unix => f.write_str("unix socket"),
        }
    }
}

/// A listening socket [`serve`] can accept from: tokio's `TcpListener` and `UnixListener`.
pub trait Listener: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, Peer)>> + Send;
    /// The local address, for log lines.
    fn describe(&self) -> String;
}

impl Listener for TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&mut self) -> io::Result<(Self::Io, Peer)> {
        let (s, a) = TcpListener::accept(self).await?;
        let _ = s.set_nodelay(true);
        Ok((s, Peer::Tcp(a)))
    }
    fn describe(&self) -> String {
        self.local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "tcp".into())
    }
}

impl Listener for UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&mut self) -> io::Result<(Self::Io, Peer)> {
        let (s, _) = UnixListener::accept(self).await?;
        Ok((s, Peer::Unix))
    }
    fn describe(&self) -> String {
        self.local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
            .unwrap_or_else(|| "unix socket".into())
    }
}

/// Serves HTTP/1 on `listener` with `service` until `shutdown` resolves, then stops accepting,
/// lets open requests finish (up to `limits.shutdown_grace`) and returns.
pub async fn serve<L, S, B>(
    mut listener: L,
    limits: Limits,
    service: S,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let listen = listener.describe();
    let mut limits = limits;
    let budget = fd_budget(limits.max_connections);
    if budget < limits.max_connections {
        info!(%listen, max_connections = budget, configured = limits.max_connections,
              "connection cap lowered to half the open-file limit");
        limits.max_connections = budget;
    }
    let service = Arc::new(service);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let reg = Arc::new(Mutex::new(Registry::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let epoch = Instant::now();
    let accept_log = RateLimit::new(5, Duration::from_secs(10));
    let limit_log = RateLimit::new(5, Duration::from_secs(10));
    let mut tasks = tokio::task::JoinSet::new();
    let mut backoff: Option<Duration> = None;
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(x) => { backoff = None; x }
                Err(e) => {
                    let wait = next_backoff(backoff);
                    backoff = Some(wait);
                    // out of descriptors: free one held by a connection without a request
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        let mut r = lock(&reg);
                        if let Some(id) = r.victim(None) {
                            r.evict(id);
                        }
                    }
                    if let Some(suppressed) = accept_log.check() {
                        warn!(%listen, error = %e, retry_in_ms = wait.as_millis() as u64, suppressed,
                              "accept failed");
                    }
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(wait) => continue,
                    }
                }
            },
        };
        next_id += 1;
        let ip = match &peer {
            Peer::Tcp(a) => Some(a.ip()),
            Peer::Unix => None,
        };
        let state = Arc::new(ConnState::new(next_id, ip, epoch));
        let admitted = lock(&reg).admit(state.clone(), &limits);
        match admitted {
            Admit::Yes => {}
            Admit::Evicted(why) => {
                if let Some(suppressed) = limit_log.check() {
                    warn!(%listen, %peer, suppressed, "{why}: closed the oldest connection without a request");
                }
            }
            Admit::Refused(why) => {
                if let Some(suppressed) = limit_log.check() {
                    warn!(%listen, %peer, suppressed, "{why} and every connection is busy: refused a new one");
                }
                continue;
            }
        }
        let svc = Tracked {
            inner: service.clone(),
            state: state.clone(),
            peer: peer.clone(),
        };
        let io = TokioIo::new(Activity {
            inner: io,
            state: state.clone(),
        });
        let conn = builder.serve_connection(io, svc);
        let guard = Deregister {
            reg: reg.clone(),
            id: state.id,
        };
        let stop = stop_rx.clone();
        tasks.spawn(run_connection(
            conn,
            state,
            peer,
            limits.idle_timeout,
            stop,
            guard,
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        info!(%listen, open = tasks.len(), "shutdown grace over: closing open connections");
    }
    tasks.shutdown().await;
}

/// [`serve`] with a closure `async fn(Request<Incoming>) -> Result<Response<B>, E>`.
pub async fn serve_fn<L, F, Fut, B, E>(
    listener: L,
    limits: Limits,
    f: F,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
    E: Into<BoxError> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    serve(listener, limits, hyper::service::service_fn(f), shutdown).await
}

/// Serves `GET /metrics` with the text `render` returns (Prometheus exposition format), with
/// the default [`Limits`], for the life of the process.
pub async fn serve_metrics(listener: TcpListener, render: Arc<dyn Fn() -> String + Send + Sync>) {
    info!(listen = %Listener::describe(&listener), "metrics endpoint ready");
    let f = move |req: Request<Incoming>| {
        let render = render.clone();
        async move {
            let resp = if req.uri().path() == "/metrics" {
                Response::builder()
                    .header("content-type", "text/plain; version=0.0.4")
                    .body(Full::new(Bytes::from(render())))
            } else {
                Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .body(Full::new(Bytes::from_static(
                        b"only /metrics is served here\n",
                    )))
            };
            Ok::<_, Infallible>(resp.unwrap_or_default())
        }
    };
    serve_fn(listener, Limits::default(), f, std::future::pending()).await
}

/// `max` capped at half the soft open-file limit: the process needs descriptors for more than
/// this server's connections, and running out makes every accept fail.
fn fd_budget(max: usize) -> usize {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0
        || rl.rlim_cur == libc::RLIM_INFINITY
    {
        return max;
    }
    max.min(
        usize::try_from(rl.rlim_cur / 2)
            .unwrap_or(usize::MAX)
            .max(1),
    )
}

/// 50 ms, doubling to 1 s.
fn next_backoff(prev: Option<Duration>) -> Duration {
    match prev {
        None => Duration::from_millis(50),
        Some(d) => (d * 2).min(Duration::from_secs(1)),
    }
}

async fn run_connection<I, S>(
    conn: hyper::server::conn::http1::Connection<I, S>,
    state: Arc<ConnState>,
    peer: Peer,
    idle: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    _guard: Deregister,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<BoxError>,
    S::ResBody: 'static,
    <S::ResBody as Body>::Error: Into<BoxError>,
{
    tokio::pin!(conn);
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = state.kill.notified() => {
                debug!(%peer, "connection closed to make room");
                return;
            }
            _ = stop.wait_for(|v| *v), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = &mut sleep => {
                let quiet = state.quiet_for();
                if state.handlers.load(Ordering::Relaxed) == 0 && quiet >= idle {
                    debug!(%peer, "idle timeout: closing a connection that moves no data");
                    return;
                }
                let next = if quiet >= idle { idle } else { idle - quiet };
                sleep.as_mut().reset(tokio::time::Instant::now() + next);
            }
        }
    }
}

fn lock(reg: &Mutex<Registry>) -> std::sync::MutexGuard<'_, Registry> {
    reg.lock().unwrap_or_else(|p| p.into_inner())
}

/// One connection's progress, shared by its task, its service and its IO.
struct ConnState {
    id: u64,
    ip: Option<IpAddr>,
    epoch: Instant,
    /// Requests whose headers were complete (the service was called).
    requests: AtomicU64,
    /// Service futures still running.
    handlers: AtomicUsize,
    /// Response bodies not yet fully sent.
    bodies: AtomicUsize,
    /// Last byte moved, in ms since `epoch`.
    last_io_ms: AtomicU64,
    kill: tokio::sync::Notify,
}

impl ConnState {
    fn new(id: u64, ip: Option<IpAddr>, epoch: Instant) -> Self {
        let s = ConnState {
            id,
            ip,
            epoch,
            requests: AtomicU64::new(0),
            handlers: AtomicUsize::new(0),
            bodies: AtomicUsize::new(0),
            last_io_ms: AtomicU64::new(0),
            kill: tokio::sync::Notify::new(),
        };
        s.touch();
        s
    }
    fn touch(&self) {
        self.last_io_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn quiet_for(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_io_ms.load(Ordering::Relaxed)))
    }
    /// 0: never completed a request; 1: idle between requests; None: serving one.
    fn eviction_rank(&self) -> Option<u8> {
        if self.requests.load(Ordering::Relaxed) == 0 {
            Some(0)
        } else if self.handlers.load(Ordering::Relaxed) == 0
            && self.bodies.load(Ordering::Relaxed) == 0
        {
            Some(1)
        } else {
            None
        }
    }
}

#[derive(Default)]
struct Registry {
    /// By id, so in age order.
    conns: BTreeMap<u64, Arc<ConnState>>,
    per_peer: HashMap<IpAddr, usize>,
}

enum Admit {
    Yes,
    Evicted(&'static str),
    Refused(&'static str),
}

impl Registry {
    fn admit(&mut self, new: Arc<ConnState>, limits: &Limits) -> Admit {
        let mut outcome = Admit::Yes;
        if let Some(ip) = new.ip {
            if self.per_peer.get(&ip).copied().unwrap_or(0) >= limits.max_per_peer.max(1) {
                match self.victim(Some(ip)) {
                    Some(id) => {
                        self.evict(id);
                        outcome = Admit::Evicted("per-peer connection limit reached");
                    }
                    None => return Admit::Refused("per-peer connection limit reached"),
                }
            }
        }
        if self.conns.len() >= limits.max_connections.max(1) {
            match self.victim(None) {
                Some(id) => {
                    self.evict(id);
                    outcome = Admit::Evicted("connection limit reached");
                }
                None => return Admit::Refused("connection limit reached"),
            }
        }
        if let Some(ip) = new.ip {
            *self.per_peer.entry(ip).or_default() += 1;
        }
        self.conns.insert(new.id, new);
        outcome
    }

    /// The oldest connection (of `ip`, if given) without a completed request, else the oldest
    /// idle one.
    fn victim(&self, ip: Option<IpAddr>) -> Option<u64> {
        let mut idle = None;
        for c in self.conns.values() {
            if ip.is_some() && c.ip != ip {
                continue;
            }
            match c.eviction_rank() {
                Some(0) => return Some(c.id),
                Some(_) if idle.is_none() => idle = Some(c.id),
                _ => {}
            }
        }
        idle
    }

    fn evict(&mut self, id: u64) {
        if let Some(c) = self.remove(id) {
            c.kill.notify_one();
        }
    }

    fn remove(&mut self, id: u64) -> Option<Arc<ConnState>> {
        let c = self.conns.remove(&id)?;
        if let Some(ip) = c.ip {
            if let Some(n) = self.per_peer.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_peer.remove(&ip);
                }
            }
        }
        Some(c)
    }
}

/// Takes a connection out of the registry when its task ends, however it ends.
struct Deregister {
    reg: Arc<Mutex<Registry>>,
    id: u64,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        lock(&self.reg).remove(self.id);
    }
}

/// The IO, noting each byte moved for the idle timeout.
struct Activity<T> {
    inner: T,
    state: Arc<ConnState>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Activity<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Activity<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.touch();
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The caller's service, counting requests, running handlers and unsent bodies.
struct Tracked<S> {
    inner: Arc<S>,
    state: Arc<ConnState>,
    peer: Peer,
}

impl<S, B> Service<Request<Incoming>> for Tracked<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body + Send + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.peer.clone());
        self.state.requests.fetch_add(1, Ordering::Relaxed);
        let handler = Count::new(&self.state, |s| &s.handlers);
        let body = Count::new(&self.state, |s| &s.bodies);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            drop(handler);
            r.map(|resp| {
                resp.map(|b| TrackedBody {
                    inner: Box::pin(b),
                    _count: body,
                })
            })
        })
    }
}

/// +1 on a counter of a connection while alive.
struct Count {
    state: Arc<ConnState>,
    field: fn(&ConnState) -> &AtomicUsize,
}

impl Count {
    fn new(state: &Arc<ConnState>, field: fn(&ConnState) -> &AtomicUsize) -> Self {
        field(state).fetch_add(1, Ordering::Relaxed);
        Count {
            state: state.clone(),
            field,
        }
    }
}

impl Drop for Count {
    fn drop(&mut self) {
        (self.field)(&self.state).fetch_sub(1, Ordering::Relaxed);
        self.state.touch();
    }
}

/// A response body that tells its connection when it is sent (or dropped).
pub struct TrackedBody<B> {
    inner: Pin<Box<B>>,
    _count: Count,
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.inner.as_mut().poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
