//! What the flow and boot tests share: `./demo ... --summary FILE` run with this build's
//! binaries.

use std::process::Command;

use opsflow_tests::workspace_bin;

/// The tools `./demo` needs on this machine, whatever it boots (the flow's release adds ssh).
pub const DEMO_TOOLS: &[&str] = &[
    "qemu-system-x86_64",
    "cpio",
    "apt-get",
    "dpkg",
    "curl",
    "python3",
    "sshd",
    "ssh-keygen",
    "tar",
];

/// Runs `./demo ARGS --summary FILE` with the binaries next to the tests (each of `needed`
/// must be there) and returns the summary and the demo's output; fails the test, showing that
/// output, when the demo fails.
pub fn run_demo(tag: &str, args: &[&str], needed: &[&str]) -> (serde_json::Value, String) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let bins = workspace_bin("ha")
        .parent()
        .expect("binaries live in target/PROFILE")
        .to_path_buf();
    for b in needed {
        assert!(
            bins.join(b).is_file(),
            "{b} is not built next to the tests (run cargo test --workspace)"
        );
    }
    let summary = std::env::temp_dir().join(format!("{tag}-summary-{}.json", std::process::id()));
    let out = Command::new("bash")
        .arg(format!("{root}/demo"))
        .args(args)
        .arg("--summary")
        .arg(&summary)
        .env("OPSFLOW_BIN", &bins)
        .current_dir(root)
        .output()
        .expect("run ./demo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the demo ({tag}) failed:\n{text}");
    let s: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&summary).expect("the demo wrote no summary"),
    )
    .expect("the summary is JSON");
    let _ = std::fs::remove_file(&summary);
    (s, text)
}
