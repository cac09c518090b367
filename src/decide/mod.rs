//! The decision core: from what discovery, the data dir and the peers said, to how this node
//! must start. Pure code (no I/O, no clock, no randomness), so it can be tested exhaustively and
//! simulated; the run loop in `run.rs` gathers the facts and carries out the decision.
//!
//! | data dir | cluster answers | this node in member list        | row                 |
//! |----------|-----------------|---------------------------------|---------------------|
//! | member   | yes             | yes                             | `restart`           |
//! | member   | yes             | no (removed)                    | `removed` (refuse, or move data aside) |
//! | member   | no / unknown; its quorum still there or unknown | – | `restart-unreachable` |
//! | member   | no; a majority of its voters gone for good, `recover_lost_quorum` on, freshest data here | – | `recover` |
//! | empty    | yes             | unstarted member with my URL    | `reuse`             |
//! | empty    | yes             | started member with my URL/name | `replace-self`      |
//! | empty    | yes             | no                              | `join`              |
//! | empty    | no; every other member vouched empty for this set | – | `bootstrap`  |
//! | empty    | no; the same, and the backup store holds a snapshot of this token that every member names | – | `restore` |
//! | empty    | unknown         | –                               | `wait`              |
//!
//! Where each row lives: the data-dir rows here; `cluster.rs` the rows with a cluster answering;
//! `vouching.rs` a first bootstrap; `recovery.rs` a survivor whose cluster does not answer;
//! `helpers.rs` what they share; `session.rs` what a run remembers between looks.
//!
//! A decision is one step: `Act` asks for one membership change, after which the caller observes
//! again and decides again. That makes every run idempotent: an agent killed between `member add`
//! and writing its file finds its unstarted member next time and reuses it.

mod cluster;
mod facts;
mod helpers;
mod prune;
mod recovery;
mod session;
#[cfg(test)]
mod tests;
mod version;
mod vouching;

pub use crate::datadir::DataDir;
pub use cluster::{dead_ids, dead_members};
pub use facts::{
    Backups, BootstrapMember, ClusterView, EtcdMember, EtcdVersion, Facts, LocalEtcd, PeerAnswer,
    Probe, RestoreRef, SnapshotRef, StoreLook, UnfinishedRecovery, Vouch, VouchedData,
};
pub use prune::{Prune, prune};
pub use session::{Observation, SETTLE_MARGIN, Session, SourceUsed};
pub use version::too_new_to_restore;
pub use vouching::{bootstrap_set, described};

use cluster::decide_with_cluster;
use helpers::*;

use serde::Serialize;

use crate::envfile::ClusterState;
use crate::member::{Candidate, MemberName};

/// Which row of the decision table applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Row {
    Restart,
    Removed,
    RestartUnreachable,
    Reuse,
    ReplaceSelf,
    Join,
    Bootstrap,
    Restore,
    Recover,
    Version,
    Wait,
}

impl Row {
    pub fn as_str(self) -> &'static str {
        match self {
            Row::Restart => "restart",
            Row::Removed => "removed",
            Row::RestartUnreachable => "restart-unreachable",
            Row::Reuse => "reuse",
            Row::ReplaceSelf => "replace-self",
            Row::Join => "join",
            Row::Bootstrap => "bootstrap",
            Row::Restore => "restore",
            Row::Recover => "recover",
            Row::Version => "version",
            Row::Wait => "wait",
        }
    }
}

/// One change to make before observing again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    RemoveMember {
        id: u64,
        name: String,
        peer_urls: Vec<String>,
    },
    AddMember {
        peer_url: String,
        learner: bool,
    },
    /// Rename the data dir aside (never delete it) so this node can join afresh.
    MoveDataAside,
    /// Copy the data dir to `<data_dir>.before-recovery-<unix time>` before recovering from it.
    CopyDataAside,
    /// Put back the copy an earlier run's recovery start that never finished made, renaming the
    /// data dir as that start left it to `<data_dir>.failed-recovery-<unix time>`.
    UndoRecoveryStart,
}

