//! Templates (minijinja, strict about undefined values) and the contexts they see.
//!
//! The templates in the repository's `templates/` are built into the binary; a directory named
//! by `server.templates` overrides them file by file and may add more (a profile's
//! `kickstart = "web.ks"`). Errors name the template file and line.

use std::collections::HashMap;
use std::path::Path;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{json, Value};

use crate::inventory::{Cluster, Inventory, System};
use crate::state::State;
use crate::token::CallbackKey;

/// The built-in templates: (name, source).
pub const BUILTIN: &[(&str, &str)] = &[
    ("kickstart.ks", include_str!("../../templates/kickstart.ks")),
    (
        "pxelinux-default.cfg",
        include_str!("../../templates/pxelinux-default.cfg"),
    ),
    (
        "pxelinux-system.cfg",
        include_str!("../../templates/pxelinux-system.cfg"),
    ),
    ("grub.cfg", include_str!("../../templates/grub.cfg")),
    (
        "grub-system.cfg",
        include_str!("../../templates/grub-system.cfg"),
    ),
    (
        "ipxe-system.ipxe",
        include_str!("../../templates/ipxe-system.ipxe"),
    ),
    (
        "ipxe-menu.ipxe",
        include_str!("../../templates/ipxe-menu.ipxe"),
    ),
    (
        "ipxe-boot.ipxe",
        include_str!("../../templates/ipxe-boot.ipxe"),
    ),
    ("dhcpd.conf", include_str!("../../templates/dhcpd.conf")),
    (
        "keepalived.conf",
        include_str!("../../templates/keepalived.conf"),
    ),
    ("notify.sh", include_str!("../../templates/notify.sh")),
    ("ha.service", include_str!("../../templates/ha.service")),
];

/// A template failed to parse or render: `ORIGIN:LINE: message` (`ORIGIN: message` when no
/// line is known, line 0).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{origin}{}: {message}{}", if *.line > 0 { format!(":{line}") } else { String::new() }, .context.as_ref().map(|c| format!(" (rendering {c})")).unwrap_or_default())]
pub struct RenderError {
    /// The template's file (`templates/kickstart.ks (built in)` for built-in ones).
    pub origin: String,
    pub line: usize,
    pub message: String,
    /// What was being rendered, e.g. "kickstart for web1".
    pub context: Option<String>,
}

/// The template environment.
pub struct Renderer {
    env: Environment<'static>,
    origin: HashMap<String, String>,
}

impl Renderer {
    /// Built-in templates, overridden by the files in `dir`.
    pub fn new(dir: Option<&Path>) -> Result<Renderer, Vec<RenderError>> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_trim_blocks(false);
        env.add_filter("sh", sh_quote);
        let mut origin = HashMap::new();
        let mut errors = Vec::new();
        let mut sources: Vec<(String, String, String)> = BUILTIN
            .iter()
            .map(|(n, s)| {
                (
                    n.to_string(),
                    s.to_string(),
                    format!("templates/{n} (built in)"),
                )
            })
            .collect();
        if let Some(dir) = dir {
            match std::fs::read_dir(dir) {
                Ok(rd) => {
                    for e in rd.flatten() {
                        let p = e.path();
                        if !p.is_file() {
                            continue;
                        }
                        let name = e.file_name().to_string_lossy().into_owned();
                        match std::fs::read_to_string(&p) {
                            Ok(src) => {
                                sources.retain(|(n, _, _)| n != &name);
                                sources.push((name, src, p.display().to_string()));
                            }
                            Err(err) => errors.push(RenderError {
                                origin: p.display().to_string(),
                                line: 0,
                                message: format!("cannot read: {err}"),
                                context: None,
                            }),
                        }
                    }
                }
                Err(err) => errors.push(RenderError {
                    origin: dir.display().to_string(),
                    line: 0,
                    message: format!(
                        "cannot read the templates directory: {err}; fix server.templates"
                    ),
                    context: None,
                }),
            }
        }
        for (name, src, from) in sources {
            if let Err(e) = env.add_template_owned(name.clone(), src) {
                errors.push(RenderError {
                    origin: from.clone(),
                    line: e.line().unwrap_or(0),
                    message: detail(&e),
                    context: None,
                });
            }
            origin.insert(name, from);
        }
        if errors.is_empty() {
            Ok(Renderer { env, origin })
        } else {
            Err(errors)
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.origin.contains_key(name)
    }

