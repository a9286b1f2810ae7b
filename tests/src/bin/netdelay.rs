//! netdelay: a userspace L2 bridge that adds delay (this kernel has no netem).
//!
//! `netdelay IF_A IF_B DELAY_A_TO_B_US DELAY_B_TO_A_US` forwards every frame between two
//! interfaces of the namespace it runs in (AF_PACKET, promiscuous), holding each for the
//! given time. Frame order is kept. Endpoints must not use TX checksum offload
//! (`ethtool -K eth0 tx off`), since frames are re-sent as raw bytes. For benchmarks only.

use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn open(ifname: &str) -> io::Result<(i32, i32)> {
    let name = CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: plain libc calls with valid arguments; results are checked.
    unsafe {
        let idx = libc::if_nametoindex(name.as_ptr()) as i32;
        if idx == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface {ifname}"),
            ));
        }
        let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto as u16;
        sll.sll_ifindex = idx;
        if libc::bind(
            fd,
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of_val(&sll) as u32,
        ) < 0
        {
            return Err(io::Error::last_os_error());
        }
        let mut mr: libc::packet_mreq = std::mem::zeroed();
        mr.mr_ifindex = idx;
        mr.mr_type = libc::PACKET_MR_PROMISC as u16;
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            &mr as *const _ as *const libc::c_void,
            std::mem::size_of_val(&mr) as u32,
        );
        let big: i32 = 8 << 20;
        for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &big as *const i32 as *const libc::c_void,
                4,
            );
        }
        Ok((fd, idx))
    }
}

fn pump(from: i32, to: i32, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
        loop {
            if queue.is_empty() {
                match rx.recv() {
                    Ok(x) => queue.push_back(x),
                    Err(_) => return,
                }
            }
            while let Ok(x) = rx.try_recv() {
                queue.push_back(x);
            }
            let Some((due, _)) = queue.front() else {
                continue;
            };
            let now = Instant::now();
            if *due > now {
                let wait = *due - now;
                // sleep most of the way, spin the rest: sleeps overshoot by ~50-100 µs
                if wait > Duration::from_micros(200) {
                    std::thread::sleep(wait - Duration::from_micros(150));
                }
                continue;
            }
            if let Some((_, frame)) = queue.pop_front() {
                // SAFETY: sending a byte buffer on our bound packet socket.
                unsafe { libc::send(to, frame.as_ptr() as *const libc::c_void, frame.len(), 0) };
            }
        }
    });
    let mut buf = vec![0u8; 65536 + 64];
    loop {
        // SAFETY: buffers sized as passed; the kernel fills sll and buf.
        unsafe {
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            let mut len = std::mem::size_of_val(&sll) as u32;
            let n = libc::recvfrom(
                from,
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
                &mut sll as *mut _ as *mut libc::sockaddr,
                &mut len,
            );
            if n <= 0 {
                continue;
            }
            if sll.sll_pkttype == libc::PACKET_OUTGOING {
                continue; // our own transmissions on this interface
            }
            let _ = tx.send((Instant::now() + delay, buf[..n as usize].to_vec()));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: netdelay IF_A IF_B DELAY_A_TO_B_US DELAY_B_TO_A_US");
        std::process::exit(2);
    }
    let parse = |s: &str| {
        s.parse::<u64>()
            .map(Duration::from_micros)
            .unwrap_or_else(|_| {
                eprintln!("netdelay: '{s}' is not a number of microseconds");
                std::process::exit(2)
            })
    };
    let (ab, ba) = (parse(&args[3]), parse(&args[4]));
    let (a, b) = match (open(&args[1]), open(&args[2])) {
        (Ok(a), Ok(b)) => (a.0, b.0),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("netdelay: {e}");
            std::process::exit(1)
        }
    };
    std::thread::spawn(move || pump(b, a, ba));
    eprintln!(
        "netdelay ready: {} -> {} {:?}, back {:?}",
        args[1], args[2], ab, ba
    );
    pump(a, b, ab);
}