/// How etcd must start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StartPlan {
    pub state: ClusterState,
    /// `name=peer-url` pairs for `ETCD_INITIAL_CLUSTER`.
    pub initial_cluster: Vec<(MemberName, String)>,
    /// First run etcd once with `--force-new-cluster` (lost-quorum recovery, `recovery.rs`;
    /// the agent runs that start itself, `run/force_new.rs`); the env file never carries it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub force_new_cluster: bool,
    /// This node's member is a learner: `etcd-bootstrap promote` (started with etcd) promotes it
    /// once it has caught up. Every other start is a voter's, with nothing to promote.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub learner: bool,
    /// Before etcd starts, make the data dir from this snapshot (the `restore` row): a new
    /// cluster of `initial_cluster` that holds the snapshot's keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<SnapshotRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    /// Not decidable yet; observe again later. Fails at the deadline.
    Wait,
    /// Make this change, then observe and decide again.
    Act(Action),
    /// Write the env file and let etcd start.
    Start(StartPlan),
    /// Unsafe to go on, whatever happens later: fail now, touch nothing.
    Refuse,
}

/// A decision with the row that produced it and a one-line reason for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub row: Row,
    #[serde(flatten)]
    pub decision: Decision,
    pub reason: String,
    /// For a wait that only time can end (the bootstrap settle), how long until it may: a run
    /// looks again then rather than on its usual backoff, which spares the cloud API's rate
    /// limit (issue 7: 100 agents booting at once).
    #[serde(skip)]
    pub ends_in: Option<std::time::Duration>,
    /// Nothing is left to wait for but a second look (no peer's vouch cross-checked this
    /// listing): the next look bootstraps if it agrees again (`Facts::agreed_before`).
    #[serde(skip)]
    pub agreed: Option<Vec<(MemberName, String)>>,
}

fn outcome(row: Row, decision: Decision, reason: impl Into<String>) -> Outcome {
    Outcome {
        row,
        decision,
        reason: reason.into(),
        ends_in: None,
        agreed: None,
    }
}

/// How soon to look again to confirm an agreement: soon, since nothing else is awaited.
pub const CONFIRM_AFTER: std::time::Duration = std::time::Duration::from_millis(200);

fn wait(reason: impl Into<String>) -> Outcome {
    outcome(Row::Wait, Decision::Wait, reason)
}

pub fn quorum(members: usize) -> usize {
    members / 2 + 1
}

pub fn decide(f: &Facts<'_>) -> Outcome {
    // Before anything reads the data dir as evidence: it may hold a failed recovery's changes.
    // (Not this run's own recovery, under way since it copied the data dir.)
    if let Some(u) = f.unfinished_recovery.filter(|_| !f.data_copied) {
        return recovery::unfinished(f, u);
    }
    let Some(me) = f.me else {
        return wait(format!(
            "this machine is not among the {} discovered members ({}); expecting {}",
            f.discovered.len(),
            names(f.discovered),
            f.spec.size
        ));
    };
    let my_url = peer_url(f, me);

    let view = match answered_view(f) {
        Ok(view) => view,
        Err(reason) => return outcome(Row::Removed, Decision::Refuse, reason),
    };

    if let Some(o) = foreign_data(f, &my_url, view) {
        return o;
    }
    // Before any membership change and any start beside a running cluster: an etcd that the
    // cluster's version rules would refuse is refused here, while nothing has changed yet.
    if let Some(o) = view.and_then(|v| version::guard(f, v)) {
        return o;
    }

    match (f.data, view) {
        (DataDir::HasMember, Some(view)) => {
            // By member id when the log says it; by URL or name for a log that could not be read.
            let mine = match f.wal {
                Some(wal) => view.members.iter().find(|m| m.id == wal.member_id),
                None => view
                    .members
                    .iter()
                    .find(|m| m.peer_urls.contains(&my_url) || m.name == me.name.as_str()),
            };
            if let Some(mine) = mine {
                if let Some(o) = version::opens_own_data(f) {
                    return o;
                }
                let plan = start_in(f, view, me, mine.is_learner);
                return outcome(
                    Row::Restart,
                    Decision::Start(plan),
                    "local data and the cluster lists this member: restart on the data, membership unchanged",
                );
            }
            // A survivor whose data was not the freshest finds the recovered cluster without
            // its member: recovery goes on by joining afresh (the data is kept, renamed).
            let setting = if f.spec.replace_stale_data {
                Some("cluster.replace_stale_data")
            } else {
                f.spec
                    .recover_lost_quorum
                    .then_some("cluster.recover_lost_quorum")
            };
            if let Some(setting) = setting {
                return outcome(
                    Row::Removed,
                    Decision::Act(Action::MoveDataAside),
                    format!(
                        "local data belongs to a member the cluster {:x} no longer lists; {setting} is on: moving the data dir aside to join afresh",
                        view.cluster_id
                    ),
                );
            }
            outcome(
                Row::Removed,
                Decision::Refuse,
                format!(
                    "local data in {} belongs to a member that cluster {:x} no longer lists (it was removed); refusing to start it. Move the data dir aside by hand or set cluster.replace_stale_data = true",
                    f.spec.data_dir.display(),
                    view.cluster_id
                ),
            )
        }
        // Before the restart, and before the recovery copies or force-starts anything.
        (DataDir::HasMember, None) => {
            version::opens_own_data(f).unwrap_or_else(|| recovery::decide_with_data(f, me))
        }
        (DataDir::Empty, Some(view)) => decide_with_cluster(f, me, &my_url, view),
        (DataDir::Empty, None) => vouching::decide_without_cluster(f, me),
    }
}

