//! `release.toml`: the app, its directors and its hosts.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub name: String,
    /// Where releases live on the hosts: `BASE/APP-VERSION`, `BASE/APP` the current one.
    pub base: String,
    /// The artifact of a version: a local `.tar.gz` path with placeholders.
    pub artifact: String,
    pub stop: String,
    pub start: String,
    /// Health URL (placeholders), checked from this machine.
    pub health: String,
    #[serde(default = "three")]
    pub health_successes: u32,
    /// Seconds for the health gate.
    #[serde(default = "thirty")]
    pub health_timeout: u64,
    /// Releases kept per host after a success (the current and previous are always kept).
    #[serde(default = "five")]
    pub keep: usize,
    /// Real servers that must stay in service while a batch is out.
    #[serde(default = "one")]
    pub min_healthy: usize,
    /// `ssh` (default) or `local` (one host: this machine).
    #[serde(default = "ssh")]
    pub transport: String,
    /// Seconds to wait for a drained server's connections to finish.
    #[serde(default = "thirty")]
    pub drain_timeout: u64,
    /// Journal, lock and ssh sockets; default: `.release` next to the config file.
    pub state_dir: Option<PathBuf>,
    /// Extra ssh arguments (`["-i", "/root/.ssh/deploy", "-p", "2222"]`).
    #[serde(default)]
    pub ssh_options: Vec<String>,
}

fn three() -> u32 {
    3
}
fn thirty() -> u64 {
    30
}
fn five() -> usize {
    5
}
fn one() -> usize {
    1
}
fn ssh() -> String {
    "ssh".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Director {
    /// `HOST:PORT` or `http://HOST:PORT` (TCP, needs token_file) or a unix socket path.
    pub control: String,
    pub token_file: Option<PathBuf>,
    #[serde(skip)]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: String,
    /// SSH destination (`root@10.0.0.11`); unused with `transport = "local"`.
    #[serde(default)]
    pub ssh: String,
    /// The real server: `RIP:PORT`.
    pub rs: String,
    /// The virtual server: `VIP:PORT` or `fwmark-N`.
    pub virtual_server: String,
    /// Overrides app.base for this host.
    pub base: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub app: App,
    #[serde(default, rename = "director")]
    pub directors: Vec<Director>,
    #[serde(rename = "host")]
    pub hosts: Vec<Host>,
    #[serde(skip)]
    pub path: PathBuf,
}

/// Where the values that [`Config::load`] checks sit in the file, for its messages (read
/// again from the same text; keys not listed here are ignored).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Spans {
    app: AppSpans,
    host: Vec<HostSpans>,
    director: Vec<DirectorSpans>,
}

type Span = Option<toml::Spanned<toml::Value>>;

