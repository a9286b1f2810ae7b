//! tftpd: the TFTP boot server (RFC 1350, RFC 2347 options, RFC 2348 blksize, RFC 2349
//! timeout and tsize, RFC 7440 windowsize), with tftp-hpa's remap rules.
//!
//! # Map
//! - [`packet`]: wire format; parsing never panics; netascii conversion.
//! - [`options`]: option negotiation, pure.
//! - [`window`]: the sending state machine (lock-step and windows, block roll-over), pure.
//! - [`remap`]: tftp-hpa `-m` rules.
//! - [`fs`]: the served tree; every open is `openat2(RESOLVE_BENEATH)` below the root.
//! - [`cli`]: the command line (clap), its checks, the settings it makes.
//! - [`daemon`]: bind, drop privileges ([`privs`]), serve, signals.
//! - [`server`]: the tokio adapter: listeners, one task and one socket per transfer.
//! - [`metrics`]: counters and their Prometheus text (served by `opsflow_common::serve_metrics`).
//!
//! # Invariants
//! - No file outside the root is ever opened: names with `..` are refused before the kernel
//!   is asked, a leading `/` means the root (as tftp-hpa with `-s` and dnsmasq read it), and
//!   the kernel refuses symlinks that lead out (`RESOLVE_BENEATH`). Only world-readable regular files are served, as tftp-hpa does.
//! - A duplicate ACK never causes a send (no Sorcerer's Apprentice); retransmission runs on
//!   the server's own timer with a bounded number of retries.
//! - Each transfer has its own task, socket (bound to the address the request was sent to)
//!   and timer: a slow or dead client costs only its own task.
//! - Uploads go to a temporary file renamed over the target when complete. As in tftp-hpa,
//!   an existing file is replaced only when it is world-writable, and new files are
//!   created only with `--create`.
//!
//! # Why not the `async-tftp` crate
//! The design named `async-tftp`. Version 0.4 implements windowsize, but it runs on smol's
//! `async-io` reactor (a second reactor thread beside tokio's), supports octet mode only
//! (PXE menus are sometimes fetched in netascii), cannot reply from the address a request
//! was sent to on a wildcard listener (no `IP_PKTINFO`), has no remap rules, port range,
//! path-MTU clamp of blksize, or per-transfer metrics. Each is small on its own, together
//! they are the server; so the engine here is written on tokio. `bench/tftp.sh` compares it
//! with tftp-hpa.

pub mod cli;
pub mod daemon;
pub mod fs;
pub mod metrics;
pub mod options;
pub mod packet;
pub mod privs;
pub mod remap;
pub mod server;
pub mod slots;
pub mod window;
