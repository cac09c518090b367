//! The rows for a node with data when no cluster answers: restart on the data (the cluster's
//! members are rebooting, or the rest of them answer once this one is up), or, when the quorum
//! is lost for good, say so and, only with `cluster.recover_lost_quorum`, recover it from the
//! freshest survivor's own data (docs/recovery.md).
//!
//! "Lost for good" is evidence, never silence alone: each member the data dir lists (snapshot
//! plus log, `datadir::snap`, `datadir::wal`) that is not this node is gone only when no
//! discovered machine has its peer URL and it does not answer on it, or when the machine that
//! has its URL vouched for a data dir without it; either at two looks in a row. And the
//! survivor that recovers is chosen on what every discovered machine said: each one vouched
//! (a machine that says nothing may hold fresher data of the same cluster), and the highest raft
//! index wins, ties to the lowest member id, so every survivor picks the same one.

use std::cmp::Reverse;

use super::facts::{Facts, PeerAnswer, StoreLook, UnfinishedRecovery, Vouch, VouchedData};
use super::{
    Action, Decision, Outcome, Row, StartPlan, described, discovered_cluster, outcome, owner_of,
    peer_url, quorum, wait,
};
use crate::datadir::{WalInfo, WalMember};
use crate::envfile::ClusterState;
use crate::member::Candidate;

/// An earlier run's recovery start did not finish: it may have written its forced membership
/// changes into the log and then failed (an etcd that cannot open the data does exactly that,
/// issue #22). The data dir is never started, copied, or vouched for as that start left it: the
/// copy from before goes back first, and the run decides again on it; without the copy, nothing
/// is done.
pub fn unfinished(f: &Facts<'_>, u: &UnfinishedRecovery) -> Outcome {
    let dir = f.spec.data_dir.display();
    if u.copy_present {
        return outcome(
            Row::Recover,
            Decision::Act(Action::UndoRecoveryStart),
            format!(
                "an earlier run's recovery start with --force-new-cluster did not finish: {dir} may hold the membership changes it forced; putting back the copy from before it ({}) before deciding anything",
                u.copy.display()
            ),
        );
    }
    outcome(
        Row::Recover,
        Decision::Refuse,
        format!(
            "an earlier run's recovery start with --force-new-cluster did not finish, and the copy it made ({}) is not there: {dir} may hold the membership changes it forced; refusing to start it. Put the data dir as it was before back by hand (docs/recovery.md), then remove {dir}.recovery-started",
            u.copy.display()
        ),
    )
}