#[derive(Deserialize, Default)]
#[serde(default)]
struct AppSpans {
    name: Span,
    base: Span,
    artifact: Span,
    health: Span,
    transport: Span,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct HostSpans {
    name: Span,
    ssh: Span,
    rs: Span,
    virtual_server: Span,
    base: Span,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DirectorSpans {
    control: Span,
    token_file: Span,
}

/// The placeholders [`Config::expand`] fills in.
const PLACEHOLDERS: [&str; 5] = ["app", "version", "base", "host", "rs"];

/// A path or URL template's mistake: a `{` without `}`, or an unknown `{name}`. (Commands are
/// not checked: a shell's own braces are theirs.)
fn template_error(tpl: &str) -> Option<String> {
    let mut rest = tpl;
    while let Some(i) = rest.find('{') {
        let Some(j) = rest[i..].find('}') else {
            return Some(format!(
                "{tpl:?}: a '{{' without its '}}' (placeholders: {})",
                known_placeholders()
            ));
        };
        let name = &rest[i + 1..i + j];
        if !PLACEHOLDERS.contains(&name) {
            return Some(format!(
                "{tpl:?}: unknown placeholder {{{name}}} (placeholders: {})",
                known_placeholders()
            ));
        }
        rest = &rest[i + j + 1..];
    }
    None
}

/// A base directory is used as it is (it is what `{base}` stands for): no placeholders.
fn plain_path(base: &str) -> Option<String> {
    (base.contains('{') || base.contains('}')).then(|| {
        format!("{base:?}: the base directory takes no placeholders (it is what {{base}} stands for); write the path")
    })
}

fn known_placeholders() -> String {
    PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = opsflow_common::diag::read_text(path).map_err(|u| {
            let d = u.diag(
                &path.display().to_string(),
                None,
                "give release.toml with --config FILE",
            );
            anyhow::anyhow!("{d}")
        })?;
        let lines = opsflow_common::diag::Lines::new(&path.display().to_string(), &text);
        let mut cfg: Config = toml::from_str(&text).map_err(|e| {
            let pos = lines.pos(e.span().map_or(0, |s| s.start));
            anyhow::anyhow!("{pos}: {}", opsflow_common::diag::toml_message(e.message()))
        })?;
        let spans: Spans = toml::from_str(&text).unwrap_or_default();
        // FILE:LINE:COL of a value, or FILE when it has no place in the text (a default)
        let at = |s: &Span| match s {
            Some(v) => lines.pos(v.span().start).to_string(),
            None => path.display().to_string(),
        };
        cfg.path = path.to_path_buf();
        let dir = path.parent().unwrap_or(Path::new("."));
        for (i, d) in cfg.directors.iter_mut().enumerate() {
            let sp = spans.director.get(i);
            let here = |f: fn(&DirectorSpans) -> &Span| sp.map_or(at(&None), |s| at(f(s)));
            if let Some(f) = &d.token_file {
                let f = if f.is_absolute() {
                    f.clone()
                } else {
                    dir.join(f)
                };
                d.token = Some(
                    std::fs::read_to_string(&f)
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "{}: director {}: cannot read token_file {}: {e} (the file that ha's --control-token-file names on that director)",
                                here(|s| &s.token_file),
                                d.control,
                                f.display()
                            )
                        })?
                        .trim()
                        .to_string(),
                );
            }
            let address: opsflow_control::Address = d
                .control
                .parse()
                .map_err(|e| anyhow::anyhow!("{}: director: {e}", here(|s| &s.control)))?;
            if address.is_tcp() && d.token.as_deref().is_none_or(str::is_empty) {
                anyhow::bail!(
                    "{}: director {} is reached over TCP and needs token_file (ha refuses an unauthenticated control API on the network)",
                    here(|s| &s.control),
                    d.control
                );
            }
        }
        let name_ok = |n: &str| {
            n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        };
        if !name_ok(&cfg.app.name) {
            anyhow::bail!(
                "{}: app.name {:?}: use letters, digits, `.`, `_` and `-` (it names directories on every host)",
                at(&spans.app.name),
                cfg.app.name
            );
        }
        if !["ssh", "local"].contains(&cfg.app.transport.as_str()) {
            anyhow::bail!(
                "{}: app.transport must be \"ssh\" or \"local\", not {:?}",
                at(&spans.app.transport),
                cfg.app.transport
            );
        }
        if let Some(e) = plain_path(&cfg.app.base) {
            anyhow::bail!("{}: app.base {e}", at(&spans.app.base));
        }
        for (what, tpl, span) in [
            ("app.artifact", &cfg.app.artifact, &spans.app.artifact),
            ("app.health", &cfg.app.health, &spans.app.health),
        ] {
            if let Some(e) = template_error(tpl) {
                anyhow::bail!("{}: {what} {e}", at(span));
            }
        }
        if cfg.hosts.is_empty() {
            anyhow::bail!(
                "{}: no [[host]]: add one per real server (name, ssh, rs, virtual_server)",
                path.display()
            );
        }
        let mut names = std::collections::HashMap::new();
        let mut members = std::collections::HashMap::new();
        for (i, h) in cfg.hosts.iter().enumerate() {
            let sp = spans.host.get(i);
            let here = |f: fn(&HostSpans) -> &Span| sp.map_or(at(&None), |s| at(f(s)));
            if let Some(first) = names.insert(h.name.clone(), here(|s| &s.name)) {
                anyhow::bail!(
                    "{}: host {} is listed twice (first at {first}): give each [[host]] its own name",
                    here(|s| &s.name),
                    h.name
                );
            }
            if h.ssh.starts_with('-') {
                anyhow::bail!(
                    "{}: host {}: ssh destination {:?} starts with `-` (ssh would take it as an option)",
                    here(|s| &s.ssh),
                    h.name,
                    h.ssh
                );
            }
            if cfg.app.transport == "ssh" && h.ssh.is_empty() {
                anyhow::bail!(
                    "{}: host {} has no ssh destination (or set app.transport = \"local\")",
                    here(|s| &s.name),
                    h.name
                );
            }
            let Some(rs) = opsflow_control::status::real_server_addr(&h.rs) else {
                anyhow::bail!(
                    "{}: host {}: rs {:?} is not the real server's IP:PORT (e.g. \"10.0.0.23:80\" or \"[fd00::23]:80\")",
                    here(|s| &s.rs),
                    h.name,
                    h.rs
                );
            };
            if !opsflow_control::status::is_virtual_server_id(&h.virtual_server) {
                anyhow::bail!(
                    "{}: host {}: virtual_server {:?} is not VIP:PORT, VIP:PORT/udp, [VIP6]:PORT or fwmark-N (as `ha status` names it)",
                    here(|s| &s.virtual_server),
                    h.name,
                    h.virtual_server
                );
            }
            let key = (
                opsflow_control::status::canonical_id(&h.virtual_server),
                rs.to_string(),
            );
            if let Some(other) = members.insert(key, h.name.clone()) {
                anyhow::bail!(
                    "{}: hosts {other} and {} are both real server {} of {}: one host per real server",
                    here(|s| &s.rs),
                    h.name,
                    rs,
                    h.virtual_server
                );
            }
            if let Some(b) = &h.base {
                if let Some(e) = plain_path(b) {
                    anyhow::bail!("{}: host {}: base {e}", here(|s| &s.base), h.name);
                }
            }
        }
        if cfg.app.transport == "local" && cfg.hosts.len() != 1 {
            anyhow::bail!(
                "{}: transport = \"local\" runs on this machine: exactly one [[host]]",
                at(&spans.app.transport)
            );
        }
        Ok(cfg)
    }

    pub fn state_dir(&self) -> PathBuf {
        match &self.app.state_dir {
            Some(d) => d.clone(),
            None => self
                .path
                .parent()
                .unwrap_or(Path::new("."))
                .join(".release"),
        }
    }

    pub fn base(&self, h: &Host) -> String {
        h.base.clone().unwrap_or_else(|| self.app.base.clone())
    }

    /// Expands `{app} {version} {base} {host} {rs}` as they are: for paths and URLs.
    pub fn expand(&self, tpl: &str, h: Option<&Host>, version: &str) -> String {
        self.substitute(tpl, h, version, &|s| s.to_string())
    }

    /// Expands the placeholders of a command run with `sh -c`: every value is one shell word
    /// (quoted when it holds anything but `[A-Za-z0-9._/:@%+=,-]`), so no value can add a
    /// command, whatever the config or the version say.
    pub fn expand_cmd(&self, tpl: &str, h: &Host, version: &str) -> String {
        self.substitute(tpl, Some(h), version, &shell_word)
    }

    fn substitute(
        &self,
        tpl: &str,
        h: Option<&Host>,
        version: &str,
        q: &dyn Fn(&str) -> String,
    ) -> String {
        let base = h.map_or_else(|| self.app.base.clone(), |h| self.base(h));
        let mut s = tpl
            .replace("{app}", &q(&self.app.name))
            .replace("{version}", &q(version))
            .replace("{base}", &q(&base));
        if let Some(h) = h {
            s = s.replace("{host}", &q(&h.name)).replace("{rs}", &q(&h.rs));
        }
        s
    }

    /// `waimai-1.4` → `1.4` (the app must be this config's, the version [`check_version`]'s).
    pub fn version_of(&self, app_version: &str) -> anyhow::Result<String> {
        let v = app_version
            .strip_prefix(&format!("{}-", self.app.name))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{app_version:?} is not {}-VERSION (this config releases {})",
                    self.app.name,
                    self.app.name
                )
            })?;
        check_version(v).map_err(|e| anyhow::anyhow!("{app_version:?}: {e}"))?;
        Ok(v.to_string())
    }
}

