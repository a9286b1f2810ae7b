//! The health gate: the application's own health URL, asked from this machine.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// `http://HOST:PORT/PATH` → (`HOST:PORT`, `/PATH`).
pub fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("{url}: only http:// health URLs are supported"))?;
    Ok(match rest.split_once('/') {
        Some((h, p)) => (h.to_string(), format!("/{p}")),
        None => (rest.to_string(), "/".to_string()),
    })
}

/// (status, body) of a raw HTTP/1.x answer; None when it is not one.
pub fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut words = head.split_whitespace();
    if !words.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = words.next()?.parse().ok()?;
    Some((code, body.to_string()))
}

/// The request the gate sends: `Host` is the URL's authority, as a browser would send it.
fn request(authority: &str, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: opsflow-release\r\nConnection: close\r\n\r\n"
    )
}

/// One GET with a deadline on connect, write and read.
fn get(authority: &str, path: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    use std::net::ToSocketAddrs;
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{authority}: no address"))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| anyhow::anyhow!("cannot connect to {authority}: {e}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(request(authority, path).as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| anyhow::anyhow!("{authority}: {e}"))?;
    parse_response(&raw).ok_or_else(|| anyhow::anyhow!("{authority}: not an HTTP answer"))
}

/// Polls `cond` every `every` until it holds or `timeout` passes; the last error or "not
/// within" otherwise.
pub fn wait(
    timeout: Duration,
    every: Duration,
    mut cond: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let end = Instant::now() + timeout;
    loop {
        let last = cond();
        if let Ok(true) = last {
            return Ok(());
        }
        if Instant::now() >= end {
            return match last {
                Err(e) => Err(e),
                _ => Err(anyhow::anyhow!("not within {}s", timeout.as_secs())),
            };
        }
        std::thread::sleep(every);
    }
}

/// The health gate: `successes` consecutive 2xx answers from `url` within `timeout`.
pub fn health_gate(url: &str, successes: u32, timeout: Duration) -> anyhow::Result<()> {
    let (authority, path) = split_url(url)?;
    let end = Instant::now() + timeout;
    let mut streak = 0;
    let mut last = String::from("no answer yet");
    while Instant::now() < end {
        match get(&authority, &path, Duration::from_secs(2)) {
            Ok((code, _)) if (200..300).contains(&code) => {
                streak += 1;
                if streak >= successes {
                    return Ok(());
                }
            }
            Ok((code, body)) => {
                streak = 0;
                last = format!(
                    "status {code} {}",
                    body.trim().chars().take(80).collect::<String>()
                );
            }
            Err(e) => {
                streak = 0;
                last = e.to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    anyhow::bail!(
        "{url}: not {successes} healthy answers in a row within {}s (last: {last})",
        timeout.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_answers_and_the_host_header() {
        assert_eq!(
            split_url("http://10.0.0.11:80/health").unwrap(),
            ("10.0.0.11:80".into(), "/health".into())
        );
        assert_eq!(
            split_url("http://web1").unwrap(),
            ("web1".into(), "/".into())
        );
        assert!(split_url("https://x/").is_err());
        assert_eq!(
            parse_response(b"HTTP/1.0 503 Busy\r\nA: b\r\n\r\nlater"),
            Some((503, "later".into()))
        );
        assert_eq!(parse_response(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_response(b""), None);
        let r = request("web1.example:8080", "/health");
        assert!(r.starts_with("GET /health HTTP/1.1\r\n"), "{r}");
        assert!(r.contains("\r\nHost: web1.example:8080\r\n"), "{r}");
    }

    #[test]
    fn the_gate_sends_the_urls_host_to_a_real_server() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let mut hosts = Vec::new();
            for _ in 0..2 {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                hosts.extend(
                    req.lines()
                        .filter(|l| l.starts_with("Host:"))
                        .map(str::to_string),
                );
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .unwrap();
            }
            hosts
        });
        health_gate(
            &format!("http://127.0.0.1:{port}/health"),
            2,
            Duration::from_secs(20),
        )
        .unwrap();
        let hosts = server.join().unwrap();
        assert_eq!(hosts, vec![format!("Host: 127.0.0.1:{port}"); 2]);
    }
}
