//! dhcpd with real clients (udhcpc, dhclient, dhcpcd) in lab namespaces, and a crash test
//! with a relay-style raw client.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::collections::HashMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use dhcpd::wire::{self, Msg, MsgType};
use opsflow_tests::{wait_until, Host, Lab, Proc, Switch};

const BIN: &str = env!("CARGO_BIN_EXE_dhcpd");

const CONF: &str = r#"
authoritative;
default-lease-time 600;
max-lease-time 7200;
option domain-name "lab.test";
option domain-name-servers 10.50.0.1;
subnet 10.50.0.0 netmask 255.255.255.0 {
  range 10.50.0.100 10.50.0.150;
  option routers 10.50.0.1;
  option broadcast-address 10.50.0.255;
  filename "pxelinux.0";
  next-server 10.50.0.1;
}
subnet 10.60.0.0 netmask 255.255.0.0 {
  range 10.60.1.1 10.60.40.250;
  option routers 10.60.0.1;
}
host reserved {
  hardware ethernet 02:00:00:00:00:33;
  fixed-address 10.50.0.20;
  filename "uefi/shimx64.efi";
}
"#;

struct Env {
    lab: Lab,
    srv: Host,
    lan: Switch,
    rel: Host,
    conf: PathBuf,
    leases: PathBuf,
    server: Option<Proc>,
    starts: usize,
}

