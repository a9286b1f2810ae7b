//! The command line (clap derive), shared with packaging for man pages and completions.
//! tftp-hpa's spellings are the short flags: `-s DIR -c -u USER -a ADDR[:PORT] -R LOW:HIGH
//! -B SIZE -m FILE -P FILE`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::options::MAX_BLKSIZE;
use crate::remap::Remap;
use crate::server::Config;
use crate::slots::Caps;

/// TFTP boot server: RFC 1350 with blksize, tsize, timeout and windowsize; tftp-hpa remap rules.
#[derive(Parser, Debug, Clone)]
#[command(name = "tftpd", version = opsflow_common::VERSION, about)]
pub struct Cli {
    /// Directory served; nothing outside it is ever read or written (tftp-hpa: -s DIR).
    #[arg(short = 's', long, env = "TFTPD_ROOT")]
    pub root: PathBuf,
    /// Address to listen on, ADDR[:PORT] (port 69 when left out; repeatable).
    #[arg(short = 'a', long, default_value = "0.0.0.0:69", value_parser = parse_listen)]
    pub listen: Vec<SocketAddr>,
    /// Accept write requests: an existing file is replaced only when it is world-writable.
    #[arg(long)]
    pub allow_write: bool,
    /// Let write requests create new files (implies --allow-write).
    #[arg(short = 'c', long)]
    pub create: bool,
    /// Largest upload accepted, in bytes (refused up front when the client announces tsize).
    #[arg(long, value_name = "BYTES")]
    pub max_upload_size: Option<u64>,
    /// After binding, run as this user with its groups (tftp-hpa: -u).
    #[arg(short = 'u', long, value_name = "NAME")]
    pub user: Option<String>,
    /// File of remap rules in the tftp-hpa `-m` format.
    #[arg(short = 'm', long, value_name = "FILE")]
    pub remap: Option<PathBuf>,
    /// Largest block size granted (also clamped to the path MTU).
    /// (u32 so that any number reaches the one range check of [`Cli::problems`].)
    #[arg(short = 'B', long, default_value_t = MAX_BLKSIZE.into(), value_name = "SIZE")]
    pub max_blksize: u32,
    /// Largest windowsize granted.
    #[arg(long, default_value_t = 64)]
    pub max_window: u16,
    /// Local ports for transfers, LOW:HIGH (for firewalls).
    #[arg(short = 'R', long, value_parser = parse_range, value_name = "LOW:HIGH")]
    pub port_range: Option<(u16, u16)>,
    /// Retransmission timeout in seconds when the client negotiates none.
    #[arg(long, default_value_t = 1.0)]
    pub timeout: f64,
    /// Retransmissions of one packet before a transfer is abandoned.
    #[arg(long, default_value_t = 6)]
    pub retries: u32,
    /// Transfers at once; further requests get an ERROR at once [default: from the open-file
    /// limit, two descriptors a transfer].
    #[arg(long, default_value_t = 0, hide_default_value = true, value_name = "N")]
    pub max_transfers: usize,
    /// Transfers at once from one client address (0: no limit of its own).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_transfers_per_client: usize,
    /// Abandon a transfer after this many seconds without progress, whatever `timeout` the
    /// client asked for.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub give_up: f64,
    /// Serve Prometheus metrics on http://ADDR/metrics.
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// Pid file, locked for the daemon's life: a second instance on it is refused, naming the
    /// first one's pid. Taken before any socket is bound [default:
    /// /run/tftpd/tftpd[-LISTEN][-netnsINODE].pid, one per listen address and namespace].
    #[arg(short = 'P', long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Check the settings and the remap file, print every problem, and exit.
    #[arg(long)]
    pub check: bool,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// `ADDR`, `ADDR:PORT`, `[V6]:PORT`, `V6` or `:PORT`, as tftp-hpa's `-a` takes them.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, 69));
    }
    if let Some(port) = s.strip_prefix(':') {
        let p: u16 = port
            .parse()
            .map_err(|_| format!("'{port}' is not a port"))?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], p)));
    }
    Err(format!(
        "'{s}' is not ADDR[:PORT] (e.g. 10.0.0.1, 10.0.0.1:69, [::]:69)"
    ))
}

/// `LOW:HIGH` port range.
pub fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once(':')
        .ok_or("expected LOW:HIGH, e.g. 49152:49407")?;
    let lo: u16 = a.parse().map_err(|_| format!("'{a}' is not a port"))?;
    let hi: u16 = b.parse().map_err(|_| format!("'{b}' is not a port"))?;
    if lo == 0 || lo > hi {
        return Err(format!(
            "bad range {lo}:{hi}: LOW must be at least 1 and not above HIGH"
        ));
    }
    Ok((lo, hi))
}

