//! Self-test of the network lab: hosts reach each other, links cut, packets drop, processes
//! spawn and are reaped, and nothing is left behind, also after a panic or a killed run.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use opsflow_tests::{remove_stale, wait_until, Direction, Lab};

fn ns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

#[test]
fn three_hosts_on_a_bridge_reach_each_other_and_a_cut_link_is_cut() {
    let Some(lab) = Lab::new(&["ping"]) else {
        return;
    };
    let lan = lab.switch("lan");
    let hosts: Vec<_> = (1..=3).map(|i| lab.host(&format!("h{i}"))).collect();
    let links: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| lab.attach(h, &lan, "eth0", Some(&format!("10.99.0.{}/24", i + 1))))
        .collect();
    for (i, h) in hosts.iter().enumerate() {
        assert!(h.has_addr(&format!("10.99.0.{}", i + 1)));
        for j in 1..=3 {
            let dst = format!("10.99.0.{j}");
            assert!(h.ping(&dst), "{} cannot reach {dst}", h.name());
        }
    }
    links[2].cut();
    assert!(
        !hosts[0].ping("10.99.0.3"),
        "h1 still reaches h3 over a cut link"
    );
    assert!(
        hosts[0].ping("10.99.0.2"),
        "cutting h3's link must not cut h2"
    );
    links[2].restore();
    // the bridge port takes a moment to forward again: poll, never sleep
    assert!(wait_until(Duration::from_secs(5), || hosts[0].ping("10.99.0.3")));

    // the addresses exist only inside the lab: the root namespace has none of them
    let root = Command::new("ip")
        .args(["-4", "-o", "addr"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&root.stdout).contains("10.99.0."));
}

#[test]
fn point_to_point_and_packet_loss() {
    let Some(lab) = Lab::new(&["ping", "nft"]) else {
        return;
    };
    let a = lab.host("a");
    let b = lab.host("b");
    lab.connect(
        &a,
        "eth0",
        Some("10.98.0.1/30"),
        &b,
        "eth0",
        Some("10.98.0.2/30"),
    );
    assert!(a.ping("10.98.0.2"));

    b.drop_packets(Direction::In, 100);
    assert!(!a.ping("10.98.0.2"), "100% loss let a packet through");

    b.drop_packets(Direction::Both, 50);
    let (_, out) = a.sh("ping -n -q -c 200 -i 0.002 -W 1 10.98.0.2");
    // each echo crosses b twice (in, out), so about 75% of them are lost
    let received: u32 = out
        .split(',')
        .find_map(|f| f.trim().strip_suffix(" received")?.parse().ok())
        .unwrap_or_else(|| panic!("cannot read ping summary: {out}"));
    assert!(
        (20..=90).contains(&received),
        "50% loss each way should deliver about 50 of 200 echoes, got {received}: {out}"
    );

    b.clear_faults();
    assert!(a.ping("10.98.0.2"));
}

#[test]
fn spawn_wait_for_readiness_and_kill() {
    let Some(lab) = Lab::new(&["python3", "ss", "curl"]) else {
        return;
    };
    let lan = lab.switch("lan");
    let srv = lab.host("srv");
    let cl = lab.host("cl");
    lab.attach(&srv, &lan, "eth0", Some("10.97.0.1/24"));
    lab.attach(&cl, &lan, "eth0", Some("10.97.0.2/24"));
    std::fs::write(lab.path("who"), "srv\n").unwrap();
    let dir = lab.dir().to_string_lossy().into_owned();
    let mut web = srv.spawn(
        "web",
        "python3",
        &[
            "-u",
            "-m",
            "http.server",
            "8000",
            "--bind",
            "10.97.0.1",
            "--directory",
            &dir,
        ],
    );
    assert!(
        wait_until(Duration::from_secs(10), || srv.tcp_listening(8000)),
        "{}",
        web.output()
    );
    assert!(
        web.wait_for_output("Serving HTTP", Duration::from_secs(5)),
        "{}",
        web.output()
    );
    let body = cl.run(
        "curl",
        &["-s", "--max-time", "2", "http://10.97.0.1:8000/who"],
    );
    assert_eq!(body, "srv\n");
    // the request shows up in the captured output
    assert!(web.wait_for_output("GET /who", Duration::from_secs(5)));
    // a socket made inside the namespace from the test itself
    let sock = srv.enter(|| std::net::UdpSocket::bind("10.97.0.1:0").unwrap());
    assert!(sock.local_addr().unwrap().port() > 0);

    let pid = web.pid();
    web.kill();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists() || {
            let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            st.contains("zombie")
        }
    );
    assert!(!web.is_running());
    assert!(wait_until(Duration::from_secs(5), || !srv.tcp_listening(8000)));
}

#[test]
fn teardown_removes_everything_also_after_a_panic() {
    if !opsflow_tests::require(&["ip"]) {
        return;
    }
    let mut names = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::new(&[]).expect("requirements checked above");
        let lan = lab.switch("lan");
        let h = lab.host("doomed");
        lab.attach(&h, &lan, "eth0", Some("10.96.0.1/24"));
        let _sleeper = h.spawn("sleeper", "sleep", &["600"]);
        names = lab.namespaces();
        assert!(names.iter().all(|n| ns_exists(n)));
        panic!("on purpose: the lab must still be torn down");
    }));
    assert!(result.is_err());
    assert_eq!(names.len(), 2);
    for n in &names {
        assert!(!ns_exists(n), "namespace {n} survived the panic");
    }
}

#[test]
fn leftovers_of_killed_runs_are_removed() {
    if !opsflow_tests::require(&["ip"]) {
        return;
    }
    // a pid that no longer exists: a finished child's
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!("{}-{dead}-0-left", opsflow_tests::PREFIX);
    let st = Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .unwrap();
    assert!(st.success());
    let removed = remove_stale();
    assert!(removed.contains(&stale), "{removed:?}");
    assert!(!ns_exists(&stale));
    // a live owner's namespaces are never touched
    let lab = Lab::new(&[]).unwrap();
    let h = lab.host("alive");
    remove_stale();
    assert!(ns_exists(h.ns()));
}
