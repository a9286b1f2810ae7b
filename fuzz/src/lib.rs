//! A small mutational fuzzer for the decoders and parsers that read network and config input
//! (DHCP and TFTP packets, VRRP adverts, dhcpd.conf, keepalived.conf, remap rules, the
//! inventory), run by `cargo test` for a bounded time.
//!
//! Why hand-written: cargo-fuzz and bolero's libFuzzer engine need a nightly toolchain, and this
//! project builds with stable only. This engine has no coverage feedback; it starts from the
//! corpus kept in `fuzz/corpus/TARGET/` (real files and packets), applies byte- and token-level
//! mutations (flips, interesting values, insertions, deletions, duplications, splices of two
//! seeds, dictionary tokens) and reports every input that panics or takes longer than the hang
//! limit. Each run prints its seed; `OPSFLOW_FUZZ_SEED=N` replays a run, `OPSFLOW_FUZZ_SECS`
//! sets the time per target (default 3 s). An input that failed is written under
//! `CARGO_TARGET_TMPDIR/fuzz-failures/TARGET/` (the system temporary directory outside
//! integration tests); copy it into the corpus once fixed, and every
//! later run replays it first.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// splitmix64: small, fast, good enough to drive mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// What one target is fed.
pub struct Target<'a> {
    pub name: &'a str,
    /// Tokens worth inserting (keywords, option codes, separators).
    pub dictionary: &'a [&'a [u8]],
    /// Inputs never grow past this.
    pub max_len: usize,
}

/// The outcome of a run.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub executions: u64,
    pub failures: Vec<String>,
}

/// The corpus of a target: every file in `fuzz/corpus/NAME/`, sorted by name.
pub fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the fuzz corpus {} is missing: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "the fuzz corpus {} is empty",
        dir.display()
    );
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            (p, data)
        })
        .collect()
}

const INTERESTING: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xfe, 0xff, b'\n', b' ', b'"', b'\\', b'{', b'}',
];

/// One to four random mutations of `input`, splicing from `seeds` and `dict`.
pub fn mutate(
    rng: &mut Rng,
    input: &[u8],
    seeds: &[Vec<u8>],
    dict: &[&[u8]],
    max: usize,
) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = b.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                b[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let fill: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                b.splice(i..i, fill);
            }
            3 if len > 1 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                b.drain(i..i + n);
            }
            4 if len > 1 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let chunk = b[i..i + n].to_vec();
                let at = rng.below(len + 1);
                b.splice(at..at, chunk);
            }
            5 if !seeds.is_empty() => {
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let cut = rng.below(len + 1);
                    let from = rng.below(other.len());
                    b.truncate(cut);
                    b.extend_from_slice(&other[from..]);
                }
            }
            6 if !dict.is_empty() => {
                let t = dict[rng.below(dict.len())];
                let at = rng.below(len + 1);
                b.splice(at..at, t.iter().copied());
            }
            7 if len > 0 => b.truncate(rng.below(len)),
            _ if len >= 2 => {
                // a length or count field: overwrite two bytes with an extreme value
                let i = rng.below(len - 1);
                let v: u16 = [0, 1, 0xff, 0x100, 0x7fff, 0xffff][rng.below(6)];
                b[i..i + 2].copy_from_slice(&v.to_be_bytes());
            }
            _ => {}
        }
    }
    b.truncate(max);
    b
}