/// Data that is not this cluster's: the single-member cluster a distribution's etcd package
/// starts on install, or data of another cluster than the one answering. Never started, never
/// joined with; moved aside only with `cluster.replace_stale_data`.
fn foreign_data(f: &Facts<'_>, my_url: &str, view: Option<&ClusterView>) -> Option<Outcome> {
    let wal = f.wal.filter(|_| f.data == DataDir::HasMember)?;
    let dir = f.spec.data_dir.display();
    let problem = if wal.is_package_cluster(my_url) {
        format!(
            "{dir} holds the single-member cluster {:x} that the distribution's etcd package started on install (member {}, peer URL {}), not this cluster's data. Clear it with: systemctl stop etcd && mv {dir} {dir}.distribution-default",
            wal.cluster_id,
            crate::member::excerpt(&wal.members[0].name),
            wal.members[0].peer_urls.join(",")
        )
    } else {
        match view {
            Some(v) if v.cluster_id != wal.cluster_id => format!(
                "{dir} holds data of cluster {:x} (member {:x}), but the cluster answering is {:x}: refusing to start or join it with another cluster's data. Move the data dir aside by hand or set cluster.replace_stale_data = true",
                wal.cluster_id, wal.member_id, v.cluster_id
            ),
            _ => return None,
        }
    };
    Some(if f.spec.replace_stale_data {
        outcome(
            Row::Removed,
            Decision::Act(Action::MoveDataAside),
            format!("{problem}; cluster.replace_stale_data is on: moving the data dir aside"),
        )
    } else {
        outcome(Row::Removed, Decision::Refuse, problem)
    })
}

/// The cluster the answering peers belong to; an error when they belong to different clusters.
fn answered_view<'f>(f: &'f Facts<'_>) -> Result<Option<&'f ClusterView>, String> {
    let mut views = f.probes.iter().filter_map(|p| match &p.answer {
        PeerAnswer::Answered(v) => Some((p, v)),
        _ => None,
    });
    let Some((first_peer, first)) = views.next() else {
        return Ok(None);
    };
    for (peer, v) in views {
        if v.cluster_id != first.cluster_id {
            return Err(format!(
                "peers answer for two different clusters: {} is in cluster {:x}, {} in cluster {:x}; refusing to choose. Fix the discovery selector or remove the stray cluster",
                first_peer.peer, first.cluster_id, peer.peer, v.cluster_id
            ));
        }
    }
    Ok(Some(first))
}
