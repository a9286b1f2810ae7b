//! The network lab: tests build their own hosts as network namespaces.
//!
//! A [`Lab`] owns every namespace it creates and removes them in `Drop`, also while a test
//! panics. Nothing is created in the root namespace: a [`Switch`] is a bridge inside a
//! namespace of its own, and veth pairs run between namespaces, so deleting the namespaces
//! removes every link. Names carry the creating process id (`ofl-PID-N-host`), so tests in
//! parallel processes never collide and [`Lab::new`] removes what runs killed earlier left
//! behind (namespaces whose creating process is gone).
//!
//! ```no_run
//! use opsflow_tests::{Lab, wait_until};
//! use std::time::Duration;
//! let Some(lab) = Lab::new(&["ip", "ping"]) else { return };
//! let lan = lab.switch("lan");
//! let a = lab.host("a");
//! let b = lab.host("b");
//! lab.attach(&a, &lan, "eth0", Some("10.99.0.1/24"));
//! let link = lab.attach(&b, &lan, "eth0", Some("10.99.0.2/24"));
//! assert!(a.ping("10.99.0.2"));
//! link.cut();
//! assert!(!a.ping("10.99.0.2"));
//! ```
//!
//! Tests that need root or a missing tool print why and skip outside CI; under `CI=true`
//! they fail instead, so CI can never pass by skipping.

use std::cell::RefCell;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Prefix of every namespace the lab makes.
pub const PREFIX: &str = "ofl";

static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

/// True when running under CI (`CI=true`): skips become failures.
pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// Checks that we are root and that every tool is on `PATH`. Outside CI, prints the reason
/// and returns false (the caller returns early: a skip); under CI, panics.
pub fn require(tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (the lab builds network namespaces)".to_string());
    }
    for t in tools {
        if which(t).is_none() {
            missing.push(format!("the tool `{t}` (apt-get install it; see .ci/run)"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("this test needs {}", missing.join(", "));
    if in_ci() {
        panic!("{msg}; under CI=true a missing requirement is a failure, not a skip");
    }
    eprintln!("SKIP: {msg}");
    false
}

/// Finds an executable on `PATH` (also the sbin directories, which a non-login root shell may
/// lack).
pub fn which(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        let p = PathBuf::from(tool);
        return p.is_file().then_some(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join(tool))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        });
    found
}

/// Path of a workspace binary for cross-crate tests (`CARGO_BIN_EXE_*` only covers the
/// test's own package). Looks beside the running test executable: `target/PROFILE/NAME`.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/PROFILE/deps");
    profile_dir.join(name)
}

