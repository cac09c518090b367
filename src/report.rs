//! How `plan` shows a decision: text for people, JSON for scripts. Neither ever holds a secret:
//! they are built from validated candidates, probe results and the env file, none of which
//! carries a token.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decide::Observation;
use crate::decide::{Action, DataDir, Decision, Outcome, PeerAnswer, Probe};
use crate::member::{Candidate, Host, MemberName};
use crate::preflight::Checked;
use crate::run::Plan;

pub fn text(plan: &Plan, env: Option<&str>) -> String {
    let Plan {
        obs,
        steps,
        outcome,
        checked,
    } = plan;
    let mut out = String::new();
    let me = obs
        .me
        .map(|i| obs.candidates[i].name.to_string())
        .unwrap_or_else(|| "(not identified)".into());
    out += &format!("this node: {me}\ndata dir: {}\n", data_word(obs));
    if let Some(line) = versions_line(obs) {
        out += &line;
    }
    if let Some(b) = &obs.backups {
        out += &format!("backups: {}: {}\n", b.store, store_word(b));
    }
    match &obs.source.fallback_because {
        Some(why) => {
            out += &format!(
                "source: {} (discovery.fallback; a run falls back after discovery.fallback_after because {why})\n",
                obs.source.name
            )
        }
        None => out += &format!("source: {}\n", obs.source.name),
    }
    out += &format!("discovered {} members:\n", obs.candidates.len());
    for c in &obs.candidates {
        let probe = obs
            .probes
            .iter()
            .find(|p| p.peer == c.name)
            .map(|p| answer_word(&p.answer));
        out += &format!(
            "  {} {} (id {}){}\n",
            c.name,
            c.host,
            c.id,
            probe.map(|p| format!(": {p}")).unwrap_or_default()
        );
    }
    if !steps.is_empty() {
        out += "membership calls a run would make:\n";
        for (i, (action, why)) in steps.iter().enumerate() {
            out += &format!(
                "  {}. {}\n     because {}\n",
                i + 1,
                action_words(action),
                why
            );
        }
    }
    if !checked.passed.is_empty() || !checked.warnings.is_empty() {
        out += "preflight:\n";
        for line in &checked.passed {
            out += &format!("  ok: {line}\n");
        }
        for line in &checked.warnings {
            out += &format!("  warning: {line}\n");
        }
    }
    out += &format!(
        "decision: {} (row {})\nreason: {}\n",
        decision_word(&outcome.decision),
        outcome.row.as_str(),
        outcome.reason
    );
    if let Some(env) = env {
        out += "env file:\n";
        for line in env.lines().filter(|l| !l.starts_with('#')) {
            out += &format!("  {line}\n");
        }
    }
    out
}

/// The JSON form, written straight to `out`: typed and borrowed, so a plan over 10,000 machines
/// holds no second copy of them (built as a `serde_json::Value` it took 19 MB; BENCHMARKS.md).
pub fn write_json(
    out: impl std::io::Write,
    plan: &Plan,
    env: Option<&str>,
) -> serde_json::Result<()> {
    let Plan {
        obs,
        steps,
        outcome,
        checked,
    } = plan;
    let plan = JsonPlan {
        source: &obs.source,
        this_node: obs.me.map(|i| &obs.candidates[i].name),
        data_dir: obs.data,
        data_wal: obs.wal.as_ref(),
        local_etcd: obs.local_etcd.as_ref(),
        backups: obs.backups.as_ref(),
        discovered: obs.candidates.iter().map(JsonCandidate::from).collect(),
        probes: &obs.probes,
        steps: steps
            .iter()
            .map(|(step, reason)| JsonStep { step, reason })
            .collect(),
        outcome,
        preflight: checked,
        env: env.map(|env| {
            env.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .collect()
        }),
    };
    serde_json::to_writer_pretty(out, &plan)
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    source: &'a crate::decide::SourceUsed,
    this_node: Option<&'a MemberName>,
    data_dir: DataDir,
    /// Whose data it is, from the write-ahead log (ids in hex, as etcd logs them).
    #[serde(skip_serializing_if = "Option::is_none")]
    data_wal: Option<&'a crate::datadir::WalInfo>,
    /// The etcd this machine would start (`etcd.binary` and its version), when it was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    local_etcd: Option<&'a crate::decide::LocalEtcd>,
    /// The backup store (`[backup]`) and what it holds, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    backups: Option<&'a crate::decide::Backups>,
    discovered: Vec<JsonCandidate<'a>>,
    probes: &'a [Probe],
    steps: Vec<JsonStep<'a>>,
    outcome: &'a Outcome,
    preflight: &'a Checked,
    env: Option<BTreeMap<&'a str, &'a str>>,
}

#[derive(Serialize)]
struct JsonCandidate<'a> {
    name: &'a MemberName,
    id: &'a str,
    #[serde(serialize_with = "as_text")]
    address: &'a Host,
    created: Option<&'a str>,
}

