//! Leases in memory and on disk.
//!
//! The journal is an append-only file in the ISC `dhcpd.leases` format: each change appends a
//! whole `lease IP { ... }` block, the last block for an address wins. On start-up it is
//! read, then compacted (rewritten with one block per address, fsync, rename). The server
//! appends through [`Journal::append_batch`]: one write and one `fdatasync` for many leases
//! (group commit), and only then are the ACKs for those leases sent.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Lease states, as ISC's `binding state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Active,
    Free,
    Released,
    Abandoned,
}

impl State {
    pub fn isc(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Free => "free",
            State::Released => "released",
            State::Abandoned => "abandoned",
        }
    }
    fn from_isc(s: &str) -> Option<State> {
        Some(match s {
            "active" => State::Active,
            "free" | "expired" | "reset" | "backup" => State::Free,
            "released" => State::Released,
            "abandoned" => State::Abandoned,
            _ => return None,
        })
    }
}

/// One lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub mac: Option<[u8; 6]>,
    pub client_id: Option<Vec<u8>>,
    pub hostname: Option<String>,
    /// Relay agent information kept for renewals (`stash-agent-options`), option 82's value.
    pub agent: Option<Vec<u8>>,
    /// Variables from `set` statements, kept with the lease as ISC keeps them (sorted).
    pub vars: Vec<(String, Vec<u8>)>,
    /// The `on expiry` block kept with the lease as ISC keeps it, `{ STATEMENT; ... }`.
    pub on_expiry: Option<String>,
    /// Unix seconds.
    pub starts: u64,
    pub ends: u64,
    pub state: State,
}

impl Lease {
    /// A free lease of `ip` with nothing else set.
    pub fn bare(ip: Ipv4Addr) -> Lease {
        Lease {
            ip,
            mac: None,
            client_id: None,
            hostname: None,
            agent: None,
            vars: Vec::new(),
            on_expiry: None,
            starts: 0,
            ends: 0,
            state: State::Free,
        }
    }

    /// The state as reported to people: an active lease past its end is `expired`.
    pub fn effective_state(&self, now: u64) -> &'static str {
        match self.state {
            State::Active if self.ends <= now => "expired",
            State::Active => "active",
            State::Free => "expired",
            State::Released => "released",
            State::Abandoned => "abandoned",
        }
    }

    /// Whether the address is held (not available to others) at `now`.
    pub fn holds(&self, now: u64) -> bool {
        match self.state {
            State::Active | State::Abandoned => self.ends > now,
            State::Free | State::Released => false,
        }
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

use opsflow_common::time::{civil, days_from_civil};

/// The end of a lease that does not end (ISC's `ends never;`, dynamic BOOTP).
pub const NEVER: u64 = u64::MAX / 2;

/// ISC's date form: `W YYYY/MM/DD HH:MM:SS` (UTC, W = weekday 0-6 from Sunday), or
/// `never` from [`NEVER`] on.
pub fn isc_time(t: u64) -> String {
    let mut s = String::new();
    write_isc_time(&mut s, t);
    s
}

/// [`isc_time`] appended to `s`.
fn write_isc_time(s: &mut String, t: u64) {
    if t >= NEVER {
        s.push_str("never");
        return;
    }
    let days = (t / 86_400) as i64;
    let (y, m, d) = civil(days);
    let sec = t % 86_400;
    let wd = (days + 4).rem_euclid(7);
    let _ = write!(
        s,
        "{wd} {y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}",
        sec / 3600,
        sec / 60 % 60,
        sec % 60
    );
}

/// RFC 3339 (UTC).
pub use opsflow_common::time::rfc3339;

/// An ISC date `W YYYY/MM/DD HH:MM:SS` (UTC) as Unix seconds, checked field by field.
pub fn parse_isc_date(text: &str) -> Option<u64> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let [w, date, time] = words.as_slice() else {
        return None;
    };
    let nums =
        |s: &str, sep: char| -> Option<Vec<u64>> { s.split(sep).map(|p| p.parse().ok()).collect() };
    let (d, t) = (nums(date, '/')?, nums(time, ':')?);
    let ok = w.parse::<u8>().is_ok_and(|w| w <= 6)
        && matches!(d.as_slice(), [y, m, day] if *y >= 1970 && (1..=12).contains(m) && (1..=31).contains(day))
        && matches!(t.as_slice(), [h, mi, s] if *h < 24 && *mi < 60 && *s < 61);
    if !ok {
        return None;
    }
    parse_isc_time(&words)
}

