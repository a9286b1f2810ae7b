//! The decisions of a release, as pure functions over the journal and what the directors
//! report: which hosts a batch still has, whether a batch may leave rotation (`min_healthy`),
//! what a failure says about the version, and which version a rollback goes to. No IO here:
//! [`crate::run`] gathers the facts and acts on the answers.

use std::collections::BTreeMap;

use crate::config::check_version;
use crate::directors::RsState;
use crate::exit::Kind;
use crate::state::Release;

/// Serving traffic: healthy, weighted, not drained.
pub fn in_service(s: &RsState) -> bool {
    s.healthy && s.weight > 0 && !s.maintenance
}

/// Out of rotation after a drain.
pub fn drained(s: &RsState) -> bool {
    s.weight == 0
}

/// Back after an enable: healthy at its configured weight.
pub fn back_in_rotation(s: &RsState) -> bool {
    in_service(s) && s.weight == s.configured_weight
}

/// One director's report on one virtual server.
pub struct Observed<'a> {
    pub director: &'a str,
    pub vs: &'a str,
    pub servers: &'a [(String, RsState)],
}

/// One host of a batch: (name, virtual server, real server).
pub type Member<'a> = (&'a str, &'a str, &'a str);

/// Whether `batch` may leave rotation: on every director, every virtual server it touches
/// keeps at least `min_healthy` real servers in service outside the batch.
pub fn admit(batch: &[Member], observed: &[Observed], min_healthy: usize) -> Result<(), String> {
    for o in observed {
        let leaving: Vec<&str> = batch
            .iter()
            .filter(|(_, vs, _)| *vs == o.vs)
            .map(|(_, _, rs)| *rs)
            .collect();
        if leaving.is_empty() {
            continue;
        }
        let remaining = o
            .servers
            .iter()
            .filter(|(rs, s)| !leaving.contains(&rs.as_str()) && in_service(s))
            .count();
        if remaining < min_healthy {
            return Err(format!(
                "taking {} out would leave {remaining} real server(s) of {} in service on {} (min_healthy = {min_healthy}); use a smaller --batch or bring the others back first",
                batch.iter().map(|(n, _, _)| *n).collect::<Vec<_>>().join(", "),
                o.vs,
                o.director
            ));
        }
    }
    Ok(())
}

/// What a failed host says about the version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// It failed once it was on the new version (deploy, switch, start, health): the version
    /// is bad and never a rollback target.
    Version,
    /// It failed around the version (a director, stop, ssh, the journal): fix that and retry.
    Environment,
}

/// The fault of a host that failed at `step`.
pub fn classify(step: &str) -> Fault {
    match step {
        "deploy" | "switch" | "start" | "health" => Fault::Version,
        _ => Fault::Environment,
    }
}

/// The fault of a batch whose hosts failed at `steps`: the version's if any host's was.
pub fn batch_fault<'a>(steps: impl IntoIterator<Item = &'a str>) -> Fault {
    if steps.into_iter().any(|s| classify(s) == Fault::Version) {
        Fault::Version
    } else {
        Fault::Environment
    }
}

/// The exit kind of a failed batch: rolled back, or not completely (a host unreachable, or
/// something else in the way).
pub fn failed_batch_kind(rollback_complete: bool, unreachable: bool) -> Kind {
    match (rollback_complete, unreachable) {
        (true, _) => Kind::RolledBack,
        (false, true) => Kind::Unreachable,
        (false, false) => Kind::Failed,
    }
}

/// The hosts of `batch` not done yet (for `resume`).
pub fn pending<'a>(batch: &'a [String], done: &BTreeMap<String, String>) -> Vec<&'a str> {
    batch
        .iter()
        .filter(|h| !done.contains_key(*h))
        .map(String::as_str)
        .collect()
}

/// The release that did not finish, if any (the last one).
pub fn unfinished(releases: &[Release]) -> Option<&Release> {
    releases.iter().rev().find(|r| r.finished.is_none())
}

/// The version `host` goes back to when its batch fails: what it had before the release.
pub fn restore_version(rel: &Release, host: &str) -> Option<String> {
    rel.before.get(host).cloned().flatten()
}

