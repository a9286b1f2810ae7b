//! The control API: `GET /v1/status` (JSON) and `GET /metrics` (Prometheus) over a unix
//! socket, or over TCP where a bearer token is required (`--control-token-file`).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tracing::warn;

use crate::daemon::Shared;

/// `POST /v1/virtual-servers/{vs}/real-servers/{rs}/{drain|enable}` → (vs, rs, drain?).
fn drain_route(path: &str) -> Option<(String, String, bool)> {
    let rest = path.strip_prefix("/v1/virtual-servers/")?;
    let (vs, rest) = rest.split_once("/real-servers/")?;
    let (rs, verb) = rest.rsplit_once('/')?;
    let on = match verb {
        "drain" => true,
        "enable" => false,
        _ => return None,
    };
    Some((vs.to_string(), rs.to_string(), on))
}

async fn respond(
    shared: &Shared,
    token: &Option<String>,
    lvs: &Option<crate::lvs::Handle>,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let reply = |code: StatusCode, ctype: &str, body: String| {
        Response::builder()
            .status(code)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    if let Some(t) = token {
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth.strip_prefix("Bearer ").map(str::trim) != Some(t.as_str()) {
            return reply(
                StatusCode::UNAUTHORIZED,
                "text/plain",
                "a bearer token is required (Authorization: Bearer ...)\n".into(),
            );
        }
    }
    if req.method() == hyper::Method::POST {
        let Some((vs, rs, on)) = drain_route(req.uri().path()) else {
            return reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: POST /v1/virtual-servers/{VIP:PORT|fwmark-N}/real-servers/{RIP:PORT}/{drain|enable}\n".into(),
            );
        };
        let Some(l) = lvs else {
            return reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "this ha has no virtual servers\n".into(),
            );
        };
        return match l.drain(&vs, &rs, on).await {
            Ok(v) => reply(StatusCode::OK, "application/json", v.to_string()),
            Err((code, msg)) => reply(
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "text/plain",
                format!("{msg}\n"),
            ),
        };
    }
    let Ok(s) = shared.lock() else {
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "state unavailable\n".into(),
        );
    };
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/v1/status") => reply(
            StatusCode::OK,
            "application/json",
            serde_json::to_string(&s.0).unwrap_or_default(),
        ),
        ("GET", "/metrics") => {
            let mut m = String::new();
            let _ = writeln!(
                m,
                "# TYPE ha_vrrp_adverts_received_total counter\nha_vrrp_adverts_received_total {}",
                s.1.adverts_rx
            );
            let _ = writeln!(
                m,
                "# TYPE ha_vrrp_adverts_sent_total counter\nha_vrrp_adverts_sent_total {}",
                s.1.adverts_tx
            );
            let _ = writeln!(
                m,
                "# TYPE ha_vrrp_transitions_total counter\nha_vrrp_transitions_total {}",
                s.1.transitions
            );
            let _ = writeln!(m, "# TYPE ha_vrrp_adverts_dropped_total counter");
            for (k, v) in &s.1.dropped {
                let _ = writeln!(m, "ha_vrrp_adverts_dropped_total{{reason=\"{k}\"}} {v}");
            }
            let _ = writeln!(m, "# TYPE ha_vrrp_state gauge");
            for i in &s.0.vrrp {
                for st in ["INIT", "BACKUP", "MASTER", "FAULT"] {
                    let _ = writeln!(
                        m,
                        "ha_vrrp_state{{instance=\"{}\",state=\"{st}\"}} {}",
                        i.name,
                        u8::from(i.state == st)
                    );
                }
            }
            reply(StatusCode::OK, "text/plain; version=0.0.4", m)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: GET /v1/status or /metrics, POST /v1/virtual-servers/.../real-servers/.../{drain|enable}\n".into(),
        ),
    }
}

async fn serve_conn<IO>(
    io: IO,
    shared: Shared,
    token: Arc<Option<String>>,
    lvs: Option<crate::lvs::Handle>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: Request<Incoming>| {
        let (shared, token, lvs) = (shared.clone(), token.clone(), lvs.clone());
        async move { Ok::<_, Infallible>(respond(&shared, &token, &lvs, &req).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await
    {
        warn!(error = %e, "control connection failed");
    }
}

/// Where the control API listens.
pub enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

pub async fn serve(
    l: Listener,
    shared: Shared,
    token: Option<String>,
    lvs: Option<crate::lvs::Handle>,
) {
    let token = Arc::new(token);
    loop {
        match &l {
            Listener::Unix(u) => match u.accept().await {
                Ok((s, _)) => {
                    tokio::spawn(serve_conn(s, shared.clone(), Arc::new(None), lvs.clone()));
                }
                Err(e) => warn!(error = %e, "control accept failed"),
            },
            Listener::Tcp(t) => match t.accept().await {
                Ok((s, _)) => {
                    tokio::spawn(serve_conn(s, shared.clone(), token.clone(), lvs.clone()));
                }
                Err(e) => warn!(error = %e, "control accept failed"),
            },
        }
    }
}

/// A minimal client for `ha status`: GET a path, return the body.
pub fn get(control: &str, path: &str, token: Option<&str>) -> anyhow::Result<String> {
    request(control, "GET", path, token)
}

/// A minimal client: one request, the body of a 200 answer or an error with the answer.
pub fn request(
    control: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("{method} {path} HTTP/1.0\r\nHost: ha\r\nContent-Length: 0\r\n{auth}\r\n");
    let mut raw = Vec::new();
    if control.contains('/') {
        let mut s = std::os::unix::net::UnixStream::connect(control).map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to {control}: {e} (is ha running with --control {control}?)"
            )
        })?;
        s.write_all(req.as_bytes())?;
        s.read_to_end(&mut raw)?;
    } else {
        let mut s = std::net::TcpStream::connect(control)
            .map_err(|e| anyhow::anyhow!("cannot connect to {control}: {e}"))?;
        s.write_all(req.as_bytes())?;
        s.read_to_end(&mut raw)?;
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        anyhow::bail!("{}: {}", head.lines().next().unwrap_or(""), body.trim());
    }
    Ok(body.to_string())
}
