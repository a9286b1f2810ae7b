//! What two or more opsflow components really share: the Prometheus endpoint and the
//! logging setup. Nothing protocol-specific lives here.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{info, warn};

/// Serves `GET /metrics` with the text `render` returns (Prometheus exposition format).
pub async fn serve_metrics(listener: TcpListener, render: Arc<dyn Fn() -> String + Send + Sync>) {
    if let Ok(a) = listener.local_addr() {
        info!(listen = %a, "metrics endpoint ready");
    }
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                continue;
            }
        };
        let render = render.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
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
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                warn!(%peer, error = %e, "metrics connection failed");
            }
        });
    }
}

/// Writes `data` to `path` through a temporary file in the same directory and a rename, so a
/// reader sees the old or the new content, never a part. Creates parent directories.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let named =
        |what: String, e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"));
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| named(format!("cannot create directory {}", dir.display()), e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(named(format!("cannot write {}", path.display()), e));
    }
    Ok(())
}

/// Installs the tracing subscriber: filter from the environment variable `env_var` (default
/// `info`), text or JSON lines on stderr.
pub fn init_logging(env_var: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(env_var)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

/// IPv4 addresses of this host's interfaces, loopback excluded: (name, address, prefix
/// length), in the kernel's order (an interface's primary address first).
pub fn ipv4_interfaces() -> Vec<(String, std::net::Ipv4Addr, u8)> {
    let mut out = Vec::new();
    // SAFETY: getifaddrs fills a list we walk read-only and free once.
    unsafe {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || (*ifa.ifa_addr).sa_family as i32 != libc::AF_INET {
                continue;
            }
            if ifa.ifa_flags & libc::IFF_LOOPBACK as u32 != 0 {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
            let addr = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            let prefix = if ifa.ifa_netmask.is_null() {
                32
            } else {
                let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in);
                u32::from_be(m.sin_addr.s_addr).count_ones() as u8
            };
            out.push((name, addr, prefix));
        }
        libc::freeifaddrs(head);
    }
    out
}

/// Positions and diagnostics for the config languages (dhcpd.conf, keepalived.conf):
/// `FILE:LINE:COL: [warning: ]message`.
pub mod diag {
    use std::fmt;
    use std::sync::Arc;

    /// Where something starts: file, 1-based line and column.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Pos {
        pub file: Arc<str>,
        pub line: usize,
        pub col: usize,
    }

    impl fmt::Display for Pos {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}:{}:{}", self.file, self.line, self.col)
        }
    }

    /// A problem with its position.
    #[derive(Clone, Debug)]
    pub struct Diag {
        pub pos: Pos,
        pub message: String,
        pub warning: bool,
    }

    impl fmt::Display for Diag {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let kind = if self.warning { "warning: " } else { "" };
            write!(f, "{}: {kind}{}", self.pos, self.message)
        }
    }

    impl std::error::Error for Diag {}

    pub fn error(pos: &Pos, message: impl Into<String>) -> Diag {
        Diag {
            pos: pos.clone(),
            message: message.into(),
            warning: false,
        }
    }

    pub fn warning(pos: &Pos, message: impl Into<String>) -> Diag {
        Diag {
            pos: pos.clone(),
            message: message.into(),
            warning: true,
        }
    }

    /// Levenshtein distance, for "did you mean" hints.
    pub fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn distance_and_display() {
            assert_eq!(
                super::distance("virtual_router_idd", "virtual_router_id"),
                1
            );
            assert_eq!(super::distance("", "abc"), 3);
            let p = super::Pos {
                file: "k.conf".into(),
                line: 4,
                col: 3,
            };
            assert_eq!(
                super::warning(&p, "x").to_string(),
                "k.conf:4:3: warning: x"
            );
        }
    }
}