    /// Renders template `name` with `ctx`.
    pub fn render(&self, name: &str, ctx: &Value, what: &str) -> Result<String, RenderError> {
        let t = self.env.get_template(name).map_err(|_| RenderError {
            origin: name.to_string(),
            line: 0,
            message: format!(
                "no template {name:?} (built in: {}; or add it to server.templates)",
                BUILTIN.iter().map(|b| b.0).collect::<Vec<_>>().join(", ")
            ),
            context: Some(what.to_string()),
        })?;
        t.render(ctx).map_err(|e| {
            let tpl = e.name().unwrap_or(name).to_string();
            RenderError {
                origin: self.origin.get(&tpl).cloned().unwrap_or(tpl),
                line: e.line().unwrap_or(0),
                message: detail(&e),
                context: Some(what.to_string()),
            }
        })
    }
}

/// The `sh` filter: a value as one shell word (`'$(id)'`, `"it's"`), a list as one word per item, so
/// nothing in it is run, expanded or split by the shell. Use it for every value a script
/// receives: `contact={{ ha.notify_email | sh }}`.
fn sh_quote(v: minijinja::Value) -> Result<String, minijinja::Error> {
    let bad = |e: shlex::QuoteError| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("cannot shell-quote {v}: {e}"),
        )
    };
    if v.is_undefined() || v.is_none() {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::UndefinedError,
            "| sh of an undefined or none value",
        ));
    }
    if v.kind() == minijinja::value::ValueKind::Seq {
        let items: Vec<String> = v
            .try_iter()?
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect();
        return shlex::try_join(items.iter().map(String::as_str)).map_err(bad);
    }
    let s = v.as_str().map_or_else(|| v.to_string(), str::to_string);
    shlex::try_quote(&s).map(|c| c.into_owned()).map_err(bad)
}

/// Template errors as one error, one per line.
pub fn all_errors(errs: &[RenderError]) -> anyhow::Error {
    let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    anyhow::anyhow!("{}", lines.join("\n"))
}

fn detail(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// Everything a system's files are rendered from.
pub struct Site {
    pub inv: Inventory,
    pub state: State,
    pub renderer: Renderer,
    /// Signs each system's installed-callback token.
    pub callback: CallbackKey,
}

/// One generated file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    Kickstart,
    Pxelinux,
    Grub,
    Ipxe,
    Keepalived,
    Notify,
    HaService,
}

impl What {
    pub const ALL: [What; 7] = [
        What::Kickstart,
        What::Pxelinux,
        What::Grub,
        What::Ipxe,
        What::Keepalived,
        What::Notify,
        What::HaService,
    ];

    pub fn name(self) -> &'static str {
        match self {
            What::Kickstart => "kickstart",
            What::Pxelinux => "pxelinux",
            What::Grub => "grub",
            What::Ipxe => "ipxe",
            What::Keepalived => "keepalived.conf",
            What::Notify => "notify.sh",
            What::HaService => "ha.service",
        }
    }

    pub fn parse(s: &str) -> Option<What> {
        What::ALL.into_iter().find(|w| {
            w.name() == s
                || (s == "ks" && *w == What::Kickstart)
                || (s == "keepalived" && *w == What::Keepalived)
        })
    }

    /// Only load-balancer nodes (cluster members) have HA files.
    pub fn ha_only(self) -> bool {
        matches!(self, What::Keepalived | What::Notify | What::HaService)
    }
}

/// A global file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    Dhcpd,
    PxeMenu,
    GrubMenu,
    IpxeMenu,
    IpxeBoot,
}

impl Global {
    pub const ALL: [Global; 5] = [
        Global::Dhcpd,
        Global::PxeMenu,
        Global::GrubMenu,
        Global::IpxeMenu,
        Global::IpxeBoot,
    ];
    pub fn template(self) -> &'static str {
        match self {
            Global::Dhcpd => "dhcpd.conf",
            Global::PxeMenu => "pxelinux-default.cfg",
            Global::GrubMenu => "grub.cfg",
            Global::IpxeMenu => "ipxe-menu.ipxe",
            Global::IpxeBoot => "ipxe-boot.ipxe",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Global::Dhcpd => "dhcpd.conf",
            Global::PxeMenu => "pxe-menu",
            Global::GrubMenu => "grub-menu",
            Global::IpxeMenu => "ipxe-menu",
            Global::IpxeBoot => "ipxe-boot",
        }
    }
}

