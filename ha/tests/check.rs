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
