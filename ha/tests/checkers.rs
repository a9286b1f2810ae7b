//! Every checker against real servers started here on loopback: HTTP (tokio), TLS with a
//! self-signed certificate (python3 + openssl), a TCP listener, an SMTP sink, scripts.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ha::conf::lvs::{CheckKind, Checker, Url};
use ha::lvs::check::{check, check_once, md5_hex};
use opsflow_tests::{require, wait_until};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LO6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

fn checker(kind: CheckKind) -> Checker {
    Checker {
        kind,
        connect_ip: None,
        connect_port: None,
        bindto: None,
        bind_port: None,
        connect_timeout: 1.0,
        retry: 0,
        delay_before_retry: 0.2,
        delay_loop: None,
        warmup: None,
    }
}

fn http(path: &str, status: Option<u16>, digest: Option<&str>) -> CheckKind {
    CheckKind::Http {
        ssl: false,
        urls: vec![Url {
            path: path.into(),
            status_code: status.map(|c| vec![(c, c)]).unwrap_or_default(),
            digest: digest.map(str::to_string),
        }],
        virtualhost: Some("www.example".into()),
    }
}

/// An HTTP server: `/ok` 200 "hello\n", `/missing` 404, `/hang` never answers, anything else
/// echoes the Host header.
async fn http_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
                let host = req
                    .lines()
                    .find_map(|l| l.strip_prefix("Host: "))
                    .unwrap_or("")
                    .to_string();
                let (code, body) = match path.as_str() {
                    "/ok" => ("200 OK", "hello\n".to_string()),
                    "/missing" => ("404 Not Found", "no\n".to_string()),
                    "/hang" => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    _ => ("200 OK", format!("{host}\n")),
                };
                let resp = format!(
                    "HTTP/1.0 {code}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn http_get_status_digest_and_virtualhost() {
    let port = http_server().await;
    let ok = check_once(&checker(http("/ok", Some(200), None)), LO, port, 1.0).await;
    assert_eq!(ok, Ok(None));
    let d = md5_hex(b"hello\n");
    assert_eq!(
        check_once(&checker(http("/ok", None, Some(&d))), LO, port, 1.0).await,
        Ok(None)
    );
    let bad = check_once(
        &checker(http("/ok", None, Some(&"0".repeat(32)))),
        LO,
        port,
        1.0,
    )
    .await;
    assert!(bad.unwrap_err().contains(&format!("digest {d}")));
    let e = check_once(&checker(http("/missing", Some(200), None)), LO, port, 1.0).await;
    assert!(e.unwrap_err().contains("status 404 (expected 200)"));
    // without status_code, any 2xx is healthy and others are not
    assert!(
        check_once(&checker(http("/missing", None, None)), LO, port, 1.0)
            .await
            .is_err()
    );
    // the Host header is the virtualhost
    let page = ha::lvs::check::fetch(
        LO,
        port,
        "/echo",
        Some("www.example"),
        false,
        None,
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert_eq!(page.body, b"www.example\n");
}

#[tokio::test]
async fn a_hung_server_costs_its_connect_timeout_only() {
    let port = http_server().await;
    let t = Instant::now();
    let e = check_once(&checker(http("/hang", Some(200), None)), LO, port, 1.0).await;
    let took = t.elapsed();
    assert!(e.unwrap_err().contains("no complete answer"));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1600),
        "{took:?}"
    );
    // concurrently, a healthy server's check is not held up by the hung one
    let hung = tokio::spawn(async move {
        check_once(&checker(http("/hang", Some(200), None)), LO, port, 1.0).await
    });
    let t = Instant::now();
    assert_eq!(
        check_once(&checker(http("/ok", Some(200), None)), LO, port, 1.0).await,
        Ok(None)
    );
    assert!(t.elapsed() < Duration::from_millis(300));
    assert!(hung.await.unwrap().is_err());
}