fn seed_from_env() -> u64 {
    match std::env::var("OPSFLOW_FUZZ_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("OPSFLOW_FUZZ_SEED={s}: not a number")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

fn secs_from_env() -> f64 {
    std::env::var("OPSFLOW_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(3.0)
}

fn save(target: &str, data: &[u8]) -> PathBuf {
    // integration tests get CARGO_TARGET_TMPDIR; elsewhere (the engine's own unit tests) the
    // system's temporary directory, never the source tree
    let dir = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("fuzz-failures")
        .join(target);
    let _ = std::fs::create_dir_all(&dir);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in data {
        h = (h ^ x as u64).wrapping_mul(0x100_0000_01b3);
    }
    let p = dir.join(format!("{h:016x}"));
    let _ = std::fs::write(&p, data);
    p
}

/// Settings of one run.
pub struct Run<'a> {
    pub name: &'a str,
    pub seeds: Vec<Vec<u8>>,
    pub dictionary: &'a [&'a [u8]],
    pub max_len: usize,
    pub budget: Duration,
    pub seed: u64,
    /// One input running longer than this is a hang.
    pub hang: Duration,
}

/// Panics on fuzz worker threads are reported with their input, not printed; every other
/// thread keeps the default hook (the test harness shows those messages).
fn quiet_workers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let worker = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("fuzz-"));
            if !worker {
                default(info);
            }
        }));
    });
}

/// Runs `f` on every seed, then on mutations of them, until the budget is spent. Panics and
/// hangs are collected into the report, each input saved.
pub fn run<F>(cfg: Run, f: F) -> Report
where
    F: Fn(&[u8]) + Send + Sync + 'static,
{
    quiet_workers();
    let Run {
        name,
        seeds,
        dictionary,
        max_len,
        budget,
        seed,
        hang,
    } = cfg;
    let current = Arc::new(Mutex::new(Vec::<u8>::new()));
    let started = Arc::new(AtomicU64::new(0)); // ms since t0 when the current input started
    let execs = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let name = name.to_string();
    let dict: Vec<Vec<u8>> = dictionary.iter().map(|d| d.to_vec()).collect();
    let worker = {
        let (current, started, execs, failures, done) = (
            current.clone(),
            started.clone(),
            execs.clone(),
            failures.clone(),
            done.clone(),
        );
        let name = name.clone();
        std::thread::Builder::new()
            .name(format!("fuzz-{name}"))
            .spawn(move || {
                let dict: Vec<&[u8]> = dict.iter().map(|d| d.as_slice()).collect();
                let mut rng = Rng::new(seed);
                let mut i = 0usize;
                loop {
                    let input = if i < seeds.len() {
                        seeds[i].clone()
                    } else if seeds.is_empty() || t0.elapsed() >= budget {
                        break;
                    } else {
                        let base = &seeds[rng.below(seeds.len())];
                        mutate(&mut rng, base, &seeds, &dict, max_len)
                    };
                    i += 1;
                    if let Ok(mut c) = current.lock() {
                        c.clone_from(&input);
                    }
                    started.store(t0.elapsed().as_millis() as u64, Ordering::SeqCst);
                    let r = panic::catch_unwind(AssertUnwindSafe(|| f(&input)));
                    execs.fetch_add(1, Ordering::SeqCst);
                    if let Err(p) = r {
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "panic".into());
                        if let Ok(mut fl) = failures.lock() {
                            // the first 20 are reported and saved; more of one bug add nothing
                            if fl.len() < 20 {
                                let path = save(&name, &input);
                                fl.push(format!(
                                    "panic: {msg} (input saved to {})",
                                    path.display()
                                ));
                            }
                        }
                    }
                }
                done.store(true, Ordering::SeqCst);
            })
    };
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            return Report {
                seed,
                executions: 0,
                failures: vec![format!("cannot start the worker: {e}")],
            }
        }
    };
    // watchdog: a single input running longer than `hang` is a hang; the worker is left behind
    let mut hung = None;
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
        let now = t0.elapsed().as_millis() as u64;
        let since = now.saturating_sub(started.load(Ordering::SeqCst));
        if !done.load(Ordering::SeqCst) && since > hang.as_millis() as u64 {
            let input = current.lock().map(|c| c.clone()).unwrap_or_default();
            hung = Some(format!(
                "hang: one input ran longer than {:?} (input saved to {})",
                hang,
                save(&name, &input).display()
            ));
            break;
        }
    }
    if hung.is_none() {
        let _ = worker.join();
    }
    let mut fl = failures.lock().map(|f| f.clone()).unwrap_or_default();
    fl.extend(hung);
    Report {
        seed,
        executions: execs.load(Ordering::SeqCst),
        failures: fl,
    }
}

