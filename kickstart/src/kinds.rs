//! What an inventory value may contain, by the kind of thing it is. Every value lands in a
//! file a machine runs or parses (a `%post` script, notify.sh, a kickstart line, a boot
//! menu), so the inventory refuses what could break out of its place there; templates also
//! shell-quote (`|sh`) what lands in scripts, as a second line.
//!
//! Each check returns `Err(what is wrong and what to use)`.

/// A check of one kind.
pub type Check = fn(&str) -> Result<(), String>;

/// A host name (RFC 1123): dot-separated labels of letters, digits and '-', each 1-63
/// characters, not starting or ending with '-'; 253 characters at most.
pub fn hostname(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a host name: use letters, digits and '-' in dot-separated labels"
        ))
    }
}

/// A host name or an IP address.
pub fn host(s: &str) -> Result<(), String> {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    hostname(s).map_err(|_| format!("{s:?} is neither a host name nor an IP address"))
}

/// An e-mail address: `local@domain`, the local part of letters, digits and `._%+-`, the
/// domain a host name.
pub fn email(s: &str) -> Result<(), String> {
    let bad = || {
        format!("{s:?} is not an e-mail address such as ops@example.com (letters, digits and ._%+- before the @, a host name after it)")
    };
    let (local, domain) = s.split_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b));
    if local_ok && hostname(domain).is_ok() {
        Ok(())
    } else {
        Err(bad())
    }
}

/// A `%packages` entry: a package or `@group` name, optionally `-` (exclude), with letters,
/// digits and `._+:~^*-`.
pub fn package(s: &str) -> Result<(), String> {
    let name = s.strip_prefix('-').unwrap_or(s);
    let name = name.strip_prefix('@').unwrap_or(name);
    let ok = !name.is_empty()
        && name.len() <= 200
        && name.bytes().next().is_some_and(|b| b != b'-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+:~^*-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a package name: letters, digits and ._+:~^*- (with @ for a group, - to exclude)"
        ))
    }
}

/// An absolute path of letters, digits and `._+@,:=-` between slashes, without `..`.
pub fn path(s: &str) -> Result<(), String> {
    let ok = s.starts_with('/')
        && s.len() <= 1024
        && s.split('/').all(|c| c != "..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._+@,:=-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not an absolute path of letters, digits and /._+@,:=- (no spaces, quotes or `..`)"
        ))
    }
}

/// One word of a kickstart command (`lang`, `keyboard`, `timezone`, an interface name): letters,
/// digits and `._+:@/-`.
pub fn word(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 200
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+:@/-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} must be one word of letters, digits and ._+:@/- (no spaces or quotes)"
        ))
    }
}

/// A crypt(3) hash (`$6$salt$hash`): letters, digits and `./$`.
pub fn crypt_hash(s: &str) -> Result<(), String> {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"./$".contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a crypt(3) hash such as $6$salt$hash (letters, digits and ./$)"
        ))
    }
}

/// Kernel arguments, which land on one line of a boot menu (pxelinux, GRUB, iPXE): printable
/// ASCII without the characters those menus treat as syntax (`;`, `$`, `` ` ``, `{}`, `\`,
/// quotes).
pub fn kernel_args(s: &str) -> Result<(), String> {
    match s
        .chars()
        .find(|c| !(' '..='~').contains(c) || ";$`{}\\'\"".contains(*c))
    {
        None => Ok(()),
        Some(c) => Err(format!(
            "kernel arguments {s:?} contain {c:?}: they go on one line of every boot menu; use printable characters without ;$`{{}}\\ and quotes"
        )),
    }
}

/// An http(s) URL as kickstarts, boot menus and scripts carry it: printable ASCII without
/// spaces, quotes, `\`, `$`, `` ` `` or `;`.
pub fn url(s: &str) -> Result<(), String> {
    let scheme = s.starts_with("http://") || s.starts_with("https://");
    match s
        .chars()
        .find(|c| !('!'..='~').contains(c) || "'\"\\$`;".contains(*c))
    {
        None if scheme => Ok(()),
        None => Err(format!("{s:?} must start with http:// or https://")),
        Some(c) => Err(format!(
            "the URL {s:?} contains {c:?}; percent-encode it (URLs land in kickstarts, boot menus and scripts)"
        )),
    }
}

/// Free text that lands on one line (a template variable): no control characters.
pub fn line(s: &str) -> Result<(), String> {
    match s.chars().find(|c| c.is_control()) {
        None => Ok(()),
        Some(c) => Err(format!(
            "{s:?} contains the control character {c:?}: a value must stay on its line of the rendered file"
        )),
    }
}

/// The kind of a well-known template variable (`vars.NAME`); `None` for others, which are
/// checked as [`line`]s.
pub fn of_var(name: &str) -> Option<Check> {
    Some(match name {
        "packages" => package,
        "lang" | "keyboard" | "timezone" => word,
        "root_password_hash" => crypt_hash,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_accept_the_usual_and_refuse_what_breaks_out() {
        for ok in ["lb1", "web-1.lab.example", "a"] {
            assert!(hostname(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a b", "a;b", "a..b", "x'y", &"a".repeat(64)] {
            assert!(hostname(bad).is_err(), "{bad}");
        }
        assert!(host("10.0.0.1").is_ok() && host("::1").is_ok() && host("smtp.x").is_ok());
        assert!(host("a b").is_err());
        for ok in ["root@localhost", "ops+lvs@mail.example.com", "a.b_c%d-e@x"] {
            assert!(email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "root",
            "a@",
            "@b",
            "x'; touch /tmp/pwned; echo '@h",
            "a b@c",
            "a@b;c",
            "a@b@c",
            "$(id)@x",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
        for ok in [
            "curl",
            "@core",
            "-firewalld",
            "kernel*",
            "python3.11",
            "gcc-c++",
            "@^minimal",
        ] {
            assert!(package(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "%post", "curl\n%post", "--x", "#x", "a;b"] {
            assert!(package(bad).is_err(), "{bad}");
        }
        assert!(path("/usr/local/sbin/ha").is_ok());
        for bad in ["ha", "/a b", "/a/../b", "/a;b", "/a'b", "/a$b"] {
            assert!(path(bad).is_err(), "{bad}");
        }
        assert!(word("Asia/Shanghai").is_ok() && word("en_US.UTF-8").is_ok());
        assert!(word("us --x").is_err() && word("").is_err());
        assert!(crypt_hash("$6$abc$DEF./").is_ok() && crypt_hash("x y").is_err());
        assert!(kernel_args("console=ttyS0 net.ifnames=0 inst.repo=http://x/y").is_ok());
        for bad in ["a\nb", "a;reboot", "$x", "a'b"] {
            assert!(kernel_args(bad).is_err(), "{bad}");
        }
        assert!(url("http://10.0.0.1:8080/repo/x?a=b&c=%20").is_ok());
        for bad in [
            "ftp://x",
            "http://x y",
            "http://x/'",
            "http://x/$(id)",
            "http://x;y",
        ] {
            assert!(url(bad).is_err(), "{bad}");
        }
        assert!(line("anything at all; even 'quotes'").is_ok() && line("a\nb").is_err());
    }
}