/// The version `release rollback [VERSION]` goes to. Given: that one (`APP-` optional), unless
/// it is bad or invalid. Not given: the version most hosts had before the last successful
/// release, never a bad or invalid one, never that release's own version.
pub fn rollback_target(
    app: &str,
    releases: &[Release],
    bad: &[String],
    requested: Option<&str>,
) -> Result<String, String> {
    let target = match requested {
        Some(v) => {
            let v = v.strip_prefix(&format!("{app}-")).unwrap_or(v);
            check_version(v)?;
            v.to_string()
        }
        None => {
            let last_ok = releases
                .iter()
                .rev()
                .find(|r| r.finished.as_ref().is_some_and(|f| f.0))
                .ok_or("no successful release in the journal to roll back from; give the version: `release rollback VERSION`")?;
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for v in last_ok.before.values().flatten() {
                if *v != last_ok.version && !bad.contains(v) && check_version(v).is_ok() {
                    *counts.entry(v.as_str()).or_default() += 1;
                }
            }
            counts
                .into_iter()
                .max_by_key(|(_, n)| *n)
                .map(|(v, _)| v.to_string())
                .ok_or("the last release has no earlier good version to go back to; give one: `release rollback VERSION`")?
        }
    };
    if bad.contains(&target) {
        return Err(format!(
            "{app}-{target} is marked bad (a release of it failed); roll back to another version"
        ));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(healthy: bool, weight: u64, maintenance: bool) -> RsState {
        RsState {
            weight,
            configured_weight: 1,
            healthy,
            maintenance,
            active: 0,
        }
    }

    fn rel(version: &str, ok: Option<bool>, before: &[(&str, Option<&str>)]) -> Release {
        Release {
            id: format!("r-{version}"),
            version: version.into(),
            before: before
                .iter()
                .map(|(h, v)| (h.to_string(), v.map(str::to_string)))
                .collect(),
            finished: ok.map(|ok| (ok, String::new())),
            ..Release::default()
        }
    }

    #[test]
    fn admission_keeps_min_healthy_on_every_director() {
        let servers = vec![
            ("a:80".to_string(), rs(true, 1, false)),
            ("b:80".to_string(), rs(true, 1, false)),
            ("c:80".to_string(), rs(false, 1, false)),
        ];
        let drained_b = vec![
            ("a:80".to_string(), rs(true, 1, false)),
            ("b:80".to_string(), rs(true, 0, true)),
            ("c:80".to_string(), rs(true, 1, false)),
        ];
        let obs = |s| Observed {
            director: "d1",
            vs: "v:80",
            servers: s,
        };
        let batch_a = [("h1", "v:80", "a:80")];
        assert!(admit(&batch_a, &[obs(&servers)], 1).is_ok());
        // c is unhealthy: only b is left
        let e = admit(&batch_a, &[obs(&servers)], 2).unwrap_err();
        assert!(
            e.contains("leave 1 real server(s) of v:80 in service on d1"),
            "{e}"
        );
        // on a second director b is drained: a and c are not enough for 3
        let two = [obs(&servers), obs(&drained_b)];
        assert!(admit(&[], &two, 5).is_ok());
        let e = admit(&[("h3", "v:80", "c:80")], &two, 2).unwrap_err();
        assert!(e.contains("leave 1"), "{e}");
        // another virtual server's hosts do not count
        assert!(admit(&[("h9", "w:80", "a:80")], &[obs(&servers)], 3).is_ok());
        assert!(drained(&rs(true, 0, true)) && !drained(&rs(true, 1, false)));
        assert!(back_in_rotation(&rs(true, 1, false)) && !back_in_rotation(&rs(true, 1, true)));
    }

    #[test]
    fn failures_classify_the_version_or_the_surroundings() {
        for s in ["deploy", "switch", "start", "health"] {
            assert_eq!(classify(s), Fault::Version, "{s}");
        }
        for s in ["drain", "stop", "enable", "journal", "internal"] {
            assert_eq!(classify(s), Fault::Environment, "{s}");
        }
        assert_eq!(batch_fault(["drain", "health"]), Fault::Version);
        assert_eq!(batch_fault(["drain", "stop"]), Fault::Environment);
        assert_eq!(failed_batch_kind(true, true), Kind::RolledBack);
        assert_eq!(failed_batch_kind(false, true), Kind::Unreachable);
        assert_eq!(failed_batch_kind(false, false), Kind::Failed);
    }

    #[test]
    fn rollback_goes_to_the_majority_before_never_bad_or_invalid() {
        let releases = vec![
            rel("1.3", Some(true), &[("h1", None)]),
            rel(
                "1.4",
                Some(true),
                &[
                    ("h1", Some("1.3")),
                    ("h2", Some("1.3")),
                    ("h3", Some("1.2")),
                ],
            ),
            rel("1.5", Some(false), &[("h1", Some("1.4"))]),
        ];
        let bad = vec!["1.5".to_string()];
        assert_eq!(rollback_target("w", &releases, &bad, None).unwrap(), "1.3");
        // 1.3 marked bad since: the next good one
        let bad2 = vec!["1.5".to_string(), "1.3".to_string()];
        assert_eq!(rollback_target("w", &releases, &bad2, None).unwrap(), "1.2");
        assert!(rollback_target("w", &releases, &bad, Some("w-1.5"))
            .unwrap_err()
            .contains("marked bad"));
        assert_eq!(
            rollback_target("w", &releases, &bad, Some("w-1.2")).unwrap(),
            "1.2"
        );
        assert!(rollback_target("w", &releases, &bad, Some("1;touch X"))
            .unwrap_err()
            .contains("not a valid version"));
        // a journal whose before versions are hostile or missing offers nothing
        let hostile = vec![rel(
            "2.0",
            Some(true),
            &[("h1", Some("1;id")), ("h2", None)],
        )];
        assert!(rollback_target("w", &hostile, &[], None)
            .unwrap_err()
            .contains("no earlier good version"));
        assert!(rollback_target("w", &[], &[], None)
            .unwrap_err()
            .contains("no successful release"));
    }

    #[test]
    fn resume_picks_up_the_unfinished_release_and_its_pending_hosts() {
        let mut r = rel("1.6", None, &[("h1", Some("1.4"))]);
        r.done.insert("h1".into(), "1.6".into());
        let releases = vec![rel("1.4", Some(true), &[]), r];
        let u = unfinished(&releases).unwrap();
        assert_eq!(u.version, "1.6");
        let batch = vec!["h1".to_string(), "h2".to_string()];
        assert_eq!(pending(&batch, &u.done), ["h2"]);
        assert_eq!(restore_version(u, "h1").as_deref(), Some("1.4"));
        assert_eq!(restore_version(u, "h2"), None);
        assert!(unfinished(&releases[..1]).is_none());
    }
}
