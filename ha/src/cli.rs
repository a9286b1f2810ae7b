//! The command line (clap), so packaging can generate man pages and completions from
//! `<Cli as clap::CommandFactory>::command()`. keepalived's spellings are aliases: `-f`,
//! `--use-file`, `-t`, `--config-test`, `-i`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The default control socket; its instance name is empty (pid file /run/ha/ha.pid).
pub const DEFAULT_CONTROL: &str = "/run/ha/ha.sock";

/// keepalived-compatible HA daemon: VRRP, virtual IPs, virtual servers, health checks.
#[derive(Parser, Debug)]
#[command(
    name = "ha",
    version = opsflow_common::VERSION,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    /// The keepalived.conf to read.
    #[arg(
        long,
        short = 'f',
        visible_alias = "use-file",
        default_value = "/etc/keepalived/keepalived.conf",
        env = "HA_CONFIG"
    )]
    pub config: PathBuf,
    /// Control API: a unix socket path, or HOST:PORT for TCP (then a token is required).
    #[arg(long, default_value = DEFAULT_CONTROL)]
    pub control: String,
    /// Group that may use the unix control socket (mode 0660, owner root).
    #[arg(long)]
    pub control_group: Option<String>,
    /// File holding the bearer token of the TCP control API (not empty, writable only by its owner; `chmod 600`).
    #[arg(long)]
    pub control_token_file: Option<PathBuf>,
    /// Pid file, locked while ha runs: a second ha on it is refused. Default:
    /// /run/ha/ha.pid, or a name derived from --control and the network namespace.
    #[arg(long, visible_alias = "pid")]
    pub pid_file: Option<PathBuf>,
    /// Config id for `@ID` conditional lines (keepalived's -i); default: the short host name.
    #[arg(long, short = 'i')]
    pub config_id: Option<String>,
    /// Check the configuration, print every problem as FILE:LINE:COL: message, and exit.
    #[arg(long, short = 't', visible_alias = "config-test")]
    pub check: bool,
    /// Print the configuration as ha understood it, and exit.
    #[arg(long)]
    pub dump_config: bool,
    /// Load-balancer backend for virtual servers: nftables (NAT in a table of our own), ipvs,
    /// or auto (IPVS when the kernel has it and this build can program it, else nftables).
    #[arg(long, default_value = "auto", value_parser = ["ipvs", "nftables", "auto"])]
    pub lvs_backend: String,
    /// Where drains are kept across reloads and restarts.
    #[arg(long, default_value = "/var/lib/ha/state.json", env = "HA_STATE_FILE")]
    pub state_file: PathBuf,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// How to reach a running ha.
#[derive(clap::Args, Debug)]
pub struct Control {
    /// A unix socket path, or HOST:PORT (also http://HOST:PORT).
    #[arg(long, default_value = DEFAULT_CONTROL)]
    pub control: String,
    /// Bearer token for a TCP control API (or the HA_TOKEN variable).
    #[arg(long, env = "HA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Give up after this many seconds (a stuck daemon never hangs the command).
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
}

/// A real server of a running ha.
#[derive(clap::Args, Debug)]
pub struct Target {
    /// `VIP:PORT`, `[VIP6]:PORT` or `fwmark-N`.
    #[arg(value_parser = virtual_server_id)]
    pub virtual_server: String,
    /// `RIP:PORT` or `[RIP6]:PORT`.
    #[arg(value_parser = real_server_id)]
    pub real_server: String,
    #[command(flatten)]
    pub control: Control,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Check this node's HA prerequisites: clock sync, VRRP through the firewall, peers,
    /// IPVS, ip_nonlocal_bind, and (--real-servers) the LVS-DR real servers. Exit status:
    /// 0 all ok, 3 warnings only, 4 a check failed, 1 the config cannot be read.
    Doctor(crate::doctor::Args),
    /// Show the state of a running ha.
    Status {
        #[command(flatten)]
        control: Control,
        /// The status document as JSON (the control API's `/v1/status`).
        #[arg(long)]
        json: bool,
    },
    /// Take a real server out of rotation without removing it (weight 0; open connections
    /// finish). Kept across reloads and restarts until `enable`.
    Drain(Target),
    /// Put a drained real server back (at its configured weight once it is healthy).
    Enable(Target),
    /// Print the MD5 digest of a page, for HTTP_GET/SSL_GET `digest` (keepalived's genhash).
    Genhash(Genhash),
    /// Gray routes (gray release by user): clients from chosen networks reach only chosen
    /// real servers of a virtual server; everyone else gets the others.
    Gray(Gray),
}

