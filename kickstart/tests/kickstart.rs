//! kickstart through its command line, against the real consumers of what it writes: ISC
//! dhcpd and our dhcpd read the generated dhcpd.conf, keepalived and ha read the generated
//! keepalived.conf, curl talks to `kickstart serve` inside a network namespace.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use opsflow_tests::{require, wait_until, workspace_bin, Host, Lab};

const KS: &str = env!("CARGO_BIN_EXE_kickstart");

fn example_text() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/inventory.toml"
    ))
    .unwrap()
}

/// A scratch directory removed at the end of the test.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("ks-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
    fn path(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
    /// Writes an inventory; its state directory is made local to the scratch directory.
    fn inventory(&self, name: &str, text: &str) -> PathBuf {
        let text = text.replace(
            "state_dir = \"/var/lib/opsflow/kickstart\"",
            "state_dir = \"state\"",
        );
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ks(inv: &Path, args: &[&str]) -> Output {
    Command::new(KS)
        .arg("--inventory")
        .arg(inv)
        .args(args)
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_accepts_the_example_and_names_the_line_of_each_problem() {
    let d = Scratch::new("check");
    let good = d.inventory("inventory.toml", &example_text());
    let o = ks(&good, &["check"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("every template renders for every system"));

    // a duplicate MAC: the second use, with the first named
    let text = example_text().replace("52:54:00:99:00:12", "52:54:00:99:00:11");
    let line = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("52:54:00:99:00:11"))
        .nth(1)
        .unwrap()
        .0
        + 1;
    let bad = d.inventory("bad.toml", &text);
    let o = ks(&bad, &["check"]);
    assert!(!o.status.success());
    let msg = out(&o);
    assert!(
        msg.contains(&format!(
            "bad.toml:{line}:7: system lb2: MAC 52:54:00:99:00:11 is already used by system lb1"
        )),
        "{msg}"
    );

    // values that cannot be rendered safely: refused with their position
    let text = example_text().replace(
        "notify_email = [\"root@localhost\"]",
        "notify_email = [\"root@localhost'; touch /tmp/pwned; echo '\"]",
    );
    let line = text
        .lines()
        .position(|l| l.starts_with("notify_email"))
        .unwrap()
        + 1;
    let bad = d.inventory("hostile.toml", &text);
    let o = ks(&bad, &["check"]);
    assert!(!o.status.success());
    assert!(
        out(&o).contains(&format!(
            "hostile.toml:{line}:17: ha.notify_email: \"root@localhost'; touch /tmp/pwned; echo '\" is not an e-mail address"
        )),
        "{}",
        out(&o)
    );

    // a fixed address inside the dynamic range, and a member that is no system
    let text = example_text()
        .replace("ip = \"10.99.0.23\"", "ip = \"10.99.0.150\"")
        .replace("system = \"lb2\"", "system = \"lb3\"");
    let bad = d.inventory("bad2.toml", &text);
    let msg = out(&ks(&bad, &["check"]));
    assert!(
        msg.contains("system web3: IP 10.99.0.150 is inside the dynamic range"),
        "{msg}"
    );
    assert!(
        msg.contains("member \"lb3\" is not a system; did you mean \"lb1\"?"),
        "{msg}"
    );

    // a template that uses an undefined variable: named by file and line
    std::fs::create_dir_all(d.path("tpl")).unwrap();
    std::fs::write(
        d.path("tpl/kickstart.ks"),
        "# ks\ntext\nrootpw {{ vars.root_pw }}\n%post\n%end\n",
    )
    .unwrap();
    let text = example_text().replace(
        "# templates = \"/etc/opsflow/templates\"",
        "templates = \"tpl\"",
    );
    let inv = d.inventory("tpl.toml", &text);
    let o = ks(&inv, &["check"]);
    assert!(!o.status.success());
    let msg = out(&o);
    assert!(msg.contains("tpl/kickstart.ks:3: undefined value"), "{msg}");
    assert!(msg.contains("(rendering kickstart for lb1)"), "{msg}");

    // a template syntax error: file and line, before anything renders
    std::fs::write(d.path("tpl/kickstart.ks"), "text\n\n{% if %}\n").unwrap();
    let msg = out(&ks(&inv, &["check"]));
    assert!(msg.contains("tpl/kickstart.ks:3: syntax error"), "{msg}");
}

#[test]
fn list_shows_netboot_and_the_netboot_command_changes_it() {
    let d = Scratch::new("list");
    let inv = d.inventory("inventory.toml", &example_text());
    let o = ks(&inv, &["list", "--json"]);
    assert!(o.status.success(), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[1]["name"], "lb1");
    assert_eq!(rows[1]["mac"], "52:54:00:99:00:11");
    assert_eq!(rows[1]["netboot"], true);
    assert_eq!(rows[1]["clusters"][0], "VI_1");
    assert_eq!(rows[0]["netboot"], false);
    assert!(ks(&inv, &["netboot", "web2", "off"]).status.success());
    let table = out(&ks(&inv, &["list"]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web2") && l.contains(" off (installed) ")),
        "{table}"
    );
    assert!(ks(&inv, &["netboot", "web2", "on"]).status.success());
    let table = out(&ks(&inv, &["list"]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web2") && l.contains(" on ")),
        "{table}"
    );
}

#[test]
fn sync_writes_a_tree_isc_dhcpd_and_ours_accept_and_rewrites_only_what_changed() {
    if !require(&["dhcpd"]) {
        return;
    }
    let d = Scratch::new("sync");
    // a distro whose kernel and initrd exist, so they are copied
    std::fs::create_dir_all(d.path("distro")).unwrap();
    std::fs::write(d.path("distro/vmlinuz"), vec![7u8; 300_000]).unwrap();
    std::fs::write(d.path("distro/initrd.img"), vec![9u8; 100_000]).unwrap();
    let text = example_text()
        .replace("/var/cache/opsflow/demo/vmlinuz", "distro/vmlinuz")
        .replace("/var/cache/opsflow/demo/initrd.img", "distro/initrd.img");
    let inv = d.inventory("inventory.toml", &text);
    let root = d.path("root");
    let root_s = root.to_str().unwrap();
    let o = ks(&inv, &["sync", "--root", root_s]);
    assert!(o.status.success(), "{}", out(&o));
    let first = out(&o);
    assert!(first.contains("created"), "{first}");
    let tftp = root.join("srv/tftp");
    for f in [
        "pxelinux.cfg/default",
        "pxelinux.cfg/01-52-54-00-99-00-11",
        "grub/grub.cfg",
        "grub/grub.cfg-01-52-54-00-99-00-21",
        "distros/demo/vmlinuz",
        "distros/demo/initrd.img",
    ] {
        assert!(tftp.join(f).is_file(), "{f} missing:\n{first}");
    }
    assert_eq!(
        std::fs::read(tftp.join("distros/demo/vmlinuz"))
            .unwrap()
            .len(),
        300_000
    );
    let pxe = std::fs::read_to_string(tftp.join("pxelinux.cfg/01-52-54-00-99-00-11")).unwrap();
    assert!(
        pxe.contains("KERNEL distros/demo/vmlinuz")
            && pxe.contains("inst.ks=http://10.99.0.2:8080/ks/lb1"),
        "{pxe}"
    );
    let prov = std::fs::read_to_string(tftp.join("pxelinux.cfg/01-52-54-00-99-00-02")).unwrap();
    assert!(prov.contains("LOCALBOOT"), "{prov}");

    let conf = root.join("etc/dhcp/dhcpd.conf");
    let isc = Command::new(opsflow_tests::which("dhcpd").unwrap())
        .args(["-t", "-cf"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(isc.status.success(), "ISC dhcpd -t: {}", out(&isc));
    let ours = Command::new(workspace_bin("dhcpd"))
        .arg("--config")
        .arg(&conf)
        .arg("--check")
        .output()
        .unwrap();
    assert!(ours.status.success(), "dhcpd --check: {}", out(&ours));
    assert!(out(&ours).contains("6 hosts"), "{}", out(&ours));
    // no ProxyDHCP server on the network (the default): iPXE is told not to wait for one
    let text_conf = std::fs::read_to_string(&conf).unwrap();
    assert_eq!(
        text_conf.matches("option ipxe.no-pxedhcp 1;").count(),
        1 + 6,
        "the PXE class and every host: {text_conf}"
    );

    // again: nothing rewritten (same inode, same mtime)
    let stamp = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).unwrap();
        (m.ino(), m.mtime_nsec(), m.mtime())
    };
    let before = stamp(&conf);
    let kernel_before = stamp(&tftp.join("distros/demo/vmlinuz"));
    let o = ks(&inv, &["sync", "--root", root_s]);
    assert!(out(&o).contains("0 changed"), "{}", out(&o));
    assert_eq!(stamp(&conf), before);
    assert_eq!(stamp(&tftp.join("distros/demo/vmlinuz")), kernel_before);

    // a system leaves the inventory: its files go, the others stay untouched
    let cut = text.find("[[systems]]\nname = \"web3\"").unwrap();
    let end = text[cut..].find("\n\n").unwrap() + cut;
    let mut less = text.clone();
    less.replace_range(cut..end, "");
    less = less.replace(
        "real_servers = [\"web1\", \"web2\", \"web3\"]",
        "real_servers = [\"web1\", \"web2\"]",
    );
    let inv2 = d.inventory("inventory.toml", &less);
    let o = ks(&inv2, &["sync", "--root", root_s]);
    let msg = out(&o);
    assert!(o.status.success(), "{msg}");
    assert!(
        msg.contains("removed") && msg.contains("pxelinux.cfg/01-52-54-00-99-00-23"),
        "{msg}"
    );
    assert!(msg.contains("grub.cfg-01-52-54-00-99-00-23"), "{msg}");
    assert!(
        msg.contains("updated") && msg.contains("dhcpd.conf"),
        "{msg}"
    );
    assert!(!msg.contains("pxelinux.cfg/01-52-54-00-99-00-11"), "{msg}");
    assert!(!tftp.join("pxelinux.cfg/01-52-54-00-99-00-23").exists());
}

/// A lab with lb1's address (10.99.0.11/24 on `eth0` of the first host) and a peer's
/// (10.99.0.12/24), for `keepalived -t` of lb1's config; `None` without keepalived.
fn lb1_and_peer() -> Option<(Lab, Host, Host)> {
    let lab = Lab::new(&["keepalived"])?;
    let a = lab.host("lb");
    let b = lab.host("peer");
    lab.connect(
        &a,
        "eth0",
        Some("10.99.0.11/24"),
        &b,
        "eth0",
        Some("10.99.0.12/24"),
    );
    Some((lab, a, b))
}

#[test]
fn rendered_keepalived_conf_passes_keepalived_and_ha() {
    let Some((_lab, a, _peer)) = lb1_and_peer() else {
        return;
    };
    let d = Scratch::new("ka");
    let inv = d.inventory("inventory.toml", &example_text());
    let mut prios = Vec::new();
    for node in ["lb1", "lb2"] {
        let o = ks(&inv, &["render", node, "keepalived.conf"]);
        assert!(o.status.success(), "{}", out(&o));
        let conf = d.path(&format!("{node}.conf"));
        std::fs::write(&conf, &o.stdout).unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        prios.push(
            text.lines()
                .find(|l| l.trim().starts_with("priority"))
                .unwrap()
                .to_string(),
        );
        keepalived_and_ha_accept(
            &a,
            &conf,
            &text,
            "1 vrrp instances, 1 scripts, 1 virtual servers",
        );
        let n = ks(&inv, &["render", node, "notify.sh"]);
        assert!(String::from_utf8_lossy(&n.stdout).starts_with("#!/bin/sh"));
    }
    assert_ne!(prios[0], prios[1]);
    // a web server is no cluster member: no keepalived.conf
    let o = ks(&inv, &["render", "web1", "keepalived.conf"]);
    assert!(!o.status.success());
    assert!(out(&o).contains("not a member of any cluster"));
}

#[test]
fn serve_answers_curl_with_ranges_errors_and_the_installed_callback() {
    let Some(lab) = Lab::new(&["curl"]) else {
        return;
    };
    let host = lab.host("prov");
    let d = Scratch::new("serve");
    // a large file under /files/, a template that fails for one profile
    std::fs::create_dir_all(d.path("files/images")).unwrap();
    let big: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(d.path("files/images/big.img"), &big).unwrap();
    // links out of the tree, and a name that is HTML
    std::os::unix::fs::symlink("/etc/passwd", d.path("files/passwd")).unwrap();
    std::os::unix::fs::symlink("/etc", d.path("files/etc")).unwrap();
    std::os::unix::fs::symlink("../inventory.toml", d.path("files/inv")).unwrap();
    std::fs::write(d.path("files/images/<b>&\"x'.txt"), "x").unwrap();
    std::fs::create_dir_all(d.path("tpl")).unwrap();
    std::fs::write(
        d.path("tpl/broken.ks"),
        "text\n# line 2\nrootpw {{ vars.nope }}\n",
    )
    .unwrap();
    let text = example_text()
        .replace("# files = \"/srv/files\"", "files = \"files\"")
        .replace(
            "# templates = \"/etc/opsflow/templates\"",
            "templates = \"tpl\"",
        )
        .replace(
            "[profiles.base]\ndistro = \"centos7\"\nkickstart = \"kickstart.ks\"",
            "[profiles.base]\ndistro = \"centos7\"\nkickstart = \"broken.ks\"",
        );
    let inv = d.inventory("inventory.toml", &text);
    let root = d.path("root");
    assert!(ks(&inv, &["sync", "--root", root.to_str().unwrap()])
        .status
        .success());
    let srv = host.spawn(
        "kickstart",
        KS,
        &[
            "--inventory",
            inv.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:8080",
            "--root",
            root.to_str().unwrap(),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(10), || host.tcp_listening(8080)),
        "{}",
        srv.output()
    );
    let url = "http://127.0.0.1:8080";
    let curl = |args: &[&str]| -> (String, Vec<u8>) {
        let mut a = vec!["-s", "-o", "-", "-w", "\n%{http_code}"];
        a.extend_from_slice(args);
        let o = host.output("curl", &a);
        let mut body = o.stdout;
        let nl = body.iter().rposition(|&c| c == b'\n').unwrap();
        let code = String::from_utf8_lossy(&body[nl + 1..]).into_owned();
        body.truncate(nl);
        (code, body)
    };
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    let (code, body) = curl(&[&format!("{url}/ks/lb1")]);
    assert_eq!(code, "200");
    let ks_text = s(&body);
    assert!(
        ks_text.contains("%post") && ks_text.contains("/ha/lb1/keepalived.conf"),
        "{ks_text}"
    );
    let (code, body) = curl(&[&format!("{url}/ipxe/52-54-00-99-00-21")]);
    assert_eq!(code, "200");
    assert!(
        s(&body).starts_with("#!ipxe") && s(&body).contains("ks=http://10.99.0.2:8080/ks/web1")
    );
    // as iPXE asks for ${net0/mac}: colons escaped
    let (code, body) = curl(&[&format!("{url}/ipxe/52%3A54%3A00%3A99%3A00%3A21")]);
    assert_eq!(code, "200");
    assert!(
        s(&body).contains("ks=http://10.99.0.2:8080/ks/web1"),
        "{}",
        s(&body)
    );
    let (code, body) = curl(&[&format!("{url}/ipxe/52:54:00:de:ad:01")]);
    assert_eq!(code, "200");
    assert!(s(&body).contains("is not in the inventory"), "{}", s(&body));
    let (code, body) = curl(&[&format!("{url}/ha/lb2/keepalived.conf")]);
    assert_eq!(code, "200");
    assert!(s(&body).contains("state BACKUP") && s(&body).contains("priority 98"));
    assert_eq!(curl(&[&format!("{url}/ha/lb2/ha.service")]).0, "200");

    // errors
    let (code, body) = curl(&[&format!("{url}/ks/no-such-system")]);
    assert_eq!(code, "404");
    assert!(s(&body).contains("no system \"no-such-system\""));
    let (code, body) = curl(&[&format!("{url}/ha/web1/keepalived.conf")]);
    assert_eq!(code, "404");
    assert!(s(&body).contains("not a member of any cluster"));
    let (code, body) = curl(&[&format!("{url}/ks/prov")]);
    assert_eq!(code, "500");
    assert!(
        s(&body).contains("tpl/broken.ks:3: undefined value"),
        "{}",
        s(&body)
    );
    assert!(wait_until(Duration::from_secs(5), || srv
        .output()
        .contains("template failed")));
    assert_eq!(curl(&[&format!("{url}/files/../inventory.toml")]).0, "404");
    assert_eq!(
        curl(&[&format!("{url}/files/%2e%2e/inventory.toml")]).0,
        "404"
    );
    assert_eq!(curl(&["-X", "DELETE", &format!("{url}/ks/lb1")]).0, "405");

    // static files: whole, ranges, HEAD, unsatisfiable
    let (code, body) = curl(&[&format!("{url}/files/images/big.img")]);
    assert_eq!(code, "200");
    assert!(body == big, "whole file differs ({} bytes)", body.len());
    let (code, body) = curl(&[
        "-r",
        "1000000-1999999",
        &format!("{url}/files/images/big.img"),
    ]);
    assert_eq!(code, "206");
    assert!(body == big[1_000_000..2_000_000]);
    let (code, body) = curl(&["-r", "-100", &format!("{url}/files/images/big.img")]);
    assert_eq!(code, "206");
    assert!(body == big[big.len() - 100..]);
    let head = host.run("curl", &["-sI", &format!("{url}/files/images/big.img")]);
    assert!(
        head.contains("content-length: 5000000") && head.contains("accept-ranges: bytes"),
        "{head}"
    );
    let (code, _) = curl(&["-r", "6000000-", &format!("{url}/files/images/big.img")]);
    assert_eq!(code, "416");
    // curl resumes a download with a range request
    let part = d.path("part.img");
    std::fs::write(&part, &big[..1_234_567]).unwrap();
    host.run(
        "curl",
        &[
            "-s",
            "-C",
            "-",
            "-o",
            part.to_str().unwrap(),
            &format!("{url}/files/images/big.img"),
        ],
    );
    assert!(
        std::fs::read(&part).unwrap() == big,
        "resumed download differs"
    );
    let (code, body) = curl(&[&format!("{url}/files/images/")]);
    assert_eq!(code, "200");
    assert!(s(&body).contains("big.img"));
    assert!(
        s(&body).contains("%3Cb%3E%26%22x%27.txt\">&lt;b&gt;&amp;&quot;x&#39;.txt</a>")
            && !s(&body).contains("<b>"),
        "{}",
        s(&body)
    );
    // symlinks out of the tree: refused, never the content
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    for p in ["passwd", "etc/passwd", "inv"] {
        let (code, body) = curl(&[&format!("{url}/files/{p}")]);
        assert!(code == "403" || code == "404", "/files/{p}: {code}");
        assert!(
            !s(&body).contains(passwd.lines().next().unwrap()) && !s(&body).contains("[server]"),
            "/files/{p} leaked: {}",
            s(&body)
        );
    }
    assert!(wait_until(Duration::from_secs(5), || srv
        .output()
        .contains("leads out of the tree")));

    // the installed callback: netboot off, persisted, boot configs rewritten
    let pxe = root.join("srv/tftp/pxelinux.cfg/01-52-54-00-99-00-22");
    assert!(std::fs::read_to_string(&pxe)
        .unwrap()
        .contains("LABEL install"));
    assert_eq!(curl(&[&format!("{url}/callback/web2/installed")]).0, "405");
    // without the token from web2's kickstart, or with another system's: 403, logged, no change
    let cb = |ks: &str| -> String {
        let from = ks.find("/callback/").unwrap();
        let end = ks[from..].find('\'').unwrap();
        format!("{url}{}", &ks[from..from + end])
    };
    let (_, body) = curl(&[&format!("{url}/ks/web2")]);
    let web2_cb = cb(&s(&body));
    assert!(
        web2_cb.contains("/callback/web2/installed?token="),
        "{web2_cb}"
    );
    let (code, body) = curl(&["-X", "POST", &format!("{url}/callback/web2/installed")]);
    assert_eq!(code, "403", "{}", s(&body));
    let lb1_cb = cb(&ks_text);
    let stolen = lb1_cb.replace("/lb1/", "/web2/");
    assert_eq!(curl(&["-X", "POST", &stolen]).0, "403");
    let token = web2_cb.split("token=").nth(1).unwrap();
    let (code, _) = curl(&[
        "-X",
        "POST",
        "-H",
        "Authorization: Bearer 00",
        &format!("{url}/callback/web2/installed"),
    ]);
    assert_eq!(code, "403");
    assert!(wait_until(Duration::from_secs(5), || srv
        .output()
        .contains("installed callback refused")));
    assert!(std::fs::read_to_string(&pxe)
        .unwrap()
        .contains("LABEL install"));
    // the bearer form is accepted as well as the query string: check it on lb1, then web2
    let (code, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &format!(
            "Authorization: Bearer {}",
            lb1_cb.split("token=").nth(1).unwrap()
        ),
        &format!("{url}/callback/lb1/installed"),
    ]);
    assert_eq!(code, "200", "{}", s(&body));
    assert!(token.len() == 64);
    let (code, body) = curl(&["-X", "POST", &web2_cb]);
    assert_eq!(code, "200", "{}", s(&body));
    let (_, body) = curl(&[&format!("{url}/ipxe/52:54:00:99:00:22")]);
    assert!(s(&body).contains("sanboot"), "{}", s(&body));
    let after = std::fs::read_to_string(&pxe).unwrap();
    assert!(
        after.contains("LOCALBOOT") && after.contains("installed"),
        "{after}"
    );
    assert_eq!(
        curl(&["-X", "POST", &format!("{url}/callback/nobody/installed")]).0,
        "404"
    );
    let list = ks(&inv, &["list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let web2 = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "web2")
        .unwrap();
    assert_eq!(web2["netboot"], false);
    assert!(std::fs::read_to_string(d.path("state/netboot.json"))
        .unwrap()
        .contains("installed callback from 127.0.0.1"));
    // the next sync keeps it off
    let o = ks(&inv, &["sync", "--root", root.to_str().unwrap()]);
    assert!(out(&o).contains("0 changed"), "{}", out(&o));

    // SIGHUP reloads the inventory
    std::fs::write(
        &inv,
        std::fs::read_to_string(&inv)
            .unwrap()
            .replace("\"web1\"", "\"www1\""),
    )
    .unwrap();
    srv.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(5), || curl(&[&format!(
            "{url}/ks/www1"
        )])
        .0 == "200"),
        "{}",
        srv.output()
    );
}

/// The next datagram on the notify socket, as text.
fn notified(sock: &std::os::unix::net::UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = opsflow_tests::unless_interrupted(|| sock.recv(&mut buf))
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn serve_runs_as_a_daemon_notify_pid_file_signals_and_idle_connections() {
    let Some(lab) = Lab::new(&["curl"]) else {
        return;
    };
    let v = Command::new(KS).arg("--version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("(commit "),
        "{v:?}"
    );
    let host = lab.host("ks");
    let d = Scratch::new("daemon");
    let inv = d.inventory("inventory.toml", &example_text());
    let sock_path = d.path("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let pid_file = d.path("ks.pid");
    let args = [
        "--inventory",
        inv.to_str().unwrap(),
        "serve",
        "--listen",
        "127.0.0.1:8080",
        "--pid-file",
        pid_file.to_str().unwrap(),
    ];
    let mut cmd = host.command(KS);
    cmd.args(args).env("NOTIFY_SOCKET", &sock_path);
    let mut srv = host.spawn_command("kickstart", cmd);
    let m = notified(&sock);
    assert!(
        m.contains("READY=1") && m.contains("STATUS=serving 6 systems"),
        "{m}"
    );
    assert!(host.tcp_listening(8080), "READY before listening");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        srv.pid().to_string()
    );

    // a second server on the same pid file is refused, naming the holder
    let o = host.output(KS, &args);
    assert!(!o.status.success());
    assert!(
        out(&o).contains(&format!("held by pid {}", srv.pid())),
        "{}",
        out(&o)
    );

    // idle connections that never send a request: a real one is still answered, and the
    // idle ones are closed by the header-read timeout
    let idle: Vec<std::net::TcpStream> = host.enter(|| {
        (0..40)
            .map(|_| std::net::TcpStream::connect("127.0.0.1:8080").unwrap())
            .collect()
    });
    let probe = host.output(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "2",
            "http://127.0.0.1:8080/ks/lb1",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&probe.stdout), "200");
    let last = idle.last().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut b = [0u8; 1];
    let r = opsflow_tests::unless_interrupted(|| std::io::Read::read(&mut &*last, &mut b));
    assert!(
        matches!(r, Ok(0))
            || r.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "an idle connection was not closed: {r:?}"
    );
    drop(idle);

    // SIGHUP: RELOADING, then READY
    srv.signal(libc::SIGHUP);
    let m = notified(&sock);
    assert!(m.contains("RELOADING=1"), "{m}");
    let m = notified(&sock);
    assert!(m.contains("READY=1"), "{m}");
    // SIGTERM: STOPPING, a clean exit, the pid file gone
    srv.signal(libc::SIGTERM);
    let m = notified(&sock);
    assert!(m.contains("STOPPING=1"), "{m}");
    let st = srv.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(st.success(), "{st:?}\n{}", srv.output());
    assert!(!pid_file.exists());
}

#[test]
fn rendered_ha_service_is_a_notify_unit_systemd_accepts_and_reload_checks_first() {
    if !require(&["systemd-analyze"]) {
        return;
    }
    let d = Scratch::new("unit");
    let ha = workspace_bin("ha");
    // the unit names the node's path of ha; point it at the built binary so verify can
    // check every command
    let text = example_text().replace(
        "binary_path = \"/usr/local/sbin/ha\"",
        &format!("binary_path = \"{}\"", ha.display()),
    );
    let inv = d.inventory("inventory.toml", &text);
    let o = ks(&inv, &["render", "lb1", "ha.service"]);
    assert!(o.status.success(), "{}", out(&o));
    let unit = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(unit.contains("\nType=notify\n"), "{unit}");
    let reloads: Vec<&str> = unit
        .lines()
        .filter(|l| l.starts_with("ExecReload="))
        .collect();
    assert_eq!(reloads.len(), 2, "{unit}");
    assert!(
        reloads[0].ends_with("--check") && reloads[1].contains("kill -HUP"),
        "{unit}"
    );
    std::fs::write(d.path("ha.service"), &unit).unwrap();
    let v = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "ha.service"])
        .current_dir(&d.0)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}\n{unit}", out(&v));
    // the reload's first command is a real check: it fails on a bad config
    let bad = d.path("bad.conf");
    std::fs::write(&bad, "vrrp_instance x {\n  nonsense here\n}\n").unwrap();
    let c = Command::new(&ha)
        .args(["--config", bad.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    assert!(!c.status.success(), "ha --check accepted a bad config");
}

/// The Debian package files `kickstart sync` installs by default.
const PACKAGE_FILES: &[(&str, &str)] = &[
    ("pxelinux.0", "/usr/lib/PXELINUX/pxelinux.0"),
    ("ldlinux.c32", "/usr/lib/syslinux/modules/bios/ldlinux.c32"),
    ("menu.c32", "/usr/lib/syslinux/modules/bios/menu.c32"),
    ("libutil.c32", "/usr/lib/syslinux/modules/bios/libutil.c32"),
    (
        "libcom32.c32",
        "/usr/lib/syslinux/modules/bios/libcom32.c32",
    ),
    ("undionly.kpxe", "/usr/lib/ipxe/undionly.kpxe"),
    ("ipxe.efi", "/usr/lib/ipxe/ipxe.efi"),
];

#[test]
fn sync_installs_the_boot_programs_and_check_refuses_a_missing_one() {
    let missing: Vec<&str> = PACKAGE_FILES
        .iter()
        .map(|(_, p)| *p)
        .filter(|p| !Path::new(p).is_file())
        .collect();
    if !missing.is_empty() {
        let msg =
            format!("this test needs {missing:?} (apt-get install pxelinux syslinux-common ipxe)");
        assert!(
            !opsflow_tests::in_ci(),
            "{msg}; under CI=true that is a failure"
        );
        eprintln!("SKIP: {msg}");
        return;
    }
    let d = Scratch::new("bootprog");
    std::fs::write(d.path("my-undionly.kpxe"), b"an operator's own build").unwrap();
    let text = example_text().replacen(
        "\n[network]",
        "\n[server.boot_programs]\n\"undionly.kpxe\" = \"my-undionly.kpxe\"\n\n[network]",
        1,
    );
    let inv = d.inventory("inventory.toml", &text);
    let o = ks(&inv, &["check"]);
    assert!(o.status.success(), "{}", out(&o));
    let root = d.path("root");
    let o = ks(&inv, &["sync", "--root", root.to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
    let tftp = root.join("srv/tftp");
    for (name, pkg) in PACKAGE_FILES {
        let got = std::fs::read(tftp.join(name)).unwrap_or_default();
        if *name == "undionly.kpxe" {
            assert_eq!(got, b"an operator's own build", "the inventory's file wins");
        } else {
            assert_eq!(got, std::fs::read(pkg).unwrap(), "{name} is not {pkg}");
        }
    }
    // a GRUB network image (signed from grub-efi-amd64-signed, or grub-mkimage's): a PE file
    let grub = std::fs::read(tftp.join("grubx64.efi")).unwrap_or_default();
    assert!(
        grub.starts_with(b"MZ") && grub.len() > 100_000,
        "{} bytes",
        grub.len()
    );
    // dhcpd.conf names only files that are there
    let conf = std::fs::read_to_string(root.join("etc/dhcp/dhcpd.conf")).unwrap();
    for l in conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("filename \""))
    {
        let f = l.trim_end_matches("\";");
        assert!(
            tftp.join(f).is_file(),
            "dhcpd.conf hands out {f}, not in the TFTP root"
        );
    }

    // a file the inventory names that is not there, a boot program the site has no use for
    let bad = text.replace(
        "\"undionly.kpxe\" = \"my-undionly.kpxe\"",
        "\"undionly.kpxe\" = \"gone.kpxe\"\n\"pxelinux.1\" = \"my-undionly.kpxe\"",
    );
    let inv = d.inventory("inventory.toml", &bad);
    let o = ks(&inv, &["check"]);
    let msg = out(&o);
    assert!(!o.status.success(), "{msg}");
    assert!(
        msg.contains("boot program undionly.kpxe:")
            && msg.contains("gone.kpxe (server.boot_programs) is not a file"),
        "{msg}"
    );
    assert!(
        msg.contains("\"pxelinux.1\" is not a boot program of this site"),
        "{msg}"
    );
}

/// The inventory `text` checks; lb1's rendered keepalived.conf holds every `want` (compared
/// with whitespace squeezed) and passes `keepalived -t` (inside `host`) and `ha --check` with
/// two instances and two virtual servers.
fn lb1_conf_passes_keepalived_and_ha(d: &Scratch, host: &Host, text: &str, wants: &[&str]) {
    let inv = d.inventory("inventory.toml", text);
    let o = ks(&inv, &["check"]);
    assert!(o.status.success(), "{}", out(&o));
    let o = ks(&inv, &["render", "lb1", "keepalived.conf"]);
    assert!(o.status.success(), "{}", out(&o));
    let conf_text = String::from_utf8_lossy(&o.stdout).into_owned();
    let squeezed: String = conf_text.split_whitespace().collect::<Vec<_>>().join(" ");
    for want in wants {
        assert!(squeezed.contains(want), "no {want:?} in:\n{conf_text}");
    }
    let conf = d.path("lb1.conf");
    std::fs::write(&conf, &o.stdout).unwrap();
    keepalived_and_ha_accept(host, &conf, &conf_text, "2 vrrp instances");
    keepalived_and_ha_accept(host, &conf, &conf_text, "2 virtual servers");
}

/// `keepalived -t` (inside `host`) and `ha --check` accept `conf` (whose text is `text`), and
/// ha's summary says `summary`.
fn keepalived_and_ha_accept(host: &Host, conf: &std::path::Path, text: &str, summary: &str) {
    let k = host.output("keepalived", &["-t", "-l", "-f", conf.to_str().unwrap()]);
    assert!(k.status.success(), "keepalived -t: {}\n{text}", out(&k));
    let h = Command::new(workspace_bin("ha"))
        .arg("--config")
        .arg(conf)
        .arg("--check")
        .output()
        .unwrap();
    assert!(h.status.success(), "ha --check: {}\n{text}", out(&h));
    assert!(out(&h).contains(summary), "{}", out(&h));
}

/// The keepalived settings of the seeds' configs that the inventory expresses: unicast peers,
/// track_interface, preempt_delay and a sync group of two clusters.
#[test]
fn unicast_peers_track_interface_preempt_delay_and_sync_groups_pass_keepalived_and_ha() {
    let Some((_lab, a, _peer)) = lb1_and_peer() else {
        return;
    };
    let d = Scratch::new("ka-more");
    let text = example_text().replacen(
        "notify = true ",
        "preempt_delay = 5\ntrack_interface = [\"lo\"]\nunicast = true\nsync_group = \"G1\"\nnotify = true ",
        1,
    )
    .replacen("weight = -5", "weight = 0", 1)
        + "\n[[clusters.virtual_servers]]\naddress = \"10.99.0.50:443\"\nfwmark = 7\n\
         real_servers = [\"web1\", \"10.99.0.22\"]\nweights = { web1 = 3, \"10.99.0.22\" = 2 }\n\
         \n[[clusters]]\nname = \"VI_2\"\nvrid = 15\nvirtual_ips = [\"10.99.0.51/24\"]\nsync_group = \"G1\"\n\
         [[clusters.members]]\nsystem = \"lb1\"\npriority = 100\n[[clusters.members]]\nsystem = \"lb2\"\npriority = 90\n";
    lb1_conf_passes_keepalived_and_ha(
        &d,
        &a,
        &text,
        &[
            "vrrp_sync_group G1 { group { VI_1 VI_2 } }",
            "preempt_delay 5",
            "unicast_src_ip 10.99.0.11 unicast_peer { 10.99.0.12 }",
            "track_interface { lo }",
            "state BACKUP",
            "virtual_server fwmark 7 {",
            "real_server 10.99.0.21 { weight 3 }",
            "real_server 10.99.0.22 { weight 2 }",
        ],
    );
}

/// A dual-stack network: a cluster holding an IPv4 and an IPv6 VIP (the IPv6 one excluded from
/// the IPv4 adverts) with an IPv6 virtual server whose real servers are systems' ip6 and a
/// bracketed address, and an IPv6-only VRRPv3 cluster with unicast peers: the keepalived.conf
/// rendered for lb1 passes keepalived -t and ha --check.
#[test]
fn dual_stack_and_ipv6_clusters_pass_keepalived_and_ha() {
    let Some((_lab, a, b)) = lb1_and_peer() else {
        return;
    };
    for (h, ip6) in [(&a, "2001:db8:99::11/64"), (&b, "2001:db8:99::12/64")] {
        h.run("ip", &["addr", "add", ip6, "dev", "eth0", "nodad"]);
    }
    let d = Scratch::new("ka-ipv6");
    let mut text = example_text()
        .replacen(
            "lease_time = 3600",
            "lease_time = 3600\nsubnet6 = \"2001:db8:99::/64\"",
            1,
        )
        .replacen(
            "virtual_ips = [\"10.99.0.50/24\"]",
            "virtual_ips = [\"10.99.0.50/24\", \"2001:db8:99::50\"]",
            1,
        );
    for (sys, last) in [("lb1", 11), ("lb2", 12), ("web1", 21), ("web2", 22)] {
        text = text.replacen(
            &format!("ip = \"10.99.0.{last}\"\n"),
            &format!("ip = \"10.99.0.{last}\"\nip6 = \"2001:db8:99::{last}\"\n"),
            1,
        );
        assert!(text.contains(&format!("2001:db8:99::{last}\"")), "{sys}");
    }
    text += "\n[[clusters.virtual_servers]]\naddress = \"[2001:db8:99::50]:80\"\nscheduler = \"wrr\"\n\
         method = \"NAT\"\nsorry_server = \"[2001:db8:99::99]:8080\"\n\
         real_servers = [\"web1\", \"web2\", \"[2001:db8:99::23]:8080\"]\n\
         check = { type = \"TCP_CHECK\", connect_timeout = 1 }\n\
         \n[[clusters]]\nname = \"VI_6\"\nvrid = 16\nvrrp_version = 3\nunicast = true\n\
         virtual_ips = [\"2001:db8:99::51/64\"]\n\
         [[clusters.members]]\nsystem = \"lb1\"\npriority = 100\n[[clusters.members]]\nsystem = \"lb2\"\npriority = 90\n";
    lb1_conf_passes_keepalived_and_ha(&d, &a, &text, &[
        "virtual_ipaddress { 10.99.0.50/24 dev eth0 } virtual_ipaddress_excluded { 2001:db8:99::50/64 dev eth0 }",
        "virtual_server 2001:db8:99::50 80 {",
        "sorry_server 2001:db8:99::99 8080",
        "real_server 2001:db8:99::21 80 {",
        "real_server 2001:db8:99::22 80 {",
        "real_server 2001:db8:99::23 8080 {",
        "version 3",
        "unicast_src_ip 2001:db8:99::11 unicast_peer { 2001:db8:99::12 }",
        "virtual_ipaddress { 2001:db8:99::51/64 dev eth0 }",
    ]);

    // an IPv6-only cluster cannot speak VRRPv2; a system without ip6 is no IPv6 real server
    let bad = text
        .replacen("vrrp_version = 3\n", "vrrp_version = 2\n", 1)
        .replacen(
            "\"web1\", \"web2\", \"[2001",
            "\"web1\", \"web3\", \"[2001",
            1,
        );
    let o = ks(&d.inventory("bad.toml", &bad), &["check"]);
    let msg = out(&o);
    assert!(!o.status.success(), "{msg}");
    assert!(
        msg.contains("IPv6 virtual IPs need vrrp_version = 3"),
        "{msg}"
    );
    assert!(
        msg.contains(
            "real server web3 has no ip6 for the IPv6 virtual server [2001:db8:99::50]:80"
        ),
        "{msg}"
    );
}

/// The body of `cat > PATH <<'TAG'` ... `TAG` in a rendered %post.
fn heredoc(text: &str, path: &str) -> String {
    let start = text
        .find(&format!("cat > {path} <<'"))
        .unwrap_or_else(|| panic!("no heredoc for {path}"));
    let head_end = start + text[start..].find('\n').unwrap();
    let tag = text[start..head_end]
        .rsplit("<<'")
        .next()
        .unwrap()
        .trim_end_matches('\'');
    let body = &text[head_end + 1..];
    let end = body.find(&format!("\n{tag}\n")).unwrap();
    body[..end + 1].to_string()
}

#[test]
fn an_lb_node_gets_time_sync_vrrp_through_nftables_and_reports_its_doctor_through_the_callback() {
    let Some(lab) = Lab::new(&["nft", "curl", "sh"]) else {
        return;
    };
    let prov = lab.host("prov");
    let lb1 = lab.host("lb1");
    lab.connect(
        &prov,
        "eth0",
        Some("10.99.0.2/24"),
        &lb1,
        "eth0",
        Some("10.99.0.11/24"),
    );
    let d = Scratch::new("lbnode");
    let inv = d.inventory("inventory.toml", &example_text());
    let o = ks(&inv, &["render", "lb1", "kickstart"]);
    assert!(o.status.success(), "{}", out(&o));
    let ks_text = String::from_utf8_lossy(&o.stdout).into_owned();
    let post = ks_text
        .split("%post --log=/root/ks-post.log\n")
        .nth(1)
        .unwrap()
        .split("\n%end")
        .next()
        .unwrap();
    // the %post is a shell script sh accepts, with time sync, the firewall and the doctor
    let (st, msg) = lb1.sh(&format!("sh -n <<'POST'\n{post}\nPOST"));
    assert!(st.success(), "{msg}");
    for needle in [
        "systemctl enable chronyd",
        "systemctl enable nftables",
        "/usr/local/sbin/ha doctor --config /etc/keepalived/keepalived.conf --json > /root/ha-doctor.json",
    ] {
        assert!(post.contains(needle), "{needle:?} missing from %post:\n{post}");
    }
    assert!(ks_text.contains("\nchrony\n") && ks_text.contains("\nnftables\n"));
    // a web server is no cluster member: time sync, no firewall or doctor from us
    let web = ks(&inv, &["render", "web1", "kickstart"]);
    let web = String::from_utf8_lossy(&web.stdout).into_owned();
    assert!(
        web.contains("systemctl enable chronyd")
            && !web.contains("opsflow.nft")
            && !web.contains("doctor")
    );

    // the rendered ruleset loads into the kernel, drops what it does not list...
    let ruleset = heredoc(post, "/etc/nftables/opsflow.nft");
    std::fs::write(d.path("opsflow.nft"), &ruleset).unwrap();
    let (st, msg) = lb1.sh(&format!("nft -f {}", d.path("opsflow.nft").display()));
    assert!(
        st.success(),
        "nft rejects the rendered ruleset: {msg}\n{ruleset}"
    );
    let listed = lb1.run("nft", &["list", "chain", "inet", "opsflow", "input"]);
    assert!(listed.contains("policy drop"), "{listed}");
    // ...and lets the node's VRRP in, as ha doctor judges it with the rendered keepalived.conf
    let o = ks(&inv, &["render", "lb1", "keepalived.conf"]);
    let conf = d.path("lb1.conf");
    std::fs::write(&conf, &o.stdout).unwrap();
    let doctor = |json: &Path| -> i32 {
        let o = lb1
            .command(workspace_bin("ha"))
            .args(["doctor", "--json", "--config", conf.to_str().unwrap()])
            .output()
            .unwrap();
        std::fs::write(json, &o.stdout).unwrap();
        o.status.code().unwrap()
    };
    let report = d.path("ok.json");
    doctor(&report);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let fw = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "vrrp-firewall")
        .unwrap();
    assert_eq!(fw["status"], "ok", "{fw}");

    // a rule that drops VRRP: the doctor fails, and the callback line of %post carries it
    lb1.run(
        "nft",
        &[
            "insert", "rule", "inet", "opsflow", "input", "ip", "protocol", "vrrp", "drop",
        ],
    );
    let report = d.path("ha-doctor.json");
    let code = doctor(&report);
    assert_eq!(code, 4);
    let srv = prov.spawn(
        "kickstart",
        KS,
        &[
            "--inventory",
            inv.to_str().unwrap(),
            "serve",
            "--listen",
            "10.99.0.2:8080",
        ],
    );
    assert!(
        wait_until(Duration::from_secs(10), || prov.tcp_listening(8080)),
        "{}",
        srv.output()
    );
    let callback = post
        .lines()
        .find(|l| l.starts_with("curl ") && l.contains("/callback/lb1/installed"))
        .unwrap()
        .replace("/root/ha-doctor.json", report.to_str().unwrap());
    let (st, msg) = lb1.sh(&format!("DOCTOR={code}; {callback}"));
    assert!(st.success(), "{callback}: {msg}");

    let list = ks(&inv, &["list"]);
    let row = out(&list)
        .lines()
        .find(|l| l.starts_with("lb1 "))
        .unwrap()
        .to_string();
    assert!(
        row.contains("off (installed)")
            && row.contains("FAIL: ")
            && row.contains("vrrp-firewall VI_1"),
        "{row}"
    );
    let list = ks(&inv, &["list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let lb1_row = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "lb1")
        .unwrap();
    assert_eq!(lb1_row["doctor"]["status"], "fail", "{lb1_row}");
    assert_eq!(lb1_row["doctor"]["exit"], 4);
    let problems = lb1_row["doctor"]["problems"].to_string();
    assert!(
        problems.contains("table inet opsflow chain input"),
        "{problems}"
    );
    // a system whose install sent no report shows none
    let web1 = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "web1")
        .unwrap();
    assert!(web1["doctor"].is_null());
}

#[test]
fn a_network_with_a_proxydhcp_server_lets_ipxe_wait_for_it() {
    if !require(&["dhcpd"]) {
        return;
    }
    let d = Scratch::new("proxydhcp");
    let text = example_text().replace(
        "lease_time = 3600\n",
        "lease_time = 3600\nproxy_dhcp = true\n",
    );
    assert!(text.contains("proxy_dhcp = true"));
    let inv = d.inventory("inventory.toml", &text);
    let root = d.path("root");
    let o = ks(&inv, &["sync", "--root", root.to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
    let conf = root.join("etc/dhcp/dhcpd.conf");
    let text_conf = std::fs::read_to_string(&conf).unwrap();
    assert!(!text_conf.contains("no-pxedhcp"), "{text_conf}");
    let isc = Command::new(opsflow_tests::which("dhcpd").unwrap())
        .args(["-t", "-cf"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(isc.status.success(), "ISC dhcpd -t: {}", out(&isc));
}
