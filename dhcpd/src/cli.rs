//! The command line, as clap structs (packaging generates man pages and completions from
//! [`Cli`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// DHCPv4 server for PXE networks; reads ISC dhcpd.conf.
#[derive(Parser, Debug)]
#[command(name = "dhcpd", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    /// The ISC-style configuration file.
    #[arg(
        long,
        short = 'c',
        default_value = "/etc/dhcp/dhcpd.conf",
        env = "DHCPD_CONFIG"
    )]
    pub config: PathBuf,
    /// The lease journal (dhcpd.leases format).
    #[arg(
        long,
        short = 'l',
        default_value = "/var/lib/dhcp/dhcpd.leases",
        env = "DHCPD_LEASES"
    )]
    pub leases: PathBuf,
    /// Interface to serve (repeatable); default: every interface with an IPv4 address.
    #[arg(long, short = 'i')]
    pub interface: Vec<String>,
    /// Serve Prometheus metrics on http://ADDR/metrics.
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// UDP port to listen on.
    #[arg(long, default_value_t = 67, hide = true)]
    pub port: u16,
    /// Check the configuration, print problems as FILE:LINE:COL: message, and exit.
    #[arg(long)]
    pub check: bool,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Show the leases in a lease file.
    Leases {
        #[arg(long, short = 'l', default_value = "/var/lib/dhcp/dhcpd.leases")]
        leases: PathBuf,
        /// JSON array of {ip, mac, state, starts, ends, hostname}.
        #[arg(long)]
        json: bool,
    },
}