/// Polls `cond` every 20 ms until it is true or `timeout` passes. Returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Retries a blocking socket call that a stop and continue of this process interrupted.
/// A socket with SO_RCVTIMEO fails with EINTR even without a signal handler when the process
/// is stopped and resumed (signal(7)); a frozen or migrated VM does that to a test run.
pub fn unless_interrupted<T>(mut call: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Runs `cmd` (a command-line tool under test) to its end: whether it succeeded, and its
/// stdout followed by its stderr.
pub fn outcome(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn ip(args: &[&str]) -> Output {
    run_ok(Command::new("ip").args(args))
}

/// Kills every process in a namespace, then deletes it. Quiet: used in teardown.
fn destroy_ns(ns: &str) {
    for _ in 0..50 {
        let pids = Command::new("ip")
            .args(["netns", "pids", ns])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let pids: Vec<i32> = pids
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.is_empty() {
            break;
        }
        for p in pids {
            // SAFETY: plain kill(2) on a pid; at worst ESRCH.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Every lab namespace on this machine, as (name, creating pid).
fn lab_namespaces() -> Vec<(String, i32)> {
    let Ok(dir) = fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let mut parts = name.splitn(3, '-');
            if parts.next()? != PREFIX {
                return None;
            }
            let pid = parts.next()?.parse().ok()?;
            Some((name, pid))
        })
        .collect()
}

/// Removes namespaces left by lab processes that are gone (a test run killed with SIGKILL).
/// Returns the names removed.
pub fn remove_stale() -> Vec<String> {
    let mut removed = Vec::new();
    for (name, pid) in lab_namespaces() {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            destroy_ns(&name);
            removed.push(name);
        }
    }
    removed
}

/// A set of namespaces, links and processes that belongs to one test.
pub struct Lab {
    id: String,
    dir: PathBuf,
    namespaces: RefCell<Vec<String>>,
    ports: AtomicU32,
}

impl Lab {
    /// A new lab, or `None` (after printing why) when not root or a tool is missing outside
    /// CI. `ip` is always required.
    pub fn new(tools: &[&str]) -> Option<Lab> {
        let mut all = vec!["ip"];
        all.extend_from_slice(tools);
        if !require(&all) {
            return None;
        }
        remove_stale();
        let id = format!(
            "{PREFIX}-{}-{}",
            std::process::id(),
            LAB_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&id);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create lab directory");
        // daemons that drop privileges must still read their files here
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod lab dir");
        Some(Lab {
            id,
            dir,
            namespaces: RefCell::new(Vec::new()),
            ports: AtomicU32::new(0),
        })
    }

    /// The lab's unique id (prefix of all its namespace names).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A scratch directory for configs and logs, removed with the lab (kept, and its path
    /// printed, when the test panicked).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A path inside [`Lab::dir`].
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn new_ns(&self, name: &str) -> String {
        let ns = format!("{}-{name}", self.id);
        ip(&["netns", "add", &ns]);
        self.namespaces.borrow_mut().push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// A new host: a namespace with loopback up.
    pub fn host(&self, name: &str) -> Host {
        Host {
            ns: self.new_ns(name),
            name: name.to_string(),
            dir: self.dir.clone(),
        }
    }

    /// A new L2 segment: a bridge (`br0`) inside a namespace of its own.
    pub fn switch(&self, name: &str) -> Switch {
        let ns = self.new_ns(&format!("sw-{name}"));
        ip(&[
            "-n",
            &ns,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ip(&["-n", &ns, "link", "set", "br0", "up"]);
        Switch { ns }
    }

    /// Plugs `host` into `sw` with a veth whose host end is `ifname`, up, with `addr`
    /// (`A.B.C.D/LEN`) if given. The returned link can be cut and restored.
    pub fn attach(&self, host: &Host, sw: &Switch, ifname: &str, addr: Option<&str>) -> Link {
        let port = format!("p{}", self.ports.fetch_add(1, Ordering::Relaxed));
        ip(&[
            "-n", &sw.ns, "link", "add", &port, "type", "veth", "peer", "name", ifname, "netns",
            &host.ns,
        ]);
        ip(&["-n", &sw.ns, "link", "set", &port, "master", "br0", "up"]);
        host.link_up(ifname, addr);
        Link {
            ends: vec![(sw.ns.clone(), port), (host.ns.clone(), ifname.to_string())],
        }
    }

    /// A point-to-point veth between two hosts.
    pub fn connect(
        &self,
        a: &Host,
        a_if: &str,
        a_addr: Option<&str>,
        b: &Host,
        b_if: &str,
        b_addr: Option<&str>,
    ) -> Link {
        ip(&[
            "-n", &a.ns, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.ns,
        ]);
        a.link_up(a_if, a_addr);
        b.link_up(b_if, b_addr);
        Link {
            ends: vec![
                (a.ns.clone(), a_if.to_string()),
                (b.ns.clone(), b_if.to_string()),
            ],
        }
    }

    /// Names of the namespaces this lab owns.
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces.borrow().clone()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.borrow().iter().rev() {
            destroy_ns(ns);
        }
        if std::thread::panicking() || std::env::var_os("OPSFLOW_KEEP_LOGS").is_some() {
            eprintln!("lab {}: logs kept in {}", self.id, self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// An L2 segment (a bridge in its own namespace).
#[derive(Clone, Debug)]
pub struct Switch {
    ns: String,
}

impl Switch {
    /// The switch's namespace.
    pub fn ns(&self) -> &str {
        &self.ns
    }
}

/// A veth link; both ends are named so it can be cut like a pulled cable.
#[derive(Clone, Debug)]
pub struct Link {
    ends: Vec<(String, String)>,
}

impl Link {
    /// Takes the link down: the far end loses carrier, nothing passes.
    pub fn cut(&self) {
        let (ns, ifn) = &self.ends[0];
        ip(&["-n", ns, "link", "set", ifn, "down"]);
    }

    /// Brings a cut link back.
    pub fn restore(&self) {
        let (ns, ifn) = &self.ends[0];
        ip(&["-n", ns, "link", "set", ifn, "up"]);
    }
}

/// A host: one network namespace.
#[derive(Clone, Debug)]
pub struct Host {
    ns: String,
    name: String,
    dir: PathBuf,
}

/// Direction of packets for [`Host::drop_packets`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
    Both,
}

impl Host {
    /// The namespace name (for `ip netns exec`).
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The short name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn link_up(&self, ifname: &str, addr: Option<&str>) {
        ip(&["-n", &self.ns, "link", "set", ifname, "up"]);
        if let Some(a) = addr {
            ip(&["-n", &self.ns, "addr", "add", a, "dev", ifname]);
        }
    }

    /// A command that runs inside this host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// Runs a program inside the host and returns its output, whatever the exit status.
    pub fn output(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} in {}: {e}", self.ns))
    }

    /// Runs a program inside the host; panics unless it succeeds. Returns stdout.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let out = run_ok(self.command(program).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `sh -c SCRIPT` inside the host; returns the exit status and stdout+stderr.
    pub fn sh(&self, script: &str) -> (ExitStatus, String) {
        let out = self.output("sh", &["-c", script]);
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status, text)
    }

    /// sshd on `ip` in this host, with a host key of its own (`DIR/NAME.hostkey`, made here),
    /// accepting the public keys in `authorized_keys`; killed when the [`Proc`] is dropped.
    /// Wait for it with `tcp_listening(22)`.
    pub fn sshd(&self, dir: &Path, ip: &str, authorized_keys: &Path) -> Proc {
        let name = self.name.clone();
        let hostkey = dir.join(format!("{name}.hostkey"));
        run_ok(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&hostkey),
        );
        // sshd refuses to start without its privilege-separation directory
        fs::create_dir_all("/run/sshd").unwrap_or_else(|e| panic!("cannot create /run/sshd: {e}"));
        let sshd =
            which("sshd").unwrap_or_else(|| panic!("no sshd (apt-get install openssh-server)"));
        self.spawn(
            &format!("{name}-sshd"),
            &sshd,
            &[
                "-D",
                "-e",
                "-h",
                &hostkey.to_string_lossy(),
                "-o",
                &format!("ListenAddress={ip}"),
                "-o",
                &format!("PidFile={}/{name}.sshd.pid", dir.display()),
                "-o",
                &format!("AuthorizedKeysFile={}", authorized_keys.display()),
                "-o",
                "StrictModes=no",
                "-o",
                "PermitRootLogin=prohibit-password",
                "-o",
                "UsePAM=no",
            ],
        )
    }

    /// Starts a long-running process inside the host. Its stdout and stderr go to
    /// `LABDIR/LABEL.log`; it runs in its own process group and is killed (with its
    /// children) when the returned [`Proc`] is dropped.
    pub fn spawn(&self, label: &str, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Proc {
        let mut cmd = self.command(program);
        cmd.args(args);
        self.spawn_command(label, cmd)
    }

    /// Like [`Host::spawn`] with a prepared command (from [`Host::command`]), for setting
    /// environment variables or a working directory.
    pub fn spawn_command(&self, label: &str, mut cmd: Command) -> Proc {
        let log = self.dir.join(format!("{label}.log"));
        let file = File::create(&log).expect("create process log");
        let err = file.try_clone().expect("dup log fd");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        Proc {
            child: Some(child),
            log,
            label: label.to_string(),
        }
    }

    /// Runs `f` on a thread that has entered this namespace. Sockets created there stay in
    /// the namespace and may be used from any thread afterwards.
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/run/netns/{}", self.ns);
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: fd is a valid namespace file descriptor; setns only affects the
                // calling thread, which we own and end after `f`.
                let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// IPv4 addresses currently on the host's interfaces (`A.B.C.D/LEN`).
    pub fn addrs(&self) -> Vec<String> {
        let out = self.output("ip", &["-4", "-o", "addr", "show"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                w.find(|x| *x == "inet")?;
                w.next().map(str::to_string)
            })
            .collect()
    }

    /// Whether an interface of this host carries `ip` (without prefix length).
    pub fn has_addr(&self, ip: &str) -> bool {
        self.addrs().iter().any(|a| a.split('/').next() == Some(ip))
    }

    fn listening(&self, flag: &str, port: u16) -> bool {
        let out = self.output("ss", &["-H", "-n", flag]);
        let suffix = format!(":{port}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .any(|local| local.ends_with(&suffix))
    }

    /// Whether something listens on TCP `port` in this host.
    pub fn tcp_listening(&self, port: u16) -> bool {
        self.listening("-lt", port)
    }

    /// Whether something has bound UDP `port` in this host.
    pub fn udp_bound(&self, port: u16) -> bool {
        self.listening("-lu", port)
    }

    /// One ICMP echo with a 1 s deadline.
    pub fn ping(&self, dst: &str) -> bool {
        self.output("ping", &["-n", "-q", "-c", "1", "-W", "1", dst])
            .status
            .success()
    }

    /// Drops `percent`% of this host's packets in `dir` at random (nftables
    /// `numgen random mod 100 < N drop`; this kernel has no netem). Replaces an earlier rule.
    pub fn drop_packets(&self, dir: Direction, percent: u8) {
        self.clear_faults();
        let rule = match percent {
            0 => return,
            100.. => "drop".to_string(),
            p => format!("numgen random mod 100 < {p} drop"),
        };
        let chain_in = format!("chain in {{ type filter hook input priority -300; {rule}; }}");
        let chain_out = format!("chain out {{ type filter hook output priority -300; {rule}; }}");
        let body = match dir {
            Direction::In => chain_in,
            Direction::Out => chain_out,
            Direction::Both => format!("{chain_in}\n{chain_out}"),
        };
        let script = format!("table inet netlab_fault {{\n{body}\n}}\n");
        let path = self.dir.join(format!("{}-fault.nft", self.name));
        fs::write(&path, script).expect("write nft script");
        self.run("nft", &["-f", &path.to_string_lossy()]);
    }

    /// Removes the packet-loss rules.
    pub fn clear_faults(&self) {
        let _ = self.output("nft", &["delete", "table", "inet", "netlab_fault"]);
    }
}

/// A process running inside a host; killed with its process group on drop.
pub struct Proc {
    child: Option<Child>,
    log: PathBuf,
    label: String,
}

impl Proc {
    /// The process id (of the program itself: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Everything the process wrote so far (stdout and stderr interleaved).
    pub fn output(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let mut buf = Vec::new();
            let _ = f.read_to_end(&mut buf);
            s = String::from_utf8_lossy(&buf).into_owned();
        }
        s
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Waits until the output contains `needle`; false on timeout or when the process exits
    /// first without printing it.
    pub fn wait_for_output(&mut self, needle: &str, timeout: Duration) -> bool {
        let mut found = false;
        wait_until(timeout, || {
            found = self.output().contains(needle);
            found || !self.is_running()
        });
        found || self.output().contains(needle)
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends a signal to the process only (not its group).
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            let c = self.child.as_mut()?;
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILLs the process and everything in its process group, then reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: negative pid addresses the process group we created in spawn.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait up to `grace` for a clean exit, then SIGKILL. Returns the exit status
    /// when the process ended by itself.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        let st = self.wait_exit(grace);
        self.kill();
        st
    }

    /// The label given at spawn (the log is `LABEL.log`).
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
