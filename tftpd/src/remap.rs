//! Filename remapping rules in the tftp-hpa `-m` format.
//!
//! One rule a line: `FLAGS REGEX [REPLACEMENT]`; `#` starts a comment line. Flags:
//! `r` replace the match with REPLACEMENT (`\0`-`\9` groups, `\i` client IP, `\x` client IP
//! in hex, `\\` a backslash), `g` replace every match, `i` case-insensitive, `e` end
//! processing when the rule matched, `s` start over from the first rule when it matched, `a`
//! refuse the request when it matched, `G`/`P` only for reads/writes, `~` invert the match
//! (not with `r`). Regexes are POSIX extended in tftp-hpa; the common subset (classes,
//! groups, anchors, `[[:alpha:]]`) means the same here.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use regex::{Regex, RegexBuilder};

/// A rule file could not be read or parsed.
#[derive(Debug)]
pub struct RemapError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for RemapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // the file as a whole (it could not be read)
            return write!(f, "{}: {}", self.file, self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

impl std::error::Error for RemapError {}

/// Every problem of a rule file, in line order.
#[derive(Debug)]
pub struct RemapErrors {
    pub errors: Vec<RemapError>,
}

impl fmt::Display for RemapErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RemapErrors {}

#[derive(Debug, Clone)]
struct Rule {
    regex: Regex,
    replacement: Option<String>,
    flags: Flags,
    line: usize,
}

#[derive(Debug, Clone, Default)]
struct Flags {
    global: bool,
    end: bool,
    restart: bool,
    abort: bool,
    get_only: bool,
    put_only: bool,
    invert: bool,
}

/// A parsed rule set.
#[derive(Debug, Clone, Default)]
pub struct Remap {
    rules: Vec<Rule>,
}

/// Result of remapping a file name.
#[derive(Debug, PartialEq, Eq)]
pub enum Mapped {
    /// The name to serve.
    Name(String),
    /// An `a` rule matched (its line): refuse with an access violation.
    Refused(usize),
    /// The rule on this line made the name longer than [`MAX_NAME`] bytes: refused too. Rules
    /// that restart and grow the name double it with every pass (a rule that replaces each
    /// letter with two letters, then an `s` rule), which would take memory and time without
    /// bound.
    TooLong(usize),
}

/// The longest name the rules may make (Linux's PATH_MAX).
pub const MAX_NAME: usize = 4096;

/// Splits a rule line into fields separated by unescaped white space; `\ ` keeps a space.
fn fields(line: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = None;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                out.push((s, std::mem::take(&mut cur)));
            }
            continue;
        }
        start.get_or_insert(i);
        if c == '\\' {
            // `\ ` is an escaped space; any other escape stays for the regex or replacement
            if let Some((_, n)) = chars.next() {
                if !n.is_whitespace() {
                    cur.push('\\');
                }
                cur.push(n);
                continue;
            }
        }
        cur.push(c);
    }
    if let Some(s) = start {
        out.push((s, cur));
    }
    out
}

impl Remap {
    /// Reads rules from a file.
    pub fn load(path: &Path) -> Result<Remap, RemapErrors> {
        let name = path.display().to_string();
        let text = opsflow_common::diag::read_text(path).map_err(|u| {
            let d = u.diag(&name, None, "give the remap file with -m or --remap");
            RemapErrors {
                errors: vec![RemapError {
                    file: name.clone(),
                    line: d.pos.line,
                    col: d.pos.col,
                    message: d.message,
                }],
            }
        })?;
        Remap::parse(&name, &text)
    }