/// `ha gray add|list|del`.
#[derive(clap::Args, Debug)]
pub struct Gray {
    #[command(subcommand)]
    pub cmd: GrayCmd,
}

#[derive(Subcommand, Debug)]
pub enum GrayCmd {
    /// Send CLIENTS to REAL-SERVERS of a virtual server (replaces the route with the same
    /// clients); kept across reloads and restarts until `del`.
    Add {
        /// `VIP:PORT` (`VIP:PORT/udp`, `[VIP6]:PORT`).
        virtual_server: String,
        /// Client networks of the virtual server's family: CIDR[,CIDR] (a bare address is a
        /// /32 or /128).
        #[arg(long, value_name = "CIDR[,CIDR]")]
        clients: String,
        /// The gray real servers: RIP:PORT[,RIP:PORT] (IPv6: `[RIP6]:PORT`).
        #[arg(long, value_name = "RIP:PORT[,RIP:PORT]", value_delimiter = ',')]
        real_servers: Vec<String>,
        #[command(flatten)]
        control: Control,
    },
    /// The gray routes in force.
    List {
        #[command(flatten)]
        control: Control,
        /// As JSON (the control API's `GET /v1/gray`).
        #[arg(long)]
        json: bool,
    },
    /// Remove the route of CLIENTS (every route of the virtual server without --clients).
    Del {
        /// `VIP:PORT` (`VIP:PORT/udp`).
        virtual_server: String,
        /// Client networks of the route: CIDR[,CIDR].
        #[arg(long, value_name = "CIDR[,CIDR]")]
        clients: Option<String>,
        #[command(flatten)]
        control: Control,
    },
}

/// keepalived's genhash options.
#[derive(clap::Args, Debug)]
pub struct Genhash {
    /// Server address.
    #[arg(short = 's', long)]
    pub server: std::net::IpAddr,
    /// Port (default 80, or 443 with --ssl).
    #[arg(short = 'p', long)]
    pub port: Option<u16>,
    /// URL path.
    #[arg(short = 'u', long, default_value = "/")]
    pub url: String,
    /// Use TLS.
    #[arg(short = 'S', long)]
    pub ssl: bool,
    /// Host header (virtualhost).
    #[arg(short = 'V', long)]
    pub virtualhost: Option<String>,
    /// Print the response header too.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Timeout in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
}

/// Checked before connecting, so a typo is reported as such rather than as a refused request.
fn virtual_server_id(s: &str) -> Result<String, String> {
    let id = opsflow_control::status::canonical_id(s);
    if opsflow_control::status::is_virtual_server_id(&id) {
        Ok(s.to_string())
    } else {
        Err(
            "not VIP:PORT, VIP:PORT/udp, [VIP6]:PORT or fwmark-N (the names `ha status` lists)"
                .into(),
        )
    }
}

fn real_server_id(s: &str) -> Result<String, String> {
    let id = opsflow_control::status::canonical_id(s);
    if opsflow_control::status::is_real_server_id(&id) {
        Ok(s.to_string())
    } else {
        Err("not RIP:PORT or [RIP6]:PORT with a port of 1-65535".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn drain_targets_are_checked_before_connecting() {
        let drain = |vs: &str, rs: &str| Cli::try_parse_from(["ha", "drain", vs, rs]).is_ok();
        assert!(drain("10.0.0.1:80", "10.0.0.2:8080"));
        assert!(drain("10.0.0.1:53/udp", "10.0.0.2:53"));
        assert!(drain("fwmark-7", "[fd00::2]:80"));
        assert!(drain("%5Bfd00::1%5D:80", "[fd00::2]:80"));
        assert!(!drain("10.0.0.300:80", "10.0.0.2:80"));
        assert!(!drain("10.0.0.1:80", "10.0.0.2:99999"));
        assert!(!drain("vip", "10.0.0.2:80"));
    }

    #[test]
    fn keepalived_spellings_parse() {
        for args in [
            &["ha", "-t", "-f", "k.conf"][..],
            &["ha", "--config-test", "--use-file", "k.conf"],
            &["ha", "--check", "--config", "k.conf"],
        ] {
            let c = Cli::try_parse_from(args).unwrap();
            assert!(c.check, "{args:?}");
            assert_eq!(c.config, PathBuf::from("k.conf"), "{args:?}");
        }
    }

    #[test]
    fn the_version_names_the_commit() {
        let v = Cli::command().render_version();
        assert!(v.contains("commit"), "{v}");
    }
}
