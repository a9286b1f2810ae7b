//! Scripts as keepalived runs them: the command line is split into an argv with keepalived's
//! quoting rules and executed directly (no shell); it runs as `script_user`, a script's own
//! `user`, or the default script user (`keepalived_script` when it exists, else root);
//! `enable_script_security` refuses a script that root would run when the file, or any
//! directory on its path, is writable by someone other than root (keepalived's
//! `check_script_secure`). vrrp_script, notify and MISC_CHECK scripts all go through here.
//!
//! User look-ups use libc's `getpwnam_r`/`getgrnam_r` directly: the workspace has no user
//! database crate, and these two calls are all that is needed.

use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::RwLock;
use std::time::Duration;

use tracing::{debug, warn};

/// Who a script runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// The script settings of `global_defs`: the default user and `enable_script_security`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Env {
    pub default: RunAs,
    pub security: bool,
}

/// A script ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    pub argv: Vec<String>,
    pub run_as: RunAs,
}

/// Splits a script line into words as keepalived does: blanks separate words; single quotes
/// keep everything up to the next single quote; double quotes group, and inside them a
/// backslash escapes `"` and `\`; outside quotes a backslash takes the next character as
/// it is. Quotes may join text into one word (`a'b c'd` is `ab cd`). Nothing else is
/// special: `>`, `&&`, `$X` and `[[` are plain words.
pub fn split(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(n @ ('"' | '\\')) => cur.push(n),
                            Some(n) => {
                                cur.push('\\');
                                cur.push(n);
                            }
                            None => cur.push('\\'),
                        },
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if word {
                    out.push(std::mem::take(&mut cur));
                    word = false;
                }
            }
            c => {
                word = true;
                cur.push(c);
            }
        }
    }
    if word {
        out.push(cur);
    }
    out
}

fn passwd(name: &str) -> Option<RunAs> {
    let c = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids) for getpwnam_r to fill.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut res: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the strings it stores point into `buf`.
    let rc =
        unsafe { libc::getpwnam_r(c.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut res) };
    (rc == 0 && !res.is_null()).then_some(RunAs {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    })
}

fn group(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: as in `passwd`.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut res: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the strings it stores point into `buf`.
    let rc =
        unsafe { libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut res) };
    (rc == 0 && !res.is_null()).then_some(grp.gr_gid)
}

/// `USER [GROUP]` (as `script_user` and `user` take it) to ids. The group defaults to the
/// user's primary group.
pub fn resolve(spec: &str) -> Result<RunAs, String> {
    let mut words = spec.split_whitespace();
    let user = words.next().ok_or("no user name given")?;
    let mut r = passwd(user).ok_or_else(|| format!("user '{user}' does not exist"))?;
    if let Some(g) = words.next() {
        r.gid = group(g).ok_or_else(|| format!("group '{g}' does not exist"))?;
    }
    Ok(r)
}

impl Env {
    /// The environment `global_defs` describes, with what keepalived would warn about.
    pub fn new(script_user: Option<&str>, security: bool) -> (Env, Vec<String>) {
        let mut warnings = Vec::new();
        let default = match script_user {
            Some(spec) => resolve(spec).unwrap_or_else(|e| {
                warnings.push(format!("script_user: {e}; scripts run as root"));
                RunAs::default()
            }),
            None => passwd("keepalived_script").unwrap_or_else(|| {
                warnings.push("the default script user 'keepalived_script' does not exist: scripts run as root (create it, or set script_user)".to_string());
                RunAs::default()
            }),
        };
        (Env { default, security }, warnings)
    }

    /// Prepares a script line run as `user` (or the default). `Err` says why keepalived
    /// would disable it: "not found/accessible" or "insecure".
    pub fn prepare(&self, line: &str, user: Option<&str>) -> Result<Prepared, String> {
        let argv = split(line);
        let run_as = match user {
            Some(u) => resolve(u)?,
            None => self.default,
        };
        let Some(prog) = argv.first() else {
            return Err("empty script: not found/accessible".into());
        };
        let file = locate(prog).ok_or_else(|| format!("'{prog}' not found/accessible"))?;
        let meta =
            std::fs::metadata(&file).map_err(|e| format!("'{prog}' not found/accessible ({e})"))?;
        let mode = meta.permissions().mode();
        let root_runs = run_as.uid == 0
            || run_as.gid == 0
            || (meta.uid() == 0 && mode & 0o4100 == 0o4100)
            || (meta.gid() == 0 && mode & 0o2010 == 0o2010);
        if root_runs {
            if let Some(bad) = insecure_component(&file) {
                if self.security {
                    return Err(format!("insecure: '{bad}' is writable by a user other than root (enable_script_security)"));
                }
                warn!(script = %prog, path = %bad, "SECURITY VIOLATION: the script runs as root and is writable by others; set enable_script_security");
            }
        }
        Ok(Prepared { argv, run_as })
    }
}