/// What a version may look like (README, `release --help`): a letter or digit, then up to
/// 63 letters, digits and `. _ + ~ -`. No shell metacharacter, no `/`, no space.
pub const VERSION_PATTERN: &str = "[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}";

/// Checks a version against [`VERSION_PATTERN`]: from the command line, from the journal,
/// and as read back from a host's symlink.
pub fn check_version(v: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._+~-".contains(c);
    let first_ok = v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && v.len() <= 64 && v.chars().all(ok_char) {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not a valid version (allowed: {VERSION_PATTERN}, e.g. 1.4 or 2.0-rc1)"
        ))
    }
}

/// Quotes a string for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `s` as one shell word: unchanged when it holds only `[A-Za-z0-9._/:@%+=,-]` (so a
/// placeholder inside the template's own quotes keeps working), [`shell_quote`]d otherwise.
pub fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._/:@%+=,-".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        shell_quote(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_versions() {
        let dir = std::env::temp_dir().join(format!("rel-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("release.toml");
        std::fs::write(
            &p,
            r#"[app]
name = "waimai"
base = "/webapps/data"
artifact = "/srv/{app}-{version}.tar.gz"
stop = "stop"
start = "cd {base}/{app} && run {host}"
health = "http://{rs}/health"

[[host]]
name = "h1"
ssh = "root@10.0.0.11"
rs = "10.0.0.11:80"
virtual_server = "10.0.0.100:80"
base = "/other"
"#,
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        let h = &c.hosts[0];
        assert_eq!(
            c.expand(&c.app.start, Some(h), "1.4"),
            "cd /other/waimai && run h1"
        );
        assert_eq!(
            c.expand(&c.app.artifact, Some(h), "1.4"),
            "/srv/waimai-1.4.tar.gz"
        );
        assert_eq!(
            c.expand(&c.app.health, Some(h), "1.4"),
            "http://10.0.0.11:80/health"
        );
        assert_eq!(c.version_of("waimai-1.4").unwrap(), "1.4");
        assert!(c
            .version_of("other-1.4")
            .unwrap_err()
            .to_string()
            .contains("releases waimai"));
        assert_eq!(c.state_dir(), dir.join(".release"));
        std::fs::write(&p, "[app]\nname = 1\n").unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("release.toml:2:8"), "{e}");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_word("/webapps/data"), "/webapps/data");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("1.4;touch X"), "'1.4;touch X'");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Runs `s` with `sh -c` and returns its stdout: what a host's shell would do with it.
    fn sh(dir: &Path, s: &str) -> String {
        let o = std::process::Command::new("/bin/sh")
            .current_dir(dir)
            .arg("-c")
            .arg(s)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    #[test]
    fn versions_are_checked_against_the_documented_pattern() {
        for v in ["1.4", "2.0-rc1", "1.4+build.7", "20261130", "a~b_c"] {
            assert!(check_version(v).is_ok(), "{v}");
        }
        for v in [
            "",
            "1.4;touch PWNED;echo",
            "1.4 x",
            "$(id)",
            "`id`",
            "1.4/..",
            "-1",
            ".hidden",
            "1'4",
            "1\n4",
            &"9".repeat(65),
        ] {
            let e = check_version(v).unwrap_err();
            assert!(e.contains(VERSION_PATTERN), "{e}");
        }
    }

    #[test]
    fn every_placeholder_is_one_shell_word_in_commands() {
        let dir = std::env::temp_dir().join(format!("rel-quote-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("release.toml");
        std::fs::write(
            &p,
            "[app]\nname = \"waimai\"\nbase = \"/b\"\nartifact = \"a\"\nstop = \"s\"\nstart = \"s\"\nhealth = \"h\"\ntransport = \"local\"\n\n[[host]]\nname = \"h1\"\nrs = \"1.2.3.4:80\"\nvirtual_server = \"10.0.0.100:80\"\nbase = \"/we'b $(touch X) `id` apps;\"\n",
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        let h = &c.hosts[0];
        // what the shell sees as arguments is exactly the values, one each
        let cmd = c.expand_cmd(
            "printf '%s|' {app} {version} {base} {host} {rs}",
            h,
            "1.4;touch PWNED;echo",
        );
        assert_eq!(
            sh(&dir, &cmd),
            "waimai|1.4;touch PWNED;echo|/we'b $(touch X) `id` apps;|h1|1.2.3.4:80|"
        );
        assert!(!dir.join("PWNED").exists() && !dir.join("X").exists());
        // plain values stay plain, so a placeholder inside the template's quotes still works
        let mut plain = h.clone();
        plain.base = Some("/webapps/data".into());
        assert_eq!(
            c.expand_cmd("kill $(cat \"{base}/{app}.pid\")", &plain, "1.4"),
            "kill $(cat \"/webapps/data/waimai.pid\")"
        );
        std::fs::write(&p, "[app]\nname = \"w;x\"\nbase = \"/b\"\nartifact = \"a\"\nstop = \"s\"\nstart = \"s\"\nhealth = \"h\"\n\n[[host]]\nname = \"h1\"\nssh = \"h\"\nrs = \"r\"\nvirtual_server = \"v\"\n").unwrap();
        assert!(Config::load(&p)
            .unwrap_err()
            .to_string()
            .contains("app.name"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn host_fields_and_templates_are_checked_with_their_place() {
        let dir = std::env::temp_dir().join(format!("rel-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("release.toml");
        let app = "[app]\nname = \"waimai\"\nbase = \"/b\"\nartifact = \"/a/{app}-{version}.tgz\"\nstop = \"s\"\nstart = \"s\"\nhealth = \"http://{rs}/health\"\n";
        let host = |name: &str, rs: &str, vs: &str| {
            format!("\n[[host]]\nname = \"{name}\"\nssh = \"root@x\"\nrs = \"{rs}\"\nvirtual_server = \"{vs}\"\n")
        };
        let load = |text: String| {
            std::fs::write(&p, text).unwrap();
            Config::load(&p).map(|_| ()).map_err(|e| e.to_string())
        };
        let f = p.display().to_string();
        // the first host's `[[host]]` is line 9: its name is on 10, rs on 12, vs on 13; the second's
        // name on 16, rs on 18
        let good = [
            host("a", "10.0.0.1:80", "10.0.0.100:80"),
            host("b", "[fd00::2]:8080", "[fd00::100]:80"),
            host("c", "10.0.0.3:53", "10.0.0.100:53/udp"),
            host("d", "10.0.0.4:80", "fwmark-7"),
        ]
        .concat();
        assert_eq!(load(format!("{app}{good}")), Ok(()));
        let cases = [
            (
                host("a", "10.0.0.300:80", "10.0.0.100:80"),
                format!("{f}:12:6: host a: rs \"10.0.0.300:80\" is not the real server's IP:PORT"),
            ),
            (
                host("a", "10.0.0.1:70000", "10.0.0.100:80"),
                format!("{f}:12:6: host a: rs \"10.0.0.1:70000\""),
            ),
            (
                host("a", "10.0.0.1:80", "vip"),
                format!("{f}:13:18: host a: virtual_server \"vip\" is not VIP:PORT"),
            ),
            (
                host("a", "10.0.0.1:80", "10.0.0.100:80")
                    + &host("b", "10.0.0.1:80", "10.0.0.100:80"),
                format!(
                    "{f}:18:6: hosts a and b are both real server 10.0.0.1:80 of 10.0.0.100:80"
                ),
            ),
            (
                host("a", "10.0.0.1:80", "10.0.0.100:80")
                    + &host("a", "10.0.0.2:80", "10.0.0.100:80"),
                format!("{f}:16:8: host a is listed twice (first at {f}:10:8)"),
            ),
        ];
        for (hosts, want) in cases {
            let got = load(format!("{app}{hosts}")).unwrap_err();
            assert!(got.starts_with(&want), "want {want:?}, got {got:?}");
        }
        let one = host("a", "10.0.0.1:80", "10.0.0.100:80");
        for (bad, want) in [
            ("http://{rss}/health", "unknown placeholder {rss}"),
            ("http://{rs/health", "a '{' without its '}'"),
        ] {
            let text = format!("{app}{one}").replace("http://{rs}/health", bad);
            let got = load(text).unwrap_err();
            assert!(
                got.starts_with(&format!("{f}:7:10: app.health")) && got.contains(want),
                "want {want:?} at 7:10, got {got:?}"
            );
        }
        let text = format!("{app}{one}").replace("base = \"/b\"", "base = \"/srv/{app}\"");
        let got = load(text).unwrap_err();
        assert!(
            got.starts_with(&format!(
                "{f}:3:8: app.base \"/srv/{{app}}\": the base directory takes no placeholders"
            )),
            "{got}"
        );
        // commands keep their shell braces
        let text = format!("{app}{one}").replace("stop = \"s\"", "stop = \"awk '{print $1}' /x\"");
        assert_eq!(load(text), Ok(()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
