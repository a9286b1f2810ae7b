//! A clap `Command` rebuilt from a program's `--help` (clap's own layout: about, `Usage:`,
//! `Commands:`, `Arguments:`, `Options:`), recursively for subcommands, so clap_mangen and
//! clap_complete can render it like a real definition. help2man's idea, for programs whose
//! clap structs are still private to their main.rs.

use std::path::Path;
use std::process::Command as Process;

use anyhow::{bail, Context, Result};
use clap::{Arg, ArgAction, Command};
use regex::Regex;

/// The command of the program at `bin`.
pub fn command(bin: &Path) -> Result<Command> {
    build(bin, &[], 0)
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn build(bin: &Path, path: &[String], depth: usize) -> Result<Command> {
    let out = Process::new(bin)
        .args(path)
        .arg("--help")
        .output()
        .with_context(|| format!("cannot run {} --help (build it first)", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} --help exited {}",
            bin.display(),
            path.join(" "),
            out.status
        );
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let name = path.last().map(String::as_str).unwrap_or("program");
    let mut cmd = Command::new(leak(name)).disable_help_subcommand(true);
    let parsed = parse(&text)?;
    if !parsed.about.is_empty() {
        cmd = cmd.about(leak(&parsed.about));
    }
    for a in parsed.args {
        cmd = cmd.arg(a);
    }
    if depth < 2 {
        for (sub, about) in parsed.subcommands {
            let mut p = path.to_vec();
            p.push(sub.clone());
            let s = build(bin, &p, depth + 1)?.about(leak(&about));
            cmd = cmd.subcommand(s);
        }
    }
    Ok(cmd)
}

struct Parsed {
    about: String,
    args: Vec<Arg>,
    subcommands: Vec<(String, String)>,
}

fn parse(text: &str) -> Result<Parsed> {
    let opt = Regex::new(
        r"^\s{2,}(?:-([A-Za-z0-9]),? ?)?(?:--([A-Za-z0-9][\w-]*))?(?: <([^>]+)>)?(\.\.\.)?(?:\s{2,}(.*))?$",
    )?;
    let pos = Regex::new(r"^\s{2,}[<\[]([^>\]]+)[>\]](\.\.\.)?(?:\s{2,}(.*))?$")?;
    let sub = Regex::new(r"^\s{2}(\S+)\s{2,}(.*)$")?;
    let mut about = Vec::new();
    let mut args: Vec<(Arg, String)> = Vec::new();
    let mut subs = Vec::new();
    let mut section = "about";
    for line in text.lines() {
        if let Some(h) = line.strip_suffix(':').filter(|h| !h.starts_with(' ')) {
            section = match h {
                "Commands" => "commands",
                "Options" => "options",
                "Arguments" => "arguments",
                _ => "other",
            };
            continue;
        }
        if line.starts_with("Usage:") {
            section = "usage";
            continue;
        }
        match section {
            "about" if !line.trim().is_empty() => about.push(line.trim().to_string()),
            "commands" => {
                if let Some(c) = sub.captures(line) {
                    if &c[1] != "help" {
                        subs.push((c[1].to_string(), c[2].trim().to_string()));
                    }
                }
            }
            "options" | "arguments" => {
                let help_of = |m: Option<regex::Match>| m.map(|m| m.as_str().trim().to_string());
                if section == "arguments" {
                    if let Some(c) = pos.captures(line) {
                        let name = leak(&c[1]);
                        let mut a = Arg::new(name)
                            .value_name(name)
                            .required(line.trim_start().starts_with('<'));
                        if c.get(2).is_some() {
                            a = a.action(ArgAction::Append);
                        }
                        args.push((a, help_of(c.get(3)).unwrap_or_default()));
                        continue;
                    }
                } else if line.trim_start().starts_with('-') {
                    if let Some(c) = opt.captures(line) {
                        let long = c.get(2).map(|m| m.as_str());
                        let short = c.get(1).and_then(|m| m.as_str().chars().next());
                        if matches!(long, Some("help" | "version"))
                            || (long.is_none() && matches!(short, Some('h' | 'V')))
                        {
                            continue;
                        }
                        let id = leak(
                            long.map(str::to_string)
                                .unwrap_or_else(|| short.map(String::from).unwrap_or_default())
                                .as_str(),
                        );
                        let mut a = Arg::new(id);
                        if let Some(l) = long {
                            a = a.long(leak(l));
                        }
                        if let Some(s) = short {
                            a = a.short(s);
                        }
                        a = match (c.get(3), c.get(4)) {
                            (Some(v), Some(_)) => {
                                a.value_name(leak(v.as_str())).action(ArgAction::Append)
                            }
                            (Some(v), None) => {
                                a.value_name(leak(v.as_str())).action(ArgAction::Set)
                            }
                            (None, _) => a.action(ArgAction::SetTrue),
                        };
                        args.push((a, help_of(c.get(5)).unwrap_or_default()));
                        continue;
                    }
                }
                // a continuation of the previous help text
                if let Some((_, h)) = args.last_mut() {
                    if !line.trim().is_empty() {
                        h.push(' ');
                        h.push_str(line.trim());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Parsed {
        about: about.join(" "),
        args: args
            .into_iter()
            .map(|(a, h)| {
                if h.is_empty() {
                    a
                } else {
                    a.help(leak(h.trim()))
                }
            })
            .collect(),
        subcommands: subs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELP: &str = "DHCPv4 server for PXE networks

Usage: dhcpd [OPTIONS] [COMMAND]

Commands:
  leases  Print the leases
  help    Print this message or the help of the given subcommand(s)

Arguments:
  <VERSION>  The version to roll out

Options:
  -c, --config <CONFIG>        The ISC-style configuration file [env: DHCPD_CONFIG=]
                               [default: /etc/dhcp/dhcpd.conf]
  -i, --interface <INTERFACE>  Interface to serve (repeatable)
      --check                  Check and exit
  -t                           Test the config (ISC)
  -h, --help                   Print help
  -V, --version                Print version
";

    #[test]
    fn clap_help_becomes_a_command() {
        let p = parse(HELP).expect("parse");
        assert_eq!(p.about, "DHCPv4 server for PXE networks");
        assert_eq!(
            p.subcommands,
            vec![("leases".to_string(), "Print the leases".to_string())]
        );
        let mut cmd = Command::new("dhcpd");
        for a in p.args {
            cmd = cmd.arg(a);
        }
        cmd.build();
        let ids: Vec<_> = cmd
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        assert!(ids.contains(&"VERSION".to_string()), "{ids:?}");
        let config = cmd
            .get_arguments()
            .find(|a| a.get_id() == "config")
            .expect("config");
        assert_eq!(config.get_short(), Some('c'));
        assert!(config
            .get_help()
            .expect("help")
            .to_string()
            .contains("[default: /etc/dhcp/dhcpd.conf]"));
        let t = cmd.get_arguments().find(|a| a.get_id() == "t").expect("-t");
        assert_eq!(t.get_short(), Some('t'));
        assert!(cmd.get_arguments().any(|a| a.get_id() == "check"));
        assert!(!cmd
            .get_arguments()
            .any(|a| a.get_long() == Some("help") && a.get_id() != "help"));
    }
}
