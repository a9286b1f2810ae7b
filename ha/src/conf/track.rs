//! Tracking in the model: track_interface/track_script/track_file items, what a sync group
//! does to its members' tracking, FILE_CHECK's track_file, and keepalived's script checks.

use super::syntax::{error, warning, Diag, Node, Pos};
use super::{lvs, num, ranged, string, Config, TrackFile, TrackProcess, TrackRef, TrackScript};

/// keepalived's script checks at load: the script user, and every script it would disable
/// (not found/accessible, insecure under `enable_script_security`), named with its position.
/// A disabled script is a warning, not an error: keepalived runs on without it.
pub(super) fn vet_scripts(cfg: &mut Config, nodes: &[Node], diags: &mut Vec<Diag>) {
    let notifies: Vec<(Pos, String, String)> = cfg
        .instances
        .iter()
        .map(|i| {
            (
                i.pos.clone(),
                format!("vrrp_instance {}", i.name),
                &i.notify,
            )
        })
        .chain(cfg.sync_groups.iter().map(|g| {
            (
                g.pos.clone(),
                format!("vrrp_sync_group {}", g.name),
                &g.notify,
            )
        }))
        .flat_map(|(pos, owner, n)| {
            [
                ("notify_master", &n.master),
                ("notify_backup", &n.backup),
                ("notify_fault", &n.fault),
                ("notify_stop", &n.stop),
                ("notify", &n.generic),
            ]
            .into_iter()
            .filter_map(|(key, line)| Some((key, line.as_ref()?)))
            .map(move |(key, line)| {
                // at the notify line itself, not at its block
                let at = notify_pos(nodes, &owner, key, line).unwrap_or_else(|| pos.clone());
                (at, owner.clone(), line.clone())
            })
        })
        .collect();
    let (env, warnings) = crate::script::Env::new(
        cfg.global.script_user.as_deref(),
        cfg.global.enable_script_security,
    );
    let warnings = if cfg.scripts.is_empty() && notifies.is_empty() {
        Vec::new()
    } else {
        warnings
    };
    let gpos = nodes
        .iter()
        .find(|n| n.key.text == "global_defs")
        .map(|n| n.key.pos.clone())
        .or_else(|| cfg.scripts.first().map(|s| s.pos.clone()));
    if let Some(p) = &gpos {
        diags.extend(warnings.into_iter().map(|w| warning(p, w)));
    }
    let strict = crate::script::Env {
        security: true,
        ..env.clone()
    };
    for s in &mut cfg.scripts {
        if !env.security {
            if let Err(e) = strict.prepare(&s.script, s.user.as_deref()) {
                if e.starts_with("insecure") {
                    diags.push(warning(&s.pos, format!("vrrp_script {}: SECURITY VIOLATION (as keepalived says): the script runs as root and is {}; set enable_script_security", s.name, e.trim_start_matches("insecure: "))));
                }
            }
        }
        if let Err(e) = env.prepare(&s.script, s.user.as_deref()) {
            diags.push(warning(&s.pos, format!("vrrp_script {}: {e}; keepalived disables this script (scripts run without a shell), so it is never run and does not count", s.name)));
            s.disabled = Some(e);
        }
    }
    for (pos, owner, line) in notifies {
        if let Err(e) = env.prepare(&line, None) {
            diags.push(warning(
                &pos,
                format!("{owner}: notify script \"{line}\": {e}; keepalived disables it"),
            ));
        }
    }
    cfg.script_env = env;
}

/// The block of `owner` ("vrrp_instance VI_1", "vrrp_sync_group G") among `nodes`.
fn block_of<'n>(nodes: &'n [Node], owner: &str) -> Option<&'n [Node]> {
    let (kind, name) = owner.split_once(' ')?;
    nodes
        .iter()
        .find(|n| n.key.text == kind && n.arg(0) == Some(name))
        .and_then(|n| n.block.as_deref())
}

/// Where `owner`'s notify script `line` is written with keyword `key` (the last one: a
/// repeated keyword's last line is the one in force).
fn notify_pos(nodes: &[Node], owner: &str, key: &str, line: &str) -> Option<Pos> {
    block_of(nodes, owner)?
        .iter()
        .rev()
        .find(|c| c.key.text == key && string(c).as_deref() == Some(line))
        .map(|c| c.key.pos.clone())
}

