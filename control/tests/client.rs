//! The client against a real hyper server on a unix socket and on TCP.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opsflow_control::{Client, Endpoint, Error, Route, RsAction, RsChange, Status};

/// What the fake server saw: (method, path, host header, authorization header).
type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

fn status_json() -> String {
    r#"{"vrrp":[{"name":"VI_1","vrid":51,"interface":"eth0","state":"BACKUP","priority":100,
        "effective_priority":90,"vips":["10.0.0.100/24"],"master_address":"10.0.0.2",
        "last_transition":"2026-11-30T11:00:00Z"}],"virtual_servers":[]}"#
        .to_string()
}

async fn answer(req: Request<hyper::body::Incoming>, seen: Seen) -> Response<Full<Bytes>> {
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    seen.lock().unwrap().push((
        req.method().to_string(),
        req.uri().path().to_string(),
        h("host"),
        h("authorization"),
    ));
    let (code, body) = match Route::parse(req.method().as_str(), req.uri().path()) {
        Ok(Route::Status) => (200, status_json()),
        Ok(Route::RealServer {
            virtual_server,
            real_server,
            action,
        }) => (
            200,
            serde_json::to_string(&RsChange {
                virtual_server,
                real_server,
                maintenance: action == RsAction::Drain,
                healthy: true,
                note: String::new(),
            })
            .unwrap(),
        ),
        _ => (404, "not found here\n".to_string()),
    };
    Response::builder()
        .status(code)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn serve<S>(stream: S, seen: Seen)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let svc = hyper::service::service_fn(move |req| {
            let seen = seen.clone();
            async move { Ok::<_, Infallible>(answer(req, seen).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), svc)
            .await;
    });
}

#[tokio::test]
async fn typed_status_and_drain_over_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("ofc-client-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ha.sock");
    let _ = std::fs::remove_file(&path);
    let l = tokio::net::UnixListener::bind(&path).unwrap();
    let seen = Seen::default();
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            serve(s, s2.clone());
        }
    });
    let c = Client::new(Endpoint::parse(path.to_str().unwrap(), None).unwrap());
    let st: Status = c.status().await.unwrap();
    assert_eq!(st.vrrp[0].name, "VI_1");
    assert_eq!(st.vrrp[0].master_address, Some("10.0.0.2".parse().unwrap()));
    let ch = c
        .set_real_server("10.0.0.100:80", "10.0.1.1:80", RsAction::Drain)
        .await
        .unwrap();
    assert!(ch.maintenance);
    assert_eq!(ch.real_server, "10.0.1.1:80");
    let e = c.metrics().await.unwrap_err();
    assert_eq!(e.http_status(), Some(404));
    assert!(e.to_string().contains("not found here"), "{e}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].0, "GET");
    assert_eq!(seen[0].1, "/v1/status");
    assert_eq!(seen[0].2, "localhost");
    assert_eq!(seen[0].3, "");
    assert_eq!(seen[1].0, "POST");
    assert!(seen[1].1.ends_with("/real-servers/10.0.1.1:80/drain"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn tcp_carries_the_host_and_the_token() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Seen::default();
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            serve(s, s2.clone());
        }
    });
    let ep = Endpoint::parse(&format!("http://127.0.0.1:{port}"), Some("s3cret\n")).unwrap();
    Client::new(ep).status().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].2, format!("127.0.0.1:{port}"));
    assert_eq!(seen[0].3, "Bearer s3cret");
}

#[tokio::test]
async fn a_stuck_daemon_is_a_timeout_not_a_hang() {
    // accepts and reads, never answers
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h2 = held.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            h2.lock().unwrap().push(s);
        }
    });
    let total = Duration::from_millis(300);
    let c = Client::new(Endpoint::parse(&format!("127.0.0.1:{port}"), None).unwrap())
        .with_timeouts(Duration::from_secs(1), total);
    let t0 = Instant::now();
    let e = c.status().await.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert!(t0.elapsed() >= total);
    // generous bound: the point is "returns", not how fast
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(e.to_string().contains("stuck"), "{e}");
}

#[tokio::test]
async fn a_missing_socket_names_its_path() {
    let e = Client::new(Endpoint::parse("/nonexistent/dir/ha.sock", None).unwrap())
        .status()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/dir/ha.sock"), "{e}");
}

#[test]
fn the_blocking_client_works_without_a_runtime() {
    let dir = std::env::temp_dir().join(format!("ofc-blocking-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ha.sock");
    let _ = std::fs::remove_file(&path);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let l = rt
        .block_on(async { tokio::net::UnixListener::bind(&path) })
        .unwrap();
    rt.spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            serve(s, Seen::default());
        }
    });
    let b = opsflow_control::client::Blocking::new(Client::new(
        Endpoint::parse(path.to_str().unwrap(), None).unwrap(),
    ))
    .unwrap();
    assert_eq!(b.status().unwrap().vrrp.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
