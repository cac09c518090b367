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

use super::facts::{BootstrapMember, Facts, PeerAnswer, Vouch, VouchedData};
use crate::member::{Candidate, MemberName};

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
                "{who} holds data of cluster {cluster_id} (member {member_id}, raft index {last_index}): never bootstrapping a new cluster beside it; waiting for its etcd"
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
        Some(theirs) if same_members(theirs, expected) => Standing::Agrees,
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