    /// Parses rules; `file` names the source in errors. Every bad line is reported, in
    /// line order.
    pub fn parse(file: &str, text: &str) -> Result<Remap, RemapErrors> {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            match parse_rule(file, n + 1, raw) {
                Ok(rule) => rules.push(rule),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(Remap { rules })
        } else {
            Err(RemapErrors { errors })
        }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Applies the rules to a requested name.
    pub fn apply(&self, name: &str, write: bool, client: IpAddr) -> Mapped {
        let mut cur = name.to_string();
        let mut passes = 0;
        let mut i = 0;
        while i < self.rules.len() {
            let rule = &self.rules[i];
            i += 1;
            if (rule.flags.get_only && write) || (rule.flags.put_only && !write) {
                continue;
            }
            let matched = rule.regex.is_match(&cur) != rule.flags.invert;
            if !matched {
                continue;
            }
            if rule.flags.abort {
                return Mapped::Refused(rule.line);
            }
            if let Some(rep) = &rule.replacement {
                cur = if rule.flags.global {
                    let mut out = String::new();
                    let mut last = 0;
                    for caps in rule.regex.captures_iter(&cur) {
                        let Some(m) = caps.get(0) else { continue };
                        out.push_str(&cur[last..m.start()]);
                        expand(rep, &caps, client, &mut out);
                        last = m.end();
                    }
                    out.push_str(&cur[last..]);
                    out
                } else if let Some(caps) = rule.regex.captures(&cur) {
                    let mut out = String::new();
                    if let Some(m) = caps.get(0) {
                        out.push_str(&cur[..m.start()]);
                        expand(rep, &caps, client, &mut out);
                        out.push_str(&cur[m.end()..]);
                    }
                    out
                } else {
                    cur
                };
                if cur.len() > MAX_NAME {
                    return Mapped::TooLong(rule.line);
                }
            }
            if rule.flags.end {
                break;
            }
            if rule.flags.restart {
                passes += 1;
                if passes > 100 {
                    // a rule set that never settles: refuse rather than loop
                    return Mapped::Refused(rule.line);
                }
                i = 0;
            }
        }
        Mapped::Name(cur)
    }
}

/// The regex crate's message spans several lines (the pattern, a caret, the reason): keep
/// the reason, so each problem stays on one line.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or(text.lines().last().unwrap_or(""))
        .to_string()
}

/// Parses one rule line (not blank, not a comment).
fn parse_rule(file: &str, line: usize, raw: &str) -> Result<Rule, RemapError> {
    let err = |col: usize, message: String| RemapError {
        file: file.to_string(),
        line,
        col: col + 1,
        message,
    };
    let f = fields(raw);
    let Some((fcol, flags)) = f.first() else {
        return Err(err(0, "empty rule".into()));
    };
    let mut rule = Flags::default();
    let mut replace = false;
    let mut icase = false;
    for (k, c) in flags.chars().enumerate() {
        match c {
            'r' => replace = true,
            'g' => rule.global = true,
            'i' => icase = true,
            'e' => rule.end = true,
            's' => rule.restart = true,
            'a' => rule.abort = true,
            'G' => rule.get_only = true,
            'P' => rule.put_only = true,
            '~' => rule.invert = true,
            other => {
                return Err(err(
                    fcol + k,
                    format!("unknown remap flag '{other}' (known: r g i e s a G P ~)"),
                ))
            }
        }
    }
    if replace && rule.invert {
        return Err(err(*fcol, "flag '~' cannot be combined with 'r'".into()));
    }
    let Some((rcol, pattern)) = f.get(1) else {
        return Err(err(
            raw.len(),
            "rule has flags but no regular expression".into(),
        ));
    };
    let regex = RegexBuilder::new(pattern)
        .case_insensitive(icase)
        .build()
        .map_err(|e| {
            err(
                *rcol,
                format!("bad regular expression: {}", regex_reason(&e)),
            )
        })?;
    let mut replacement = None;
    if replace {
        let Some((_, rep)) = f.get(2) else {
            return Err(err(
                raw.len(),
                "an 'r' rule needs a replacement after the regular expression".into(),
            ));
        };
        replacement = Some(rep.clone());
    }
    if let Some((xcol, extra)) = f.get(if replace { 3 } else { 2 }) {
        return Err(err(
            *xcol,
            format!("unexpected text '{extra}' after the rule"),
        ));
    }
    Ok(Rule {
        regex,
        replacement,
        flags: rule,
        line,
    })
}

