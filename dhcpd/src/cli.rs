//! The command line, as clap structs (packaging generates man pages and completions from
//! [`Cli`]), and ISC dhcpd's spellings (`-cf`, `-lf`, `-pf`, `-t`, `-4`, `-f`, `-d`, `-q`,
//! interfaces as arguments) as aliases.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// DHCPv4 server for PXE networks; reads ISC dhcpd.conf.
///
/// ISC's `dhcpd -4 -f -d -cf CONF -lf LEASES -pf PIDFILE IFACE...` and `dhcpd -t -cf CONF`
/// work as they do there.
#[derive(Parser, Debug)]
#[command(
    name = "dhcpd",
    version = opsflow_common::VERSION,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    /// The ISC-style configuration file (ISC: -cf).
    #[arg(
        long,
        short = 'c',
        default_value = "/etc/dhcp/dhcpd.conf",
        env = "DHCPD_CONFIG"
    )]
    pub config: PathBuf,
    /// The lease journal, dhcpd.leases format (ISC: -lf).
    #[arg(
        long,
        short = 'l',
        default_value = "/var/lib/dhcp/dhcpd.leases",
        env = "DHCPD_LEASES"
    )]
    pub leases: PathBuf,
    /// Pid file, locked while dhcpd runs: a second instance on it is refused (ISC: -pf).
    /// Default: /run/dhcpd/dhcpd[-INTERFACES][-netnsINODE].pid.
    #[arg(long, env = "DHCPD_PID_FILE")]
    pub pid_file: Option<PathBuf>,
    /// Interface to serve (repeatable); default: every interface with an IPv4 address.
    #[arg(long, short = 'i')]
    pub interface: Vec<String>,
    /// Interfaces to serve, as ISC takes them.
    #[arg(value_name = "INTERFACE")]
    pub interfaces: Vec<String>,
    /// Serve Prometheus metrics on http://ADDR/metrics.
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// UDP port to listen on.
    #[arg(long, default_value_t = 67, hide = true)]
    pub port: u16,
    /// Check the configuration, print every problem as FILE:LINE:COL: message, and exit.
    #[arg(long, short = 't')]
    pub check: bool,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// DHCPv4 only (ISC: -4); this server speaks no DHCPv6.
    #[arg(short = '4', long = "ipv4")]
    pub ipv4: bool,
    /// Stay in the foreground (ISC: -f); dhcpd never forks.
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// Log to stderr (ISC: -d); dhcpd always does (the journal takes it under systemd).
    #[arg(short = 'd', long = "stderr")]
    pub stderr: bool,
    /// No start-up banner (ISC: -q); dhcpd prints none.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Serve host reservation commands (`dhcpd hosts ...`) on this Unix socket.
    #[arg(long, env = "DHCPD_CONTROL_SOCKET")]
    pub control_socket: Option<PathBuf>,
    /// Answer IPv6 router solicitations on the served interfaces and advertise periodically
    /// (router lifetime --ra-router-lifetime, no prefixes, no DHCPv6), so that PXE stacks that
    /// wait for IPv6 autoconfiguration (iPXE: ~13 s) boot at once; as dnsmasq's enable-ra.
    #[arg(long, env = "DHCPD_ROUTER_ADVERTISEMENTS")]
    pub router_advertisements: bool,
    /// Router lifetime of those advertisements in seconds; 0: not a default router.
    #[arg(long, default_value_t = 0)]
    pub ra_router_lifetime: u16,
    /// The file `dhcpd hosts` keeps reservations in; dhcpd.conf must include it. Default:
    /// dhcpd-hosts.conf beside the configuration.
    #[arg(long)]
    pub hosts_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Add, delete or list host reservations in the running server (its --control-socket).
    Hosts {
        #[arg(long, default_value = "/run/dhcpd.sock", env = "DHCPD_CONTROL_SOCKET")]
        socket: PathBuf,
        #[command(subcommand)]
        op: HostsOp,
    },
    /// Create or upgrade the schema of the shared lease database (`lease-database`).
    Db {
        #[command(subcommand)]
        op: DbOp,
    },
    /// Show the leases in a lease file, or with --config in the config's lease-database.
    Leases {
        #[arg(long, short = 'l', default_value = "/var/lib/dhcp/dhcpd.leases")]
        leases: PathBuf,
        /// Read the leases from this config's `lease-database` instead of a lease file.
        #[arg(long, short = 'c', conflicts_with = "leases")]
        config: Option<PathBuf>,
        /// JSON array of {ip, mac, state, starts, ends, hostname}.
        #[arg(long)]
        json: bool,
    },
}

