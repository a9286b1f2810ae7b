//! `ha --check` as operators run it: the seeds pass, mistakes are reported with positions.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap is a failing test

use std::process::Command;

fn check(text: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("ha-check-{}-{}", std::process::id(), text.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("keepalived.conf");
    std::fs::write(&f, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ha"))
        .args(["--config", &f.to_string_lossy(), "--check"])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn misspelt_keyword_names_line_and_the_right_keyword() {
    let (ok, err) = check("vrrp_instance VI_1 {\n  state MASTER\n  interface lo\n  virtual_router_idd 51\n  priority 100\n}\n");
    assert!(!ok);
    assert!(err.contains("keepalived.conf:4:3: unknown keyword 'virtual_router_idd' (did you mean 'virtual_router_id'?)"), "{err}");
}

#[test]
fn out_of_range_priority_is_an_error_at_its_value() {
    let (ok, err) = check("vrrp_instance VI_1 {\n  state MASTER\n  interface lo\n  virtual_router_id 51\n  priority 300\n}\n");
    assert!(!ok);
    assert!(
        err.contains("keepalived.conf:5:12: priority 300 is out of range"),
        "{err}"
    );
}

#[test]
fn unimplemented_keywords_and_missing_interfaces_are_warnings_not_errors() {
    let (ok, err) = check(
        "global_defs {\n  enable_snmp_vrrp\n}\nvrrp_instance VI_1 {\n  interface no-such-if0\n  virtual_router_id 51\n  virtual_ipaddress {\n    10.9.9.9/24\n  }\n}\n",
    );
    assert!(ok, "{err}");
    assert!(
        err.contains(
            "warning: 'enable_snmp_vrrp' is a keepalived keyword that ha does not implement"
        ),
        "{err}"
    );
    assert!(
        err.contains("warning: interface no-such-if0 does not exist on this host"),
        "{err}"
    );
}

#[test]
fn every_seed_passes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/seeds");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        assert!(
            std::env::var("CI").is_err(),
            "seeds missing at {}",
            dir.display()
        );
        return;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "conf") {
            let out = Command::new(env!("CARGO_BIN_EXE_ha"))
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
    }
}

/// `ha --check` gives `keepalived -t`'s verdict on every file of keepalived's own samples
/// (the IPv6 ones included), both run in one namespace that has the
/// interfaces the samples name. `keepalived -t` also fails on what it only warns about
/// (deprecations, unknown keywords it then ignores, missing interfaces, a script security
/// violation); ha exits 0 on warnings, so for those files ha must name the same thing.
#[test]
fn check_verdicts_match_keepalived_on_its_samples() {
    let corpus =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/keepalived");
    if !corpus.is_dir() {
        assert!(
            std::env::var("CI").is_err(),
            "the keepalived corpus {} is missing",
            corpus.display()
        );
        eprintln!("skip: no keepalived corpus at {}", corpus.display());
        return;
    }
    let Some(lab) = opsflow_tests::Lab::new(&["keepalived"]) else {
        return;
    };
    let h = lab.host("kt");
    for (k, name) in ["eth0", "eth1", "eth2", "eth3", "eth0.1"]
        .iter()
        .enumerate()
    {
        h.run(
            "ip",
            &[
                "link",
                "add",
                name,
                "type",
                "veth",
                "peer",
                "name",
                &format!("peer{k}"),
            ],
        );
        h.run("ip", &["link", "set", name, "up"]);
    }
    h.run("ip", &["addr", "add", "192.168.200.1/24", "dev", "eth0"]);
    // keepalived -t fails, ha warns: what ha must say instead
    let warned: &[(&str, &str)] = &[
        ("etc/keepalived.conf", "vrrp_garp_interval"),
        ("legacy-v1.2.24/keepalived.conf", "vrrp_garp_interval"),
        ("keepalived.conf.fwmark", "protocol"),
        ("keepalived.conf.SSL_GET", "incompatible with AH"),
        (
            "legacy-v1.2.24/keepalived.conf.SSL_GET",
            "incompatible with AH",
        ),
        ("keepalived.conf.vrrp.lvs_syncd", "bare member"),
        ("keepalived.conf.vrrp.rules", "invalid rule to address"),
        ("keepalived.conf.track_interface", "has no 'dev IFACE'"),
        ("keepalived.conf.vrrp.localcheck", "not found/accessible"),
        ("keepalived.conf.vrrp.routes", "multipath routes"),
        (
            "keepalived.conf.vrrp.static_ipaddress",
            "has no 'dev IFACE'",
        ),
        ("legacy-v0.7.6/keepalived.conf.ci-linux", "lvs_id"),
        (
            "legacy-v0.7.6/keepalived.conf.real_server_group",
            "real_server_group",
        ),
        ("legacy-v1.2.24/keepalived.conf.SMTP_CHECK", "lvs_id"),
        ("legacy-v1.2.24/keepalived.conf.status_code", "nb_get_retry"),
        (
            "legacy-v1.2.24/keepalived.conf.virtual_server_group",
            "nb_get_retry",
        ),
        (
            "legacy-v1.2.24/keepalived.conf.track_interface",
            "static_route",
        ),
    ];
    let mut files = Vec::new();
    let mut dirs = vec![corpus.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 20, "only {} corpus files", files.len());
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(&corpus)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let path = f.to_string_lossy();
        let ka = h
            .output("keepalived", &["-t", "-f", &path])
            .status
            .success();
        let out = h.output(env!("CARGO_BIN_EXE_ha"), &["--config", &path, "--check"]);
        let ha = out.status.success();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        match warned.iter().find(|(n, _)| *n == rel) {
            _ if ka == ha => {}
            Some((_, says)) if !ka && ha && text.contains(says) => {}
            _ => wrong.push(format!(
                "{rel}: keepalived -t {}, ha --check {}",
                if ka { "accepts" } else { "rejects" },
                if ha { "accepts" } else { "rejects" }
            )),
        }
    }
    assert!(wrong.is_empty(), "verdicts differ: {wrong:#?}");
}