pub fn decide_with_data(f: &Facts<'_>, me: &Candidate) -> Outcome {
    let Some(lost) = lost_quorum(f) else {
        // A learner that was never promoted is still one: its log says so.
        let learner = f.wal.is_some_and(|w| {
            w.members
                .iter()
                .any(|m| m.id == w.member_id && m.is_learner)
        });
        let plan = StartPlan {
            state: ClusterState::Existing,
            initial_cluster: discovered_cluster(f),
            force_new_cluster: false,
            learner,
            restore: None,
        };
        return outcome(
            Row::RestartUnreachable,
            Decision::Start(plan),
            "local data and no cluster answered: restart on the data (etcd ignores the initial-cluster settings when it has data)",
        );
    };
    let wal = lost.wal;
    let cluster = format!("{:x}", wal.cluster_id);
    let gone = lost
        .gone
        .iter()
        .map(|m| describe(m))
        .collect::<Vec<_>>()
        .join(", ");
    let what = format!(
        "cluster {cluster} has lost its quorum: {} of its {} voting members are gone ({gone})",
        lost.gone.len(),
        lost.voters
    );
    if let Some(m) = lost.gone.iter().find(|m| !f.dead_before.contains(&m.id)) {
        return wait(format!(
            "{what}; confirming at the next look that {} is gone before anything else",
            describe(m)
        ));
    }
    // A member that answers on its URL although no listed machine has it: the listing missed
    // its machine, which may run the cluster or hold fresher data.
    if let Some(m) = lost.present_unlisted.first() {
        return wait(format!(
            "{what}; member {} answers on its URL but no discovered machine has it: waiting until the listing shows it, so that it can say how far it got",
            describe(m)
        ));
    }
    // A machine listed earlier in this run and missing now may hold this cluster's data, or run
    // a cluster recovered from it already, and be cut off from this one: even when it is one of
    // the members that look gone (a listing that misses a machine, and a network that hides it,
    // must not make two recoveries; the simulation found that one).
    if let Some(c) = f.unsettled.first() {
        return wait(format!(
            "{what}; {} ({}) was listed earlier in this run and is missing now: waiting until it is listed again, since it may hold this cluster's data (restart the agent if it is gone for good)",
            c.name, c.host
        ));
    }
    // Every other discovered machine must have said what it holds: silence may be the freshest
    // survivor still booting.
    let mut holders = vec![Holder {
        name: me.name.to_string(),
        member_id: wal.member_id,
        last_index: wal.last_index,
    }];
    for c in f.discovered.iter().filter(|c| c.name != me.name) {
        let answer = f.answer_of(&c.name);
        match answer {
            Some(PeerAnswer::Vouched(v)) => match &v.data {
                VouchedData::Member {
                    cluster_id,
                    member_id,
                    last_index,
                } if *cluster_id == cluster => match u64::from_str_radix(member_id, 16) {
                    Ok(member_id) => holders.push(Holder {
                        name: c.name.to_string(),
                        member_id,
                        last_index: *last_index,
                    }),
                    Err(_) => {
                        return wait(format!(
                            "{what}; {} ({}) vouches for data of it with a member id that is not hex ({}): waiting for a vouch that can be compared",
                            c.name,
                            c.host,
                            crate::member::excerpt(member_id)
                        ));
                    }
                },
                // Another cluster's data, or none: not a survivor of this one.
                VouchedData::Member { .. } | VouchedData::Empty => {}
                VouchedData::Unreadable => {
                    return wait(format!(
                        "{what}; {} ({}) holds an etcd data dir its agent cannot read, so how far it got is unknown",
                        c.name, c.host
                    ));
                }
            },
            Some(PeerAnswer::Stalled { version }) => {
                return wait(format!(
                    "{what}; {} ({}) runs etcd {version} on its data without a leader, so its raft index is unknown: restart it, and its agent will say",
                    c.name, c.host
                ));
            }
            _ => {
                return wait(format!(
                    "{what}; waiting for {} ({}) to vouch, since it may hold fresher data of the same cluster",
                    c.name, c.host
                ));
            }
        }
    }
    let freshest = holders
        .iter()
        .max_by_key(|h| (h.last_index, Reverse(h.member_id)))
        .expect("this node holds data");
    let survivors = holders
        .iter()
        .map(|h| {
            format!(
                "{} (member {:x}, raft index {})",
                h.name, h.member_id, h.last_index
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let what = format!("{what}; survivors: {survivors}");
    if freshest.member_id != wal.member_id {
        return wait(if f.spec.recover_lost_quorum {
            format!(
                "{what}. {} holds the freshest data: it recovers the cluster, and this node joins it afterwards",
                freshest.name
            )
        } else {
            format!(
                "{what}. {} holds the freshest data; to restart the cluster from it, set cluster.recover_lost_quorum = true on the survivors (docs/recovery.md)",
                freshest.name
            )
        });
    }
    if !f.spec.recover_lost_quorum {
        return wait(format!(
            "{what}. This node holds the freshest data; to restart the cluster from it, set cluster.recover_lost_quorum = true (or start etcd once with --force-new-cluster by hand, docs/recovery.md)"
        ));
    }
    // The store's newest snapshot is one more copy: a survivor staler than it must not win.
    if let Some(o) = backups_fresher(f, &cluster, freshest.last_index, &what) {
        return o;
    }
    if !f.data_copied {
        return outcome(
            Row::Recover,
            Decision::Act(Action::CopyDataAside),
            format!(
                "{what}. This node holds the freshest data and cluster.recover_lost_quorum is on: copying the data dir aside before recovering"
            ),
        );
    }
    let plan = StartPlan {
        state: ClusterState::Existing,
        initial_cluster: vec![(me.name.clone(), peer_url(f, me))],
        force_new_cluster: true,
        learner: false,
        restore: None,
    };
    outcome(
        Row::Recover,
        Decision::Start(plan),
        format!(
            "{what}. This node holds the freshest data: starting etcd once with --force-new-cluster as member {:x} of cluster {cluster} at raft index {} (the agent runs that start itself, with a snapshot, and stops it; etcd.service then starts the cluster of one); the other machines join it one at a time",
            wal.member_id, wal.last_index
        ),
    )
}

/// A lost-quorum recovery from a survivor at `index` waits when the backup store holds a
/// snapshot of the same cluster at a higher raft index (bringing back the staler copy would lose
/// what the snapshot holds), or when the store cannot be read (it might). Restoring over the
/// survivors' data is left to the operator: it discards every survivor's log.
fn backups_fresher(f: &Facts<'_>, cluster: &str, index: u64, what: &str) -> Option<Outcome> {
    let b = f.backups?;
    match &b.look {
        StoreLook::Newest(s) if s.cluster_id == cluster && s.raft_index > index => {
            Some(wait(format!(
                "{what}. The backup store holds {}, fresher than every survivor (raft index {index}): recovering from this node would bring back staler data. Restore that snapshot on every member (etcd-bootstrap restore --replace-data, docs/backup.md), or move it out of the store to recover from this node",
                described(s)
            )))
        }
        StoreLook::Unreadable { reason } => Some(wait(format!(
            "{what}. The backup store {} cannot be read ({reason}), and a snapshot there may be fresher than every survivor: recovering waits until it answers",
            b.store
        ))),
        _ => None,
    }
}

/// The members the data dir lists that are gone at this look (for the caller to remember, so
/// that the next look can confirm them). Empty when the quorum is not lost.
pub fn gone_ids(f: &Facts<'_>) -> Vec<u64> {
    lost_quorum(f).map_or_else(Vec::new, |l| l.gone.iter().map(|m| m.id).collect())
}

struct Lost<'f> {
    wal: &'f WalInfo,
    voters: usize,
    /// Sorted by id.
    gone: Vec<&'f WalMember>,
    /// Members not gone that no discovered machine has (they answer on their URLs).
    present_unlisted: Vec<&'f WalMember>,
}

struct Holder {
    name: String,
    member_id: u64,
    last_index: u64,
}

/// The quorum of this node's cluster is lost at this look: too few of its voting members are
/// left. `None` when it is not, or when the data dir does not say who the members are (a log
/// whose beginning was purged, with no readable snapshot): then nothing can be proved gone.
fn lost_quorum<'f>(f: &'f Facts<'_>) -> Option<Lost<'f>> {
    let wal = f.wal?;
    let mine = wal.members.iter().find(|m| m.id == wal.member_id)?;
    if !wal.members_complete || mine.is_learner {
        return None;
    }
    let voters: Vec<&WalMember> = wal.members.iter().filter(|m| !m.is_learner).collect();
    let mut gone: Vec<&WalMember> = voters
        .iter()
        .copied()
        .filter(|m| m.id != wal.member_id && is_gone(f, m))
        .collect();
    gone.sort_by_key(|m| m.id);
    let present_unlisted = voters
        .iter()
        .copied()
        .filter(|m| m.id != wal.member_id && !gone.iter().any(|g| g.id == m.id))
        .filter(|m| m.peer_urls.iter().all(|u| owner_of(f, u).is_none()))
        .collect();
    (voters.len() - gone.len() < quorum(voters.len())).then_some(Lost {
        wal,
        voters: voters.len(),
        gone,
        present_unlisted,
    })
}

/// Gone at this look: the machine with its peer URL vouched for a data dir without this member,
/// or no discovered machine has the URL and nothing answers on it.
fn is_gone(f: &Facts<'_>, m: &WalMember) -> bool {
    match m.peer_urls.iter().find_map(|u| owner_of(f, u)) {
        Some(owner) => {
            matches!(f.answer_of(&owner.name), Some(PeerAnswer::Vouched(v)) if !holds_member(v, m.id))
        }
        None => !f.undiscovered_alive.contains(&m.id),
    }
}

fn holds_member(v: &Vouch, id: u64) -> bool {
    match &v.data {
        VouchedData::Empty => false,
        VouchedData::Member { member_id, .. } => *member_id == format!("{id:x}"),
        // Cannot tell: it may be this member's data.
        VouchedData::Unreadable => true,
    }
}

fn describe(m: &WalMember) -> String {
    let urls = m.peer_urls.join(",");
    if m.name.is_empty() {
        format!("{:x} at {urls}", m.id)
    } else {
        format!("{} ({:x}) at {urls}", m.name, m.id)
    }
}
