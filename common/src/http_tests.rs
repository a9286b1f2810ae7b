//! Real hyper servers on 127.0.0.1:0 and on unix sockets in a temporary directory, real sockets
//! as clients. Deadlines are generous (the machine is busy); assertions are on what the client
//! observes (answered, closed), never on how fast.

use super::*;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const DEADLINE: Duration = Duration::from_secs(20);

async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let peer = req
        .extensions()
        .get::<Peer>()
        .map(|p| p.to_string())
        .unwrap_or_default();
    Ok(Response::new(Full::new(Bytes::from(format!(
        "hello {} from {peer}",
        req.uri().path()
    )))))
}

struct Server {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    fn start<L: Listener>(listener: L, limits: Limits) -> Server {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_fn(listener, limits, hello, async move {
            let _ = rx.await;
        }));
        Server {
            stop: Some(tx),
            task,
        }
    }
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(DEADLINE, &mut self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve did not panic");
    }
}

async fn get<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let io = async {
        s.write_all(req.as_bytes()).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, io::Error>(String::from_utf8_lossy(&out).into_owned())
    };
    tokio::time::timeout(DEADLINE, io)
        .await
        .expect("answered before the deadline")
        .expect("request io")
}

/// Idle client connections: a third send nothing, a third half a request line, a third
/// unfinished headers (M-security's mix).
async fn idle_mix<S: AsyncWrite + Unpin>(conns: &mut [S]) {
    for (i, s) in conns.iter_mut().enumerate() {
        let part: &[u8] = match i % 3 {
            0 => b"",
            1 => b"GET /v1/sta",
            _ => b"GET / HTTP/1.1\r\nHost: x\r\n",
        };
        // the server may have closed it already (that is the cap at work)
        let _ = s.write_all(part).await;
    }
}

/// How many of `conns` the server has closed: each is read until EOF/error or `wait`.
async fn count_closed<S: AsyncRead + Unpin + Send + 'static>(
    conns: Vec<S>,
    wait: Duration,
) -> usize {
    let mut set = tokio::task::JoinSet::new();
    for mut s in conns {
        set.spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                match tokio::time::timeout(wait, s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return true,
                    Ok(Ok(_)) => continue,
                    Err(_) => return false,
                }
            }
        });
    }
    let mut closed = 0;
    while let Some(r) = set.join_next().await {
        closed += usize::from(r.unwrap_or(false));
    }
    closed
}

fn tmp_sock(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("opsflow-http-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d.join("s.sock")
}

async fn tcp_from(src: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().expect("socket");
    s.bind(format!("{src}:0").parse().expect("addr"))
        .expect("bind source");
    s.connect(to).await.expect("connect")
}

#[tokio::test]
async fn tcp_answers_with_the_peer_and_stops_on_shutdown() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let srv = Server::start(l, Limits::default());
    let s = TcpStream::connect(addr).await.expect("connect");
    let local = s.local_addr().expect("local");
    let r = get(s, "/a").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with(&format!("hello /a from {local}")), "{r}");
    // a kept-alive idle connection does not hold shutdown beyond the grace
    let _held = TcpStream::connect(addr).await.expect("connect");
    srv.stop().await;
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn unix_idle_connections_beyond_the_cap_do_not_stop_a_request() {
    let path = tmp_sock("cap");
    let l = UnixListener::bind(&path).expect("bind");
    let limits = Limits {
        header_read_timeout: Duration::from_secs(120), // only the cap can save us here
        max_connections: 8,
        ..Limits::default()
    };
    let srv = Server::start(l, limits);
    let mut idle = Vec::new();
    for _ in 0..30 {
        idle.push(UnixStream::connect(&path).await.expect("connect"));
    }
    idle_mix(&mut idle).await;
    let r = get(UnixStream::connect(&path).await.expect("connect"), "/ok").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with("hello /ok from unix socket"), "{r}");
    let closed = count_closed(idle, Duration::from_secs(3)).await;
    // 30 idle + 1 request through 8 places: the 23 oldest were closed, the newest kept
    assert!((22..30).contains(&closed), "closed {closed} of 30");
    srv.stop().await;
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

#[tokio::test]
async fn tcp_per_peer_cap_keeps_other_peers_and_the_same_peer_served() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let limits = Limits {
        header_read_timeout: Duration::from_secs(120),
        max_per_peer: 4,
        ..Limits::default()
    };
    let srv = Server::start(l, limits);
    let mut hostile = Vec::new();
    for _ in 0..20 {
        hostile.push(tcp_from("127.0.0.2", addr).await);
    }
    idle_mix(&mut hostile).await;
    // another peer
    let r = get(tcp_from("127.0.0.3", addr).await, "/other").await;
    assert!(r.contains("from 127.0.0.3:"), "{r}");
    // the same peer: its own oldest idle connection makes room
    let r = get(tcp_from("127.0.0.2", addr).await, "/same").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let closed = count_closed(hostile, Duration::from_secs(3)).await;
    assert!((16..20).contains(&closed), "closed {closed} of 20");
    srv.stop().await;
}

#[tokio::test]
async fn unfinished_headers_are_closed_after_the_header_timeout() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let srv = Server::start(l, limits);
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(TcpStream::connect(addr).await.expect("connect"));
    }
    idle_mix(&mut conns).await;
    assert_eq!(
        count_closed(conns, DEADLINE).await,
        3,
        "all closed by the server"
    );
    // the server is still fine
    let r = get(TcpStream::connect(addr).await.expect("connect"), "/after").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    srv.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_after_the_idle_timeout() {
    // 64 MiB does not fit in the socket buffers: the server's writes stall
    async fn big(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        Ok(Response::new(Full::new(Bytes::from(vec![b'x'; 64 << 20]))))
    }
    let path = tmp_sock("idle");
    let l = UnixListener::bind(&path).expect("bind");
    let limits = Limits {
        idle_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_fn(l, limits, big, async move {
        let _ = rx.await;
    }));
    let mut s = UnixStream::connect(&path).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    // read a little, then stop reading until the server must have given up, then drain
    let mut buf = vec![0u8; 1 << 16];
    let n = s.read(&mut buf).await.expect("first bytes");
    assert!(n > 0);
    // The stall is the behaviour under test: six idle timeouts without reading.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut total = n;
    loop {
        match tokio::time::timeout(DEADLINE, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(m)) => total += m,
            Err(_) => panic!("neither data nor close"),
        }
    }
    assert!(
        total < 64 << 20,
        "the whole body arrived: the stalled connection was kept"
    );
    let _ = tx.send(());
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("stops")
        .expect("no panic");
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

#[test]
fn accept_backoff_doubles_to_a_second() {
    let mut d = None;
    let mut seen = Vec::new();
    for _ in 0..7 {
        let n = next_backoff(d);
        seen.push(n.as_millis());
        d = Some(n);
    }
    assert_eq!(seen, vec![50, 100, 200, 400, 800, 1000, 1000]);
}
