//! Issue 13's differential harness: the same keepalived.conf run by keepalived and by ha in
//! the same topology, through the same fault scenarios, in a pure keepalived pair (the
//! oracle), a pure ha pair and both mixed pairs. After each step the test waits until the VIP
//! settles and compares which node holds it with what the keepalived pair did. A disagreement
//! fails the test unless README's "ha: deliberate differences from keepalived" lists it.
//!
//! Two scenario sets, each on one topology of its own (they run in parallel): faults on a
//! running master (tracked link, script, file) and the daemon's life (kill -9, SIGTERM,
//! reload with a changed priority).
//!
//! `track_process` is not compared: keepalived 2.2.7 counts processes only through the
//! kernel's proc connector, which answers in the initial network namespace alone ("Failed to
//! set/clear process event listen - errno 111"), so keepalived puts every instance with a
//! tracked process in FAULT inside a lab namespace. ha's own lab test
//! (`ha/tests/vrrp.rs`) checks a process dying against keepalived's documented rules.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::path::{Path, PathBuf};
use std::time::Duration;

use opsflow_tests::{wait_until, Host, Lab, Link, Proc};

mod common;

const HA: &str = env!("CARGO_BIN_EXE_ha");
const VIP: &str = "10.80.0.100";
/// How long the VIP's holders must stay unchanged to count as settled. Far longer than a
/// takeover at 0.1 s adverts (3 adverts + skew), shorter than the script interval's slack.
const SETTLED: Duration = Duration::from_millis(1200);
/// Deadline for any one step to produce its outcome.
const STEP: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Keepalived,
    Ha,
}

/// (VIP on n1, VIP on n2).
type Seen = (bool, bool);

struct Pair {
    lab: Lab,
    hosts: [Host; 2],
    tracked: [Link; 2],
    procs: [Option<Proc>; 2],
    kinds: [Kind; 2],
    prio: [u8; 2],
    /// Extra top-level and instance lines, the same for both nodes.
    extra: (&'static str, &'static str),
    starts: usize,
}