fn setup(tools: &[&str], conf: &str) -> Option<Env> {
    let lab = Lab::new(tools)?;
    let lan = lab.switch("lan");
    let srv = lab.host("srv");
    lab.attach(&srv, &lan, "eth0", Some("10.50.0.1/24"));
    let rel = lab.host("rel");
    lab.connect(
        &srv,
        "eth1",
        Some("10.60.0.1/16"),
        &rel,
        "eth0",
        Some("10.60.0.9/16"),
    );
    let conf_path = lab.path("dhcpd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let leases = lab.path("dhcpd.leases");
    Some(Env {
        lab,
        srv,
        lan,
        rel,
        conf: conf_path,
        leases,
        server: None,
        starts: 0,
    })
}

impl Env {
    fn start(&mut self) {
        self.starts += 1;
        let (c, l) = (
            self.conf.to_string_lossy().into_owned(),
            self.leases.to_string_lossy().into_owned(),
        );
        let mut p = self.srv.spawn(
            &format!("dhcpd-{}", self.starts),
            BIN,
            &[
                "--config",
                &c,
                "--leases",
                &l,
                "--interface",
                "eth0",
                "--interface",
                "eth1",
                "--metrics",
                "127.0.0.1:9167",
            ],
        );
        assert!(
            p.wait_for_output("dhcpd ready", Duration::from_secs(10)),
            "{}",
            p.output()
        );
        self.server = Some(p);
    }

    fn client(&self, name: &str, mac: Option<&str>) -> Host {
        let h = self.lab.host(name);
        self.lab.attach(&h, &self.lan, "eth0", None);
        if let Some(m) = mac {
            h.run("ip", &["link", "set", "eth0", "address", m]);
        }
        h
    }

    fn leases_json(&self) -> Vec<serde_json::Value> {
        let out = Command::new(BIN)
            .args([
                "leases",
                "--leases",
                &self.leases.to_string_lossy(),
                "--json",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn log(&self) -> String {
        self.server.as_ref().map(|p| p.output()).unwrap_or_default()
    }
}

/// A udhcpc script that records the variables of each event.
fn udhcpc_script(env: &Env) -> String {
    let path = env.lab.path("udhcpc.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\necho \"event=$1 ip=$ip router=$router dns=$dns domain=$domain lease=$lease boot_file=$boot_file siaddr=$siaddr\" >>\"$REC\"\n[ \"$1\" = bound ] && ip addr add \"$ip/${mask:-24}\" dev \"$interface\"\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn udhcpc_dhclient_and_dhcpcd_get_addresses_options_and_reservations() {
    let Some(mut env) = setup(&["udhcpc", "dhclient", "dhcpcd"], CONF) else {
        return;
    };
    env.start();
    // udhcpc
    let c1 = env.client("c1", None);
    let script = udhcpc_script(&env);
    let rec = env.lab.path("c1.rec");
    let mut cmd = c1.command("udhcpc");
    cmd.env("REC", &rec).args([
        "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", &script,
    ]);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "udhcpc: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        env.log()
    );
    let r = std::fs::read_to_string(&rec).unwrap();
    for want in [
        "event=bound ip=10.50.0.1",
        "router=10.50.0.1",
        "dns=10.50.0.1",
        "domain=lab.test",
        "lease=600",
        "boot_file=pxelinux.0",
        "siaddr=10.50.0.1",
    ] {
        assert!(r.contains(want), "udhcpc record lacks {want}: {r}");
    }
    // dhclient: no broadcast flag, so the reply must reach it at the link layer
    let c2 = env.client("c2", None);
    let lf = env.lab.path("c2.leases");
    let pf = env.lab.path("c2.pid");
    let dlog = env.lab.path("dhclient.log");
    let (st, _) = c2.sh(&format!(
        "timeout 30 dhclient -1 -4 -v -lf {} -pf {} -sf /bin/true eth0 >{} 2>&1",
        lf.display(),
        pf.display(),
        dlog.display()
    ));
    let text = std::fs::read_to_string(&lf).unwrap_or_default();
    assert!(
        st.success() && text.contains("fixed-address 10.50.0.1"),
        "dhclient: {}\n{text}",
        std::fs::read_to_string(&dlog).unwrap_or_default()
    );
    for want in [
        "option dhcp-lease-time 600",
        "option dhcp-renewal-time 300",
        "option dhcp-rebinding-time 525",
    ] {
        assert!(text.contains(want), "dhclient lease lacks {want}: {text}");
    }
    // dhcpcd with the reserved MAC
    let c3 = env.client("c3", Some("02:00:00:00:00:33"));
    // dhcpcd forks helpers that outlive it: its output goes to a file, not a pipe that
    // would stay open; the lab kills the helpers with the namespace
    let log = env.lab.path("dhcpcd.log");
    c3.sh(&format!(
        "timeout 30 dhcpcd -T -4 -t 20 --nohook resolv.conf eth0 >{} 2>&1",
        log.display()
    ));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("new_ip_address='10.50.0.20'") || text.contains("new_ip_address=10.50.0.20"),
        "dhcpcd: {text}"
    );
    assert!(
        text.contains("uefi/shimx64.efi"),
        "dhcpcd: reserved host's filename missing: {text}"
    );
    let leases = env.leases_json();
    let active = leases.iter().filter(|l| l["state"] == "active").count();
    assert!(active >= 2, "{leases:?}");
}

#[test]
fn renew_and_release() {
    let Some(mut env) = setup(&["udhcpc"], CONF) else {
        return;
    };
    env.start();
    let c = env.client("c", None);
    let script = udhcpc_script(&env);
    let rec = env.lab.path("renew.rec");
    let mut cmd = c.command("udhcpc");
    cmd.env("REC", &rec).args([
        "-i", "eth0", "-f", "-R", "-t", "5", "-T", "1", "-s", &script,
    ]);
    let mut p = c.spawn_command("udhcpc", cmd);
    // bound, then SIGUSR1 makes udhcpc renew now (BusyBox floors short leases, so T1
    // itself is checked through dhclient's lease file)
    let rec_text = || std::fs::read_to_string(&rec).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(10), || rec_text()
            .contains("event=bound")),
        "{}",
        env.log()
    );
    p.signal(libc::SIGUSR1);
    assert!(
        wait_until(Duration::from_secs(15), || rec_text()
            .contains("event=renew")),
        "no renewal: {}\n{}",
        rec_text(),
        env.log()
    );
    let text = rec_text();
    let bound = text.lines().find(|l| l.starts_with("event=bound")).unwrap();
    let ip = bound
        .split("ip=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert!(
        text.lines()
            .any(|l| l.starts_with("event=renew") && l.contains(&format!("ip={ip} "))),
        "{text}"
    );
    // -R: udhcpc sends a RELEASE when it is told to stop
    p.stop(Duration::from_secs(5));
    let released = || {
        env.leases_json()
            .iter()
            .any(|l| l["ip"] == ip.as_str() && l["state"] == "released")
    };
    assert!(
        wait_until(Duration::from_secs(5), released),
        "{:?}",
        env.leases_json()
    );
}

fn relay_socket(env: &Env) -> UdpSocket {
    let s = env.rel.enter(|| UdpSocket::bind("10.60.0.9:67").unwrap());
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// One DORA through a relay address; returns the ACKed address.
fn relayed_dora(s: &UdpSocket, mac: [u8; 6], xid: u32) -> Option<Ipv4Addr> {
    let mut d = Msg::parse(&wire::request(MsgType::Discover, mac, xid, &[])).unwrap();
    d.giaddr = Ipv4Addr::new(10, 60, 0, 9);
    d.hops = 1;
    let mut buf = [0u8; 1500];
    let exchange = |m: &Msg, want: MsgType, buf: &mut [u8]| -> Option<Msg> {
        s.send_to(&m.encode(576), "10.60.0.1:67").ok()?;
        let end = Instant::now() + Duration::from_millis(500);
        while Instant::now() < end {
            let (n, _) = s.recv_from(buf).ok()?;
            let r = Msg::parse(&buf[..n]).ok()?;
            if r.xid == xid && r.msg_type() == Some(want) {
                return Some(r);
            }
        }
        None
    };
    let off = exchange(&d, MsgType::Offer, &mut buf)?;
    let mut req = Msg::parse(&wire::request(
        MsgType::Request,
        mac,
        xid,
        &[
            (wire::OPT_SERVER_ID, &[10, 60, 0, 1]),
            (wire::OPT_REQUESTED_IP, &off.yiaddr.octets()),
        ],
    ))
    .unwrap();
    req.giaddr = Ipv4Addr::new(10, 60, 0, 9);
    let ack = exchange(&req, MsgType::Ack, &mut buf)?;
    Some(ack.yiaddr)
}

#[test]
fn kill_dash_nine_under_load_never_grants_an_address_twice() {
    let Some(mut env) = setup(&[], CONF) else {
        return;
    };
    env.start();
    let s = relay_socket(&env);
    let mut granted: HashMap<Ipv4Addr, [u8; 6]> = HashMap::new();
    let started = Instant::now();
    for i in 0..1200u32 {
        let mac = [2, 9, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        if i == 600 {
            // crash in the middle of the load, then come back on the same journal
            env.server.as_mut().unwrap().kill();
            env.start();
        }
        if let Some(ip) = relayed_dora(&s, mac, i + 1) {
            if let Some(other) = granted.insert(ip, mac) {
                assert_eq!(
                    other, mac,
                    "{ip} was granted to {other:02x?} and then to {mac:02x?}"
                );
            }
        }
    }
    assert!(
        granted.len() >= 1150,
        "only {} of 1200 exchanges completed",
        granted.len()
    );
    // every granted address is in the journal as active, held by the client it went to
    let leases = env.leases_json();
    let by_ip: HashMap<&str, &serde_json::Value> = leases
        .iter()
        .map(|l| (l["ip"].as_str().unwrap(), l))
        .collect();
    for (ip, mac) in &granted {
        let l = by_ip
            .get(ip.to_string().as_str())
            .unwrap_or_else(|| panic!("{ip} ACKed but not in the journal"));
        let m = mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(l["mac"], m.as_str());
        assert_eq!(l["state"], "active");
    }
    eprintln!(
        "1200 relayed DORAs with a kill -9 in the middle in {:?}",
        started.elapsed()
    );
}

#[test]
fn hostile_packets_are_counted_and_the_server_keeps_serving() {
    let Some(mut env) = setup(&["curl"], CONF) else {
        return;
    };
    env.start();
    let s = env.rel.enter(|| UdpSocket::bind("10.60.0.9:0").unwrap());
    let good = wire::request(
        MsgType::Request,
        [2, 0, 0, 0, 0, 7],
        5,
        &[(50, &[10, 60, 0, 7])],
    );
    let mut x = 99u32;
    for i in 0..3000usize {
        let mut p = match i % 4 {
            0 => vec![0u8; (i * 7) % 600],
            1 => good[..(i % 240)].to_vec(),
            2 => good.clone(),
            _ => {
                let mut p = good[..244].to_vec();
                p.extend_from_slice(&[61, 200]);
                p
            }
        };
        if i % 4 == 2 {
            for _ in 0..6 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let k = (x as usize >> 8) % p.len();
                p[k] = (x >> 24) as u8;
            }
        }
        let _ = s.send_to(&p, "10.60.0.1:67");
    }
    assert!(env.server.as_mut().unwrap().is_running(), "{}", env.log());
    let r = relay_socket(&env);
    assert!(
        relayed_dora(&r, [2, 7, 7, 7, 7, 7], 4242).is_some(),
        "{}",
        env.log()
    );
    let m = env
        .srv
        .run("curl", &["-s", "http://127.0.0.1:9167/metrics"]);
    assert!(
        m.contains("dhcpd_packets_dropped_total{reason=\"short\"}"),
        "{m}"
    );
    assert!(m.contains("dhcpd_leases{state=\"active\"} 1"), "{m}");
    // a flood of DISCOVERs costs a few ISC lines a second and a count of the rest
    for i in 0..4000u32 {
        let mut d = Msg::parse(&wire::request(
            MsgType::Discover,
            [2, 8, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8],
            i,
            &[],
        ))
        .unwrap();
        d.giaddr = Ipv4Addr::new(10, 60, 0, 9);
        let _ = s.send_to(&d.encode(576), "10.60.0.1:67");
    }
    let mut n = 0;
    assert!(
        wait_until(Duration::from_secs(10), || {
            n += 1;
            relayed_dora(&r, [2, 7, 7, 7, 7, 8], 5000 + n).is_some()
                && env.log().contains("suppressed=")
        }),
        "no count of suppressed lines: {}",
        env.log()
    );
    let discovers = env.log().matches("DHCPDISCOVER from").count();
    assert!(
        discovers < 2000,
        "{discovers} DISCOVER lines for a flood of 4000"
    );
}

#[test]
fn check_accepts_the_corpus_and_names_file_and_line() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/dhcpd");
    if let Ok(entries) = std::fs::read_dir(&corpus) {
        for e in entries {
            let p = e.unwrap().path();
            let out = Command::new(BIN)
                .args(["--config", &p.to_string_lossy(), "--check"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    } else {
        assert!(
            std::env::var("CI").is_err(),
            "corpus missing at {}",
            corpus.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("dhcpd-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.conf");
    std::fs::write(
        &bad,
        "subnet 10.1.0.0 netmask 255.255.0.0 {\n  range 10.2.0.1 10.2.0.9;\n}\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--config", &bad.to_string_lossy(), "--check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.conf:2:3: range 10.2.0.1 10.2.0.9 is outside subnet 10.1.0.0/16"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn perfdhcp_as_a_relay_completes_every_exchange() {
    let Some(mut env) = setup(&["perfdhcp"], CONF) else {
        return;
    };
    env.start();
    let out = env.rel.output(
        "timeout",
        &[
            "60",
            "perfdhcp",
            "-4",
            "-l",
            "eth0",
            // one thread, a late answer is not a lost one (5 s), and wait 5 s for the last
            // answers: on a busy machine the exchange is slow, not failed
            "-g",
            "single",
            "-d",
            "5",
            "-W",
            "5000000",
            "-r",
            "200",
            "-R",
            "400",
            "-n",
            "400",
            "10.60.0.1",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // the REQUEST-ACK section's "received packets"
    let acks: u64 = text
        .split("Statistics for: REQUEST-ACK")
        .nth(1)
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("received packets: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "cannot read perfdhcp's report:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(
        acks >= 396,
        "only {acks} of 400 relayed exchanges were ACKed:\n{text}"
    );
    let active = env
        .leases_json()
        .iter()
        .filter(|l| l["state"] == "active")
        .count();
    assert!(active >= 396, "{active} active leases");
}

/// Collects what the daemon sends to `$NOTIFY_SOCKET`.
fn notify_socket(env: &Env) -> (PathBuf, std::os::unix::net::UnixDatagram) {
    let path = env.lab.path("notify.sock");
    let s = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    (path, s)
}

/// Waits until a notification containing `want` arrives; returns everything read.
fn notified(s: &std::os::unix::net::UnixDatagram, want: &str, seen: &mut String) -> bool {
    let mut buf = [0u8; 4096];
    wait_until(Duration::from_secs(10), || {
        if let Ok(n) = s.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('|');
        }
        seen.contains(want)
    })
}

#[test]
fn isc_flags_pid_file_notify_and_transaction_lines() {
    let Some(mut env) = setup(&["udhcpc"], CONF) else {
        return;
    };
    let (sock, notes) = notify_socket(&env);
    let pf = env.lab.path("dhcpd.pid");
    let (c, l, p) = (
        env.conf.to_string_lossy().into_owned(),
        env.leases.to_string_lossy().into_owned(),
        pf.to_string_lossy().into_owned(),
    );
    let isc_args = [
        "-4", "-f", "-d", "-q", "-cf", &c, "-lf", &l, "-pf", &p, "eth0",
    ];
    let mut cmd = env.srv.command(BIN);
    cmd.env("NOTIFY_SOCKET", &sock).args(isc_args);
    env.server = Some(env.srv.spawn_command("dhcpd-isc", cmd));
    let mut seen = String::new();
    assert!(
        notified(&notes, "READY=1", &mut seen),
        "no READY=1 ({seen}): {}",
        env.log()
    );
    let pid = env.server.as_ref().unwrap().pid();
    assert_eq!(
        std::fs::read_to_string(&pf).unwrap().trim(),
        pid.to_string()
    );
    // a second instance on the same pid file is refused before it binds, naming the holder
    let out = env.srv.output(BIN, &isc_args);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "second instance started: {text}");
    assert!(
        text.split(|c: char| !c.is_ascii_digit())
            .any(|w| w == pid.to_string()),
        "the refusal does not name pid {pid}: {text}"
    );
    assert!(env.server.as_mut().unwrap().is_running());
    // a real client: ISC's transaction lines, and the lease in the -lf file
    let client = env.client("c1", Some("02:50:00:00:00:0d"));
    let script = udhcpc_script(&env);
    let mut u = client.command("udhcpc");
    u.env("REC", env.lab.path("c1.rec")).args([
        "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", &script,
    ]);
    assert!(u.output().unwrap().status.success(), "{}", env.log());
    let ip = env.leases_json()[0]["ip"].as_str().unwrap().to_string();
    for want in [
        "DHCPDISCOVER from 02:50:00:00:00:0d via eth0".to_string(),
        format!("DHCPOFFER on {ip} to 02:50:00:00:00:0d"),
        format!("DHCPREQUEST for {ip} (10.50.0.1) from 02:50:00:00:00:0d"),
        format!("DHCPACK on {ip} to 02:50:00:00:00:0d"),
    ] {
        assert!(
            wait_until(Duration::from_secs(5), || env.log().contains(&want)),
            "no '{want}' in the log: {}",
            env.log()
        );
    }
    // a config nested 10,000 deep (past the parser's limit) is refused on reload, and the
    // daemon runs on with the old one
    let good = std::fs::read_to_string(&env.conf).unwrap();
    std::fs::write(
        &env.conf,
        "group {\n".repeat(10_000) + &"}\n".repeat(10_000),
    )
    .unwrap();
    env.server.as_ref().unwrap().signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || env
            .log()
            .contains("reload refused")),
        "{}",
        env.log()
    );
    assert!(
        env.log().contains("nested more than 64 deep"),
        "{}",
        env.log()
    );
    assert!(env.server.as_mut().unwrap().is_running(), "{}", env.log());
    std::fs::write(&env.conf, good).unwrap();
    // reload and stop are announced
    env.server.as_ref().unwrap().signal(libc::SIGHUP);
    assert!(notified(&notes, "RELOADING=1", &mut seen), "{seen}");
    let mut rest = String::new();
    assert!(notified(&notes, "READY=1", &mut rest), "{seen}{rest}");
    env.server.as_ref().unwrap().signal(libc::SIGTERM);
    assert!(notified(&notes, "STOPPING=1", &mut rest), "{seen}{rest}");
    assert!(env
        .server
        .as_mut()
        .unwrap()
        .wait_exit(Duration::from_secs(10))
        .is_some());
    assert!(!pf.exists(), "the pid file outlives the daemon");
}

#[test]
fn leases_of_a_missing_file_is_an_error_naming_it() {
    let out = Command::new(BIN)
        .args(["leases", "-l", "/nonexistent/dhcpd.leases"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dhcpd.leases"));
}

#[test]
fn ping_check_skips_an_address_that_answers_and_journals_it_abandoned() {
    let conf = "ping-check true;\nping-timeout 1;\nsubnet 10.50.0.0 netmask 255.255.255.0 {\n  range 10.50.0.50 10.50.0.51;\n}\n";
    let Some(mut env) = setup(&["udhcpc", "ping"], conf) else {
        return;
    };
    // a machine already on .50 that nobody leased it to
    let squatter = env.client("busy", None);
    squatter.run("ip", &["addr", "add", "10.50.0.50/24", "dev", "eth0"]);
    assert!(env.srv.ping("10.50.0.50"));
    env.start();
    let c = env.client("c1", None);
    let script = udhcpc_script(&env);
    let rec = env.lab.path("ping.rec");
    let mut cmd = c.command("udhcpc");
    // the client asks for the busy address, so it is considered first
    cmd.env("REC", &rec).args([
        "-i",
        "eth0",
        "-f",
        "-q",
        "-n",
        "-t",
        "8",
        "-T",
        "2",
        "-r",
        "10.50.0.50",
        "-s",
        &script,
    ]);
    assert!(cmd.output().unwrap().status.success(), "{}", env.log());
    let r = std::fs::read_to_string(&rec).unwrap();
    assert!(
        r.contains("event=bound ip=10.50.0.51 "),
        "{r}\n{}",
        env.log()
    );
    let leases = env.leases_json();
    let busy = leases.iter().find(|l| l["ip"] == "10.50.0.50");
    assert_eq!(
        busy.map(|l| l["state"].clone()),
        Some("abandoned".into()),
        "{leases:?}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || env
            .log()
            .contains("Abandoning IP address 10.50.0.50: pinged before offer")),
        "{}",
        env.log()
    );
}

#[test]
fn a_bootp_client_gets_a_bootreply_on_its_fixed_address() {
    let conf = "allow bootp;\nsubnet 10.50.0.0 netmask 255.255.255.0 {\n  next-server 10.50.0.1;\n  option routers 10.50.0.1;\n}\nhost b7 {\n  hardware ethernet 02:50:00:00:00:b7;\n  fixed-address 10.50.0.27;\n  filename \"bootp/boot7.img\";\n}\n";
    let Some(mut env) = setup(&[], conf) else {
        return;
    };
    env.start();
    let c = env.client("b7", Some("02:50:00:00:00:b7"));
    let r = bootp_exchange(&c, [2, 0x50, 0, 0, 0, 0xb7], 77)
        .unwrap_or_else(|| panic!("no BOOTREPLY: {}", env.log()));
    assert_bootreply(&r, Ipv4Addr::new(10, 50, 0, 27), b"bootp/boot7.img\0");
    // the line is written once the reply is sent
    assert!(
        wait_until(Duration::from_secs(5), || env
            .log()
            .contains("BOOTREPLY for 10.50.0.27 to 02:50:00:00:00:b7 via eth0")),
        "{}",
        env.log()
    );
}

#[test]
fn a_bootp_client_without_a_host_gets_a_lease_that_never_ends_from_a_dynamic_bootp_range() {
    let conf = "allow bootp;\nsubnet 10.50.0.0 netmask 255.255.255.0 {\n  range 10.50.0.100 10.50.0.100;\n  range dynamic-bootp 10.50.0.150 10.50.0.150;\n  next-server 10.50.0.1;\n  filename \"bootp/dyn.img\";\n  option routers 10.50.0.1;\n}\n";
    let Some(mut env) = setup(&[], conf) else {
        return;
    };
    env.start();
    let mac = [2, 0x50, 0, 0, 0, 0xb8];
    let c = env.client("b8", Some("02:50:00:00:00:b8"));
    let r = bootp_exchange(&c, mac, 78).unwrap_or_else(|| panic!("no BOOTREPLY: {}", env.log()));
    assert_bootreply(&r, Ipv4Addr::new(10, 50, 0, 150), b"bootp/dyn.img\0");
    let journal = std::fs::read_to_string(&env.leases).unwrap();
    let block = journal
        .split("lease 10.50.0.150 {")
        .nth(1)
        .unwrap_or_else(|| panic!("no lease journaled: {journal}"));
    assert!(block.contains("  ends never;\n"), "{journal}");
    assert!(
        block.contains("hardware ethernet 02:50:00:00:00:b8;"),
        "{journal}"
    );
    // the journal is read back after a restart: the client keeps its address
    if let Some(mut p) = env.server.take() {
        p.kill();
    }
    env.start();
    let again =
        bootp_exchange(&c, mac, 79).unwrap_or_else(|| panic!("no BOOTREPLY: {}", env.log()));
    assert_eq!(again.yiaddr, Ipv4Addr::new(10, 50, 0, 150));
}

/// `dynamic-bootp-lease-cutoff` (Unix seconds, as ISC 4.4 reads it) ends a dynamic BOOTP
/// lease at that time, before `dynamic-bootp-lease-length`: the lease file says the same
/// `ends` from ours and from ISC dhcpd 4.4 given the same config and the same BOOTREQUEST.
#[test]
fn dynamic_bootp_lease_cutoff_ends_bootp_leases_as_isc_does() {
    let cutoff = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3 * 86_400;
    let conf = format!("allow bootp;\ndynamic-bootp-lease-length 600;\ndynamic-bootp-lease-cutoff {cutoff};\nsubnet 10.50.0.0 netmask 255.255.255.0 {{\n  range dynamic-bootp 10.50.0.150 10.50.0.150;\n}}\nsubnet 10.60.0.0 netmask 255.255.0.0 {{\n}}\n");
    let Some(mut env) = setup(&["dhcpd"], &conf) else {
        return;
    };
    let ends = |journal: &str| -> String {
        let block = journal
            .rsplit("lease 10.50.0.150 {")
            .next()
            .unwrap_or_default();
        block
            .lines()
            .find(|l| l.trim_start().starts_with("ends "))
            .unwrap_or_else(|| panic!("no lease: {journal}"))
            .trim()
            .to_string()
    };
    let mac = [2, 0x50, 0, 0, 0, 0xb9];
    let c = env.client("b9", Some("02:50:00:00:00:b9"));
    env.start();
    let r = bootp_exchange(&c, mac, 81).unwrap_or_else(|| panic!("no BOOTREPLY: {}", env.log()));
    assert_eq!(r.yiaddr, Ipv4Addr::new(10, 50, 0, 150));
    let ours = ends(&std::fs::read_to_string(&env.leases).unwrap());
    assert_eq!(
        ours,
        format!("ends {};", dhcpd::leases::isc_time(cutoff)),
        "not the cutoff"
    );
    let (mut isc, isc_leases) = isc_instead(&mut env);
    let r = bootp_exchange(&c, mac, 82)
        .unwrap_or_else(|| panic!("no BOOTREPLY from ISC: {}", isc.output()));
    assert_eq!(r.yiaddr, Ipv4Addr::new(10, 50, 0, 150));
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(
            &isc_leases
        )
        .unwrap_or_default()
        .contains("lease 10.50.0.150 {")),
        "{}",
        isc.output()
    );
    assert_eq!(ends(&std::fs::read_to_string(&isc_leases).unwrap()), ours);
    isc.kill();
}

/// Stops our server and starts ISC dhcpd 4.4 in its place, on eth0 with the same config
/// and a lease file of its own; returns it, serving, and that file.
fn isc_instead(env: &mut Env) -> (Proc, PathBuf) {
    if let Some(mut p) = env.server.take() {
        p.kill();
    }
    let isc_leases = env.lab.path("isc.leases");
    std::fs::write(&isc_leases, "").unwrap();
    let (cf, lf, pf) = (
        env.conf.display().to_string(),
        isc_leases.display().to_string(),
        env.lab.path("isc.pid").display().to_string(),
    );
    let mut isc = env.srv.spawn(
        "isc-dhcpd",
        "dhcpd",
        &["-4", "-f", "-d", "-cf", &cf, "-lf", &lf, "-pf", &pf, "eth0"],
    );
    assert!(
        isc.wait_for_output("Server starting service", Duration::from_secs(10)),
        "{}",
        isc.output()
    );
    (isc, isc_leases)
}

/// A BOOTREPLY for `ip` with the boot file, next-server 10.50.0.1 and the router option,
/// and none of DHCP's options (message type, lease time).
fn assert_bootreply(r: &Msg, ip: Ipv4Addr, file: &[u8]) {
    assert_eq!(r.op, wire::BOOTREPLY);
    assert_eq!(r.yiaddr, ip);
    assert_eq!(r.siaddr, Ipv4Addr::new(10, 50, 0, 1));
    assert!(r.file.starts_with(file), "{:?}", r.file);
    assert_eq!(r.msg_type(), None);
    assert_eq!(r.option(51), None, "no lease time in a BOOTREPLY");
    assert_eq!(r.option(3), Some(&[10, 50, 0, 1][..]));
}

/// Sends a BOOTREQUEST as RFC 951 clients send it (no DHCP message type, broadcast reply
/// asked) from `c`'s eth0, until a reply with `xid` comes (10 tries, 500 ms each).
fn bootp_exchange(c: &Host, mac: [u8; 6], xid: u32) -> Option<Msg> {
    let mut req = Msg::parse(&wire::request(MsgType::Discover, mac, xid, &[])).unwrap();
    req.options.clear();
    req.flags = 0x8000;
    c.enter(|| {
        // an unnumbered client: the broadcast leaves by the device, not a route
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        s.bind_device(Some(b"eth0")).unwrap();
        s.set_broadcast(true).unwrap();
        s.bind(&std::net::SocketAddr::from(([0, 0, 0, 0], 68)).into())
            .unwrap();
        let s: UdpSocket = s.into();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 1500];
        for _ in 0..10 {
            s.send_to(&req.encode(300), "255.255.255.255:67").unwrap();
            if let Ok(n) = s.recv(&mut buf) {
                if let Ok(m) = Msg::parse(&buf[..n]) {
                    if m.xid == xid {
                        return Some(m);
                    }
                }
            }
        }
        None
    })
}

/// A udhcpc script recording what the statements of the corpus decide: the address, boot
/// file, host name and option 175 (as hex); it configures the address and default route.
fn udhcpc_rec_script(env: &Env) -> String {
    let path = env.lab.path("udhcpc-rec.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\ncase \"$1\" in bound|renew)\n  echo \"event=$1 ip=$ip boot_file=$boot_file hostname=$hostname opt175=$opt175\" >>\"$REC\"\n  ip addr add \"$ip/${mask:-24}\" dev \"$interface\" 2>/dev/null\n  [ -n \"$router\" ] && ip route replace default via \"$router\"\nesac\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path.to_string_lossy().into_owned()
}

/// Runs udhcpc once (`-q`) in `host` with extra arguments; returns its recorded line.
fn udhcpc_once(env: &Env, host: &Host, name: &str, extra: &[&str]) -> String {
    let rec = env.lab.path(&format!("{name}.rec"));
    let script = udhcpc_rec_script(env);
    let mut args = vec![
        "-i", "eth0", "-f", "-q", "-n", "-t", "6", "-T", "1", "-s", &script,
    ];
    args.extend_from_slice(extra);
    let mut cmd = host.command("udhcpc");
    cmd.env("REC", &rec).args(&args);
    let out = cmd.output().unwrap();
    let got = std::fs::read_to_string(&rec).unwrap_or_default();
    assert!(
        got.contains("event=bound"),
        "udhcpc {extra:?} got no lease: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        env.log()
    );
    got
}

/// The relay agent file's statements with a real relay: ISC dhcrelay adds option 82 with the
/// circuit-id of its port; classes by circuit-id and by MAC (subclass) choose the pool, `on
/// commit` logs, and a renewal sent straight to the server (no relay, no option 82), after a
/// restart of the server, is still classified by the agent options stashed in the lease file.
#[test]
fn relayed_clients_are_classified_by_circuit_id_and_mac_and_renew_with_stashed_options() {
    let conf = r#"
authoritative;
default-lease-time 600;
stash-agent-options true;
class "rack-port1" {
  match if option agent.circuit-id = "rackport1";
}
class "known-racks" {
  match hardware;
}
subclass "known-racks" 1:02:44:00:00:00:01;
on commit {
  set clip = binary-to-ascii(10, 8, ".", leased-address);
  set clhw = binary-to-ascii(16, 8, ":", substring(hardware, 1, 6));
  log(info, concat("commit ", clip, " to ", clhw));
}
subnet 10.50.0.0 netmask 255.255.255.0 {
}
subnet 10.60.0.0 netmask 255.255.0.0 {
}
subnet 10.44.12.0 netmask 255.255.255.0 {
  option routers 10.44.12.1;
  pool {
    allow members of "known-racks";
    range 10.44.12.20 10.44.12.99;
  }
  pool {
    allow members of "rack-port1";
    deny members of "known-racks";
    range 10.44.12.100 10.44.12.149;
  }
}
"#;
    let Some(mut env) = setup(&["udhcpc", "dhcrelay"], conf) else {
        return;
    };
    // the rack: clients behind the relay's port "rackport1"; the relay routes between
    let rack = env.lab.switch("rack");
    env.lab
        .attach(&env.rel, &rack, "rackport1", Some("10.44.12.1/24"));
    env.rel.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    env.srv
        .run("ip", &["route", "add", "10.44.12.0/24", "via", "10.60.0.9"]);
    env.start();
    let mut relay = env.rel.spawn(
        "dhcrelay",
        "dhcrelay",
        &[
            "-d",
            "-4",
            "-a",
            "--no-pid",
            "-id",
            "rackport1",
            "-iu",
            "eth0",
            "10.60.0.1",
        ],
    );
    assert!(
        wait_until(Duration::from_secs(10), || relay
            .output()
            .contains("Sending on")),
        "dhcrelay did not start: {}",
        relay.output()
    );
    let listed = env.lab.host("listed");
    env.lab.attach(&listed, &rack, "eth0", None);
    listed.run(
        "ip",
        &["link", "set", "eth0", "address", "02:44:00:00:00:01"],
    );
    let got = udhcpc_once(&env, &listed, "listed", &[]);
    assert!(
        got.contains("ip=10.44.12.20 "),
        "MAC listed by subclass: {got}"
    );

    let port = env.lab.host("port");
    env.lab.attach(&port, &rack, "eth0", None);
    port.run(
        "ip",
        &["link", "set", "eth0", "address", "02:44:00:00:00:02"],
    );
    let rec = env.lab.path("port.rec");
    let script = udhcpc_rec_script(&env);
    let mut cmd = port.command("udhcpc");
    cmd.env("REC", &rec)
        .args(["-i", "eth0", "-f", "-t", "6", "-T", "1", "-s", &script]);
    let mut client = port.spawn_command("udhcpc", cmd);
    let text = || std::fs::read_to_string(&rec).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(15), || text().contains("event=bound")),
        "no lease through the relay: {}\n{}",
        client.output(),
        env.log()
    );
    assert!(
        text().contains("ip=10.44.12.100 "),
        "circuit-id rackport1: {}",
        text()
    );
    assert!(
        wait_until(Duration::from_secs(5), || env
            .log()
            .contains("commit 10.44.12.100 to 2:44:0:0:0:2")),
        "on commit log() line missing: {}",
        env.log()
    );
    // the relay stops (it would see the unicast too and add option 82); the router still
    // routes, so SIGUSR1 makes udhcpc renew by unicast to the server with no agent options
    relay.kill();
    // and the server restarts in between: the stash comes back from the lease file
    if let Some(mut p) = env.server.take() {
        p.kill();
    }
    env.start();
    client.signal(libc::SIGUSR1);
    assert!(
        wait_until(Duration::from_secs(15), || text()
            .contains("event=renew ip=10.44.12.100")),
        "renewal without option 82 not ACKed: {}\n{}",
        text(),
        env.log()
    );
    client.kill();
}

/// iPXE chain-loading with a real client: udhcpc sending user-class "iPXE" and asking for
/// option 175 gets the HTTP script and option 175 with no-pxedhcp = 1; without the user class
/// it gets undionly.kpxe.
#[test]
fn an_ipxe_client_gets_its_http_script_and_option_175() {
    let conf = r#"
option space ipxe;
option ipxe-encap-opts code 175 = encapsulate ipxe;
option ipxe.no-pxedhcp code 176 = unsigned integer 8;
subnet 10.50.0.0 netmask 255.255.255.0 {
  range 10.50.0.100 10.50.0.150;
  next-server 10.50.0.5;
  option ipxe.no-pxedhcp 1;
  if exists user-class and option user-class = "iPXE" {
    filename "http://10.50.0.5/boot.ipxe";
  } else {
    filename "undionly.kpxe";
  }
}
subnet 10.60.0.0 netmask 255.255.0.0 {
}
"#;
    let Some(mut env) = setup(&["udhcpc"], conf) else {
        return;
    };
    env.start();
    let c = env.client("ipxe", None);
    // user-class "iPXE" (option 77, hex), option 175 requested
    let got = udhcpc_once(&env, &c, "ipxe", &["-x", "0x4d:69505845", "-O", "175"]);
    assert!(
        got.contains("boot_file=http://10.50.0.5/boot.ipxe "),
        "{got}"
    );
    assert!(
        got.contains("opt175=b00101"),
        "option 175 with 176=1: {got}"
    );
    let rom = env.client("rom", None);
    let got = udhcpc_once(&env, &rom, "rom", &["-O", "175"]);
    assert!(got.contains("boot_file=undionly.kpxe "), "{got}");
}

/// The Cobbler-style file as rendered: a UEFI x86-64 PXE client (vendor class PXEClient,
/// client architecture 7) gets grub-x86_64.efi from the class's if/else chain, and the
/// global `set vendorclass` is evaluated for the class and recorded on the lease.
#[test]
fn the_cobbler_style_file_boots_a_uefi_pxe_client() {
    let conf = r#"
ddns-update-style interim;
allow booting;
allow bootp;
ignore client-updates;
set vendorclass = option vendor-class-identifier;
option pxe-system-type code 93 = unsigned integer 16;
subnet 10.50.0.0 netmask 255.255.255.0 {
     option routers             10.50.0.1;
     range dynamic-bootp        10.50.0.100 10.50.0.199;
     next-server                10.50.0.2;
     class "pxeclients" {
          match if substring (option vendor-class-identifier, 0, 9) = "PXEClient";
          if option pxe-system-type = 00:07 {
                  filename "grub/grub-x86_64.efi";
          } else {
                  filename "pxelinux.0";
          }
          option host-name = concat("pxe-", substring(vendorclass, 15, 5));
     }
}
subnet 10.60.0.0 netmask 255.255.0.0 {
}
"#;
    let Some(mut env) = setup(&["udhcpc"], conf) else {
        return;
    };
    env.start();
    let c = env.client("uefi", None);
    let got = udhcpc_once(
        &env,
        &c,
        "uefi",
        &[
            "-V",
            "PXEClient:Arch:00007:UNDI:003016",
            "-x",
            "0x5d:0007",
            "-O",
            "12",
        ],
    );
    assert!(got.contains("boot_file=grub/grub-x86_64.efi "), "{got}");
    assert!(
        got.contains("hostname=pxe-00007 "),
        "option host-name from the variable: {got}"
    );
    // as ISC, the variable is kept with the lease
    let journal = std::fs::read_to_string(&env.leases).unwrap_or_default();
    assert!(
        journal.contains("  set vendorclass = \"PXEClient:Arch:00007:UNDI:003016\";\n"),
        "{journal}"
    );
    let plain = env.client("plain", None);
    let got = udhcpc_once(&env, &plain, "plain", &["-O", "12"]);
    assert!(got.contains("boot_file= "), "not a PXE client: {got}");
}

/// DDNS against a real BIND 9 in the lab, `standard` style with an hmac-md5 key: a client
/// named node9 gets A, DHCID and PTR records; another client asking for the same name does
/// not take it over (the DHCID is not its own); after RELEASE the records are gone.
#[test]
fn ddns_standard_with_hmac_md5_against_bind() {
    let secret = LAB_SECRET;
    let conf = ddns_conf(
        r#"ddns-update-style standard;
ddns-domainname "lab.test.";
default-lease-time 600;
"#,
        "",
    );
    let Some(mut env) = setup(&["udhcpc", "named", "dig"], &conf) else {
        return;
    };
    let (dns, _named) = bind9(&env, secret);
    let dig = |name: &str, ty: &str| dig(&dns, name, ty);
    env.start();
    let (mut client, ip) = udhcpc_held(&env, "node9");
    let rev_ip = rev(&ip);
    assert!(
        wait_until(Duration::from_secs(5), || dig("node9.lab.test", "A") == ip),
        "A record: '{}'\n{}",
        dig("node9.lab.test", "A"),
        env.log()
    );
    assert!(
        !dig("node9.lab.test", "DHCID").is_empty(),
        "no DHCID beside the A record"
    );
    assert!(wait_until(Duration::from_secs(5), || dig(&rev_ip, "PTR")
        == "node9.lab.test."));
    // another machine calling itself node9: it gets a lease, not the name
    let other = env.client("other", None);
    let got = udhcpc_once(&env, &other, "other", &["-x", "hostname:node9"]);
    assert!(
        wait_until(Duration::from_secs(5), || env
            .log()
            .contains("Unable to update forward map from node9.lab.test.")),
        "the second claim on node9 was not refused: {}",
        env.log()
    );
    assert_eq!(
        dig("node9.lab.test", "A"),
        ip,
        "the name moved to the other client: {got}"
    );
    let other_ip = got
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ip="))
        .unwrap();
    let other_rev = rev(other_ip);
    assert_eq!(
        dig(&other_rev, "PTR"),
        "",
        "a PTR for a name that is not its own"
    );
    // udhcpc -R sends a RELEASE when it stops
    client.signal(libc::SIGTERM);
    let _ = client.wait_exit(Duration::from_secs(5));
    assert!(
        wait_until(Duration::from_secs(5), || dig("node9.lab.test", "A")
            .is_empty()
            && dig(&rev_ip, "PTR").is_empty()),
        "records left after RELEASE: A '{}' PTR '{}'\n{}",
        dig("node9.lab.test", "A"),
        dig(&rev_ip, "PTR"),
        env.log()
    );
    assert!(dig("node9.lab.test", "DHCID").is_empty());
}

/// DDNS state and `on expiry` survive a restart, as ISC keeps them in the lease file: two
/// clients get A, TXT and PTR records (`interim`), dhcpd is killed and started again, then
/// one releases its lease and the other's lease (8 s) expires: both clients' records are
/// gone, and the expired lease's `on expiry` block ran (the released one's did not).
#[test]
fn ddns_records_are_removed_on_release_and_expiry_after_a_restart() {
    let secret = LAB_SECRET;
    let conf = ddns_conf(
        r#"ddns-update-style interim;
ddns-domainname "lab.test.";
default-lease-time 8;
max-lease-time 8;
"#,
        r#"  on expiry {
    execute("/usr/bin/touch", concat("DIR/expired-", binary-to-ascii(10, 8, ".", leased-address)));
  }
"#,
    );
    let Some(mut env) = setup(&["udhcpc", "named", "dig", "touch"], &conf) else {
        return;
    };
    let dir = env.lab.dir().to_path_buf();
    std::fs::write(&env.conf, conf.replace("DIR", &dir.display().to_string())).unwrap();
    let (dns, _named) = bind9(&env, secret);
    let dig = |name: &str, ty: &str| dig(&dns, name, ty);
    env.start();
    // node7 keeps renewing until it releases (-R on SIGTERM)
    let (mut client, ip7) = udhcpc_held(&env, "node7");
    // node8 takes a lease once and never renews it
    let other = env.client("node8", None);
    let got = udhcpc_once(&env, &other, "node8", &["-x", "hostname:node8"]);
    let ip8 = got
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ip="))
        .unwrap()
        .to_string();
    for (name, ip) in [("node7.lab.test", &ip7), ("node8.lab.test", &ip8)] {
        assert!(
            wait_until(Duration::from_secs(5), || dig(name, "A") == *ip
                && !dig(name, "TXT").is_empty()
                && dig(&rev(ip), "PTR") == format!("{name}.")),
            "{name}: A '{}' PTR '{}'\n{}",
            dig(name, "A"),
            dig(&rev(ip), "PTR"),
            env.log()
        );
    }
    let journal = std::fs::read_to_string(&env.leases).unwrap();
    assert!(
        journal.contains("set ddns-fwd-name = \"node7.lab.test.\";")
            && journal.contains("set ddns-txt = \"")
            && journal.contains("  on expiry { execute (\"/usr/bin/touch\", "),
        "{journal}"
    );
    if let Some(mut p) = env.server.take() {
        p.kill();
    }
    env.start();
    client.signal(libc::SIGTERM);
    let _ = client.wait_exit(Duration::from_secs(5));
    // what is left in the DNS of a client's A, TXT and PTR records
    let left = |name: &str, ip: &str| -> String {
        [dig(name, "A"), dig(name, "TXT"), dig(&rev(ip), "PTR")].concat()
    };
    assert!(
        wait_until(Duration::from_secs(5), || left("node7.lab.test", &ip7)
            .is_empty()),
        "records left after RELEASE: {}\n{}",
        left("node7.lab.test", &ip7),
        env.log()
    );
    assert!(
        wait_until(Duration::from_secs(20), || left("node8.lab.test", &ip8)
            .is_empty()),
        "records left after expiry: {}\n{}",
        left("node8.lab.test", &ip8),
        env.log()
    );
    assert!(
        wait_until(Duration::from_secs(5), || dir
            .join(format!("expired-{ip8}"))
            .exists()),
        "on expiry did not run after the restart: {}",
        env.log()
    );
    assert!(!dir.join(format!("expired-{ip7}")).exists());
}

/// The client FQDN option (81, RFC 4702) with dhclient, against ours and then ISC dhcpd
/// 4.4 on the same config: a client asking the server to update (S) gets the A record under
/// the first label of its FQDN (before its host name) in ddns-domainname and a reply with
/// S|O and that name; a client keeping its A record (S clear, `allow client-updates` by
/// default) gets only the PTR, to its own name, and a reply with flags 0 and its name. The
/// `option fqdn` dhclient writes is the same from both servers.
#[test]
fn client_fqdn_option_81_names_the_records_and_is_answered_as_isc_does() {
    let secret = LAB_SECRET;
    let conf = ddns_conf(
        r#"ddns-update-style interim;
ddns-domainname "lab.test.";
default-lease-time 600;
"#,
        "",
    );
    let Some(mut env) = setup(&["dhclient", "dhcpd", "named", "dig"], &conf) else {
        return;
    };
    let (dns, _named) = bind9(&env, secret);
    let dig = |name: &str, ty: &str| dig(&dns, name, ty);
    let a = env.client("a", Some("02:00:00:00:00:51"));
    let b = env.client("b", Some("02:00:00:00:00:52"));
    // dhclient once with `send` statements; returns its lease file's text
    let run = |env: &Env, h: &Host, tag: &str, send: &str| -> String {
        let cf = env.lab.path(&format!("{tag}.conf"));
        std::fs::write(&cf, send).unwrap();
        let lf = env.lab.path(&format!("{tag}.leases"));
        let pf = env.lab.path(&format!("{tag}.pid"));
        let (st, out) = h.sh(&format!(
            "timeout 30 dhclient -1 -4 -d -cf {} -lf {} -pf {} -sf /bin/true eth0 2>&1 & \
             for i in $(seq 300); do grep -q fixed-address {} 2>/dev/null && break; sleep 0.1; done; \
             kill %1; grep -q fixed-address {}",
            cf.display(),
            lf.display(),
            pf.display(),
            lf.display(),
            lf.display(),
        ));
        let text = std::fs::read_to_string(&lf).unwrap_or_default();
        assert!(st.success(), "dhclient {tag}: {out}\n{text}\n{}", env.log());
        text
    };
    let fqdn_line = |lease: &str| -> String {
        lease
            .lines()
            .find(|l| l.trim_start().starts_with("option fqdn "))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let hex = |s: &str| -> String {
        s.bytes()
            .map(|b| format!("{b:x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let addr = |lease: &str| -> String {
        lease
            .lines()
            .find_map(|l| l.trim().strip_prefix("fixed-address "))
            .unwrap_or_default()
            .trim_end_matches(';')
            .to_string()
    };
    let send_s = "send fqdn.fqdn \"node5.example.org.\";\nsend fqdn.server-update on;\nsend host-name \"other5\";\n";
    let send_own = "send fqdn.fqdn \"node6.example.org.\";\nsend fqdn.server-update off;\n";
    env.start();
    let la = run(&env, &a, "ours-a", send_s);
    let ip_a = addr(&la);
    assert_eq!(
        fqdn_line(&la),
        format!("option fqdn 3:ff:ff:{};", hex("node5.lab.test.")),
        "{la}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || dig("node5.lab.test", "A")
            == ip_a
            && dig(&rev(&ip_a), "PTR") == "node5.lab.test."),
        "A '{}' PTR '{}'\n{}",
        dig("node5.lab.test", "A"),
        dig(&rev(&ip_a), "PTR"),
        env.log()
    );
    assert_eq!(
        dig("other5.lab.test", "A"),
        "",
        "the host name won over option 81"
    );
    let lb = run(&env, &b, "ours-b", send_own);
    let ip_b = addr(&lb);
    assert_eq!(
        fqdn_line(&lb),
        format!("option fqdn 0:ff:ff:{};", hex("node6.example.org.")),
        "{lb}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || dig(&rev(&ip_b), "PTR")
            == "node6.example.org."),
        "PTR '{}'\n{}",
        dig(&rev(&ip_b), "PTR"),
        env.log()
    );
    assert_eq!(
        dig("node6.lab.test", "A"),
        "",
        "an A record the client keeps itself"
    );
    assert!(std::fs::read_to_string(&env.leases)
        .unwrap()
        .contains("set ddns-client-fqdn = \"node6.example.org.\";"));
    // ISC dhcpd 4.4, same config, the same clients: the same answers
    let (mut isc, _) = isc_instead(&mut env);
    let ia = run(&env, &a, "isc-a", send_s);
    let ib = run(&env, &b, "isc-b", send_own);
    assert_eq!(fqdn_line(&ia), fqdn_line(&la), "{}", isc.output());
    assert_eq!(fqdn_line(&ib), fqdn_line(&lb), "{}", isc.output());
    isc.kill();
}

/// The TSIG secret of the lab's BIND ([`bind9`]).
const LAB_SECRET: &str = "c2VjcmV0LWZvci10aGUtbGFiLXRlc3Qtb25seQ==";

/// A config updating the lab's BIND: `head` (style, domain, lease times), the key and the
/// zones, the LAN subnet with `extra` in it, and the relay-side subnet.
fn ddns_conf(head: &str, extra: &str) -> String {
    format!(
        "{head}key \"lab-key\" {{\n  algorithm hmac-md5;\n  secret \"{LAB_SECRET}\";\n}};\nzone lab.test. {{ primary 10.50.0.2; key \"lab-key\"; }}\nzone 0.50.10.in-addr.arpa. {{ primary 10.50.0.2; key \"lab-key\"; }}\nsubnet 10.50.0.0 netmask 255.255.255.0 {{\n  range 10.50.0.100 10.50.0.150;\n{extra}}}\nsubnet 10.60.0.0 netmask 255.255.0.0 {{\n}}\n"
    )
}

/// udhcpc in a new LAN host `name` calling itself `name`, renewing until SIGTERM, when it
/// releases (-R); returns it and its address once bound.
fn udhcpc_held(env: &Env, name: &str) -> (Proc, String) {
    let c = env.client(name, None);
    let rec = env.lab.path(&format!("{name}.rec"));
    let script = udhcpc_rec_script(env);
    let mut cmd = c.command("udhcpc");
    let host = format!("hostname:{name}");
    cmd.env("REC", &rec).args([
        "-i", "eth0", "-f", "-R", "-t", "6", "-T", "1", "-x", &host, "-s", &script,
    ]);
    let client = c.spawn_command("udhcpc", cmd);
    let text = || std::fs::read_to_string(&rec).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(15), || text().contains("event=bound")),
        "no lease for {name}: {}",
        env.log()
    );
    let ip = text()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ip="))
        .unwrap()
        .to_string();
    (client, ip)
}

/// The reverse name of an address.
fn rev(ip: &str) -> String {
    let o: Vec<&str> = ip.split('.').collect();
    format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
}

/// The lab's BIND 9 at 10.50.0.2 on the LAN, primary for lab.test and 0.50.10.in-addr.arpa,
/// updatable with the hmac-md5 key "lab-key" of `secret`; returns when it answers.
fn bind9(env: &Env, secret: &str) -> (Host, Proc) {
    let dns = env.lab.host("dns");
    env.lab.attach(&dns, &env.lan, "eth0", Some("10.50.0.2/24"));
    let dir = env.lab.path("bind");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    std::fs::write(
        dir.join("named.conf"),
        format!(
            "options {{ directory \"{d}\"; pid-file \"{d}/named.pid\"; session-keyfile \"{d}/s.key\"; managed-keys-directory \"{d}\"; listen-on {{ 10.50.0.2; }}; listen-on-v6 {{ none; }}; recursion no; dnssec-validation no; notify no; }};\ncontrols {{ }};\nkey \"lab-key\" {{ algorithm hmac-md5; secret \"{secret}\"; }};\nzone \"lab.test\" {{ type primary; file \"fwd\"; allow-update {{ key \"lab-key\"; }}; }};\nzone \"0.50.10.in-addr.arpa\" {{ type primary; file \"rev\"; allow-update {{ key \"lab-key\"; }}; }};\n"
        ),
    )
    .unwrap();
    let soa = "$TTL 60\n@ IN SOA ns.lab.test. h.lab.test. 1 60 60 600 60\n@ IN NS ns.lab.test.\nns.lab.test. IN A 10.50.0.2\n";
    std::fs::write(dir.join("fwd"), soa).unwrap();
    std::fs::write(dir.join("rev"), soa).unwrap();
    let conf_path = dir.join("named.conf").display().to_string();
    let named = dns.spawn("named", "named", &["-g", "-4", "-n", "1", "-c", &conf_path]);
    let dig = |name: &str, ty: &str| dig(&dns, name, ty);
    assert!(
        wait_until(Duration::from_secs(15), || dig("lab.test", "NS")
            == "ns.lab.test."),
        "BIND did not come up"
    );
    (dns, named)
}

/// `dig +short` of `name` `ty` against the lab's BIND.
fn dig(dns: &Host, name: &str, ty: &str) -> String {
    let out = dns.output(
        "dig",
        &["@10.50.0.2", "+time=1", "+tries=1", "+short", name, ty],
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Host reservations at run time: `dhcpd hosts add` through the control socket makes a
/// machine get its fixed address without a restart, `list --json` shows it, the file keeps it
/// across a restart, `del` gives the machine a dynamic address again, and a reservation the
/// configuration would refuse (a duplicate address, a bad one) is refused.
#[test]
fn hosts_added_at_run_time_are_served_listed_kept_and_deleted() {
    let Some(env) = setup(&["udhcpc"], "") else {
        return;
    };
    let hosts = env.lab.path("hosts.conf");
    let conf = format!(
        "authoritative;\nsubnet 10.50.0.0 netmask 255.255.255.0 {{\n  range 10.50.0.100 10.50.0.150;\n}}\nsubnet 10.60.0.0 netmask 255.255.0.0 {{\n}}\ninclude \"{}\";\n",
        hosts.display()
    );
    std::fs::write(&env.conf, conf).unwrap();
    let sock = env.lab.path("control.sock").display().to_string();
    let (c, l, h) = (
        env.conf.display().to_string(),
        env.leases.display().to_string(),
        hosts.display().to_string(),
    );
    let start = |n: usize| {
        let mut p = env.srv.spawn(
            &format!("dhcpd-hosts-{n}"),
            BIN,
            &[
                "--config",
                &c,
                "--leases",
                &l,
                "--interface",
                "eth0",
                "--control-socket",
                &sock,
                "--hosts-file",
                &h,
            ],
        );
        assert!(
            p.wait_for_output("dhcpd ready", Duration::from_secs(10)),
            "{}",
            p.output()
        );
        assert!(wait_until(Duration::from_secs(5), || std::path::Path::new(
            &sock
        )
        .exists()));
        p
    };
    let hosts_cmd = |args: &[&str]| {
        opsflow_tests::outcome(
            Command::new(BIN)
                .args(["hosts", "--socket", &sock])
                .args(args),
        )
    };
    let mut server = start(1);
    let (ok, out) = hosts_cmd(&[
        "add",
        "web9",
        "--mac",
        "02:50:00:00:00:99",
        "--ip",
        "10.50.0.30",
        "--filename",
        "web9.efi",
    ]);
    assert!(ok, "{out}");
    let c1 = env.client("web9", Some("02:50:00:00:00:99"));
    let got = udhcpc_once(&env, &c1, "web9", &[]);
    assert!(
        got.contains("ip=10.50.0.30 ") && got.contains("boot_file=web9.efi "),
        "{got}"
    );
    let (ok, out) = hosts_cmd(&[
        "add",
        "dup",
        "--mac",
        "02:50:00:00:00:98",
        "--ip",
        "10.50.0.30",
    ]);
    assert!(
        !ok && out.contains("conflicts with the reservation of web9"),
        "{out}"
    );
    let (ok, out) = hosts_cmd(&[
        "add",
        "far",
        "--mac",
        "02:50:00:00:00:97",
        "--ip",
        "not-an-ip",
    ]);
    assert!(!ok && out.contains("is not an IPv4 address"), "{out}");
    // kept across a restart
    server.kill();
    let mut server = start(2);
    let (ok, out) = hosts_cmd(&["list", "--json"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["hostname"], "web9");
    assert_eq!(v[0]["ip-address"], "10.50.0.30");
    assert_eq!(v[0]["hw-address"], "02:50:00:00:00:99");
    let (ok, out) = hosts_cmd(&["del", "web9"]);
    assert!(ok, "{out}");
    let c2 = env.client("web9b", Some("02:50:00:00:00:99"));
    let got = udhcpc_once(&env, &c2, "web9b", &[]);
    assert!(
        !got.contains("ip=10.50.0.30 "),
        "still reserved after del: {got}"
    );
    let (ok, out) = hosts_cmd(&["del", "web9"]);
    assert!(!ok && out.contains("no reservation named 'web9'"), "{out}");
    server.kill();
}