/// TCP_CHECK, HTTP_GET and UDP_CHECK against servers on `::1`; the Host header brackets
/// the address.
#[tokio::test]
async fn checkers_connect_over_ipv6() {
    let Ok(l) = TcpListener::bind("[::1]:0").await else {
        assert!(!opsflow_tests::in_ci(), "no IPv6 loopback under CI");
        eprintln!("skipped: no IPv6 loopback here");
        return;
    };
    let port = l.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 2048];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            let host = req
                .lines()
                .find_map(|l| l.strip_prefix("Host: "))
                .unwrap_or("")
                .to_string();
            let body = format!("{host}\n");
            let resp = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
    assert_eq!(
        check_once(&checker(CheckKind::Tcp), LO6, port, 1.0).await,
        Ok(None)
    );
    let d = md5_hex(format!("[::1]:{port}\n").as_bytes());
    let mut c = checker(http("/", Some(200), Some(&d)));
    if let CheckKind::Http { virtualhost, .. } = &mut c.kind {
        *virtualhost = None;
    }
    assert_eq!(check_once(&c, LO6, port, 1.0).await, Ok(None));
    server.abort();
    let echo = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            let _ = echo.send_to(&buf[..n], from).await;
        }
    });
    let udp = checker(CheckKind::Udp {
        payload: b"ping6".to_vec(),
        require_reply: Some(b"ping6".to_vec()),
    });
    assert_eq!(check_once(&udp, LO6, echo_port, 1.0).await, Ok(None));
    // refused over IPv6 names the bracketed address
    let closed = tokio::net::TcpSocket::new_v6().unwrap();
    closed.bind("[::1]:0".parse().unwrap()).unwrap();
    let refused = closed.local_addr().unwrap().port();
    let e = check_once(&checker(CheckKind::Tcp), LO6, refused, 1.0)
        .await
        .unwrap_err();
    assert!(e.contains(&format!("[::1]:{refused}")), "{e}");
}

#[tokio::test]
async fn tcp_check_and_retries() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    assert_eq!(
        check_once(&checker(CheckKind::Tcp), LO, port, 1.0).await,
        Ok(None)
    );
    drop(l);
    // a socket bound but never listening holds a port that refuses connections; a port merely
    // freed could be taken by a concurrent test's listener
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let refused_port = closed.local_addr().unwrap().port();
    let e = check_once(&checker(CheckKind::Tcp), LO, refused_port, 1.0)
        .await
        .unwrap_err();
    assert!(e.contains("refused"), "{e}");
    // connect_port overrides the real server's port
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = checker(CheckKind::Tcp);
    c.connect_port = Some(l.local_addr().unwrap().port());
    assert_eq!(check_once(&c, LO, 1, 1.0).await, Ok(None));
    // retry: a server that comes up during the retries is healthy
    drop(l);
    let l2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p2 = l2.local_addr().unwrap().port();
    drop(l2);
    let mut c = checker(CheckKind::Tcp);
    c.retry = 2;
    c.delay_before_retry = 0.3;
    let up = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        TcpListener::bind(("127.0.0.1", p2)).await.unwrap()
    });
    let t = Instant::now();
    assert_eq!(check(&c, LO, p2, 1.0).await, Ok(None));
    assert!(t.elapsed() >= Duration::from_millis(250));
    drop(up);
}

async fn smtp_sink(
    helo_reply: &'static str,
) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(s);
                r.get_mut()
                    .write_all(b"220-sink ready\r\n220 go ahead\r\n")
                    .await
                    .unwrap();
                let mut line = String::new();
                while r.read_line(&mut line).await.unwrap_or(0) > 0 {
                    let _ = tx.send(line.trim_end().to_string());
                    let ans = if line.starts_with("HELO") {
                        helo_reply
                    } else {
                        "221 bye\r\n"
                    };
                    if r.get_mut().write_all(ans.as_bytes()).await.is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    (port, rx)
}

#[tokio::test]
async fn smtp_check_says_helo() {
    let (port, mut seen) = smtp_sink("250 hello\r\n").await;
    let c = checker(CheckKind::Smtp {
        helo: "lb.lab.test".into(),
    });
    assert_eq!(check_once(&c, LO, port, 1.0).await, Ok(None));
    assert_eq!(seen.recv().await.unwrap(), "HELO lb.lab.test");
    let (port, _) = smtp_sink("554 go away\r\n").await;
    let e = check_once(&c, LO, port, 1.0).await.unwrap_err();
    assert!(e.contains("554"), "{e}");
}