fn expand(rep: &str, caps: &regex::Captures<'_>, client: IpAddr, out: &mut String) {
    let mut chars = rep.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(d @ '0'..='9') => {
                let idx = d as usize - '0' as usize;
                if let Some(m) = caps.get(idx) {
                    out.push_str(m.as_str());
                }
            }
            Some('i') => out.push_str(&client.to_string()),
            Some('x') => match client {
                IpAddr::V4(v4) => {
                    for b in v4.octets() {
                        out.push_str(&format!("{b:02X}"));
                    }
                }
                IpAddr::V6(v6) => {
                    for b in v6.octets() {
                        out.push_str(&format!("{b:02X}"));
                    }
                }
            },
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip() -> IpAddr {
        "10.70.0.2".parse().unwrap()
    }

    fn check(rules: &str, name: &str, want: &str) {
        let r = Remap::parse("rules", rules).unwrap();
        assert_eq!(
            r.apply(name, false, ip()),
            Mapped::Name(want.to_string()),
            "{rules}"
        );
    }

    #[test]
    fn common_rules() {
        // Windows clients: backslashes to slashes
        check(
            "rg \\\\ /\n",
            "pxelinux.cfg\\default",
            "pxelinux.cfg/default",
        );
        check("rg \\\\ /\n", "a\\b\\c", "a/b/c");
        // strip a leading /tftpboot/
        check("r ^/tftpboot/ /\n", "/tftpboot/pxelinux.0", "/pxelinux.0");
        check(
            "r ^/tftpboot/(.*) \\1\n",
            "/tftpboot/images/vmlinuz",
            "images/vmlinuz",
        );
        check("r ^/ \\0x\n", "/a", "/xa");
        // case-insensitive with the client address
        check(
            "ri ^PXELINUX\\.CFG/DEFAULT$ cfg/\\i\n",
            "pxelinux.cfg/default",
            "cfg/10.70.0.2",
        );
        check("r ^(.*)$ \\x/\\1\n", "f", "0A460002/f");
    }

    #[test]
    fn end_restart_abort_and_direction() {
        check("re ^a b\nr b c\n", "a", "b");
        check("r ^a b\nr b c\n", "a", "c");
        check("rs ^x y\nr ^y z\n", "x", "z");
        let r = Remap::parse("f", "# comment\n\na \\.\\./\nG ~^ok\n").unwrap();
        assert_eq!(r.apply("x/../y", false, ip()), Mapped::Refused(3));
        assert_eq!(r.apply("fine", false, ip()), Mapped::Name("fine".into()));
        let r = Remap::parse("f", "rP ^ up/\nrG ^ down/\n").unwrap();
        assert_eq!(r.apply("f", true, ip()), Mapped::Name("up/f".into()));
        assert_eq!(r.apply("f", false, ip()), Mapped::Name("down/f".into()));
        let r = Remap::parse("f", "~a ^boot/\n").unwrap();
        assert_eq!(r.apply("etc/x", false, ip()), Mapped::Refused(1));
        assert_eq!(
            r.apply("boot/x", false, ip()),
            Mapped::Name("boot/x".into())
        );
    }

    #[test]
    fn endless_restart_is_refused() {
        let r = Remap::parse("f", "rs a a\n").unwrap();
        assert!(matches!(r.apply("a", false, ip()), Mapped::Refused(1)));
    }

    #[test]
    fn a_name_that_grows_with_every_restart_is_refused() {
        // found by the fuzzer: each pass doubles the letters; 100 passes never end
        let r = Remap::parse("f", "rgi [A-Z] -wa-\ns ^\n").unwrap();
        assert_eq!(r.apply("pxelinux.0", false, ip()), Mapped::TooLong(1));
        let r = Remap::parse("f", "rg x xx\n").unwrap();
        let long = "x".repeat(MAX_NAME / 2 + 1);
        assert_eq!(r.apply(&long, false, ip()), Mapped::TooLong(1));
        let fits = "x".repeat(MAX_NAME / 2);
        assert_eq!(
            r.apply(&fits, false, ip()),
            Mapped::Name("x".repeat(MAX_NAME))
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let first = |text: &str| Remap::parse("map", text).unwrap_err().errors.remove(0);
        let e = first("r ^a b\nrq x y\n");
        assert_eq!((e.line, e.col), (2, 2), "{e}");
        assert!(
            e.to_string().starts_with("map:2:2: unknown remap flag 'q'"),
            "{e}"
        );
        let e = first("  r (unclosed x\n");
        assert_eq!((e.line, e.col), (1, 5), "{e}");
        assert_eq!(e.message, "bad regular expression: unclosed group");
        let e = first("r ^a\n");
        assert!(e.message.contains("needs a replacement"), "{e}");
        let e = first("r~ a b\n");
        assert!(e.message.contains("'~'"), "{e}");
    }

    #[test]
    fn every_bad_line_is_reported_in_order() {
        let text = "# three bad\nr ^/old/ /new/\nr ([a-z /x\nrz ^a b\nr ^ok ok\n\nr [z- y\n";
        let e = Remap::parse("three.remap", text).unwrap_err();
        let lines: Vec<usize> = e.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 7], "{e}");
        assert_eq!(e.to_string().lines().count(), 3, "{e}");
    }
}
