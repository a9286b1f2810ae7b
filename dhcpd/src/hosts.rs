//! Host reservations at run time, instead of OMAPI: `dhcpd hosts add|del|list` talks to the
//! server's control socket (one JSON request per connection, named as Kea's host commands:
//! `reservation-add`, `reservation-del`, `reservation-get-all`). The hosts live in a file in
//! dhcpd.conf syntax that the configuration includes; a change is written there, the whole
//! configuration is checked with it, and then reloaded (or the file is put back).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::conf::{self, Param, Stmt};
use crate::server::Server;

/// One reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub hostname: String,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub filename: Option<String>,
}

fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Entry {
    fn json(&self) -> Value {
        let mut v = json!({"hostname": self.hostname, "hw-address": mac_str(&self.mac), "ip-address": self.ip.to_string()});
        if let Some(f) = &self.filename {
            v["boot-file-name"] = json!(f);
        }
        v
    }

    fn from_json(v: &Value) -> Result<Entry, String> {
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .ok_or(format!("'{k}' is missing"))
        };
        let hostname = s("hostname")?.to_string();
        if hostname.is_empty()
            || !hostname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "hostname '{hostname}': use letters, digits, '-', '_' and '.'"
            ));
        }
        let m = s("hw-address")?;
        let mac = conf::options::colon_hex(m)
            .and_then(|b| <[u8; 6]>::try_from(b).ok())
            .ok_or(format!(
                "hw-address '{m}' is not six colon-separated hex bytes"
            ))?;
        let ip = s("ip-address")?;
        let ip = ip
            .parse()
            .map_err(|_| format!("ip-address '{ip}' is not an IPv4 address"))?;
        let filename = v
            .get("boot-file-name")
            .and_then(Value::as_str)
            .map(str::to_string);
        if filename
            .as_deref()
            .is_some_and(|f| f.contains(['"', '\n', '\\']))
        {
            return Err("boot-file-name may not contain quotes, backslashes or newlines".into());
        }
        Ok(Entry {
            hostname,
            mac,
            ip,
            filename,
        })
    }

    fn conf(&self) -> String {
        let f = self
            .filename
            .as_ref()
            .map(|f| format!(" filename \"{f}\";"))
            .unwrap_or_default();
        format!(
            "host {} {{ hardware ethernet {}; fixed-address {};{f} }}\n",
            self.hostname,
            mac_str(&self.mac),
            self.ip
        )
    }
}

/// The reservations in the hosts file (none if it does not exist).
pub fn read(path: &Path) -> anyhow::Result<Vec<Entry>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let cfg = conf::load(path).map_err(|e| {
        anyhow::anyhow!(
            "{}",
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    Ok(cfg
        .hosts
        .iter()
        .filter_map(|h| {
            let ip = h.fixed.iter().find_map(|a| match a {
                conf::Addr::Ip(ip) => Some(*ip),
                conf::Addr::Name(_) => None,
            })?;
            let filename = cfg.scopes[h.scope].stmts.iter().find_map(|s| match s {
                Stmt::Param(Param::Filename(f)) => Some(f.clone()),
                _ => None,
            });
            Some(Entry {
                hostname: h.name.clone(),
                mac: h.hw?,
                ip,
                filename,
            })
        })
        .collect())
}

pub fn write(path: &Path, entries: &[Entry]) -> std::io::Result<()> {
    let mut text =
        String::from("# written by dhcpd (dhcpd hosts add|del); include it from dhcpd.conf\n");
    for e in entries {
        text.push_str(&e.conf());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Serves the control socket until the process ends.
pub async fn serve(
    socket: PathBuf,
    hosts: PathBuf,
    config: PathBuf,
    server: std::sync::Arc<Server>,
) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(&socket);
    let l = UnixListener::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    loop {
        let (mut s, _) = l.accept().await?;
        let mut buf = Vec::new();
        if (&mut s).take(1 << 16).read_to_end(&mut buf).await.is_err() {
            continue;
        }
        // one change at a time: the file, the check and the reload belong together
        let answer = match serde_json::from_slice::<Value>(&buf) {
            Ok(req) => handle(&req, &hosts, &config, &server),
            Err(e) => json!({"result": 1, "text": format!("the request is not JSON: {e}")}),
        };
        let _ = s.write_all(answer.to_string().as_bytes()).await;
    }
}

fn handle(req: &Value, hosts: &Path, config: &Path, server: &Server) -> Value {
    let fail = |t: String| json!({"result": 1, "text": t});
    let mut entries = match read(hosts) {
        Ok(e) => e,
        Err(e) => return fail(format!("cannot read {}: {e}", hosts.display())),
    };
    let args = &req["arguments"];
    let before = entries.clone();
    let text = match req["command"].as_str().unwrap_or_default() {
        "reservation-get-all" => {
            return json!({"result": 0, "text": format!("{} reservation(s)", entries.len()), "arguments": {"hosts": entries.iter().map(Entry::json).collect::<Vec<_>>()}});
        }
        "reservation-add" => {
            let e = match Entry::from_json(&args["reservation"]) {
                Ok(e) => e,
                Err(m) => return fail(m),
            };
            if let Some(o) = entries
                .iter()
                .find(|o| o.hostname == e.hostname || o.mac == e.mac || o.ip == e.ip)
            {
                return fail(format!(
                    "conflicts with the reservation of {} ({}, {})",
                    o.hostname,
                    mac_str(&o.mac),
                    o.ip
                ));
            }
            let t = format!("host {} added: {} -> {}", e.hostname, mac_str(&e.mac), e.ip);
            entries.push(e);
            t
        }
        "reservation-del" => {
            let name = args["hostname"].as_str().unwrap_or_default();
            entries.retain(|e| e.hostname != name);
            if entries.len() == before.len() {
                return fail(format!(
                    "no reservation named '{name}' in {}",
                    hosts.display()
                ));
            }
            format!("host {name} deleted")
        }
        other => {
            return fail(format!(
                "unknown command '{other}' (reservation-add, reservation-del, reservation-get-all)"
            ))
        }
    };
    if let Err(e) = write(hosts, &entries) {
        return fail(format!("cannot write {}: {e}", hosts.display()));
    }
    // the whole configuration must accept it and include the file, or the change is undone
    let problem = match conf::load(config) {
        Err(errs) => Some(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Ok(cfg) => {
            let included = entries
                .iter()
                .all(|e| cfg.hosts.iter().any(|h| h.name == e.hostname));
            (!included).then(|| {
                format!(
                    "{} does not include {}: add 'include \"{}\";'",
                    config.display(),
                    hosts.display(),
                    hosts.display()
                )
            })
        }
    };
    if let Some(p) = problem {
        let _ = write(hosts, &before);
        return fail(format!("refused: {p}"));
    }
    if !server.reload() {
        let _ = write(hosts, &before);
        return fail("the reload failed (see the server log); the change is undone".into());
    }
    json!({"result": 0, "text": text})
}

/// The client side: sends one request and returns the answer, or an error naming the socket.
pub fn request(socket: &Path, req: &Value) -> anyhow::Result<Value> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot connect to the control socket {} (is dhcpd running with --control-socket?)",
            socket.display()
        )
    })?;
    s.write_all(req.to_string().as_bytes())?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let v: Value = serde_json::from_str(&out).context("the server's answer is not JSON")?;
    if v["result"] != 0 {
        bail!("{}", v["text"].as_str().unwrap_or("failed"));
    }
    Ok(v)
}