/// The file a program name runs: a name with a slash as it is, else a `PATH` search.
fn locate(prog: &str) -> Option<String> {
    if prog.contains('/') {
        return Path::new(prog).is_file().then(|| prog.to_string());
    }
    let path = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    path.split(':')
        .map(|d| format!("{}/{prog}", if d.is_empty() { "." } else { d }))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// keepalived's rule for each of `/`, every directory on the way and the file itself: not
/// owned by root, or writable by a non-root group or by everyone (a sticky directory may be).
fn insecure_component(file: &str) -> Option<String> {
    let mut prefixes = vec!["/".to_string()];
    let mut acc = String::new();
    for part in file.split('/').filter(|p| !p.is_empty()) {
        acc.push('/');
        acc.push_str(part);
        prefixes.push(acc.clone());
    }
    prefixes.into_iter().find(|p| {
        let Ok(m) = std::fs::metadata(p) else {
            return true;
        };
        let mode = m.permissions().mode();
        let sticky_dir = mode & 0o1000 != 0 && !m.is_file();
        m.uid() != 0 || (!sticky_dir && ((m.gid() != 0 && mode & 0o020 != 0) || mode & 0o002 != 0))
    })
}

static CURRENT: RwLock<Option<Env>> = RwLock::new(None);

/// Installs the environment of the configuration in force (the daemon does, at start and on
/// reload), for notify and MISC_CHECK scripts started anywhere.
pub fn install(env: Env) {
    if let Ok(mut e) = CURRENT.write() {
        *e = Some(env);
    }
}

/// The environment in force: the installed one, else root without script security.
pub fn current() -> Env {
    CURRENT
        .read()
        .ok()
        .and_then(|e| e.clone())
        .unwrap_or_default()
}

impl Prepared {
    /// The command, extra arguments after the script's own, stdin from /dev/null, killed
    /// when dropped.
    pub fn command(&self, extra: &[String]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.argv[0]);
        c.args(&self.argv[1..])
            .args(extra)
            .uid(self.run_as.uid)
            .gid(self.run_as.gid)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        c
    }
}

/// Runs a notify-style script line to its end (at most 30 s, then killed) and logs the
/// outcome; `what` names it in the log ("notify (VI_1)", "notify_up"). A script keepalived
/// would disable is not run (logged).
pub async fn run(line: &str, extra: &[String], what: &str) {
    let p = match current().prepare(line, None) {
        Ok(p) => p,
        Err(e) => {
            warn!(cmd = %line, "{what} script disabled: {e}");
            return;
        }
    };
    match tokio::time::timeout(Duration::from_secs(30), p.command(extra).status()).await {
        Ok(Ok(st)) if st.success() => debug!(cmd = %line, "{what} script ran"),
        Ok(Ok(st)) => warn!(cmd = %line, status = %st, "{what} script failed"),
        Ok(Err(e)) => warn!(cmd = %line, error = %e, "cannot run the {what} script"),
        Err(_) => warn!(cmd = %line, "{what} script still running after 30 s; killed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_like_keepalived_without_a_shell() {
        assert_eq!(
            split("/etc/keepalived/notify.sh master"),
            vec!["/etc/keepalived/notify.sh", "master"]
        );
        assert_eq!(
            split("/usr/bin/touch '/tmp/two words'"),
            vec!["/usr/bin/touch", "/tmp/two words"]
        );
        assert_eq!(
            split("/bin/echo x > /tmp/f"),
            vec!["/bin/echo", "x", ">", "/tmp/f"]
        );
        assert_eq!(
            split("[[ -f /etc/keepalived/down ]] && exit 1 || exit 0")[..2],
            ["[[", "-f"]
        );
        assert_eq!(
            split(r#"a "b \"c\" d" e\ f ''"#),
            vec!["a", "b \"c\" d", "e f", ""]
        );
        assert_eq!(split("x'y z'w"), vec!["xy zw"]);
        assert!(split("   ").is_empty());
    }

    #[test]
    fn keepalived_disables_what_it_cannot_find_or_trust() {
        let env = Env {
            default: RunAs::default(),
            security: true,
        };
        let e = env.prepare("[[ -f /x ]] && exit 1", None).unwrap_err();
        assert!(e.contains("'[[' not found/accessible"), "{e}");
        assert!(env
            .prepare("/no/such/script", None)
            .unwrap_err()
            .contains("not found"));
        // a PATH search finds programs; root-owned system directories are secure
        let p = env.prepare("true", None).unwrap();
        assert_eq!(p.argv, vec!["true"]);
        // a world-writable script is refused with script security, run without it
        let dir = std::env::temp_dir().join(format!("ha-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = dir.join("ww.sh");
        std::fs::write(&f, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o777)).unwrap();
        let line = f.to_string_lossy().into_owned();
        let root = std::fs::metadata("/")
            .map(|m| m.uid() == 0)
            .unwrap_or(false)
            && std::fs::metadata(&dir)
                .map(|m| m.uid() == 0)
                .unwrap_or(false);
        if root {
            let e = env.prepare(&line, None).unwrap_err();
            assert!(e.contains("insecure"), "{e}");
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
            assert!(env.prepare(&line, None).is_ok());
        }
        let lax = Env {
            security: false,
            ..env
        };
        assert!(lax.prepare(&line, None).is_ok());
        // a non-root user needs no protection
        assert!(resolve("no-such-user-here")
            .unwrap_err()
            .contains("does not exist"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