fn parse_isc_time(words: &[&str]) -> Option<u64> {
    // "never" or "W YYYY/MM/DD HH:MM:SS"
    if words.first() == Some(&"never") {
        return Some(NEVER);
    }
    let date = words.get(1)?;
    let time = words.get(2)?;
    let mut dp = date.split('/');
    let y: i64 = dp.next()?.parse().ok()?;
    let mo: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    let mut tp = time.split(':');
    let h: u64 = tp.next()?.parse().ok()?;
    let mi: u64 = tp.next()?.parse().ok()?;
    let s: u64 = tp.next()?.parse().ok()?;
    let days = days_from_civil(y, mo, d);
    Some(days as u64 * 86_400 + h * 3600 + mi * 60 + s)
}

fn hex(b: &[u8]) -> String {
    let mut s = String::new();
    write_hex(&mut s, b);
    s
}

/// Bytes as `xx:xx:...`, appended to `s`.
fn write_hex(s: &mut String, b: &[u8]) {
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{x:02x}");
    }
}

/// Renders one lease as a `dhcpd.leases` block.
pub fn render(l: &Lease) -> String {
    let mut s = String::new();
    render_into(&mut s, l);
    s
}

/// [`render`] appended to `s` (the journal renders a batch into one reused buffer).
pub fn render_into(s: &mut String, l: &Lease) {
    let _ = write!(s, "lease {} {{\n  starts ", l.ip);
    write_isc_time(s, l.starts);
    s.push_str(";\n  ends ");
    write_isc_time(s, l.ends);
    s.push_str(";\n  cltt ");
    write_isc_time(s, l.starts);
    s.push_str(";\n  binding state ");
    s.push_str(l.state.isc());
    s.push_str(";\n  next binding state free;\n");
    if let Some(m) = l.mac {
        s.push_str("  hardware ethernet ");
        write_hex(s, &m);
        s.push_str(";\n");
    }
    if let Some(id) = &l.client_id {
        s.push_str("  uid ");
        write_hex(s, id);
        s.push_str(";\n");
    }
    if let Some(h) = &l.hostname {
        s.push_str("  client-hostname \"");
        s.extend(
            h.chars()
                .filter(|c| !c.is_control() && *c != '"' && *c != '\\'),
        );
        s.push_str("\";\n");
    }
    for (name, v) in &l.vars {
        let _ = writeln!(s, "  set {name} = {};", quoted_or_hex(v));
    }
    // as ISC: each stashed relay agent sub-option on a line of its own
    let mut rai = l.agent.as_deref().unwrap_or_default();
    while let [code, len, rest @ ..] = rai {
        let Some(v) = rest.get(..*len as usize) else {
            break;
        };
        let _ = writeln!(
            s,
            "  option agent.{} {};",
            agent_name(*code),
            hex_or_empty(v)
        );
        rai = &rest[*len as usize..];
    }
    if let Some(b) = &l.on_expiry {
        let _ = writeln!(s, "  on expiry {b}");
    }
    s.push_str("}\n");
}

/// ISC's names of relay agent sub-options (RFC 3046 and later); others by number.
fn agent_name(code: u8) -> String {
    match code {
        1 => "circuit-id".into(),
        2 => "remote-id".into(),
        6 => "subscriber-id".into(),
        c => format!("unknown-{c}"),
    }
}

fn agent_code(name: &str) -> Option<u8> {
    match name {
        "circuit-id" => Some(1),
        "remote-id" => Some(2),
        "subscriber-id" => Some(6),
        n => n.strip_prefix("unknown-")?.parse().ok(),
    }
}

/// A value as ISC writes it in a lease file: a quoted string if printable, else hex bytes.
fn quoted_or_hex(v: &[u8]) -> String {
    if !v.is_empty()
        && v.iter()
            .all(|b| (0x20..0x7f).contains(b) && *b != b'"' && *b != b'\\')
    {
        format!("\"{}\"", String::from_utf8_lossy(v))
    } else {
        hex_or_empty(v)
    }
}

fn hex_or_empty(v: &[u8]) -> String {
    if v.is_empty() {
        "\"\"".into()
    } else {
        hex(v)
    }
}

fn unquote_uid(v: &str) -> Option<Vec<u8>> {
    if let Some(inner) = v.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        // ISC's octal-escaped string form
        let mut out = Vec::new();
        let b = inner.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\'
                && i + 4 <= b.len()
                && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
            {
                out.push(u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).ok()?, 8).ok()?);
                i += 4;
            } else if b[i] == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1]);
                i += 2;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        return Some(out);
    }
    v.split(':')
        .map(|p| u8::from_str_radix(p, 16).ok())
        .collect()
}

