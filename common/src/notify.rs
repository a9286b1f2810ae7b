//! sd_notify(3): tell systemd (`Type=notify`) that the daemon is ready, reloading, stopping, and
//! what it is doing. Without `$NOTIFY_SOCKET` every function does nothing; failures are ignored
//! (a notification is advice, never a reason to stop a daemon) and nothing here panics.
//!
//! Hand-written (a datagram and a clock read) because the sd-notify crate (0.5) connects
//! `@name` as a file path, so the abstract sockets systemd and containers use would fail.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// `READY=1` and a `STATUS=` line: startup is finished (sockets bound, config loaded).
pub fn ready(status: &str) {
    notify(&format!("READY=1\nSTATUS={}\n", one_line(status)));
}

/// `RELOADING=1` with `MONOTONIC_USEC=` (required by `Type=notify-reload`, accepted by
/// `Type=notify`): a reload has started; send [`ready`] when it is done.
pub fn reloading() {
    notify(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}\n",
        monotonic_usec()
    ));
}

/// `STOPPING=1`: shutdown has begun.
pub fn stopping() {
    notify("STOPPING=1\n");
}

/// `STATUS=`: one line for `systemctl status`.
pub fn status(status: &str) {
    notify(&format!("STATUS={}\n", one_line(status)));
}

fn notify(msg: &str) {
    if let Some(addr) = std::env::var_os("NOTIFY_SOCKET") {
        let _ = send(&addr, msg);
    }
}

/// Sends one datagram to `addr`: a path, or `@name` for an abstract socket.
fn send(addr: &OsStr, msg: &str) -> std::io::Result<()> {
    let bytes = addr.as_bytes();
    let target = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None => SocketAddr::from_pathname(std::path::Path::new(addr))?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(msg.as_bytes(), &target)?;
    Ok(())
}

/// Newlines would start a new assignment: keep a status on one line.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000)
        .saturating_add(ts.tv_nsec as u64 / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    // One test touches the environment, so no other test races on NOTIFY_SOCKET.
    #[test]
    fn messages_reach_a_path_socket_through_the_environment() {
        let dir = std::env::temp_dir().join(format!("opsflow-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind");
        std::env::set_var("NOTIFY_SOCKET", &path);
        ready("serving 3 subnets\nsecond line");
        assert_eq!(
            recv(&sock),
            "READY=1\nSTATUS=serving 3 subnets second line\n"
        );
        reloading();
        let m = recv(&sock);
        let usec: u64 = m
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .and_then(|r| r.strip_suffix('\n'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad reloading message {m:?}"));
        assert!(usec > 0);
        assert!(usec <= monotonic_usec());
        stopping();
        assert_eq!(recv(&sock), "STOPPING=1\n");
        status("draining");
        assert_eq!(recv(&sock), "STATUS=draining\n");
        // nobody listening any more: still no panic, no error surfaced
        drop(sock);
        ready("x");
        std::env::set_var("NOTIFY_SOCKET", dir.join("missing"));
        stopping();
        std::env::remove_var("NOTIFY_SOCKET");
        ready("no socket: a no-op");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn abstract_socket_with_at_sign() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("opsflow-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        send(OsStr::new(&format!("@{name}")), "READY=1\n").expect("send");
        assert_eq!(recv(&sock), "READY=1\n");
    }
}
