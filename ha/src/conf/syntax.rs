//! keepalived.conf syntax: lines of words and `{ }` blocks, `!`/`#` comments, quoted strings,
//! `include` with globs, `$NAME=value` definitions with `$NAME`/`${NAME}` substitution, and
//! `@ID`/`@^ID` lines kept only on the node whose config id matches (or does not).
//! Produces a tree of [`Node`]s that keep their positions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use opsflow_common::diag::{error, warning, Diag, Pos};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub pos: Pos,
}

/// One statement: a keyword, its arguments, and a block if it opened one.
#[derive(Clone, Debug)]
pub struct Node {
    pub key: Word,
    pub args: Vec<Word>,
    pub block: Option<Vec<Node>>,
}

impl Node {
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.args.get(i).map(|w| w.text.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(Word),
    Open(Pos),
    Close(Pos),
    Eol,
}

/// Options for reading: the node's config id for `@ID` lines.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    pub config_id: String,
}

struct Reader<'a> {
    opts: &'a ReadOptions,
    vars: HashMap<String, String>,
    toks: Vec<Tok>,
    diags: Vec<Diag>,
    depth: usize,
}

fn wildcard(pat: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pat.chars().collect(), s.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Expands a glob in the last path component (`/etc/keepalived/conf.d/*.conf`).
fn expand_glob(path: &Path) -> Vec<PathBuf> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return vec![path.to_path_buf()];
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| wildcard(&name, &e.file_name().to_string_lossy()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

impl Reader<'_> {
    fn file(&mut self, path: &Path, from: Option<&Pos>) {
        let text = match opsflow_common::diag::read_text(path) {
            Ok(t) => t,
            Err(u) => {
                let hint = if from.is_some() {
                    ""
                } else {
                    "give keepalived.conf's path with -f or --config"
                };
                self.diags
                    .push(u.diag(&path.display().to_string(), from, hint));
                return;
            }
        };
        self.text(Arc::from(path.display().to_string()), &text, path.parent());
    }

    fn substitute(&self, line: &str) -> String {
        if !line.contains('$') {
            return line.to_string();
        }
        let mut out = String::new();
        let mut rest = line;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (name, len) = if let Some(inner) = after.strip_prefix('{') {
                match inner.find('}') {
                    Some(end) => (&inner[..end], end + 2),
                    None => ("", 0),
                }
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            };
            match self.vars.get(name) {
                Some(v) if !name.is_empty() => {
                    out.push_str(v);
                    rest = &after[len..];
                }
                _ => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    fn text(&mut self, file: Arc<str>, text: &str, dir: Option<&Path>) {
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let pos = |col: usize| Pos {
                file: file.clone(),
                line: line_no,
                col,
            };
            let trimmed = raw.trim_start();
            let indent = raw.len() - trimmed.len();
            // $NAME=value definitions
            if let Some(def) = trimmed.strip_prefix('$') {
                if let Some((name, value)) = def.split_once('=') {
                    if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !name.is_empty()
                    {
                        let v = self.substitute(value.trim());
                        self.vars.insert(name.to_string(), v);
                        continue;
                    }
                }
            }
            let mut line = self.substitute(raw);
            let mut offset = 0;
            // @ID and @^ID conditional lines
            if let Some(cond) = line.trim_start().strip_prefix('@') {
                let (neg, rest) = match cond.strip_prefix('^') {
                    Some(r) => (true, r),
                    None => (false, cond),
                };
                let id_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                let id = &rest[..id_end];
                let keep = (id == self.opts.config_id) != neg;
                if !keep {
                    continue;
                }
                let consumed = line.len() - rest[id_end..].len();
                offset = consumed;
                line = rest[id_end..].to_string();
            }
            let (words, open_quote) = split_words(&line);
            if let Some(col) = open_quote {
                self.diags.push(warning(
                    &pos(col + offset + 1),
                    "this quoted string has no closing '\"' (keepalived reports it too); it is read to the end of the line: close it",
                ));
            }
            if words.is_empty() {
                continue;
            }
            if words[0].0 == "include" {
                let Some((target, tcol)) = words.get(1) else {
                    self.diags.push(error(
                        &pos(indent + 1),
                        "include needs a file name or pattern",
                    ));
                    continue;
                };
                let mut p = PathBuf::from(target);
                if p.is_relative() {
                    if let Some(d) = dir {
                        p = d.join(p);
                    }
                }
                if self.depth > 16 {
                    self.diags.push(error(
                        &pos(tcol + offset + 1),
                        "includes nested more than 16 deep (a loop?)",
                    ));
                    continue;
                }
                let files = expand_glob(&p);
                if files.is_empty() {
                    self.diags.push(warning(
                        &pos(tcol + offset + 1),
                        format!("include {target}: no file matches"),
                    ));
                }
                self.depth += 1;
                for f in files {
                    self.file(&f, Some(&pos(tcol + offset + 1)));
                }
                self.depth -= 1;
                continue;
            }
            for (w, col) in words {
                let p = pos(col + offset + 1);
                match w.as_str() {
                    "{" => self.toks.push(Tok::Open(p)),
                    "}" => self.toks.push(Tok::Close(p)),
                    _ => self.toks.push(Tok::Word(Word { text: w, pos: p })),
                }
            }
            self.toks.push(Tok::Eol);
        }
    }
}

/// Splits a line into words with their 0-based columns: comments (`!`, `#` outside quotes)
/// end the line, quotes group words, braces are words of their own. Also returns the column
/// of a quote that is not closed on the line.
fn split_words(line: &str) -> (Vec<(String, usize)>, Option<usize>) {
    let mut out = Vec::new();
    let mut open_quote = None;
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (col, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '!' || c == '#' {
            break;
        }
        if c == '{' || c == '}' {
            out.push((c.to_string(), col));
            i += 1;
            continue;
        }
        if c == '"' {
            let mut w = String::new();
            i += 1;
            while i < chars.len() && chars[i].1 != '"' {
                if chars[i].1 == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                w.push(chars[i].1);
                i += 1;
            }
            if i >= chars.len() {
                open_quote = Some(col);
            }
            i += 1; // closing quote
            out.push((w, col));
            continue;
        }
        let mut w = String::new();
        while i < chars.len() {
            let c = chars[i].1;
            if c.is_whitespace() || c == '{' || c == '}' || c == '"' {
                break;
            }
            w.push(c);
            i += 1;
        }
        out.push((w, col));
    }
    (out, open_quote)
}

/// The deepest blocks may nest. [`block`] recurses on each level, so a file nested thousands
/// deep would overflow the stack and abort the daemon (also on a reload); keepalived's own
/// configs nest four deep.
const MAX_NESTING: usize = 64;

/// The statements of the whole token list; one diagnostic for blocks left open at the end.
fn build(toks: &[Tok], diags: &mut Vec<Diag>) -> Vec<Node> {
    let mut i = 0;
    let mut unclosed = Vec::new();
    let nodes = block(toks, &mut i, None, diags, &mut unclosed);
    // innermost first: the block the file ended in
    if let Some((word, outer)) = unclosed.split_first() {
        let mut msg = format!(
            "end of file inside the block of '{}' opened here: a '}}' is missing",
            word.text
        );
        if !outer.is_empty() {
            let names: Vec<String> = outer
                .iter()
                .map(|w| {
                    if w.pos.file == word.pos.file {
                        format!("'{}' at {}:{}", w.text, w.pos.line, w.pos.col)
                    } else {
                        format!("'{}' at {}", w.text, w.pos)
                    }
                })
                .collect();
            msg.push_str(&format!(" (also for {})", names.join(", ")));
        }
        diags.push(error(&word.pos, msg));
    }
    nodes
}

/// Statements up to the `}` that closes the block opened by `open` (the top level when
/// `None`); at the end of the tokens, `open` and the blocks around it go into `unclosed`.
fn block(
    toks: &[Tok],
    i: &mut usize,
    open: Option<(&Word, usize)>,
    diags: &mut Vec<Diag>,
    unclosed: &mut Vec<Word>,
) -> Vec<Node> {
    let depth = open.map_or(0, |(_, d)| d);
    let mut nodes = Vec::new();
    // the block a `{` opens, or an error and a skip past it when that is too deep
    let mut sub = |i: &mut usize, key: &Word, open_pos: &Pos, diags: &mut Vec<Diag>| {
        if depth + 1 > MAX_NESTING {
            diags.push(error(
                open_pos,
                format!("blocks nested more than {MAX_NESTING} deep: a '}}' is probably missing"),
            ));
            skip_block(toks, i);
            return Vec::new();
        }
        block(toks, i, Some((key, depth + 1)), diags, unclosed)
    };
    while *i < toks.len() {
        match &toks[*i] {
            Tok::Eol => *i += 1,
            Tok::Close(p) => {
                *i += 1;
                if open.is_none() {
                    diags.push(error(p, "'}' without a matching '{'"));
                    continue;
                }
                return nodes;
            }
            Tok::Open(p) => {
                diags.push(error(p, "'{' without a keyword before it"));
                *i += 1;
                let key = Word {
                    text: "{".into(),
                    pos: p.clone(),
                };
                let _ = sub(i, &key, p, diags);
            }
            Tok::Word(key) => {
                let key = key.clone();
                *i += 1;
                let mut args = Vec::new();
                let mut body = None;
                while *i < toks.len() {
                    match &toks[*i] {
                        Tok::Word(w) => {
                            args.push(w.clone());
                            *i += 1;
                        }
                        Tok::Open(p) => {
                            *i += 1;
                            body = Some(sub(i, &key, p, diags));
                            break;
                        }
                        Tok::Eol | Tok::Close(_) => break,
                    }
                }
                // `key arg` on one line and `{` on the next is common in hand-written files
                if body.is_none() {
                    let mut j = *i;
                    while j < toks.len() && toks[j] == Tok::Eol {
                        j += 1;
                    }
                    if let Some(Tok::Open(p)) = toks.get(j) {
                        *i = j + 1;
                        body = Some(sub(i, &key, p, diags));
                    }
                }
                nodes.push(Node {
                    key,
                    args,
                    block: body,
                });
            }
        }
    }
    if let Some((word, _)) = open {
        unclosed.push(word.clone());
    }
    nodes
}

/// Past the `}` that closes the block whose `{` was just read (or to the end).
fn skip_block(toks: &[Tok], i: &mut usize) {
    let mut depth = 1usize;
    while *i < toks.len() {
        match toks[*i] {
            Tok::Open(_) => depth += 1,
            Tok::Close(_) => {
                depth -= 1;
                if depth == 0 {
                    *i += 1;
                    return;
                }
            }
            _ => {}
        }
        *i += 1;
    }
}

impl<'a> Reader<'a> {
    fn new(opts: &'a ReadOptions) -> Reader<'a> {
        Reader {
            opts,
            vars: HashMap::new(),
            toks: Vec::new(),
            diags: Vec::new(),
            depth: 0,
        }
    }

    /// The statements read so far, and every diagnostic.
    fn finish(self) -> (Vec<Node>, Vec<Diag>) {
        let mut diags = self.diags;
        let nodes = build(&self.toks, &mut diags);
        (nodes, diags)
    }
}

/// Reads a config file (with includes) into statements; diagnostics carry positions.
pub fn read(path: &Path, opts: &ReadOptions) -> (Vec<Node>, Vec<Diag>) {
    let mut r = Reader::new(opts);
    r.file(path, None);
    r.finish()
}

/// Reads config text (tests).
pub fn read_str(name: &str, text: &str, opts: &ReadOptions) -> (Vec<Node>, Vec<Diag>) {
    let mut r = Reader::new(opts);
    r.text(Arc::from(name), text, None);
    r.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(id: &str) -> ReadOptions {
        ReadOptions {
            config_id: id.into(),
        }
    }

    #[test]
    fn blocks_comments_quotes_and_positions() {
        let (n, d) = read_str(
            "k.conf",
            "! comment\nvrrp_instance VI_1 {\n  state MASTER # trailing\n  notify_master \"/etc/keepalived/notify.sh master\"\n  track_script { chk }\n}\n",
            &opts("x"),
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(n.len(), 1);
        let vi = &n[0];
        assert_eq!(vi.key.text, "vrrp_instance");
        assert_eq!(vi.arg(0), Some("VI_1"));
        let b = vi.block.as_ref().unwrap();
        assert_eq!(b[0].key.pos.to_string(), "k.conf:3:3");
        assert_eq!(b[1].arg(0), Some("/etc/keepalived/notify.sh master"));
        assert_eq!(b[2].block.as_ref().unwrap()[0].key.text, "chk");
    }

    #[test]
    fn variables_and_conditional_lines() {
        let (n, d) = read_str(
            "k.conf",
            "$PRIO=150\n@lb1 priority $PRIO\n@^lb1 priority 100\nrouter_id ${PRIO}x\n",
            &opts("lb1"),
        );
        assert!(d.is_empty());
        assert_eq!(n.len(), 2);
        assert_eq!(
            (n[0].key.text.as_str(), n[0].arg(0)),
            ("priority", Some("150"))
        );
        assert_eq!(n[0].key.pos.col, 6);
        assert_eq!(n[1].arg(0), Some("150x"));
        let (n, _) = read_str(
            "k.conf",
            "@lb1 priority 150\n@^lb1 priority 100\n",
            &opts("lb2"),
        );
        assert_eq!(n[0].arg(0), Some("100"));
    }

    #[test]
    fn unbalanced_braces_are_errors() {
        let (_, d) = read_str("k.conf", "global_defs {\n router_id a\n", &opts(""));
        assert!(d[0].to_string().contains("a '}' is missing"), "{d:?}");
        let (_, d) = read_str("k.conf", "}\n", &opts(""));
        assert!(d[0].to_string().starts_with("k.conf:1:1:"), "{d:?}");
    }

    #[test]
    fn an_unclosed_quote_is_a_warning_at_the_quote() {
        let (n, d) = read_str(
            "k.conf",
            "vrrp_script s {\n  script \"test -f /x\n}\n",
            &opts(""),
        );
        let d: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].starts_with("k.conf:2:10: warning:"), "{d:?}");
        assert!(d[0].contains("no closing '\"'"), "{d:?}");
        let script = &n[0].block.as_ref().unwrap()[0];
        assert_eq!(script.arg(0), Some("test -f /x"));
    }

    #[test]
    fn a_truncated_file_is_one_error_at_the_innermost_open_block() {
        let text = "vrrp_instance VI_1 {\n  state MASTER\n  virtual_ipaddress {\n    10.0.0.1/24\n";
        let (_, d) = read_str("k.conf", text, &opts(""));
        let d: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            d,
            ["k.conf:3:3: end of file inside the block of 'virtual_ipaddress' opened here: a '}' is missing (also for 'vrrp_instance' at 1:1)"],
        );
    }

    #[test]
    fn nesting_past_the_limit_is_an_error_not_a_stack_overflow() {
        let deep = 50_000;
        let text = "global_defs {\n".repeat(deep) + &"}\n".repeat(deep) + "vrrp_script s {\n}\n";
        // a spawned thread's 2 MiB stack, where a reload runs
        let (nodes, d) = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || read_str("k.conf", &text, &opts("")))
            .unwrap()
            .join()
            .expect("the reader overflowed or panicked");
        let d: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            d,
            [format!("k.conf:{}:13: blocks nested more than {MAX_NESTING} deep: a '}}' is probably missing", MAX_NESTING + 1)],
        );
        // the statement after the deep one is read
        assert_eq!(
            nodes.len(),
            2,
            "{:?}",
            nodes.iter().map(|n| &n.key.text).collect::<Vec<_>>()
        );
        let ok = MAX_NESTING;
        let text = "global_defs {\n".repeat(ok) + &"}\n".repeat(ok);
        assert!(read_str("k.conf", &text, &opts("")).1.is_empty());
    }

    #[test]
    fn globs() {
        assert!(wildcard("*.conf", "a.conf"));
        assert!(!wildcard("*.conf", "a.conf.bak"));
        assert!(wildcard("vi_?.conf", "vi_1.conf"));
    }
}