impl<'a> From<&'a Candidate> for JsonCandidate<'a> {
    fn from(c: &'a Candidate) -> Self {
        JsonCandidate {
            name: &c.name,
            id: &c.id,
            address: &c.host,
            created: c.created.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct JsonStep<'a> {
    step: &'a Action,
    reason: &'a str,
}

fn as_text<S: serde::Serializer>(v: &&Host, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn data_word(obs: &Observation) -> String {
    match (obs.data, &obs.wal) {
        (DataDir::Empty, _) => "empty".into(),
        // Whether it is the distribution package's cluster, the decision's reason says.
        (DataDir::HasMember, Some(w)) => format!(
            "holds member {:x} of cluster {:x}, raft index {}{}",
            w.member_id,
            w.cluster_id,
            w.last_index,
            w.data_version
                .map(|v| format!(", written at cluster version {}.{}", v.major, v.minor))
                .unwrap_or_default(),
        ),
        (DataDir::HasMember, None) => "holds member data whose log could not be read".into(),
    }
}

/// This machine's etcd, and whether the answering members span two minor lines (an upgrade in
/// progress, which etcd allows; the `version` row refuses what it does not).
fn versions_line(obs: &Observation) -> Option<String> {
    let local = obs.local_etcd.as_ref()?;
    let mut lines: Vec<(u32, u32)> = obs
        .probes
        .iter()
        .filter_map(|p| match &p.answer {
            PeerAnswer::Answered(v) => v.server_version.map(|s| s.line()),
            _ => None,
        })
        .chain([local.version.line()])
        .collect();
    lines.sort();
    lines.dedup();
    let upgrade = match lines[..] {
        [(a, b), (c, d)] => format!(
            "; members on {a}.{b} and {c}.{d}: an upgrade in progress, which etcd allows one minor version at a time"
        ),
        _ => String::new(),
    };
    Some(format!(
        "etcd here: {} {}{upgrade}\n",
        local.binary, local.version
    ))
}

fn store_word(b: &crate::decide::Backups) -> String {
    use crate::decide::StoreLook;
    match &b.look {
        StoreLook::NotNeeded => {
            "not looked at (a cluster answers, or this node restarts on its data)".into()
        }
        StoreLook::Nothing => "no snapshot of this cluster token".into(),
        StoreLook::Newest(s) => format!(
            "newest {}{}",
            crate::decide::described(s),
            if b.restore {
                ""
            } else {
                "; backup.restore = false"
            }
        ),
        StoreLook::Unreadable { reason } => format!("cannot be read: {reason}"),
    }
}

fn answer_word(a: &PeerAnswer) -> String {
    match a {
        PeerAnswer::Answered(v) => format!(
            "cluster {:x} answered with {} members{}",
            v.cluster_id,
            v.members.len(),
            match (v.cluster_version, v.server_version) {
                (Some(c), Some(s)) =>
                    format!(" (cluster version {}.{}, its etcd {s})", c.major, c.minor),
                (None, Some(s)) => format!(" (cluster version not decided yet, its etcd {s})"),
                _ => String::new(),
            }
        ),
        PeerAnswer::Refused => "nothing listens".into(),
        PeerAnswer::Forming { members } => format!("bootstrapping with {} members", members.len()),
        PeerAnswer::Stalled { version } => {
            format!("a cluster (version {version}) without a leader")
        }
        PeerAnswer::Vouched(v) => match &v.data {
            crate::decide::VouchedData::Empty => format!(
                "its agent vouches: empty data dir, {}",
                if v.bootstrap.is_some() {
                    "ready to bootstrap"
                } else {
                    "not all members discovered"
                }
            ),
            crate::decide::VouchedData::Member {
                cluster_id,
                member_id,
                last_index,
            } => format!(
                "its agent vouches: member {member_id} of cluster {cluster_id}, raft index {last_index}"
            ),
            crate::decide::VouchedData::Unreadable => {
                "its agent vouches: data it cannot read".into()
            }
        },
        PeerAnswer::Unknown { reason } => format!("unknown ({reason})"),
    }
}

fn decision_word(d: &Decision) -> String {
    match d {
        Decision::Wait => "wait".into(),
        Decision::Act(a) => action_words(a),
        Decision::Start(p) if p.force_new_cluster => format!(
            "run etcd once with --force-new-cluster (and a snapshot), stop it, then start etcd with state {}",
            p.state.as_str()
        ),
        Decision::Start(p) if p.learner => format!(
            "start etcd with state {}, as a learner (promoted once caught up)",
            p.state.as_str()
        ),
        Decision::Start(p) => format!("start etcd with state {}", p.state.as_str()),
        Decision::Refuse => "refuse".into(),
    }
}

fn action_words(a: &Action) -> String {
    match a {
        Action::RemoveMember {
            id,
            name,
            peer_urls,
        } => {
            format!(
                "remove member {} ({id:x}, {})",
                if name.is_empty() { "unstarted" } else { name },
                peer_urls.join(",")
            )
        }
        Action::CopyDataAside => {
            "copy the data dir aside (<data_dir>.before-recovery-<unix time>)".into()
        }
        Action::AddMember { peer_url, learner } => {
            format!(
                "add this node {peer_url} as a {}",
                if *learner { "learner" } else { "voting member" }
            )
        }
        Action::MoveDataAside => "move the stale data dir aside".into(),
        Action::UndoRecoveryStart => {
            "put back the data dir as it was before an unfinished recovery start (from its copy; what that start left is kept as <data_dir>.failed-recovery-<unix time>)".into()
        }
    }
}
