//! Journald priorities: sd-daemon(3)'s `<N>` line prefix when stderr is the journal.

use std::os::fd::AsRawFd;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// True when `JOURNAL_STREAM` ("DEV:INO") names the file stderr is.
pub(crate) fn stderr_is_journal() -> bool {
    let Ok(var) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let stderr = std::io::stderr();
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat fills the struct we own for a descriptor that stays open.
    if unsafe { libc::fstat(stderr.as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    names(&var, st.st_dev, st.st_ino)
}

fn names(var: &str, dev: u64, ino: u64) -> bool {
    let mut it = var.trim().splitn(2, ':');
    match (
        it.next().map(str::parse::<u64>),
        it.next().map(str::parse::<u64>),
    ) {
        (Some(Ok(d)), Some(Ok(i))) => d == dev && i == ino,
        _ => false,
    }
}

pub(crate) fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Prefixes each event formatted by the inner format with `<priority>`.
pub(crate) struct Journal<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for Journal<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::sync::{Arc, Mutex};

    #[test]
    fn journal_stream_matches_only_its_own_file() {
        let f = std::env::temp_dir();
        let m = std::fs::metadata(&f).expect("stat");
        let var = format!("{}:{}", m.dev(), m.ino());
        assert!(names(&var, m.dev(), m.ino()));
        assert!(!names(&var, m.dev(), m.ino() + 1));
        assert!(!names("", 1, 2));
        assert!(!names("12", 12, 0));
        assert!(!names("a:b", 0, 0));
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_carry_the_syslog_priority_and_no_timestamp() {
        use tracing_subscriber::fmt::format;
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .event_format(Journal(format().without_time().with_level(false)))
            .finish();
        tracing::subscriber::with_default(sub, || {
            tracing::error!(file = "x.conf", "bad");
            tracing::warn!("careful");
            tracing::info!("ready");
            tracing::debug!("detail");
            tracing::trace!("more");
        });
        let out = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf8");
        let prefixes: Vec<&str> = out.lines().map(|l| &l[..3]).collect();
        assert_eq!(prefixes, vec!["<3>", "<4>", "<6>", "<7>", "<7>"], "{out}");
        assert!(out
            .lines()
            .next()
            .is_some_and(|l| l.contains("bad") && l.contains("x.conf")));
        assert!(
            !out.contains("ERROR") && !out.contains("20"),
            "no level word, no date: {out}"
        );
    }
}