/// `dhcpd db ...`: the schema of the config's `lease-database`.
#[derive(Subcommand, Debug)]
pub enum DbOp {
    /// Create the schema in an empty database.
    Init {
        #[arg(long, short = 'c', default_value = "/etc/dhcp/dhcpd.conf")]
        config: PathBuf,
    },
    /// Bring the schema up to this dhcpd's version.
    Upgrade {
        #[arg(long, short = 'c', default_value = "/etc/dhcp/dhcpd.conf")]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum HostsOp {
    /// Reserve IP for the machine with MAC, under NAME.
    Add {
        name: String,
        #[arg(long, value_parser = mac_address)]
        mac: String,
        #[arg(long, value_parser = ipv4_address)]
        ip: String,
        #[arg(long)]
        filename: Option<String>,
    },
    /// Remove the reservation NAME.
    Del { name: String },
    /// List the reservations made this way.
    List {
        #[arg(long)]
        json: bool,
    },
}

impl Cli {
    /// Parses the process's arguments, ISC spellings included.
    pub fn from_env() -> Cli {
        Cli::parse_from(isc_args(std::env::args_os()))
    }

    /// Every interface named, by `--interface` or as an argument.
    pub fn all_interfaces(&self) -> Vec<String> {
        let mut v = self.interface.clone();
        v.extend(self.interfaces.iter().cloned());
        v
    }
}

/// Rewrites ISC's two-letter single-dash options, which clap would read as `-c f`, into their
/// long forms: `-cf` → `--config`, `-lf` → `--leases`, `-pf` → `--pid-file`. Nothing after
/// `--` is touched.
pub fn isc_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut literal = false;
    for a in args {
        let long = match a.to_str() {
            _ if literal => None,
            Some("--") => {
                literal = true;
                None
            }
            Some("-cf") => Some("--config"),
            Some("-lf") => Some("--leases"),
            Some("-pf") => Some("--pid-file"),
            _ => None,
        };
        out.push(long.map(OsString::from).unwrap_or(a));
    }
    out
}

/// Checked before connecting: six hex octets with ':' (`52:54:00:00:00:13`).
fn mac_address(s: &str) -> Result<String, String> {
    let octets: Vec<&str> = s.split(':').collect();
    if octets.len() == 6
        && octets
            .iter()
            .all(|o| (1..=2).contains(&o.len()) && u8::from_str_radix(o, 16).is_ok())
    {
        Ok(s.to_string())
    } else {
        Err("it is not a MAC address (six hex octets such as 52:54:00:00:00:13)".into())
    }
}

fn ipv4_address(s: &str) -> Result<String, String> {
    s.parse::<std::net::Ipv4Addr>()
        .map(|_| s.to_string())
        .map_err(|_| "it is not an IPv4 address (such as 10.0.0.13)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(isc_args(args.iter().map(OsString::from))).unwrap()
    }

    #[test]
    fn reservations_are_checked_before_connecting() {
        let add = |mac: &str, ip: &str| {
            Cli::try_parse_from(["dhcpd", "hosts", "add", "w", "--mac", mac, "--ip", ip])
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert!(add("52:54:00:00:00:13", "10.0.0.13").is_ok());
        assert!(add("52:54:00:zz:00:13", "10.0.0.13")
            .unwrap_err()
            .contains("not a MAC address"));
        assert!(add("52:54:00:00:00", "10.0.0.13").is_err());
        assert!(add("52:54:00:00:00:13", "10.0.0.300")
            .unwrap_err()
            .contains("not an IPv4 address"));
    }

    #[test]
    fn isc_spellings_are_aliases() {
        let c = parse(&[
            "dhcpd", "-4", "-f", "-d", "-q", "-cf", "/c", "-lf", "/l", "-pf", "/p", "eth0", "eth1",
        ]);
        assert_eq!(c.config, PathBuf::from("/c"));
        assert_eq!(c.leases, PathBuf::from("/l"));
        assert_eq!(c.pid_file, Some(PathBuf::from("/p")));
        assert_eq!(c.all_interfaces(), ["eth0", "eth1"]);
        assert!(c.ipv4 && c.foreground && c.stderr && c.quiet && !c.check);
        let c = parse(&["dhcpd", "-t", "-cf", "/c"]);
        assert!(c.check);
        assert_eq!(c.config, PathBuf::from("/c"));
        // the long forms and the subcommand are untouched
        let c = parse(&["dhcpd", "--config", "/x", "-i", "br0", "eth2"]);
        assert_eq!(c.all_interfaces(), ["br0", "eth2"]);
        let c = parse(&["dhcpd", "leases", "-l", "/l"]);
        assert!(matches!(c.cmd, Some(Cmd::Leases { .. })));
    }

    #[test]
    fn only_whole_isc_words_before_a_double_dash_are_rewritten() {
        let got = isc_args(["dhcpd", "-cfx", "-cf", "--", "-pf"].map(OsString::from));
        assert_eq!(
            got,
            ["dhcpd", "-cfx", "--config", "--", "-pf"].map(OsString::from)
        );
    }
}