/// Where `owner` names `name` in its `section` block (`track_script { NAME }`), or in a
/// one-line `section NAME`.
pub(super) fn reference_pos(nodes: &[Node], owner: &str, section: &str, name: &str) -> Option<Pos> {
    let sections = block_of(nodes, owner)?
        .iter()
        .filter(|c| c.key.text == section);
    for s in sections {
        if let Some(w) = s.args.iter().find(|a| a.text == name) {
            return Some(w.pos.clone());
        }
        if let Some(c) = s.block.iter().flatten().find(|c| c.key.text == name) {
            return Some(c.key.pos.clone());
        }
    }
    None
}

pub(super) fn track_file(n: &Node, diags: &mut Vec<Diag>) -> Option<TrackFile> {
    let Some(name) = n.arg(0) else {
        diags.push(error(&n.key.pos, format!("{} needs a name", n.key.text)));
        return None;
    };
    let mut t = TrackFile {
        name: name.to_string(),
        path: String::new(),
        weight: 1,
        reverse: false,
        init: None,
        pos: n.key.pos.clone(),
    };
    for c in n.block.iter().flatten() {
        match c.key.text.as_str() {
            "file" => t.path = string(c).unwrap_or_default(),
            "weight" => {
                t.weight = ranged(c, -254.0, 254.0, "a weight", diags).unwrap_or(1.0) as i32;
                t.reverse = c.arg(1) == Some("reverse");
            }
            "init_file" => {
                let value = c.arg(0).and_then(|v| v.parse().ok()).unwrap_or(0);
                t.init = Some((value, c.args.iter().any(|a| a.text == "overwrite")));
            }
            _ => {}
        }
    }
    if t.path.is_empty() {
        diags.push(error(
            &n.key.pos,
            format!("track_file {name} needs 'file PATH'"),
        ));
        return None;
    }
    Some(t)
}

pub(super) fn track_refs(c: &Node) -> Vec<TrackRef> {
    c.block
        .iter()
        .flatten()
        .map(|t| TrackRef {
            name: t.key.text.clone(),
            weight: match t.arg(0) {
                Some("weight") => t.arg(1).and_then(|x| x.parse().ok()),
                _ => None,
            },
            reverse: t.arg(2) == Some("reverse"),
        })
        .collect()
}

/// FILE_CHECK names a track_file block: its file and weight (the check's own weight wins).
pub(super) fn resolve_file_checks(cfg: &mut Config, diags: &mut Vec<Diag>) {
    let files = cfg.track_files.clone();
    for vs in &mut cfg.lvs {
        for rs in &mut vs.real_servers {
            for c in &mut rs.checkers {
                if let lvs::CheckKind::File {
                    track,
                    path,
                    weight,
                    own_weight,
                    pos,
                    ..
                } = &mut c.kind
                {
                    match files.iter().find(|f| &f.name == track) {
                        Some(f) => {
                            *path = f.path.clone();
                            *weight = own_weight.unwrap_or(f.weight);
                        }
                        None => diags.push(error(
                            pos,
                            format!("FILE_CHECK: no track_file block named {track}"),
                        )),
                    }
                }
            }
        }
    }
}

pub(super) fn track_interfaces(c: &Node) -> Vec<(String, i32)> {
    let weight = |t: &Node| match t.arg(0) {
        Some("weight") => t.arg(1).and_then(|x| x.parse().ok()).unwrap_or(0),
        _ => 0,
    };
    c.block
        .iter()
        .flatten()
        .map(|t| (t.key.text.clone(), weight(t)))
        .collect()
}

pub(super) fn track_scripts(c: &Node) -> Vec<TrackScript> {
    let weight = |t: &Node| match t.arg(0) {
        Some("weight") => t.arg(1).and_then(|x| x.parse().ok()),
        _ => None,
    };
    c.block
        .iter()
        .flatten()
        .map(|t| TrackScript {
            name: t.key.text.clone(),
            weight: weight(t),
        })
        .collect()
}

