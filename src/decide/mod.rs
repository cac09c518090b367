//! The decision core: from what discovery, the data dir and the peers said, to how this node
//! must start. Pure code (no I/O, no clock, no randomness), so it can be tested exhaustively and
//! simulated; the run loop in `run.rs` gathers the facts and carries out the decision.
//!
//! | data dir | cluster answers | this node in member list        | row                 |
//! |----------|-----------------|---------------------------------|---------------------|
//! | member   | yes             | yes                             | `restart`           |
//! | member   | yes             | no (removed)                    | `removed` (refuse, or move data aside) |
//! | member   | no / unknown    | –                               | `restart-unreachable` |
//! | empty    | yes             | unstarted member with my URL    | `reuse`             |
//! | empty    | yes             | started member with my URL/name | `replace-self`      |
//! | empty    | yes             | no                              | `join`              |
//! | empty    | no; every other member vouched empty for this set | – | `bootstrap`  |
//! | empty    | unknown         | –                               | `wait`              |
//!
//! A decision is one step: `Act` asks for one membership change, after which the caller observes
//! again and decides again. That makes every run idempotent: an agent killed between `member add`
//! and writing its file finds its unstarted member next time and reuses it.

mod facts;
mod prune;
mod recovery;
mod session;
#[cfg(test)]
mod tests;
mod vouching;

