//! The bootstrap rule: a new cluster only on what every other member positively said.
//!
//! Silence is never evidence. A member that holds the cluster's data and is rebooting refuses
//! connections exactly like a machine that never ran etcd, for as long as its reboot takes; no
//! timer tells them apart. What does is the agent on that machine, which runs before etcd and
//! says, on the peer port, whether its data dir is empty and which member set it would
//! bootstrap. So a node bootstraps `new` only when every other expected member either vouched
//! "empty, this token, this member set" in this run (and said nothing else since: going quiet
//! afterwards is starting the etcd it vouched for), or is an etcd already bootstrapping exactly
//! this set (`forming`). A peer still vouching must also have heard this node's vouch: then,
//! once this node goes quiet to start etcd, that peer already holds its word.

use super::facts::{
    BootstrapMember, Facts, PeerAnswer, RestoreRef, SnapshotRef, StoreLook, Vouch, VouchedData,
};
use super::{
    CONFIRM_AFTER, Decision, Outcome, Row, StartPlan, discovered_cluster, forming_cluster, names,
    outcome, same_set, wait,
};
use crate::envfile::ClusterState;
use crate::member::{Candidate, MemberName};

/// The rows for an empty data dir when no cluster answers: `bootstrap` on every member's word, or
/// `wait` saying for whom.
pub fn decide_without_cluster(f: &Facts<'_>, me: &Candidate) -> Outcome {
    let n = f.discovered.len();
    if n != f.spec.size {
        let what = if n < f.spec.size {
            "waiting for"
        } else {
            "found more than the"
        };
        return wait(format!(
            "{what} {} members, found {n}: {}",
            f.spec.size,
            names(f.discovered)
        ));
    }
    if let Some(c) = f.unsettled.first() {
        return wait(format!(
            "{} ({}) was listed earlier in this run, is missing now and never vouched an empty data dir; a first bootstrap waits until it is listed again (restart the agent if it is gone for good)",
            c.name, c.host
        ));
    }
    // A snapshot of this cluster in the store is positive evidence that it existed: never
    // bootstrap empty beside it, and never take a store that cannot be read for an empty one.
    let snapshot = match f.backups.map(|b| (b, &b.look)) {
        None | Some((_, StoreLook::Nothing)) => None,
        Some((b, StoreLook::Unreadable { reason })) => {
            return wait(format!(
                "the backup store {} cannot be read ({reason}); a snapshot there would mean this cluster existed, so a first bootstrap waits until the store answers",
                b.store
            ));
        }
        Some((b, StoreLook::NotNeeded)) => {
            return wait(format!(
                "the backup store {} was not looked at in this look; looking before any bootstrap",
                b.store
            ));
        }
        Some((b, StoreLook::Newest(s))) if !b.restore => {
            return wait(format!(
                "the backup store holds {}: this cluster existed, and backup.restore = false, so no member bootstraps empty beside it. Set backup.restore = true to restore it on every member, or start over on purpose (docs/backup.md)",
                described(s)
            ));
        }
        Some((_, StoreLook::Newest(s))) => {
            if let Some(refused) = super::version::restorable(f, s) {
                return refused;
            }
            Some(s)
        }
    };
    let expected = discovered_cluster(f);
    let mut awaited: Vec<(&Candidate, String)> = Vec::new();
    let mut all_refusing = true;
    let mut vouched_for_it = 0;
    for c in f.discovered.iter().filter(|c| c.name != me.name) {
        let answer = f.answer_of(&c.name);
        if let Some(PeerAnswer::Forming { members }) = answer {
            let theirs = forming_cluster(members);
            if !same_set(&theirs, &expected) {
                return wait(format!(
                    "{} is bootstrapping a different member set ({}); waiting until discovery agrees",
                    c.name,
                    theirs
                        .iter()
                        .map(|(n, u)| format!("{n}={u}"))
                        .collect::<Vec<_>>()
                        .join(",")
                ));
            }
        }
        match standing(f, &me.name, c, &expected, answer) {
            Standing::Agrees => vouched_for_it += 1,
            Standing::Forming => {}
            Standing::HasData(reason) => return wait(reason),
            Standing::Awaited(reason) => {
                all_refusing &= matches!(answer, Some(PeerAnswer::Refused));
                awaited.push((c, reason));
            }
        }
    }
    if let Some(what) = f.cluster_seen {
        return wait(format!(
            "{what} earlier in this run, and no cluster answers now (its members may be rebooting, or its quorum is lost): never bootstrapping beside it"
        ));
    }
    if let Some((_, first)) = awaited.first() {
        // The opt-in fallback for fleets whose agents cannot reach each other: a member that has
        // refused connections for the whole settle counts as empty. Wrong for a member with data
        // that reboots for longer (docs/decisions.md), hence off unless configured.
        match f.spec.bootstrap_settle {
            Some(settle) if all_refusing && f.quiet_for >= settle => {
                return start_new(
                    expected,
                    snapshot,
                    format!(
                        "all {n} expected members are discovered and {} stayed silent for cluster.bootstrap_settle ({}s): on the settle fallback, without their vouch",
                        awaited
                            .iter()
                            .map(|(c, _)| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        settle.as_secs_f32()
                    ),
                );
            }
            Some(settle) if all_refusing => {
                let left = settle - f.quiet_for;
                return Outcome {
                    ends_in: Some(left),
                    ..wait(format!(
                        "{first}; or silence for {}s more (cluster.bootstrap_settle)",
                        left.as_secs_f32().ceil()
                    ))
                };
            }
            _ => {}
        }
        let more = match awaited.len() {
            1 => String::new(),
            k => format!(
                "; {} more awaited: {}",
                k - 1,
                awaited[1..]
                    .iter()
                    .map(|(c, _)| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        return wait(format!("{first}{more}"));
    }
    // Each vouch carries its machine's own listing (its set equals this one), so a listing that
    // missed a machine would have to miss it everywhere at once. With no vouch to cross-check
    // (a cluster of one, or peers already forming), a second look of this node's own does.
    if vouched_for_it == 0 && f.agreed_before != Some(expected.as_slice()) {
        return Outcome {
            ends_in: Some(CONFIRM_AFTER),
            agreed: Some(expected),
            ..wait(format!(
                "all {n} expected members are discovered and none but this node has anything to say; confirming at one more look"
            ))
        };
    }
    start_new(
        expected,
        snapshot,
        if n == 1 {
            "a cluster of one: this node is its only member and its data dir is empty, at two looks in a row".to_owned()
        } else {
            format!(
                "all {n} expected members are discovered and every other one vouched an empty data dir for this member set{} (or is bootstrapping it)",
                if snapshot.is_some() {
                    " and the same snapshot"
                } else {
                    ""
                }
            )
        },
    )
}

/// A new cluster of `expected`: empty (`bootstrap`), or made from `snapshot` (`restore`).
fn start_new(
    expected: Vec<(MemberName, String)>,
    snapshot: Option<&SnapshotRef>,
    why: String,
) -> Outcome {
    let (row, what) = match snapshot {
        Some(s) => (
            Row::Restore,
            format!(
                "restoring {} into a new cluster of these members",
                described(s)
            ),
        ),
        None => (Row::Bootstrap, "bootstrapping a new cluster".to_owned()),
    };
    let plan = StartPlan {
        state: ClusterState::New,
        initial_cluster: expected,
        force_new_cluster: false,
        learner: false,
        restore: snapshot.cloned(),
    };
    outcome(row, Decision::Start(plan), format!("{why}: {what}"))
}

/// A snapshot, for people: its key, whose it is and how fresh.
pub fn described(s: &SnapshotRef) -> String {
    format!(
        "snapshot {} (cluster {}, revision {}, raft index {}, taken {})",
        s.key,
        s.cluster_id,
        s.revision,
        s.raft_index,
        crate::civil::date(s.taken_at)
    )
}

/// Where one peer stands for a first bootstrap.
#[derive(Debug, PartialEq, Eq)]
pub enum Standing {
    /// Vouched for exactly this bootstrap (now, or earlier in this run and quiet since).
    Agrees,
    /// Bootstrapping this very set already.
    Forming,
    /// Not yet: the reason, naming the peer. Ends when the peer says more.
    Awaited(String),
    /// Holds data of a cluster: never bootstrap beside it in this run.
    HasData(String),
}

/// What `peer` said, judged against the set this node would bootstrap.
pub fn standing(
    f: &Facts<'_>,
    me: &MemberName,
    peer: &Candidate,
    expected: &[(MemberName, String)],
    answer: Option<&PeerAnswer>,
) -> Standing {
    let who = format!("{} ({})", peer.name, peer.host);
    let earlier = f
        .vouched
        .iter()
        .find(|(n, _)| *n == peer.name)
        .map(|(_, v)| v);
    let vouch = match answer {
        Some(PeerAnswer::Vouched(v)) => {
            let standing = judge(f, &who, peer, expected, v);
            // Still vouching: it must have heard this node before this node goes quiet, or it
            // would wait for a vouch it never saw (nobody else can speak for this node).
            if standing == Standing::Agrees && !v.heard.iter().any(|n| n == me.as_str()) {
                return Standing::Awaited(format!(
                    "waiting for {who} to hear this node's vouch (it agrees to bootstrap this set)"
                ));
            }
            return standing;
        }
        // Quiet after vouching: the peer is starting the etcd it vouched for.
        Some(PeerAnswer::Refused | PeerAnswer::Unknown { .. }) if earlier.is_some() => {
            earlier.expect("checked")
        }
        Some(PeerAnswer::Refused) => {
            return Standing::Awaited(format!(
                "waiting for {who} to vouch: a first bootstrap needs every member's agent to report an empty data dir"
            ));
        }
        Some(PeerAnswer::Unknown { reason }) => {
            return Standing::Awaited(format!(
                "waiting for {who} to vouch; it did not answer clearly: {reason}"
            ));
        }
        None => return Standing::Awaited(format!("waiting for {who} to be probed")),
        Some(PeerAnswer::Forming { .. }) => return Standing::Forming,
        Some(PeerAnswer::Stalled { version }) => {
            return Standing::HasData(format!(
                "{who} runs etcd {version} on its data without a leader (its cluster is still starting, or has lost its quorum): never bootstrapping beside it"
            ));
        }
        Some(PeerAnswer::Answered(_)) => unreachable!("handled with the answering cluster"),
    };
    judge(f, &who, peer, expected, vouch)
}

fn judge(
    f: &Facts<'_>,
    who: &str,
    peer: &Candidate,
    expected: &[(MemberName, String)],
    v: &Vouch,
) -> Standing {
    match &v.data {
        VouchedData::Empty => {}
        VouchedData::Member {
            cluster_id,
            member_id,
            last_index,
        } => {
            return Standing::HasData(format!(
                "{who} holds data of cluster {cluster_id} (member {member_id}, raft index {last_index}): never bootstrapping a new cluster beside it; waiting for its etcd{}",
                v.waiting
                    .as_deref()
                    .map(|w| format!(". Its agent says: {}", relayed(w)))
                    .unwrap_or_default()
            ));
        }
        VouchedData::Unreadable => {
            return Standing::HasData(format!(
                "{who} holds an etcd data dir its agent cannot read: never bootstrapping a new cluster beside it"
            ));
        }
    }
    if v.cluster_token != f.spec.token {
        return Standing::Awaited(format!(
            "{who} vouches for cluster token {:?}, this node's is {:?}: the agents' configurations differ",
            v.cluster_token, f.spec.token
        ));
    }
    let its_url = f.spec.peer_url(&peer.host);
    if !v.peer_urls.contains(&its_url) {
        return Standing::Awaited(format!(
            "{who} vouches with peer URLs {} where {its_url} was expected: the agents' configurations differ",
            v.peer_urls.join(",")
        ));
    }
    match &v.bootstrap {
        None => Standing::Awaited(format!(
            "waiting for {who} to discover all {} members (it vouched an empty data dir)",
            f.spec.size
        )),
        Some(theirs) if same_members(theirs, expected) => {
            let mine = f.backups.and_then(|b| b.would_restore());
            if v.restore == mine {
                return Standing::Agrees;
            }
            let say = |r: &Option<RestoreRef>| match r {
                Some(r) => format!("restore snapshot {} (sha256 {})", r.key, r.sha256),
                None => "bootstrap empty (it found no snapshot)".to_owned(),
            };
            Standing::Awaited(format!(
                "{who} would {}, this node would {}: waiting until the agents see the same backup store",
                say(&v.restore),
                say(&mine).replace("it found", "this node found")
            ))
        }
        Some(theirs) => Standing::Awaited(format!(
            "{who} would bootstrap a different member set ({}); waiting until discovery agrees",
            theirs
                .iter()
                .map(|m| format!("{}={}", m.name, m.peer_url))
                .collect::<Vec<_>>()
                .join(",")
        )),
    }
}

/// A peer's own words, as this node repeats them: bounded, control characters escaped.
fn relayed(words: &str) -> String {
    const MAX: usize = 600;
    let mut out: String = words
        .chars()
        .take(MAX)
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_debug().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect();
    if words.chars().count() > MAX {
        out.push('…');
    }
    out
}

fn same_members(theirs: &[BootstrapMember], expected: &[(MemberName, String)]) -> bool {
    theirs.len() == expected.len()
        && theirs
            .iter()
            .zip(expected)
            .all(|(a, (n, u))| a.name == n.as_str() && a.peer_url == *u)
}

/// The set as a vouch carries it.
pub fn bootstrap_set(expected: &[(MemberName, String)]) -> Vec<BootstrapMember> {
    expected
        .iter()
        .map(|(n, u)| BootstrapMember {
            name: n.to_string(),
            peer_url: u.clone(),
        })
        .collect()
}
