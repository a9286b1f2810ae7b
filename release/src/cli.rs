//! The command line (`<Cli as clap::CommandFactory>::command()` for man pages and completions).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// What `--help` adds after the options: the version pattern and the exit codes.
pub fn after_help() -> String {
    format!(
        "VERSION must match {} (no shell metacharacters, `/` or spaces); a version read back from a host or the journal is checked the same way.\n\n{}",
        crate::config::VERSION_PATTERN,
        crate::exit::EXIT_CODES
    )
}

/// Gray rollouts behind the HA load balancer: batch by batch, drained, health-gated, with
/// rollback and resume.
#[derive(Parser, Debug)]
#[command(name = "release", version = opsflow_common::VERSION, about, after_help = after_help())]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    /// APP-VERSION to release, e.g. waimai-1.4 (VERSION: see below).
    pub target: Option<String>,
    /// The configuration.
    #[arg(
        long,
        short = 'c',
        default_value = "release.toml",
        env = "RELEASE_CONFIG",
        global = true
    )]
    pub config: PathBuf,
    /// Batch size: a count (2), a percentage (25%) or a ramp (1,2,50%).
    #[arg(long, short = 'b', default_value = "1", global = true)]
    pub batch: String,
    /// Gray release by user: deploy the first batch (the canary), route these client
    /// networks to it on every director, and wait in state `gray` for `promote` or `abort`.
    #[arg(long, value_name = "CIDR[,CIDR]")]
    pub users: Option<String>,
    /// Print the batches and exit.
    #[arg(long)]
    pub plan: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// Seconds to wait for a drained server's connections (default: app.drain_timeout).
    #[arg(long, global = true)]
    pub drain_timeout: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Which version each host is on, which are drained, and the release in progress.
    Status {
        /// Print one JSON object on stdout, nothing else.
        #[arg(long)]
        json: bool,
    },
    /// Past releases from the journal.
    History {
        /// Print one JSON object on stdout, nothing else.
        #[arg(long)]
        json: bool,
    },
    /// Release an earlier version again (default: the one before the current), never a bad one.
    Rollback { version: Option<String> },
    /// Finish a release that was interrupted (the process was killed, the machine rebooted).
    Resume,
    /// A gray release (`--users`) waits: roll the remaining batches, then remove the route.
    Promote,
    /// A gray release (`--users`) waits: remove the route and roll the canary back.
    Abort,
    /// Remove the lock (and abandon an unfinished release).
    Unlock {
        #[arg(long)]
        force: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_documents_the_version_pattern_and_every_exit_code() {
        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(
            help.contains("5 a batch failed and was rolled back"),
            "{help}"
        );
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