/// keepalived's sync-group tracking: the group's own track items go to every member, and
/// unless the group has `sync_group_tracking_weight` every member's tracking weight is 0
/// (a tracked failure takes the member, and so the group, to FAULT; keepalived warns too).
pub(super) fn sync_group_tracking(cfg: &mut Config, diags: &mut Vec<Diag>) {
    for g in &cfg.sync_groups {
        for i in cfg
            .instances
            .iter_mut()
            .filter(|i| g.members.contains(&i.name))
        {
            i.track_interfaces
                .extend(g.track_interfaces.iter().cloned());
            i.track_scripts.extend(g.track_scripts.iter().cloned());
            i.track_files.extend(g.track_files.iter().cloned());
            i.track_processes.extend(g.track_processes.iter().cloned());
            if g.tracking_weight {
                continue;
            }
            let script_weight = |t: &TrackScript| {
                t.weight.unwrap_or_else(|| {
                    let s = cfg.scripts.iter().find(|s| s.name == t.name);
                    s.map(|s| s.weight).unwrap_or(0)
                })
            };
            let weighted = i.track_interfaces.iter().any(|t| t.1 != 0)
                || i.track_scripts.iter().any(|t| script_weight(t) != 0);
            if weighted {
                diags.push(warning(&i.pos, format!("vrrp_instance {}: tracking weights are ignored in vrrp_sync_group {} (a failure means FAULT for the whole group); add sync_group_tracking_weight to the group to use them", i.name, g.name)));
            }
            for t in &mut i.track_interfaces {
                t.1 = 0;
            }
            for t in &mut i.track_scripts {
                t.weight = Some(0);
            }
            for t in i.track_files.iter_mut().chain(&mut i.track_processes) {
                t.weight = Some(0);
            }
        }
    }
}

pub(super) fn track_process(n: &Node, diags: &mut Vec<Diag>) -> Option<TrackProcess> {
    let Some(name) = n.arg(0) else {
        diags.push(error(&n.key.pos, format!("{} needs a name", n.key.text)));
        return None;
    };
    let mut t = TrackProcess {
        name: name.to_string(),
        process: String::new(),
        params: None,
        param_match: crate::vrrp::ParamMatch::Exact,
        full_command: false,
        weight: 0,
        reverse: false,
        quorum: 1,
        quorum_max: u32::MAX,
        delays: (0.0, 0.0),
        pos: n.key.pos.clone(),
    };
    for c in n.block.iter().flatten() {
        match c.key.text.as_str() {
            "process" => {
                let mut words = c.args.iter().map(|w| w.text.clone());
                t.process = words.next().unwrap_or_default();
                let rest: Vec<String> = words.collect();
                t.params = (!rest.is_empty()).then_some(rest);
            }
            "param_match" => {
                t.param_match = match c.arg(0) {
                    Some("initial") => crate::vrrp::ParamMatch::Initial,
                    Some("partial") => crate::vrrp::ParamMatch::Partial,
                    other => {
                        diags.push(error(
                            &c.key.pos,
                            format!(
                                "param_match '{}' is not initial or partial",
                                other.unwrap_or("")
                            ),
                        ));
                        crate::vrrp::ParamMatch::Exact
                    }
                }
            }
            "full_command" => t.full_command = true,
            "weight" => {
                t.weight = ranged(c, -254.0, 254.0, "a weight", diags).unwrap_or(0.0) as i32;
                t.reverse = c.arg(1) == Some("reverse");
            }
            "quorum" => t.quorum = num(c, "a count", diags).unwrap_or(1),
            "quorum_max" => t.quorum_max = num(c, "a count", diags).unwrap_or(u32::MAX),
            "delay" => {
                let d = ranged(c, 0.0, 3600.0, "seconds", diags).unwrap_or(0.0);
                t.delays = (d, d);
            }
            "fork_delay" => t.delays.0 = ranged(c, 0.0, 3600.0, "seconds", diags).unwrap_or(0.0),
            "terminate_delay" => {
                t.delays.1 = ranged(c, 0.0, 3600.0, "seconds", diags).unwrap_or(0.0)
            }
            _ => {}
        }
    }
    if t.process.is_empty() {
        diags.push(error(
            &n.key.pos,
            format!("track_process {name} needs 'process NAME'"),
        ));
        return None;
    }
    if t.quorum > t.quorum_max {
        diags.push(error(
            &n.key.pos,
            format!(
                "track_process {name}: quorum {} is above quorum_max {}",
                t.quorum, t.quorum_max
            ),
        ));
    }
    Some(t)
}
