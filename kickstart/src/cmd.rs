//! The commands behind the command line: each loads the site and calls into the library.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{Cli, Cmd};
use crate::render::{Global, What};
use crate::{load_site, serve, sync};

/// Runs one command; `Ok(FAILURE)` when `check` found problems.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let site = load_site(&cli.inventory, cli.state_dir.as_deref())?;
    for w in &site.inv.warnings {
        eprintln!("{w}");
    }
    match cli.cmd {
        Cmd::Check => {
            let problems = site.check_all();
            for p in &problems {
                eprintln!("{p}");
            }
            if !problems.is_empty() {
                eprintln!("{}: {} problem(s)", cli.inventory.display(), problems.len());
                return Ok(ExitCode::FAILURE);
            }
            println!(
                "{}: OK ({} distros, {} profiles, {} systems, {} clusters; every template renders for every system)",
                cli.inventory.display(),
                site.inv.distros.len(),
                site.inv.profiles.len(),
                site.inv.systems.len(),
                site.inv.clusters.len()
            );
        }
        Cmd::List { json } => {
            let rows: Vec<serde_json::Value> = site
                .inv
                .systems
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "name": s.name, "mac": s.mac, "ip": s.ip, "profile": s.profile,
                        "netboot": site.netboot(s), "netboot_configured": s.netboot,
                        "clusters": site.inv.clusters_of(&s.name).map(|c| c.name.clone()).collect::<Vec<_>>(),
                        "doctor": site.state.doctor.get(&s.name),
                    })
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<16} {:<17} {:<15} {:<12} {:<16} DOCTOR",
                    "NAME", "MAC", "IP", "PROFILE", "NETBOOT"
                );
                for s in &site.inv.systems {
                    let nb = match (s.netboot, site.netboot(s)) {
                        (true, true) => "on",
                        (true, false) => "off (installed)",
                        _ => "off",
                    };
                    // what `ha doctor` said at the end of the install (cluster nodes)
                    let doctor = site
                        .state
                        .doctor
                        .get(&s.name)
                        .map_or("-".to_string(), |d| d.summary());
                    println!(
                        "{:<16} {:<17} {:<15} {:<12} {nb:<16} {doctor}",
                        s.name, s.mac, s.ip, s.profile
                    );
                }
            }
        }
        Cmd::Sync { root } => {
            let report = sync::sync(&site, root.as_deref())?;
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            for c in &report.changes {
                println!("{c}");
            }
            println!(
                "{} changed, {} unchanged",
                report.changes.len(),
                report.unchanged
            );
        }
        Cmd::Render { target, what } => {
            let out = match what {
                None => {
                    let g = Global::ALL
                        .into_iter()
                        .find(|g| g.name() == target)
                        .with_context(|| {
                            format!("{target:?} is not dhcpd.conf, pxe-menu, grub-menu or ipxe-menu; for a system's files use `render SYSTEM WHAT`")
                        })?;
                    site.render_global(g)?
                }
                Some(w) => {
                    let what = What::parse(&w).with_context(|| {
                        format!("{w:?} is not one of kickstart, pxelinux, grub, ipxe, keepalived.conf, notify.sh, ha.service")
                    })?;
                    let s = site.inv.system(&target).with_context(|| {
                        format!("no system {target:?} in {}", cli.inventory.display())
                    })?;
                    if !site.has(s, what) {
                        anyhow::bail!(
                            "system {target} is not a member of any cluster, so it has no {}",
                            what.name()
                        );
                    }
                    site.render(s, what)?
                }
            };
            print!("{out}");
        }
        Cmd::Netboot { system, value } => {
            let mut site = site;
            let s =
                site.inv.system(&system).cloned().with_context(|| {
                    format!("no system {system:?} in {}", cli.inventory.display())
                })?;
            if value == "off" {
                site.state.set(&system, false, "kickstart netboot off")?;
            } else {
                site.state.clear(&system)?;
                if !s.netboot {
                    eprintln!("note: the inventory has netboot = false for {system}; edit it to netboot this system");
                }
            }
            println!(
                "{system}: netboot {}",
                if site.netboot(&s) { "on" } else { "off" }
            );
            println!("run `kickstart sync` (or the installed callback's server does it) to rewrite its boot config");
        }
        Cmd::Serve {
            listen,
            root,
            pid_file,
        } => {
            serve::run_daemon(
                site,
                serve::Options {
                    listen,
                    root,
                    pid_file,
                    inventory: cli.inventory.clone(),
                    state_dir: cli.state_dir.clone(),
                },
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
