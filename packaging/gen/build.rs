//! Turns on `cli_CRATE` for each program whose library already has `pub mod cli` with
//! `pub struct Cli` (the project is moving every crate's clap structs there); the generator then
//! takes that crate's clap `Command` directly, and otherwise rebuilds one from `--help`.
//! Once every crate has its `cli.rs`, this file and the fallback can go.

use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for krate in ["dhcpd", "tftpd", "ha", "kickstart", "release"] {
        println!("cargo::rustc-check-cfg=cfg(cli_{krate})");
        let lib = root.join(krate).join("src/lib.rs");
        let cli = root.join(krate).join("src/cli.rs");
        // the directory, not cli.rs: a missing file would rerun this on every build
        println!(
            "cargo:rerun-if-changed={}",
            root.join(krate).join("src").display()
        );
        let has =
            |p: &Path, needle: &str| std::fs::read_to_string(p).is_ok_and(|s| s.contains(needle));
        if has(&lib, "pub mod cli") && has(&cli, "pub struct Cli") {
            println!("cargo:rustc-cfg=cli_{krate}");
        }
    }
}