/// Braces opened minus braces closed on `line`, outside quoted strings.
fn braces(line: &str) -> i32 {
    let (mut depth, mut quoted, mut escaped) = (0, false, false);
    for c in line.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth -= 1,
            _ => {}
        }
    }
    depth
}

/// Reads a lease file; later blocks for an address replace earlier ones. Lines it does not
/// understand are skipped (ISC writes more than we need). Returns leases and how many blocks
/// were read.
pub fn read(path: &Path) -> io::Result<(HashMap<Ipv4Addr, Lease>, usize)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((HashMap::new(), 0)),
        Err(e) => return Err(e),
    };
    Ok(parse(&text))
}

/// Reads `dhcpd.leases` text (see [`read`]); the shared store keeps each lease as one block.
pub fn parse(text: &str) -> (HashMap<Ipv4Addr, Lease>, usize) {
    let mut out = HashMap::new();
    let mut blocks = 0;
    let mut cur: Option<Lease> = None;
    // an `on EVENT` block being read: whether it is `on expiry`, its text, its open braces
    let mut block: Option<(bool, String, i32)> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("lease ") {
            let ip = rest.trim_end_matches('{').trim().parse().ok();
            block = None;
            cur = ip.map(Lease::bare);
            continue;
        }
        let Some(l) = cur.as_mut() else { continue };
        if let Some((expiry, text, depth)) = block.as_mut() {
            // inside an `on EVENT { ... }` of the lease (ISC writes it over several lines)
            text.push(' ');
            text.push_str(line);
            *depth += braces(line);
            if *depth <= 0 {
                if *expiry {
                    l.on_expiry = Some(std::mem::take(text));
                }
                block = None;
            }
            continue;
        }
        if let (Some(events), Some(at)) = (line.strip_prefix("on "), line.find('{')) {
            let expiry = events[..at - 3].split_whitespace().any(|w| w == "expiry");
            let text = line[at..].to_string();
            let depth = braces(&text);
            if depth > 0 {
                block = Some((expiry, text, depth));
            } else if expiry {
                l.on_expiry = Some(text);
            }
            continue;
        }
        if line == "}" {
            if let Some(l) = cur.take() {
                blocks += 1;
                out.insert(l.ip, l);
            }
            continue;
        }
        let stmt = line.trim_end_matches(';');
        let words: Vec<&str> = stmt.split_whitespace().collect();
        match words.as_slice() {
            ["starts", rest @ ..] => l.starts = parse_isc_time(rest).unwrap_or(0),
            ["ends", rest @ ..] => l.ends = parse_isc_time(rest).unwrap_or(0),
            ["binding", "state", s] => l.state = State::from_isc(s).unwrap_or(State::Free),
            ["hardware", "ethernet", m] => {
                l.mac = unquote_uid(m).filter(|b| b.len() == 6).map(|b| {
                    let mut a = [0u8; 6];
                    a.copy_from_slice(&b);
                    a
                })
            }
            ["uid", ..] => l.client_id = unquote_uid(stmt["uid".len()..].trim()),
            ["set", name, "=", ..] => {
                let value = stmt.split_once('=').map_or("", |(_, v)| v.trim());
                let v = if value == "\"\"" {
                    Some(Vec::new())
                } else {
                    unquote_uid(value)
                };
                if let Some(v) = v {
                    l.vars.retain(|(n, _)| n != name);
                    l.vars.push((name.to_string(), v));
                    l.vars.sort();
                }
            }
            ["option", name, value] if name.starts_with("agent.") => {
                let code = agent_code(&name["agent.".len()..]);
                let v = if *value == "\"\"" {
                    Some(Vec::new())
                } else {
                    unquote_uid(value)
                };
                if let (Some(code), Some(v)) = (code, v.filter(|v| v.len() <= 255)) {
                    let a = l.agent.get_or_insert_with(Vec::new);
                    a.extend([code, v.len() as u8]);
                    a.extend(v);
                }
            }
            ["client-hostname", ..] => {
                l.hostname = Some(
                    stmt["client-hostname".len()..]
                        .trim()
                        .trim_matches('"')
                        .to_string(),
                )
            }
            _ => {}
        }
    }
    (out, blocks)
}

/// Leases rendered and written between two yields of the compacting thread (~0.3 ms).
const COMPACT_SLICE: usize = 1024;