/// Runs a target and fails the test with every failure and the seed to replay it.
pub fn check<F>(target: Target, f: F)
where
    F: Fn(&[u8]) + Send + Sync + 'static,
{
    let r = run(
        Run {
            name: target.name,
            seeds: corpus(target.name).into_iter().map(|(_, d)| d).collect(),
            dictionary: target.dictionary,
            max_len: target.max_len,
            budget: Duration::from_secs_f64(secs_from_env()),
            seed: seed_from_env(),
            hang: Duration::from_secs(5),
        },
        f,
    );
    println!(
        "fuzz {}: {} executions, seed {} (OPSFLOW_FUZZ_SEED={} replays this run)",
        target.name, r.executions, r.seed, r.seed
    );
    assert!(
        r.failures.is_empty(),
        "fuzz {} found {} failure(s) with seed {}:\n{}",
        target.name,
        r.failures.len(),
        r.seed,
        r.failures.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_within_the_limit_and_differ() {
        let mut rng = Rng::new(7);
        let seed = b"subnet 10.0.0.0 netmask 255.0.0.0 { }".to_vec();
        let mut changed = 0;
        for _ in 0..1000 {
            let m = mutate(
                &mut rng,
                &seed,
                std::slice::from_ref(&seed),
                &[b"range"],
                64,
            );
            assert!(m.len() <= 64);
            if m != seed[..seed.len().min(64)] {
                changed += 1;
            }
        }
        assert!(
            changed > 900,
            "only {changed} of 1000 mutations changed the input"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_mutations() {
        let seeds = vec![b"abcdef".to_vec()];
        let a: Vec<Vec<u8>> = {
            let mut r = Rng::new(42);
            (0..50)
                .map(|_| mutate(&mut r, &seeds[0], &seeds, &[], 100))
                .collect()
        };
        let mut r = Rng::new(42);
        let b: Vec<Vec<u8>> = (0..50)
            .map(|_| mutate(&mut r, &seeds[0], &seeds, &[], 100))
            .collect();
        assert_eq!(a, b);
    }

    fn quick(seeds: Vec<Vec<u8>>, hang: Duration) -> Run<'static> {
        Run {
            name: "selftest",
            seeds,
            dictionary: &[b"\xab"],
            max_len: 64,
            budget: Duration::from_secs(3),
            seed: 1,
            hang,
        }
    }

    #[test]
    fn a_panicking_input_is_found_and_saved() {
        let r = run(
            quick(vec![b"hello world".to_vec()], Duration::from_secs(10)),
            |d: &[u8]| {
                assert!(!d.contains(&0xab), "found the byte");
            },
        );
        assert!(r.executions > 1);
        assert!(
            r.failures
                .iter()
                .any(|f| f.contains("found the byte") && f.contains("fuzz-failures")),
            "{:?}",
            r.failures
        );
    }

    #[test]
    fn a_hanging_input_is_reported() {
        let r = run(
            quick(
                vec![b"ok".to_vec(), b"hang".to_vec()],
                Duration::from_millis(300),
            ),
            |d: &[u8]| {
                if d == b"hang" {
                    // blocks far past the hang limit, as a parser stuck in a loop would
                    let (_tx, rx) = std::sync::mpsc::channel::<()>();
                    let _ = rx.recv_timeout(Duration::from_secs(30));
                }
            },
        );
        assert!(
            r.failures.iter().any(|f| f.starts_with("hang")),
            "{:?}",
            r.failures
        );
    }

    #[test]
    fn a_clean_target_reports_nothing() {
        let r = run(
            quick(vec![b"abc".to_vec()], Duration::from_secs(10)),
            |d: &[u8]| {
                let _ = std::str::from_utf8(d);
            },
        );
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert!(r.executions > 100);
    }
}