type Step = (&'static str, fn(&mut Pair));

impl Pair {
    fn new() -> Option<Pair> {
        let lab = Lab::new(&["keepalived", "ip"])?;
        let lan = lab.switch("lan");
        let trk = lab.switch("trk");
        let mk = |k: usize| {
            let h = lab.host(&format!("n{k}"));
            lab.attach(&h, &lan, "eth0", Some(&format!("10.80.0.{k}/24")));
            let l = lab.attach(&h, &trk, "eth1", None);
            (h, l)
        };
        let (h1, l1) = mk(1);
        let (h2, l2) = mk(2);
        let mut p = Pair {
            lab,
            hosts: [h1, h2],
            tracked: [l1, l2],
            procs: [None, None],
            kinds: [Kind::Keepalived; 2],
            prio: [150, 100],
            extra: ("", ""),
            starts: 0,
        };
        p.reset();
        Some(p)
    }

    fn file(&self, name: &str, k: usize) -> PathBuf {
        self.lab.path(&format!("{name}-n{k}"))
    }

    /// Every fault injected by a step undone, before a pair starts.
    fn reset(&mut self) {
        self.prio = [150, 100];
        for k in 1..=2 {
            self.tracked[k - 1].restore();
            let _ = std::fs::remove_file(self.file("down", k));
            std::fs::write(self.file("tf", k), "0\n").unwrap();
            let h = &self.hosts[k - 1];
            if h.has_addr(VIP) {
                h.run("ip", &["addr", "del", &format!("{VIP}/24"), "dev", "eth0"]);
            }
        }
    }

    /// The keepalived.conf node `k` runs, whatever runs it.
    fn conf(&self, k: usize) -> String {
        let down = self.file("down", k);
        let tf = self.file("tf", k);
        format!(
            "global_defs {{\n  router_id n{k}\n  vrrp_version 3\n}}\n{top}\
             vrrp_script chk {{\n  script \"/usr/bin/test ! -e {down}\"\n  interval 1\n  fall 1\n  rise 1\n}}\n\
             track_file tf {{\n  file {tf}\n}}\n\
             vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {prio}\n  advert_int 0.1\n\
             \x20 track_interface {{\n    eth1\n  }}\n  track_script {{\n    chk\n  }}\n  track_file {{\n    tf\n  }}\n\
             \x20 virtual_ipaddress {{\n    {VIP}/24 dev eth0\n  }}\n{inst}\n}}\n",
            top = self.extra.0,
            inst = self.extra.1,
            down = down.display(),
            tf = tf.display(),
            prio = self.prio[k - 1],
        )
    }

    fn write_conf(&self, k: usize) -> PathBuf {
        let p = self.lab.path(&format!("n{k}.conf"));
        std::fs::write(&p, self.conf(k)).unwrap();
        p
    }

    fn start(&mut self, k: usize) {
        let conf = self.write_conf(k);
        let conf = conf.to_string_lossy().into_owned();
        self.starts += 1;
        let label = format!("{:?}-n{k}-{}", self.kinds[k - 1], self.starts);
        let proc = match self.kinds[k - 1] {
            Kind::Ha => {
                let sock = self.lab.path(&format!("n{k}.sock"));
                common::ha(
                    &self.hosts[k - 1],
                    &label,
                    HA,
                    &conf,
                    &sock.to_string_lossy(),
                )
            }
            Kind::Keepalived => {
                let base = self.lab.path(&format!("ka-n{k}"));
                common::keepalived(&self.hosts[k - 1], &label, Path::new(&conf), &base)
            }
        };
        self.procs[k - 1] = Some(proc);
    }

    fn kill9(&mut self, k: usize) {
        if let Some(mut p) = self.procs[k - 1].take() {
            p.kill();
        }
    }

    fn term(&mut self, k: usize) {
        common::term(self.procs[k - 1].take());
    }

    fn seen(&self) -> Seen {
        (self.hosts[0].has_addr(VIP), self.hosts[1].has_addr(VIP))
    }

    /// Both daemons' logs, for a failure message.
    fn logs(&self) -> String {
        self.procs
            .iter()
            .flatten()
            .map(|p| format!("--- {}\n{}", p.label(), tail(&p.output(), 25)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether the holders stay `want` for [`SETTLED`].
    fn holds(&self, want: Seen) -> bool {
        !wait_until(SETTLED, || self.seen() != want)
    }

    /// The oracle's outcome of a step: the holders change from `before`, then settle.
    fn settle_after(&self, before: Seen, step: &str) -> Seen {
        assert!(
            wait_until(STEP, || self.seen() != before),
            "keepalived pair: the VIP did not move on step '{step}' (still {before:?}):\n{}",
            self.logs()
        );
        let mut last = self.seen();
        assert!(
            wait_until(STEP, || {
                last = self.seen();
                self.holds(last)
            }),
            "keepalived pair: the VIP never settled after step '{step}':\n{}",
            self.logs()
        );
        last
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `steps` on `pair` with node kinds `kinds`. Without an oracle, returns keepalived's
/// settled outcomes; with one, every step whose outcome differs from it.
fn run(
    pair: &mut Pair,
    kinds: [Kind; 2],
    steps: &[Step],
    oracle: Option<&[Seen]>,
) -> (Vec<Seen>, Vec<String>) {
    pair.reset();
    pair.kinds = kinds;
    let mut outcomes = Vec::new();
    let mut diffs = Vec::new();
    let mut before = (false, false);
    for (i, (name, act)) in steps.iter().enumerate() {
        act(pair);
        before = match oracle {
            None => pair.settle_after(before, name),
            Some(want) => {
                let want = want[i];
                // settled into keepalived's outcome within the step's deadline: a blip (a
                // takeover and back while the machine is starved) is not an outcome
                if !wait_until(STEP, || pair.seen() == want && pair.holds(want)) {
                    diffs.push(format!(
                        "{kinds:?}, step '{name}': keepalived's pair held the VIP as {want:?}, this pair as {:?}\n{}",
                        pair.seen(),
                        pair.logs()
                    ));
                }
                want
            }
        };
        outcomes.push(before);
    }
    pair.term(1);
    pair.term(2);
    (outcomes, diffs)
}

/// keepalived's outcomes first, then the same steps in the pure ha pair and both mixed pairs.
fn differential(steps: &[Step]) {
    use Kind::{Ha, Keepalived};
    let Some(mut pair) = Pair::new() else {
        return;
    };
    let (oracle, _) = run(&mut pair, [Keepalived; 2], steps, None);
    eprintln!("keepalived's outcomes (VIP on n1, on n2): {oracle:?}");
    let mut diffs = Vec::new();
    for kinds in [[Ha, Ha], [Ha, Keepalived], [Keepalived, Ha]] {
        diffs.extend(run(&mut pair, kinds, steps, Some(&oracle)).1);
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n\n"));
}

fn start_both(p: &mut Pair) {
    p.start(1);
    p.start(2);
}

#[test]
fn tracked_faults_on_the_master_move_the_vip_as_keepalived_moves_it() {
    let steps: &[Step] = &[
        ("start", start_both),
        ("tracked link down on n1", |p| p.tracked[0].cut()),
        ("tracked link back on n1", |p| p.tracked[0].restore()),
        ("tracked script fails on n1", |p| {
            std::fs::write(p.file("down", 1), "").unwrap()
        }),
        ("tracked script succeeds again on n1", |p| {
            std::fs::remove_file(p.file("down", 1)).unwrap()
        }),
        ("tracked file -100 on n1", |p| {
            std::fs::write(p.file("tf", 1), "-100\n").unwrap()
        }),
        ("tracked file 0 on n1", |p| {
            std::fs::write(p.file("tf", 1), "0\n").unwrap()
        }),
    ];
    differential(steps);
}

#[test]
fn crash_stop_and_reload_move_the_vip_as_keepalived_moves_it() {
    let steps: &[Step] = &[
        ("start", start_both),
        ("kill -9 of the master n1", |p| p.kill9(1)),
        ("n1 restarted", |p| p.start(1)),
        ("SIGTERM to the master n1", |p| p.term(1)),
        ("n1 restarted again", |p| p.start(1)),
        ("n2 reloaded with priority 200", |p| {
            p.prio[1] = 200;
            p.write_conf(2);
            p.procs[1].as_ref().unwrap().signal(libc::SIGHUP);
        }),
    ];
    differential(steps);
}

/// Routes and rules: what keepalived installs as master, leaves as backup and at shutdown, ha
/// installs, leaves and removes the same (compared as `ip` prints them).
#[test]
fn routes_and_rules_are_installed_and_removed_as_keepalived_does() {
    use Kind::{Ha, Keepalived};
    let Some(mut pair) = Pair::new() else {
        return;
    };
    pair.extra = (
        "static_routes {\n  192.168.50.0/24 via 10.80.0.254 dev eth0\n}\nstatic_rules {\n  from 10.80.0.0/24 table 50 priority 500\n}\n",
        "  virtual_routes {\n    src 10.80.0.100 192.168.60.0/24 via 10.80.0.254 dev eth0 table 100\n    blackhole 192.168.61.0/24\n    192.168.62.0/24 dev eth0 metric 7\n  }\n  virtual_rules {\n    from 10.80.0.100 to 192.168.70.0/24 table 100 priority 600\n  }",
    );
    let show = |p: &Pair, k: usize| {
        let h = &p.hosts[k - 1];
        let routes = h.run(
            "ip",
            &["-4", "route", "show", "table", "all", "proto", "keepalived"],
        );
        let rules = h.run("ip", &["-4", "rule", "show"]);
        let rules: Vec<&str> = rules
            .lines()
            .filter(|l| l.contains("proto keepalived"))
            .collect();
        format!("{routes}{}", rules.join("\n"))
    };
    let mut seen = Vec::new();
    for kind in [Keepalived, Ha] {
        pair.reset();
        pair.kinds = [kind; 2];
        let mut got = Vec::new();
        pair.start(1);
        assert!(
            wait_until(STEP, || pair.seen() == (true, false)),
            "{kind:?} n1 never master:\n{}",
            pair.logs()
        );
        // the last route is added after the VIP: wait until the set stops changing
        let mut last = show(&pair, 1);
        assert!(wait_until(STEP, || {
            let now = show(&pair, 1);
            let same =
                now == last && !wait_until(Duration::from_millis(500), || show(&pair, 1) != now);
            last = now;
            same
        }));
        got.push(("master", last));
        pair.prio[1] = 200;
        pair.start(2);
        assert!(
            wait_until(STEP, || pair.seen() == (false, true)),
            "{kind:?} n2 never took over:\n{}",
            pair.logs()
        );
        assert!(wait_until(STEP, || show(&pair, 1) != got[0].1
            || pair.holds((false, true))));
        got.push(("backup", show(&pair, 1)));
        pair.term(2);
        pair.term(1);
        got.push(("stopped", show(&pair, 1)));
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1], "keepalived (left) and ha (right) differ");
}
