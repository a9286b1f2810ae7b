//! The control API: `GET /v1/status` (JSON), `GET /metrics` (Prometheus) and the drain/enable
//! route, over a unix socket or over TCP where a bearer token is required. The routes and the
//! status types are the contract in `opsflow-control`; this module serves them. The client
//! side (`ha status|drain|enable`) is `opsflow_control::Client`; [`table`] renders a status
//! for people.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opsflow_control::route::{NoRoute, Usage};
use opsflow_control::{Route, RsAction, Status, VrrpState};
use tracing::warn;

use crate::daemon::{Counters, Shared};

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
    req: &Request<Incoming>,
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
        async move { Ok::<_, Infallible>(respond(&shared, token.as_deref(), &lvs, &req).await) }
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
    let row = |o: &mut String, c: [&str; 10]| {
        let _ = writeln!(
            o,
            "{:<22} {:<6} {:<5} {:<22} {:>6} {:>6} {:<8} {:<11} {:>6} {:>8}",
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

#[cfg(test)]
mod tests {
    use super::*;

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
