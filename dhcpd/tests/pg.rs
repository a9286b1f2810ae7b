//! Two dhcpd processes on one PostgreSQL lease store (a real PostgreSQL 15 started in the lab):
//! concurrent relayed clients that talk to both servers, no address granted twice (checked in
//! the table), renewals at the other server, and kill -9 of one server under load.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dhcpd::wire::{self, Msg, MsgType};
use opsflow_tests::{wait_until, Host, Lab, Proc};

const BIN: &str = env!("CARGO_BIN_EXE_dhcpd");
const PGBIN: &str = "/usr/lib/postgresql/15/bin";
const SERVERS: [&str; 2] = ["10.70.0.11", "10.70.0.12"];

fn as_postgres(program: &str) -> Vec<String> {
    [
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        program,
    ]
    .map(String::from)
    .to_vec()
}

fn psql(sock: &Path, sql: &str) -> std::process::Output {
    Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-h"])
        .arg(sock)
        .args(["-d", "postgres", "-c", sql])
        .output()
        .unwrap()
}

/// PostgreSQL in `db`, listening on 10.70.0.5, with role dhcp and database leases.
fn start_postgres(lab: &Lab, db: &Host) -> Proc {
    let dir = lab.path("pg");
    let (data, sock) = (dir.join("data"), dir.join("sock"));
    std::fs::create_dir_all(&sock).unwrap();
    let ok = |c: &mut Command| {
        let out = c.output().unwrap();
        assert!(out.status.success(), "{c:?}: {out:?}");
    };
    ok(Command::new("chown")
        .arg("-R")
        .arg("postgres:postgres")
        .arg(&dir));
    ok(Command::new("setpriv")
        .args(as_postgres(&format!("{PGBIN}/initdb")))
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
        .arg("--locale=C"));
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all postgres trust\nhost all all 10.70.0.0/24 scram-sha-256\n",
    )
    .unwrap();
    let mut args = as_postgres(&format!("{PGBIN}/postgres"));
    args.extend(
        [
            "-D",
            &data.to_string_lossy(),
            "-c",
            "listen_addresses=10.70.0.5",
            "-c",
            &format!("unix_socket_directories={}", sock.display()),
            // the test kills dhcpd, never PostgreSQL: an acknowledged COMMIT is what counts
            "-c",
            "synchronous_commit=off",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut pg = db.spawn("postgres", "setpriv", &args);
    assert!(
        wait_until(Duration::from_secs(30), || psql(&sock, "SELECT 1")
            .status
            .success()),
        "PostgreSQL did not start: {}",
        pg.output()
    );
    for sql in [
        "CREATE ROLE dhcp LOGIN PASSWORD 'lab-only'",
        "CREATE DATABASE leases OWNER dhcp",
    ] {
        let out = psql(&sock, sql);
        assert!(out.status.success(), "{sql}: {out:?}");
    }
    assert!(pg.is_running());
    pg
}

fn dhcpd(host: &Host, args: &[&str]) -> (bool, String) {
    let out = host.output(BIN, args);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The client side of a relay at `giaddr`, talking to both servers as ISC dhcrelay does.
struct Relay {
    sock: UdpSocket,
    giaddr: Ipv4Addr,
}

impl Relay {
    fn send(&self, m: &Msg) {
        for s in SERVERS {
            self.sock.send_to(&m.encode(576), (s, 67)).unwrap();
        }
    }

    /// The first reply of `xid` of a kind in `want`, from `from` if given, within 2 s.
    fn recv(&self, xid: u32, want: &[MsgType], from: Option<Ipv4Addr>) -> Option<Msg> {
        let mut buf = [0u8; 1500];
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(r) = Msg::parse(&buf[..n]) else {
                continue;
            };
            let sid = r.option_ip(wire::OPT_SERVER_ID);
            if r.xid == xid
                && r.msg_type().is_some_and(|t| want.contains(&t))
                && (from.is_none() || sid == from)
            {
                return Some(r);
            }
        }
        None
    }

    /// DISCOVER to both, REQUEST of the first OFFER: the ACKed address and its server.
    fn dora(&self, mac: [u8; 6], xid: u32) -> Option<(Ipv4Addr, Ipv4Addr)> {
        self.dora_with(mac, xid, &[])
    }

    /// [`Relay::dora`] of a client that asks for `want` (option 50) in its DISCOVER.
    fn dora_asking(&self, mac: [u8; 6], xid: u32, want: Ipv4Addr) -> Option<(Ipv4Addr, Ipv4Addr)> {
        self.dora_with(mac, xid, &[(wire::OPT_REQUESTED_IP, &want.octets())])
    }

    fn dora_with(
        &self,
        mac: [u8; 6],
        xid: u32,
        opts: &[(u8, &[u8])],
    ) -> Option<(Ipv4Addr, Ipv4Addr)> {
        let mut d = Msg::parse(&wire::request(MsgType::Discover, mac, xid, opts)).unwrap();
        d.giaddr = self.giaddr;
        d.hops = 1;
        self.send(&d);
        let off = self.recv(xid, &[MsgType::Offer], None)?;
        let sid = off.option_ip(wire::OPT_SERVER_ID)?;
        let mut req = Msg::parse(&wire::request(
            MsgType::Request,
            mac,
            xid,
            &[
                (wire::OPT_SERVER_ID, &sid.octets()),
                (wire::OPT_REQUESTED_IP, &off.yiaddr.octets()),
            ],
        ))
        .unwrap();
        req.giaddr = self.giaddr;
        req.hops = 1;
        self.send(&req);
        let ack = self.recv(xid, &[MsgType::Ack, MsgType::Nak], Some(sid))?;
        (ack.msg_type() == Some(MsgType::Ack)).then_some((ack.yiaddr, sid))
    }

    /// A renewal of `ip` (ciaddr set, no server identifier) to `server` only.
    fn renew(&self, mac: [u8; 6], ip: Ipv4Addr, xid: u32, server: &str) -> Option<Msg> {
        let mut req = Msg::parse(&wire::request(MsgType::Request, mac, xid, &[])).unwrap();
        req.ciaddr = ip;
        req.giaddr = self.giaddr;
        req.hops = 1;
        self.sock.send_to(&req.encode(576), (server, 67)).unwrap();
        self.recv(xid, &[MsgType::Ack, MsgType::Nak], None)
    }
}

fn mac_of(i: u32) -> [u8; 6] {
    [2, 0x77, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]
}

fn hexmac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `threads` relays at once, each running `per` DORAs of new clients from `first` on.
fn load(relays: &[Relay], first: u32, per: u32) -> Vec<([u8; 6], Ipv4Addr, Ipv4Addr)> {
    std::thread::scope(|s| {
        let hs: Vec<_> = relays
            .iter()
            .enumerate()
            .map(|(t, r)| {
                s.spawn(move || {
                    let mut got = Vec::new();
                    for i in 0..per {
                        let n = first + t as u32 * per + i;
                        if let Some((ip, sid)) = r.dora(mac_of(n), n) {
                            got.push((mac_of(n), ip, sid));
                        }
                    }
                    got
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn two_servers_on_one_postgresql_store_never_grant_an_address_twice_and_survive_a_kill() {
    let postgres = format!("{PGBIN}/postgres");
    let initdb = format!("{PGBIN}/initdb");
    let Some(lab) = Lab::new(&["setpriv", "psql", "chown", &postgres, &initdb]) else {
        return;
    };
    let lan = lab.switch("lan");
    let db = lab.host("db");
    lab.attach(&db, &lan, "eth0", Some("10.70.0.5/24"));
    let rel = lab.host("rel");
    lab.attach(&rel, &lan, "eth0", Some("10.70.0.9/24"));
    let servers: Vec<Host> = SERVERS
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let h = lab.host(&format!("s{}", i + 1));
            lab.attach(&h, &lan, "eth0", Some(&format!("{a}/24")));
            h.run("ip", &["route", "add", "10.71.0.0/16", "via", "10.70.0.9"]);
            h
        })
        .collect();
    let _pg = start_postgres(&lab, &db);
    let pw = lab.path("db.pw");
    std::fs::write(&pw, "lab-only\n").unwrap();
    let conf = lab.path("dhcpd.conf");
    std::fs::write(
        &conf,
        format!(
            "authoritative;\ndefault-lease-time 3600;\nmax-lease-time 3600;\n\
             lease-database {{\n  type postgresql;\n  name \"leases\";\n  host \"10.70.0.5\";\n  \
             user \"dhcp\";\n  password-file \"{}\";\n}}\n\
             subnet 10.70.0.0 netmask 255.255.255.0 {{ }}\n\
             subnet 10.71.0.0 netmask 255.255.0.0 {{\n  range 10.71.1.0 10.71.1.255;\n  \
             option routers 10.71.0.1;\n}}\n",
            pw.display()
        ),
    )
    .unwrap();
    let c = conf.to_string_lossy().into_owned();
    // the schema: init once, a second init is refused, upgrade has nothing to do
    let (ok, out) = dhcpd(&servers[0], &["db", "init", "--config", &c]);
    assert!(ok, "db init: {out}");
    let (ok, out) = dhcpd(&servers[0], &["db", "init", "--config", &c]);
    assert!(!ok && out.contains("db upgrade"), "second db init: {out}");
    let (ok, out) = dhcpd(&servers[1], &["db", "upgrade", "--config", &c]);
    assert!(ok && out.contains("is current"), "db upgrade: {out}");

    let mut procs: Vec<Option<Proc>> = servers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let (l, p) = (
                lab.path(&format!("s{i}.leases")),
                lab.path(&format!("s{i}.pid")),
            );
            let mut p = h.spawn(
                &format!("dhcpd-s{}", i + 1),
                BIN,
                &[
                    "--config",
                    &c,
                    "--leases",
                    &l.to_string_lossy(),
                    "--pid-file",
                    &p.to_string_lossy(),
                    "--interface",
                    "eth0",
                ],
            );
            assert!(
                p.wait_for_output("dhcpd ready", Duration::from_secs(15)),
                "{}",
                p.output()
            );
            Some(p)
        })
        .collect();

    let relays: Vec<Relay> = (1..=4u8)
        .map(|i| {
            let giaddr = Ipv4Addr::new(10, 71, 0, i);
            // the relay's client-side addresses (the servers route 10.71/16 to it)
            rel.run("ip", &["addr", "add", &format!("{giaddr}/32"), "dev", "lo"]);
            let sock = rel.enter(|| UdpSocket::bind((giaddr, 67)).unwrap());
            sock.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            Relay { sock, giaddr }
        })
        .collect();

    // 1. 4 x 40 clients at once, every packet to both servers
    let first = load(&relays, 0, 40);
    let per_server = |v: &[([u8; 6], Ipv4Addr, Ipv4Addr)]| {
        let mut m: HashMap<Ipv4Addr, usize> = HashMap::new();
        for (_, _, s) in v {
            *m.entry(*s).or_default() += 1;
        }
        m
    };
    let counts = per_server(&first);
    assert!(
        first.len() >= 150,
        "only {} of 160 DORAs got an ACK ({counts:?}); s1: {}\ns2: {}",
        first.len(),
        procs[0].as_ref().unwrap().output(),
        procs[1].as_ref().unwrap().output()
    );
    assert_eq!(counts.len(), 2, "both servers should grant: {counts:?}");

    // 2. kill -9 the busier one; its clients renew at the other, new clients keep coming
    let busier = if counts[&SERVERS[0].parse().unwrap()] >= counts[&SERVERS[1].parse().unwrap()] {
        0
    } else {
        1
    };
    let killed: Ipv4Addr = SERVERS[busier].parse().unwrap();
    procs[busier].as_mut().unwrap().kill();
    procs[busier] = None;
    let survivor = SERVERS[1 - busier];
    let mut renewed = 0;
    for (i, (mac, ip, _)) in first.iter().filter(|x| x.2 == killed).take(10).enumerate() {
        let xid = 900_000 + i as u32;
        let mut ack = None;
        // the survivor learns the other's leases from the store within a second or two
        assert!(
            wait_until(Duration::from_secs(10), || {
                ack = relays[0].renew(*mac, *ip, xid, survivor);
                ack.as_ref()
                    .is_some_and(|a| a.msg_type() == Some(MsgType::Ack))
            }),
            "{survivor} did not renew {ip} for {}: {:?}",
            hexmac(mac),
            ack.map(|a| a.msg_type())
        );
        assert_eq!(ack.unwrap().yiaddr, *ip);
        renewed += 1;
    }
    assert!(renewed > 0);
    let second = load(&relays, 1000, 20);
    assert!(
        second.len() >= 76,
        "after the kill only {} of 80 DORAs got an ACK; survivor: {}",
        second.len(),
        procs[1 - busier].as_ref().unwrap().output()
    );
    assert!(second.iter().all(|x| x.2.to_string() == survivor));

    // 3. the table: every ACKed lease active with its client, no address or client twice
    let mut owner: HashMap<Ipv4Addr, [u8; 6]> = HashMap::new();
    for (mac, ip, _) in first.iter().chain(&second) {
        if let Some(o) = owner.insert(*ip, *mac) {
            assert_eq!(
                &o,
                mac,
                "{ip} was ACKed to {} and {}",
                hexmac(&o),
                hexmac(mac)
            );
        }
    }
    let (ok, out) = dhcpd(&servers[1 - busier], &["leases", "--config", &c, "--json"]);
    assert!(ok, "dhcpd leases --config: {out}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let active: Vec<(&str, &str)> = listed
        .iter()
        .filter(|l| l["state"] == "active")
        .map(|l| (l["ip"].as_str().unwrap(), l["mac"].as_str().unwrap()))
        .collect();
    let macs: HashSet<&str> = active.iter().map(|x| x.1).collect();
    assert_eq!(macs.len(), active.len(), "a client holds two leases");
    for (ip, mac) in &owner {
        assert!(
            active.contains(&(ip.to_string().as_str(), hexmac(mac).as_str())),
            "{ip} ACKed to {} is not active in the store",
            hexmac(mac)
        );
    }

    // 4. expiry across servers: a lease that ended (as written by the killed server) is
    // taken over by the survivor for a new client that asks for its address
    let (_, gone, _) = first.iter().find(|x| x.2 == killed).unwrap();
    let sql = format!(
        "UPDATE dhcpd_leases SET ends = 1, modified = clock_timestamp(), \
         block = regexp_replace(block, 'ends [^;]*;', 'ends 4 1970/01/01 00:00:01;') \
         WHERE address = {}",
        u32::from(*gone)
    );
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-h"])
        .arg(lab.path("pg").join("sock"))
        .args(["-d", "leases", "-c", &sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // (a new client each time: one that got another address would keep asking for that)
    let (mut n, mut got) = (5000, None);
    assert!(
        wait_until(Duration::from_secs(10), || {
            n += 1;
            got = relays[1].dora_asking(mac_of(n), n, *gone);
            got.is_some_and(|(ip, _)| ip == *gone)
        }),
        "the ended lease {gone} was not given to a new client: {got:?}"
    );

    eprintln!(
        "two servers on PostgreSQL: {} + {} clients, {counts:?} before the kill of {killed}",
        first.len(),
        second.len()
    );
}