#[tokio::test]
async fn misc_check_exit_codes_dynamic_weights_and_timeout() {
    let dir = std::env::temp_dir().join(format!("ha-misc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = |name: &str, body: &str| {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&p)
            .status()
            .unwrap();
        p.display().to_string()
    };
    let misc = |path: String, dynamic: bool| {
        checker(CheckKind::Misc {
            path,
            timeout: Some(0.5),
            dynamic,
            user: None,
        })
    };
    assert_eq!(
        check_once(&misc(script("ok", "exit 0"), false), LO, 80, 1.0).await,
        Ok(None)
    );
    assert!(
        check_once(&misc(script("bad", "exit 1"), false), LO, 80, 1.0)
            .await
            .unwrap_err()
            .contains("exited 1")
    );
    assert!(
        check_once(&misc(script("five", "exit 5"), false), LO, 80, 1.0)
            .await
            .is_err()
    );
    assert_eq!(
        check_once(&misc(script("five2", "exit 5"), true), LO, 80, 1.0).await,
        Ok(Some(3))
    );
    assert!(
        check_once(&misc(script("one", "exit 1"), true), LO, 80, 1.0)
            .await
            .is_err()
    );
    // arguments in misc_path, and shell syntax, as keepalived runs them
    assert_eq!(
        check_once(
            &misc(format!("{} arg", script("args", "[ \"$1\" = arg ]")), false),
            LO,
            80,
            1.0
        )
        .await,
        Ok(None)
    );
    let t = Instant::now();
    let e = check_once(&misc(script("slow", "sleep 5"), false), LO, 80, 1.0)
        .await
        .unwrap_err();
    assert!(e.contains("killed"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn ssl_get_with_digest_against_a_self_signed_server() {
    if !require(&["python3", "openssl"]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ha-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let st = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=rs",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(st.status.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let py = format!(
        "import http.server, ssl\nclass H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        b=b'tls page\\n'; self.send_response(200); self.send_header('Content-Length',str(len(b))); self.end_headers(); self.wfile.write(b)\n    def log_message(self,*a): pass\ns=http.server.HTTPServer(('127.0.0.1',{port}),H)\nc=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain('{}','{}')\ns.socket=c.wrap_socket(s.socket, server_side=True); s.serve_forever()\n",
        cert.display(),
        key.display()
    );
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(py)
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    let d = md5_hex(b"tls page\n");
    let c = checker(CheckKind::Http {
        ssl: true,
        urls: vec![Url {
            path: "/".into(),
            status_code: vec![(200, 200)],
            digest: Some(d.clone()),
        }],
        virtualhost: None,
    });
    let r = check_once(&c, LO, port, 1.0).await;
    let gh = std::process::Command::new(env!("CARGO_BIN_EXE_ha"))
        .args([
            "genhash",
            "-s",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-u",
            "/",
            "--ssl",
        ])
        .output()
        .unwrap();
    // the same page over plain HTTP is not a TLS answer
    let plain = check_once(&checker(http("/", Some(200), None)), LO, port, 1.0).await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(r, Ok(None));
    assert!(plain.is_err());
    assert_eq!(
        String::from_utf8_lossy(&gh.stdout).trim(),
        format!("MD5SUM = {d}")
    );
}

/// keepalived's FILE_CHECK: `track_file NAME` with weight 0 means non-zero = down, the file
/// is read on every check, a missing file reads as 0.
#[tokio::test]
async fn file_check_reads_the_track_file_with_keepalived_rules() {
    let dir = std::env::temp_dir().join(format!("ha-file-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("flag");
    let c = |weight: i32, reverse: bool| {
        checker(CheckKind::File {
            track: "flag".into(),
            path: f.to_string_lossy().into_owned(),
            weight,
            reverse,
            own_weight: None,
            pos: ha::conf::syntax::Pos {
                file: "t.conf".into(),
                line: 1,
                col: 1,
            },
        })
    };
    assert_eq!(
        check_once(&c(0, false), LO, 80, 1.0).await,
        Ok(None),
        "missing file: 0"
    );
    std::fs::write(&f, "1\n").unwrap();
    assert!(check_once(&c(0, false), LO, 80, 1.0)
        .await
        .unwrap_err()
        .contains("holds 1"));
    assert_eq!(check_once(&c(0, true), LO, 80, 1.0).await, Ok(None));
    std::fs::write(&f, "0\n").unwrap();
    assert_eq!(check_once(&c(0, false), LO, 80, 1.0).await, Ok(None));
    // with a weight, only a product at -254 or below is down
    std::fs::write(&f, "-30").unwrap();
    assert_eq!(check_once(&c(5, false), LO, 80, 1.0).await, Ok(None));
    assert!(check_once(&c(10, false), LO, 80, 1.0).await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// PING_CHECK: an answered ICMP echo is healthy; silence is a failure within connect_timeout.
/// The pings run on a thread inside a lab namespace: a neighbour that answers, an address
/// nobody holds; over IPv4 and ICMPv6.
#[test]
fn ping_check_needs_an_echo_reply_in_time() {
    use std::os::fd::AsRawFd;
    let Some(lab) = opsflow_tests::Lab::new(&[]) else {
        return;
    };
    let lan = lab.switch("lan");
    let p = lab.host("p");
    let q = lab.host("q");
    lab.attach(&p, &lan, "eth0", Some("10.93.0.1/24"));
    lab.attach(&q, &lan, "eth0", Some("10.93.0.2/24"));
    for (h, a) in [(&p, "2001:db8:93::1/64"), (&q, "2001:db8:93::2/64")] {
        h.run("ip", &["addr", "add", a, "dev", "eth0", "nodad"]);
    }
    let ns = std::fs::File::open(format!("/var/run/netns/{}", p.ns())).unwrap();
    let results = std::thread::spawn(move || {
        // SAFETY: moves only this thread into the lab namespace; the fd is open.
        assert_eq!(
            unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        let limit = Duration::from_millis(800);
        let ok = ha::lvs::check::ping("10.93.0.2".parse().unwrap(), None, limit);
        let t0 = Instant::now();
        let silent = ha::lvs::check::ping("10.93.0.99".parse().unwrap(), None, limit);
        let took = t0.elapsed();
        let ok6 = ha::lvs::check::ping("2001:db8:93::2".parse().unwrap(), None, limit);
        let silent6 = ha::lvs::check::ping("2001:db8:93::99".parse().unwrap(), None, limit);
        (ok, silent, took, ok6, silent6)
    })
    .join()
    .unwrap();
    assert_eq!(results.0, Ok(()));
    let e = results.1.unwrap_err();
    assert!(e.contains("no echo reply"), "{e}");
    assert!(results.2 < Duration::from_secs(2), "{:?}", results.2);
    assert_eq!(results.3, Ok(()));
    let e = results.4.unwrap_err();
    assert!(e.contains("no echo reply"), "{e}");
}

/// UDP_CHECK as keepalived's: port unreachable is down, silence is up unless a reply is
/// required, a required reply must start with the given bytes.
#[tokio::test]
async fn udp_check_port_unreachable_and_required_replies() {
    let echo = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut b = [0u8; 512];
        while let Ok((n, from)) = echo.recv_from(&mut b).await {
            let _ = echo.send_to(&[b"pong:", &b[..n]].concat(), from).await;
        }
    });
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let closed_port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let udp = |reply: Option<&[u8]>| {
        let mut c = checker(CheckKind::Udp {
            payload: b"ping".to_vec(),
            require_reply: reply.map(<[u8]>::to_vec),
        });
        c.connect_timeout = 0.3;
        c
    };
    assert_eq!(
        check_once(&udp(Some(b"pong:ping")), LO, echo_port, 1.0).await,
        Ok(None)
    );
    assert!(check_once(&udp(Some(b"other")), LO, echo_port, 1.0)
        .await
        .is_err());
    assert_eq!(check_once(&udp(None), LO, silent_port, 1.0).await, Ok(None));
    let e = check_once(&udp(Some(b"")), LO, silent_port, 1.0)
        .await
        .unwrap_err();
    assert!(e.contains("no reply"), "{e}");
    let e = check_once(&udp(None), LO, closed_port, 1.0)
        .await
        .unwrap_err();
    assert!(e.contains("refused"), "{e}");
    drop(silent);
}

/// DNS_CHECK against a real DNS server (dnsmasq on loopback): NOERROR is healthy, another
/// rcode or silence is not.
#[tokio::test]
async fn dns_check_against_dnsmasq() {
    if !require(&["dnsmasq"]) {
        return;
    }
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    /// Kills dnsmasq however the test ends.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let dnsmasq = std::process::Command::new("dnsmasq")
        .args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--user=root",
            &format!("--port={port}"),
            "--address=/ok.test/10.0.0.1",
            "--address=/gone.test/",
        ])
        .spawn()
        .unwrap();
    let dnsmasq = Kill(dnsmasq);
    let dns = |t: u16, name: &str| {
        let mut c = checker(CheckKind::Dns {
            qtype: t,
            name: name.into(),
        });
        c.connect_timeout = 0.5;
        c
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while check_once(&dns(1, "ok.test"), LO, port, 1.0).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "dnsmasq never answered on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = check_once(&dns(1, "gone.test"), LO, port, 1.0)
        .await
        .unwrap_err();
    assert!(e.contains("rcode 3"), "{e}");
    drop(dnsmasq);
    let e = check_once(&dns(1, "ok.test"), LO, port, 1.0)
        .await
        .unwrap_err();
    assert!(e.contains("no answer") || e.contains("refused"), "{e}");
    // the wire format of the query
    assert_eq!(
        ha::lvs::check::dns_query(0x1234, 6, "a.b."),
        [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 1, b'b', 0, 0, 6, 0, 1]
    );
}

/// A checker that panics (here: an infinite timeout the config check would refuse) fails
/// its real server: never open.
#[tokio::test]
async fn a_panicking_checker_fails_closed() {
    let mut c = checker(CheckKind::Tcp);
    c.connect_timeout = f64::INFINITY;
    let r = ha::lvs::check::check_guarded(&c, LO, 9, 1.0).await;
    assert!(r.unwrap_err().contains("checker failed"));
}