impl Cli {
    /// The pid file to take: the given one, or the default for these listen addresses.
    pub fn pid_path(&self) -> PathBuf {
        self.pid_file.clone().unwrap_or_else(|| {
            let default: Vec<SocketAddr> = vec![SocketAddr::from(([0, 0, 0, 0], 69))];
            let instance = if self.listen == default {
                String::new()
            } else {
                let addrs: Vec<String> = self.listen.iter().map(|a| a.to_string()).collect();
                addrs.join("+")
            };
            opsflow_common::pidfile::default_path("tftpd", &instance)
        })
    }

    /// Loads the remap file, if one is given.
    pub fn load_remap(&self) -> anyhow::Result<Option<Remap>> {
        self.remap
            .as_ref()
            .map(|p| Remap::load(p).map_err(anyhow::Error::from))
            .transpose()
    }

    /// Every problem with the settings, in argument order (the remap file's in line order).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match std::fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => problems.push(format!("--root {}: not a directory", self.root.display())),
            Err(e) => problems.push(format!("--root {}: {e}", self.root.display())),
        }
        if let Some(p) = &self.remap {
            if let Err(e) = Remap::load(p) {
                problems.extend(e.errors.iter().map(|e| e.to_string()));
            }
        }
        if let Some(u) = &self.user {
            if let Err(e) = crate::privs::lookup(u) {
                problems.push(format!("--user {u}: {e:#}"));
            }
        }
        if !(8..=u32::from(MAX_BLKSIZE)).contains(&self.max_blksize) {
            problems.push(format!(
                "--max-blksize {}: must be 8 to {MAX_BLKSIZE}",
                self.max_blksize
            ));
        }
        if self.max_window == 0 {
            problems.push("--max-window 0: must be at least 1".into());
        }
        if !(self.give_up >= 1.0 && self.give_up <= 3600.0) {
            problems.push(format!(
                "--give-up {}: must be 1 to 3600 seconds",
                self.give_up
            ));
        }
        if !(self.timeout >= 0.01 && self.timeout <= 255.0) {
            problems.push(format!(
                "--timeout {}: must be 0.01 to 255 seconds (below 10 ms a retransmission would race the answer)",
                self.timeout
            ));
        }
        problems
    }

    /// The server settings (remap rules loaded).
    pub fn config(&self) -> anyhow::Result<Config> {
        Ok(Config {
            root: self.root.clone(),
            allow_write: self.allow_write || self.create,
            create: self.create,
            max_upload: self.max_upload_size,
            remap: self.load_remap()?,
            max_blksize: self.max_blksize.min(MAX_BLKSIZE.into()) as u16,
            max_window: self.max_window,
            port_range: self.port_range,
            timeout: Duration::from_secs_f64(self.timeout),
            retries: self.retries,
            give_up: Duration::from_secs_f64(self.give_up),
            caps: Caps {
                total: match self.max_transfers {
                    0 => crate::daemon::transfer_budget(),
                    n => n,
                },
                per_client: self.max_transfers_per_client,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_tftp_hpa_forms() {
        let ok = |s: &str| parse_listen(s).unwrap().to_string();
        assert_eq!(ok("10.0.0.1"), "10.0.0.1:69");
        assert_eq!(ok("10.0.0.1:6969"), "10.0.0.1:6969");
        assert_eq!(ok("[::1]:69"), "[::1]:69");
        assert_eq!(ok("::"), "[::]:69");
        assert_eq!(ok(":1069"), "0.0.0.0:1069");
        assert!(parse_listen("host:x").is_err());
    }

    #[test]
    fn out_of_range_numbers_get_the_one_range_message() {
        let problems = |args: &[&str]| {
            let mut v = vec!["tftpd", "--root", "/"];
            v.extend_from_slice(args);
            Cli::try_parse_from(v).unwrap().problems().join("; ")
        };
        for b in ["0", "7", "65465", "70000"] {
            assert_eq!(
                problems(&["-B", b]),
                format!("--max-blksize {b}: must be 8 to 65464")
            );
        }
        assert_eq!(problems(&["-B", "8"]), "");
        assert!(problems(&["--timeout", "0.0000000001"])
            .starts_with("--timeout 0.0000000001: must be 0.01 to 255 seconds"));
        assert_eq!(problems(&["--timeout", "0.01"]), "");
    }

    #[test]
    fn tftp_hpa_spellings_parse() {
        let cli = Cli::try_parse_from([
            "tftpd",
            "-s",
            "/srv",
            "-c",
            "-u",
            "tftp",
            "-a",
            "10.0.0.1",
            "-R",
            "5000:5010",
            "-B",
            "1468",
            "-m",
            "/etc/map",
        ])
        .unwrap();
        assert_eq!(cli.root, PathBuf::from("/srv"));
        assert!(cli.create);
        assert_eq!(cli.user.as_deref(), Some("tftp"));
        assert_eq!(cli.listen, vec!["10.0.0.1:69".parse().unwrap()]);
        assert_eq!(cli.port_range, Some((5000, 5010)));
        assert_eq!(cli.max_blksize, 1468);
        assert_eq!(cli.remap, Some(PathBuf::from("/etc/map")));
        assert!(cli.config().is_err(), "the remap file does not exist");
    }
}
