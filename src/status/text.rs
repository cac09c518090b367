//! `status` for people: the verdict, why, one aligned line a member, the alarms and this
//! machine's last run. Colour only on a terminal, and never with `NO_COLOR` set.

use super::{Status, Verdict, age_words};

pub fn text(s: &Status, colour: bool) -> String {
    let paint = |code: &str, t: &str| {
        if colour {
            format!("\x1b[{code}m{t}\x1b[0m")
        } else {
            t.to_owned()
        }
    };
    let verdict = match s.verdict {
        Verdict::Healthy => paint("32", "healthy"),
        Verdict::Degraded => paint("33", "degraded"),
        Verdict::NoQuorum => paint("31", "no quorum"),
    };
    let mut out = format!(
        "cluster {}: {verdict}{}\n",
        s.cluster_id.as_deref().unwrap_or("(no member answered)"),
        s.cluster_version
            .as_ref()
            .map(|v| format!(" (cluster version {v})"))
            .unwrap_or_default()
    );
    for p in &s.problems {
        out += &format!("  ! {p}\n");
    }
    if !s.members.is_empty() {
        let mut rows = vec![
            [
                "NAME",
                "ID",
                "ROLE",
                "HEALTH",
                "LEADER",
                "RAFT INDEX",
                "BEHIND",
                "DB",
                "IN USE",
                "VERSION",
                "PEER URLS",
                "CLIENT URLS",
            ]
            .map(String::from),
        ];
        for m in &s.members {
            let opt = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
            rows.push([
                if m.name.is_empty() {
                    "-".into()
                } else {
                    m.name.clone()
                },
                m.id.clone(),
                match m.learner_for_seconds {
                    Some(age) => format!("learner {}", age_words(age)),
                    None if m.learner => "learner".into(),
                    None => "voter".into(),
                },
                if !m.started {
                    "not started".into()
                } else if m.healthy {
                    "healthy".into()
                } else {
                    "unhealthy".into()
                },
                if m.leader { "*" } else { "" }.into(),
                opt(m.raft_index),
                opt(m.behind_leader),
                m.db_size.map_or("-".into(), size),
                m.db_size_in_use.map_or("-".into(), size),
                m.version.clone().unwrap_or_else(|| "-".into()),
                m.peer_urls.join(","),
                if m.client_urls.is_empty() {
                    "-".into()
                } else {
                    m.client_urls.join(",")
                },
            ]);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(v, w)| format!("{v:<w$}"))
                .collect();
            out += &format!("  {}\n", line.join("  ").trim_end());
        }
    }
    for e in &s.unreachable {
        out += &format!("  {}: {}\n", e.url, e.answer);
    }
    if !s.peer_ports.is_empty() {
        out += "peer ports:\n";
        for p in &s.peer_ports {
            out += &format!("  {} {}: {}\n", p.name, p.peer_url, p.detail);
        }
    }
    if let Some(run) = &s.last_run {
        let field = |k: &str| run.get(k).and_then(|v| v.as_str()).unwrap_or("-");
        out += &format!(
            "this machine's agent, last run: {} ({}, row {}): {}\n",
            field("result"),
            field("state"),
            field("row"),
            field("reason")
        );
    }
    if let Some(b) = &s.backup {
        out += &match (&b.newest, b.age_seconds, &b.error) {
            (_, _, Some(e)) => format!("backups: {e}\n"),
            (Some(key), Some(age), None) => format!(
                "backups: newest snapshot {key}, {} old, in {}\n",
                super::age_words(age),
                b.store
            ),
            _ => format!("backups: no snapshot of this cluster yet in {}\n", b.store),
        };
    }
    out
}

/// Bytes in the largest unit that keeps a whole number in front.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