/// The append-only journal.
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Blocks appended since the last compaction.
    pub appended: usize,
    /// The text of the batch being written (kept: its room is reused).
    pub scratch: String,
}

fn fsync_dir(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

impl Journal {
    /// Rewrites the file with exactly these leases (temp file, fsync, rename, fsync dir),
    /// then opens it for appending.
    pub fn compact<'a>(
        path: &Path,
        leases: impl Iterator<Item = &'a Lease>,
    ) -> io::Result<Journal> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        {
            let mut f = File::create(&tmp)?;
            let mut buf =
                String::from("# dhcpd lease journal: the last block for an address wins\n");
            // Tens of milliseconds of CPU at 50,000 leases: written a slice at a time, with
            // the core offered to other threads between slices, so that the server's receive
            // thread (often pinned to the same core) waits for a slice, not for the whole
            // file; it waited 5 ms at a time, and the requests it then answered at once
            // overflowed the client's socket buffer.
            for (i, l) in leases.enumerate() {
                render_into(&mut buf, l);
                if i % COMPACT_SLICE == COMPACT_SLICE - 1 {
                    f.write_all(buf.as_bytes())?;
                    buf.clear();
                    std::thread::yield_now();
                }
            }
            f.write_all(buf.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        fsync_dir(path)?;
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            appended: 0,
            scratch: String::new(),
        })
    }

    /// Appends rendered blocks with one write and one fdatasync.
    pub fn append_batch(&mut self, text: &str, blocks: usize) -> io::Result<()> {
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()?;
        self.appended += blocks;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_formats() {
        assert_eq!(isc_time(0), "4 1970/01/01 00:00:00");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        let t = 1_795_000_000;
        let words: Vec<String> = isc_time(t).split(' ').map(String::from).collect();
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        assert_eq!(parse_isc_time(&w), Some(t));
    }

    #[test]
    fn journal_round_trip_and_last_block_wins() {
        let dir = std::env::temp_dir().join(format!("dhcpd-leases-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dhcpd.leases");
        let a = Lease {
            ip: Ipv4Addr::new(10, 0, 0, 5),
            mac: Some([2, 0, 0, 0, 0, 1]),
            client_id: Some(vec![1, 2, 0, 0, 0, 0, 1]),
            hostname: Some("web1".into()),
            agent: Some(vec![1, 2, b'g', b'e', 2, 1, 0xff, 9, 0]),
            vars: vec![
                ("raw".into(), vec![0, 7]),
                ("vc".into(), b"PXEClient:Arch".to_vec()),
            ],
            on_expiry: Some("{ log(info, \"bye\"); }".into()),
            starts: 1_795_000_000,
            ends: 1_795_000_600,
            state: State::Active,
        };
        let mut j = Journal::compact(&path, [a.clone()].iter()).unwrap();
        let released = Lease {
            state: State::Released,
            ..a.clone()
        };
        j.append_batch(&render(&released), 1).unwrap();
        let (m, blocks) = read(&path).unwrap();
        assert_eq!(blocks, 2);
        assert_eq!(m[&a.ip], released);
        // ISC's octal uid form reads too
        std::fs::write(
            &path,
            "lease 10.0.0.6 {\n  uid \"\\001\\002\\003\";\n  binding state active;\n}\n",
        )
        .unwrap();
        let (m, _) = read(&path).unwrap();
        assert_eq!(
            m[&Ipv4Addr::new(10, 0, 0, 6)].client_id,
            Some(vec![1, 2, 3])
        );
        // ISC 4.4.3's `on` blocks, over several lines, with braces in strings
        let (m, _) = parse(concat!(
            "lease 10.0.0.7 {\n  binding state active;\n  on commit {\n    log (\"}\");\n  }\n",
            "  on expiry {\n    log (info, \n        concat (\"bye {\", \n",
            "                binary-to-ascii (10, 8, \".\", leased-address)));\n",
            "    execute (\"/bin/true\", \"x\");\n  }\n  client-hostname \"n7\";\n}\n",
        ));
        let l = &m[&Ipv4Addr::new(10, 0, 0, 7)];
        assert_eq!(
            l.on_expiry.as_deref(),
            Some(concat!(
                "{ log (info, concat (\"bye {\", binary-to-ascii (10, 8, \".\", ",
                "leased-address))); execute (\"/bin/true\", \"x\"); }"
            ))
        );
        assert_eq!(l.hostname.as_deref(), Some("n7"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
