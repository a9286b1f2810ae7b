//! The command line: clap definitions only (packaging builds man pages and completions from
//! `<Cli as clap::CommandFactory>::command()`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// One inventory drives PXE menus, DHCP hosts, kickstarts and HA configs.
#[derive(Parser, Debug)]
#[command(name = "kickstart", version = opsflow_common::VERSION, about)]
pub struct Cli {
    /// The inventory (TOML).
    #[arg(
        long,
        short = 'f',
        default_value = "/etc/opsflow/inventory.toml",
        env = "KICKSTART_INVENTORY",
        global = true
    )]
    pub inventory: PathBuf,
    /// State directory (netboot overrides); default: server.state_dir of the inventory.
    #[arg(long, env = "KICKSTART_STATE_DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"], global = true)]
    pub log_format: String,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Validate the inventory and render every template for every system.
    Check,
    /// The systems: name, MAC, IP, profile, netboot.
    List {
        /// A JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Write the TFTP tree and dhcpd.conf; only what changed is rewritten.
    Sync {
        /// Prefix every output path with DIR.
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Serve kickstarts, iPXE scripts, HA configs and files over HTTP.
    Serve {
        /// Listen address; default: server.listen of the inventory.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// The prefix `sync --root` used, for the boot configs the installed callback rewrites.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The pid file, flock'ed so a second server refuses to start; default
        /// /run/kickstart/kickstart-ADDRESS.pid (and the network namespace outside the host's).
        #[arg(long)]
        pid_file: Option<PathBuf>,
    },
    /// Print one rendered file: `render SYSTEM WHAT` (kickstart, pxelinux, grub, ipxe,
    /// keepalived.conf, notify.sh, ha.service) or `render GLOBAL` (dhcpd.conf, pxe-menu,
    /// grub-menu, ipxe-menu).
    Render {
        target: String,
        what: Option<String>,
    },
    /// Turn a system's netboot off, or back to what the inventory says (on).
    Netboot {
        system: String,
        #[arg(value_parser = ["on", "off"])]
        value: String,
    },
}