pub use crate::datadir::DataDir;
pub use facts::{
    BootstrapMember, ClusterView, EtcdMember, Facts, PeerAnswer, Probe, Vouch, VouchedData,
};
pub use prune::{Prune, prune};
pub use session::{Observation, SETTLE_MARGIN, Session, SourceUsed};
pub use vouching::bootstrap_set;

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
    Recover,
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
            Row::Recover => "recover",
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

    match (f.data, view) {
        (DataDir::HasMember, Some(view)) => {
            // By member id when the log says it; by URL or name for a log that could not be read.
            let mine = match f.wal {
                Some(wal) => view.members.iter().any(|m| m.id == wal.member_id),
                None => view
                    .members
                    .iter()
                    .any(|m| m.peer_urls.contains(&my_url) || m.name == me.name.as_str()),
            };
            if mine {
                let plan = StartPlan {
                    state: ClusterState::Existing,
                    initial_cluster: initial_cluster(f, view, me),
                    force_new_cluster: false,
                };
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
        (DataDir::HasMember, None) => recovery::decide_with_data(f, me),
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

fn decide_with_cluster(f: &Facts<'_>, me: &Candidate, my_url: &str, view: &ClusterView) -> Outcome {
    if let Some(m) = view
        .members
        .iter()
        .find(|m| m.peer_urls.iter().any(|u| u == my_url))
    {
        if !m.has_started() {
            // An initial member of this very bootstrap that has not started yet (the cluster is
            // exactly the set this node would bootstrap): it starts as the static bootstrap
            // intends, with `new` and the same initial cluster, which gives the same cluster and
            // member ids. With `existing`, two such late members starting together each wait
            // for the other's peer port to answer before serving their own, for good (seen with
            // five members on etcd 3.4).
            let expected = discovered_cluster(f);
            if f.data == DataDir::Empty
                && f.discovered.len() == f.spec.size
                && same_set(&forming_cluster(&view.members), &expected)
            {
                return outcome(
                    Row::Bootstrap,
                    Decision::Start(StartPlan {
                        state: ClusterState::New,
                        initial_cluster: expected,
                        force_new_cluster: false,
                    }),
                    format!(
                        "cluster {:x} is the bootstrap of exactly this member set, and this node's initial member {:x} has not started yet: starting with it as the static bootstrap intends",
                        view.cluster_id, m.id
                    ),
                );
            }
            if !settled(f) {
                return wait(
                    "the cluster has not settled its version yet, and etcd refuses to join such a cluster; waiting a few seconds",
                );
            }
            let plan = StartPlan {
                state: ClusterState::Existing,
                initial_cluster: initial_cluster(f, view, me),
                force_new_cluster: false,
            };
            return outcome(
                Row::Reuse,
                Decision::Start(plan),
                format!(
                    "the cluster already lists an unstarted member {:x} with this node's peer URL {my_url}: reusing it",
                    m.id
                ),
            );
        }
        return outcome(
            Row::ReplaceSelf,
            remove(m),
            format!(
                "member {:x} with this node's peer URL {my_url} has run before, but the data dir is empty: the data was lost; removing the old member to add this node again",
                m.id
            ),
        );
    }
    if let Some(m) = view.members.iter().find(|m| m.name == me.name.as_str()) {
        if let Some(owner) = m.peer_urls.iter().find_map(|u| owner_of(f, u)) {
            return outcome(
                Row::ReplaceSelf,
                Decision::Refuse,
                format!(
                    "member {:x} is named {} like this node but its peer URL belongs to {}; member names must be unique",
                    m.id, me.name, owner.name
                ),
            );
        }
        return outcome(
            Row::ReplaceSelf,
            remove(m),
            format!(
                "member {:x} is named {} like this node but has the peer URL {} that no discovered machine has: it is this node at its old address; removing it to add this node again",
                m.id,
                me.name,
                m.peer_urls.join(",")
            ),
        );
    }

    // Not a member: join. First the dead: no discovered machine owns their peer URL and they do
    // not answer themselves. A listing can miss a live machine, so a member is removed only when
    // it looked dead at the previous observation too.
    let dead = dead_members(f, view);
    let healthy = view
        .members
        .iter()
        .filter(|m| is_healthy(f, m, view.cluster_id))
        .count();
    let live = view.members.len() - dead.len();

    if let Some(d) = dead.first()
        && f.spec.remove_dead_members
        && f.removed_this_run == 0
        && !f.dead_before.contains(&d.id)
    {
        return wait(format!(
            "member {} ({:x}) looks dead (no discovered machine has {}, and it does not answer); confirming at the next look before removing it",
            display_name(d),
            d.id,
            d.peer_urls.join(",")
        ));
    }
    if let Some(d) = dead.first()
        && f.spec.remove_dead_members
        && f.removed_this_run == 0
    {
        let after = view.members.len() - 1;
        if healthy < quorum(after) {
            return wait(format!(
                "member {} ({:x}) is dead, but removing it would leave {healthy} healthy of {after}, below quorum {}; waiting for members to recover",
                display_name(d),
                d.id,
                quorum(after)
            ));
        }
        return outcome(
            Row::Join,
            remove(d),
            format!(
                "member {} ({:x}, {}) belongs to no discovered machine: removing the dead member before joining ({healthy} of {} healthy)",
                display_name(d),
                d.id,
                d.peer_urls.join(","),
                view.members.len()
            ),
        );
    }
    if live >= f.spec.size {
        return wait(format!(
            "the cluster already has {live} live members and cluster.size is {}: not joining as an extra member ({})",
            f.spec.size,
            view.members
                .iter()
                .map(display_name)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if f.spec.join_as_learner
        && let Some(l) = view.members.iter().find(|m| m.is_learner)
    {
        return wait(format!(
            "learner {} is still catching up and etcd allows one learner at a time; waiting for its promotion",
            display_name(l)
        ));
    }
    let learner = f.spec.join_as_learner;
    // etcd's strict reconfiguration check refuses a voting member that would leave the healthy
    // members short of the new quorum; say so here rather than hammer etcd until the deadline.
    let voters = view.members.iter().filter(|m| !m.is_learner).count();
    // Except a cluster of one growing to two, which etcd allows on purpose (it is how a cluster
    // restored from one member's data, or recovered with --force-new-cluster, grows again).
    if !learner && healthy < quorum(voters + 1) && !(voters == 1 && healthy == 1) {
        return wait(format!(
            "adding this node would make {} voters with only {healthy} healthy, below quorum {}{}",
            voters + 1,
            quorum(voters + 1),
            if dead.is_empty() {
                String::new()
            } else {
                format!(
                    "; dead members ({}) are kept because cluster.remove_dead_members is off or one was already removed this run",
                    dead.iter()
                        .map(|d| display_name(d))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
    }
    outcome(
        Row::Join,
        Decision::Act(Action::AddMember {
            peer_url: my_url.to_owned(),
            learner,
        }),
        format!(
            "cluster {:x} answers with {} members and does not list this node: adding it{}",
            view.cluster_id,
            view.members.len(),
            if learner { " as a learner" } else { "" }
        ),
    )
}

/// Members of `view` that are dead as far as this observation can tell: sorted by id.
pub fn dead_members<'v>(f: &Facts<'_>, view: &'v ClusterView) -> Vec<&'v EtcdMember> {
    let mut dead: Vec<&EtcdMember> = view
        .members
        .iter()
        .filter(|m| m.peer_urls.iter().all(|u| owner_of(f, u).is_none()))
        .filter(|m| !f.undiscovered_alive.contains(&m.id))
        .filter(|m| {
            f.me.is_none_or(|me| !m.peer_urls.contains(&peer_url(f, me)))
        })
        .collect();
    dead.sort_by_key(|m| m.id);
    dead
}

/// The dead members' ids in the view the answering peers give, or, when none answers, the
/// members this node's data lists that are gone: for the caller to remember, so that the next
/// look can confirm them.
pub fn dead_ids(f: &Facts<'_>) -> Vec<u64> {
    match answered_view(f) {
        Ok(Some(view)) => dead_members(f, view).iter().map(|m| m.id).collect(),
        Ok(None) => recovery::gone_ids(f),
        Err(_) => Vec::new(),
    }
}

/// Some answering peer reports a decided cluster version (which is all etcd checks on joining).
fn settled(f: &Facts<'_>) -> bool {
    f.probes
        .iter()
        .any(|p| matches!(&p.answer, PeerAnswer::Answered(v) if v.settled))
}

fn remove(m: &EtcdMember) -> Decision {
    Decision::Act(Action::RemoveMember {
        id: m.id,
        name: m.name.clone(),
        peer_urls: m.peer_urls.clone(),
    })
}

fn peer_url(f: &Facts<'_>, c: &Candidate) -> String {
    f.spec.peer_url(&c.host)
}

fn owner_of<'f>(f: &'f Facts<'_>, peer_url_: &str) -> Option<&'f Candidate> {
    f.discovered.iter().find(|c| peer_url(f, c) == peer_url_)
}

/// A member is healthy when the discovered machine that owns it answered for the same cluster.
fn is_healthy(f: &Facts<'_>, m: &EtcdMember, cluster_id: u64) -> bool {
    m.peer_urls
        .iter()
        .filter_map(|u| owner_of(f, u))
        .any(|owner| {
            matches!(f.answer_of(&owner.name), Some(PeerAnswer::Answered(v)) if v.cluster_id == cluster_id)
        })
}

/// The bootstrap member set: every discovered machine, sorted by name (the same on every node).
fn discovered_cluster(f: &Facts<'_>) -> Vec<(MemberName, String)> {
    let mut out: Vec<_> = f
        .discovered
        .iter()
        .map(|c| (c.name.clone(), peer_url(f, c)))
        .collect();
    out.sort();
    out
}

fn forming_cluster(members: &[EtcdMember]) -> Vec<(String, String)> {
    let mut out: Vec<_> = members
        .iter()
        .flat_map(|m| m.peer_urls.iter().map(|u| (m.name.clone(), u.clone())))
        .collect();
    out.sort();
    out
}

fn same_set(forming: &[(String, String)], expected: &[(MemberName, String)]) -> bool {
    forming.len() == expected.len()
        && forming
            .iter()
            .zip(expected)
            .all(|((a, u), (b, v))| a == b.as_str() && u == v)
}

/// `ETCD_INITIAL_CLUSTER` for joining or restarting: every member the cluster lists, this node
/// under its own name. etcd matches members by peer URL, so other members' names only need to be
/// valid and unique: their own name, else the discovered machine owning the URL, else a name made
/// from the member id.
fn initial_cluster(f: &Facts<'_>, view: &ClusterView, me: &Candidate) -> Vec<(MemberName, String)> {
    let my_url = peer_url(f, me);
    let mut used = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let mut sorted: Vec<&EtcdMember> = view.members.iter().collect();
    sorted.sort_by_key(|m| m.id);
    // Place this node first in the name table so no other member can take its name.
    used.insert(me.name.clone());
    for m in sorted {
        let name = if m.peer_urls.contains(&my_url) || m.name == me.name.as_str() {
            me.name.clone()
        } else {
            let candidates = [
                MemberName::parse(&m.name).ok(),
                m.peer_urls
                    .iter()
                    .find_map(|u| owner_of(f, u))
                    .map(|c| c.name.clone()),
            ];
            candidates
                .into_iter()
                .flatten()
                .find(|n| !used.contains(n))
                .unwrap_or_else(|| {
                    MemberName::parse(&format!("member-{:x}", m.id)).expect("hex is a valid name")
                })
        };
        used.insert(name.clone());
        for u in &m.peer_urls {
            out.push((name.clone(), u.clone()));
        }
    }
    if !out.iter().any(|(_, u)| *u == my_url) {
        out.retain(|(n, _)| *n != me.name);
        out.push((me.name.clone(), my_url));
    }
    out.sort();
    out
}

fn display_name(m: &EtcdMember) -> String {
    if m.name.is_empty() {
        format!("(unstarted {:x})", m.id)
    } else {
        m.name.clone()
    }
}

/// The names, sorted; past a dozen, the first ten and how many more (a tag on 10,000 machines
/// must not make a 100 KB log line).
fn names(c: &[Candidate]) -> String {
    if c.is_empty() {
        return "none".into();
    }
    let mut n: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
    n.sort();
    if n.len() > 12 {
        return format!("{} and {} more", n[..10].join(", "), n.len() - 10);
    }
    n.join(", ")
}
