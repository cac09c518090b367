//! Small rules the rows share: who owns a peer URL, who is healthy, the member sets and the
//! names shown in reasons.

use super::*;

/// Some answering peer reports a decided cluster version (which is all etcd checks on joining).
pub(super) fn settled(f: &Facts<'_>) -> bool {
    f.probes
        .iter()
        .any(|p| matches!(&p.answer, PeerAnswer::Answered(v) if v.settled))
}

pub(super) fn remove(m: &EtcdMember) -> Decision {
    Decision::Act(Action::RemoveMember {
        id: m.id,
        name: m.name.clone(),
        peer_urls: m.peer_urls.clone(),
    })
}

pub(super) fn peer_url(f: &Facts<'_>, c: &Candidate) -> String {
    f.spec.peer_url(&c.host)
}

pub(super) fn owner_of<'f>(f: &'f Facts<'_>, peer_url_: &str) -> Option<&'f Candidate> {
    f.discovered.iter().find(|c| peer_url(f, c) == peer_url_)
}

/// A member is healthy when the discovered machine that owns it answered for the same cluster.
pub(super) fn is_healthy(f: &Facts<'_>, m: &EtcdMember, cluster_id: u64) -> bool {
    m.peer_urls
        .iter()
        .filter_map(|u| owner_of(f, u))
        .any(|owner| {
            matches!(f.answer_of(&owner.name), Some(PeerAnswer::Answered(v)) if v.cluster_id == cluster_id)
        })
}

/// The bootstrap member set: every discovered machine, sorted by name (the same on every node).
pub(super) fn discovered_cluster(f: &Facts<'_>) -> Vec<(MemberName, String)> {
    let mut out: Vec<_> = f
        .discovered
        .iter()
        .map(|c| (c.name.clone(), peer_url(f, c)))
        .collect();
    out.sort();
    out
}

pub(super) fn forming_cluster(members: &[EtcdMember]) -> Vec<(String, String)> {
    let mut out: Vec<_> = members
        .iter()
        .flat_map(|m| m.peer_urls.iter().map(|u| (m.name.clone(), u.clone())))
        .collect();
    out.sort();
    out
}

pub(super) fn same_set(forming: &[(String, String)], expected: &[(MemberName, String)]) -> bool {
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
pub(super) fn initial_cluster(
    f: &Facts<'_>,
    view: &ClusterView,
    me: &Candidate,
) -> Vec<(MemberName, String)> {
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

/// A member as messages name it: the discovered machine that owns its peer URL, else its own
/// name (an added member has none until its etcd starts).
pub(super) fn owner_or_display_name(f: &Facts<'_>, m: &EtcdMember) -> String {
    m.peer_urls
        .iter()
        .find_map(|u| owner_of(f, u))
        .map_or_else(|| display_name(m), |c| c.name.to_string())
}

pub(super) fn display_name(m: &EtcdMember) -> String {
    if m.name.is_empty() {
        format!("(unstarted {:x})", m.id)
    } else {
        m.name.clone()
    }
}

/// The names, sorted; past a dozen, the first ten and how many more (a tag on 10,000 machines
/// must not make a 100 KB log line).
pub(super) fn names(c: &[Candidate]) -> String {
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

/// Start with `existing` on the membership `view` lists, this node's member among it (a
/// restart, or a member the cluster already added for it).
pub(super) fn start_in(
    f: &Facts<'_>,
    view: &ClusterView,
    me: &Candidate,
    learner: bool,
) -> StartPlan {
    StartPlan {
        state: ClusterState::Existing,
        initial_cluster: initial_cluster(f, view, me),
        force_new_cluster: false,
        learner,
        restore: None,
    }
}
