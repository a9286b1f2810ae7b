//! What tracking reads from the system (the decisions are in [`crate::vrrp`]): the processes
//! running now, for `track_process`.

use crate::vrrp::Proc;

/// Every process in `/proc`: its `comm` and its argv (a kernel thread has an empty argv).
/// Processes that exit while being read are skipped.
pub fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| {
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let argv = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some(Proc {
                comm: comm.trim_end_matches('\n').to_string(),
                argv,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_is_listed() {
        let me = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
        let all = super::processes();
        assert!(
            all.iter().any(|p| p.comm == me.trim_end()),
            "{} processes",
            all.len()
        );
    }
}