fn join_args(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Site {
    pub fn new(
        inv: Inventory,
        state: State,
        callback: CallbackKey,
    ) -> Result<Site, Vec<RenderError>> {
        let renderer = Renderer::new(inv.server.templates.as_deref())?;
        Ok(Site {
            inv,
            state,
            renderer,
            callback,
        })
    }

    /// Netboot as the inventory and the state directory together say.
    pub fn netboot(&self, s: &System) -> bool {
        self.state.netboot(&s.name, s.netboot)
    }

    fn profiles_ctx(&self) -> Vec<Value> {
        self.inv
            .profiles
            .values()
            .filter_map(|p| {
                let d = self.inv.distros.get(&p.distro)?;
                let mut v = json!(p);
                v["distro"] = json!(d);
                let args = join_args(&[&d.kernel_args, &p.kernel_args]);
                let repo = d
                    .repo_url
                    .as_ref()
                    .map(|r| format!("inst.repo={r}"))
                    .unwrap_or_default();
                let menu = join_args(&[&args, &repo]);
                v["kernel_args"] = json!(args);
                // with a leading space when not empty, for `KERNEL x{{ p.menu_args }}`
                v["menu_args"] = json!(if menu.is_empty() {
                    menu
                } else {
                    format!(" {menu}")
                });
                Some(v)
            })
            .collect()
    }

    fn systems_ctx(&self) -> Vec<Value> {
        self.inv
            .systems
            .iter()
            .map(|s| {
                let mut v = json!(s);
                v["netboot"] = json!(self.netboot(s));
                v
            })
            .collect()
    }

    fn base_ctx(&self) -> Value {
        json!({
            "inventory": self.inv.path.display().to_string(),
            "server": self.inv.server,
            "network": self.inv.network,
            "ha": self.inv.ha,
            "profiles": self.profiles_ctx(),
            "systems": self.systems_ctx(),
        })
    }

    fn node_clusters(&self, name: &str) -> Vec<Value> {
        self.inv
            .clusters_of(name)
            .map(|c: &Cluster| {
                let mut v = json!(c);
                v["me"] = json!(c.member(name));
                v
            })
            .collect()
    }

    /// The context of one system's templates.
    pub fn system_ctx(&self, s: &System) -> Value {
        let base = &self.inv.server.base_url;
        let profile = self.inv.profiles.get(&s.profile);
        let distro = profile.and_then(|p| self.inv.distros.get(&p.distro));
        let ks = format!("{base}/ks/{}", s.name);
        let install_args = format!("inst.ks={ks} ks={ks} ip=dhcp");
        let kernel_args = join_args(&[
            distro.map_or("", |d| &d.kernel_args),
            profile.map_or("", |p| &p.kernel_args),
            &s.kernel_args,
            &install_args,
        ]);
        // variables: profile's, overridden by the system's
        let mut vars = profile.map(|p| p.vars.clone()).unwrap_or_default();
        for (k, v) in &s.vars {
            vars.insert(k.clone(), v.clone());
        }
        let mut real_server_of = Vec::new();
        for c in &self.inv.clusters {
            for vs in &c.virtual_servers {
                for rs in &vs.real_servers {
                    if rs.system.as_deref() == Some(&s.name) {
                        real_server_of.push(json!({
                            "cluster": c.name, "vip": vs.address, "port": vs.port,
                            "rs_port": rs.port, "method": vs.method, "protocol": vs.protocol,
                        }));
                    }
                }
            }
        }
        let mut system = json!(s);
        system["netboot"] = json!(self.netboot(s));
        system["netboot_note"] = json!(match (s.netboot, self.netboot(s)) {
            (true, true) => "on",
            (true, false) => "off (installed, recorded in the state directory)",
            _ => "off (netboot = false in the inventory)",
        });
        let mut ctx = self.base_ctx();
        let extra = json!({
            "system": system,
            "profile": profile,
            "distro": distro,
            "vars": vars,
            "kernel_args": kernel_args,
            "install_args": install_args,
            "clusters": self.node_clusters(&s.name),
            "real_server_of": real_server_of,
            "urls": {
                "ks": ks,
                "ipxe": format!("{base}/ipxe/{}", s.mac),
                "callback": format!(
                    "{base}/callback/{}/installed?token={}",
                    s.name,
                    self.callback.token(&s.name)
                ),
                "keepalived": format!("{base}/ha/{}/keepalived.conf", s.name),
                "notify": format!("{base}/ha/{}/notify.sh", s.name),
                "ha_service": format!("{base}/ha/{}/ha.service", s.name),
                "ha_binary": format!("{base}/bin/ha"),
            },
        });
        if let (Value::Object(c), Value::Object(e)) = (&mut ctx, extra) {
            c.extend(e);
        }
        ctx
    }

    /// Whether `what` exists for `s` (HA files only for cluster members).
    pub fn has(&self, s: &System, what: What) -> bool {
        !what.ha_only() || self.inv.clusters_of(&s.name).next().is_some()
    }

    /// Renders one of a system's files.
    pub fn render(&self, s: &System, what: What) -> Result<String, RenderError> {
        let template = match what {
            What::Kickstart => self
                .inv
                .profiles
                .get(&s.profile)
                .map_or("kickstart.ks", |p| p.kickstart.as_str()),
            What::Pxelinux => "pxelinux-system.cfg",
            What::Grub => "grub-system.cfg",
            What::Ipxe => "ipxe-system.ipxe",
            What::Keepalived => "keepalived.conf",
            What::Notify => "notify.sh",
            What::HaService => "ha.service",
        };
        self.renderer.render(
            template,
            &self.system_ctx(s),
            &format!("{} for {}", what.name(), s.name),
        )
    }

    pub fn render_global(&self, g: Global) -> Result<String, RenderError> {
        self.renderer
            .render(g.template(), &self.base_ctx(), g.name())
    }

    /// Renders everything for every system and checks the results that another component
    /// reads (keepalived.conf with ha's parser, dhcpd.conf with dhcpd's): the `check` command.
    pub fn check_all(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for g in Global::ALL {
            match self.render_global(g) {
                Ok(text) if g == Global::Dhcpd => {
                    if let Err(diags) = dhcpd::conf::parse_str("dhcpd.conf (rendered)", &text) {
                        for d in diags.iter().filter(|d| !d.warning) {
                            problems.push(format!(
                                "{d} (the dhcpd.conf template produced a config dhcpd rejects)"
                            ));
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => problems.push(e.to_string()),
            }
        }
        problems.extend(crate::bootprog::unknown_overrides(self));
        for p in crate::bootprog::programs(self) {
            if let Err(e) = p.origin {
                problems.push(e);
            }
        }
        for s in &self.inv.systems {
            for what in What::ALL {
                if !self.has(s, what) {
                    continue;
                }
                match self.render(s, what) {
                    Ok(text) if what == What::Keepalived => {
                        let name = format!("keepalived.conf for {} (rendered)", s.name);
                        if let Err(diags) = ha::conf::load_str(&name, &text, &s.name) {
                            for d in diags.iter().filter(|d| !d.warning) {
                                problems.push(format!("{d} (the keepalived.conf template produced a config ha rejects)"));
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => problems.push(e.to_string()),
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_sh_filter_makes_one_word_of_anything() {
        let mut env = Environment::new();
        env.add_filter("sh", sh_quote);
        let r = |t: &str, ctx: Value| env.render_str(t, ctx).unwrap();
        assert_eq!(r("{{ v | sh }}", json!({"v": "plain"})), "plain");
        assert_eq!(r("{{ v | sh }}", json!({"v": "it's"})), "\"it's\"");
        assert_eq!(r("{{ v | sh }}", json!({"v": "$(id)"})), "'$(id)'");
        assert_eq!(r("{{ v | sh }}", json!({"v": ""})), "''");
        assert_eq!(r("{{ v | sh }}", json!({"v": ["a b", "c"]})), "'a b' c");
        assert_eq!(r("{{ v | sh }}", json!({"v": 42})), "42");
        assert!(env.render_str("{{ v | sh }}", json!({"v": null})).is_err());
    }

    /// The built-in notify.sh with hostile e-mail addresses (which the inventory refuses; this
    /// is the second line of defence) runs them as words, never as commands.
    #[test]
    fn hostile_values_in_notify_sh_do_not_run() {
        let dir = std::env::temp_dir().join(format!("ks-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let stub = |name: &str, body: &str| {
            let p = bin.join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        };
        stub("mail", "printf '%s\\n' \"$@\" > \"$OUT\"; cat >/dev/null");
        stub("logger", "exit 0");
        let renderer = Renderer::new(None).unwrap();
        let ctx = json!({
            "system": {"name": "lb1"},
            "inventory": "inv.toml",
            "ha": {"notify_email": [
                "ops@example.com",
                "x'; touch PWNED1; echo '@h",
                "$(touch PWNED2)@h",
                "`touch PWNED3`\"; touch PWNED4; \"@h",
            ]},
        });
        let text = renderer.render("notify.sh", &ctx, "notify.sh").unwrap();
        std::fs::write(dir.join("notify.sh"), &text).unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let out = dir.join("mail.args");
        let o = std::process::Command::new("sh")
            .arg("notify.sh")
            .arg("master")
            .current_dir(&dir)
            .env("PATH", path)
            .env("OUT", &out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}\n{text}");
        for n in 1..=4 {
            assert!(
                !dir.join(format!("PWNED{n}")).exists(),
                "PWNED{n} was created by:\n{text}"
            );
        }
        let args = std::fs::read_to_string(&out).unwrap();
        assert!(
            args.contains("ops@example.com") && args.contains("$(touch") && args.contains("`touch"),
            "mail got: {args}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
