//! The rows where a cluster answers and this node has no data: `reuse`, `replace-self`,
//! `join` (removing a dead member first when that is safe), and the dead-member rules they share
//! with `prune` and the lost-quorum rows.

use super::*;

pub(super) fn decide_with_cluster(
    f: &Facts<'_>,
    me: &Candidate,
    my_url: &str,
    view: &ClusterView,
) -> Outcome {
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
                        learner: false,
                        restore: None,
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
            // Another added member that has not started either: its agent may have written its
            // env file before this member was added, and its etcd would then refuse to start
            // (its initial cluster one member short). This member never ran: withdraw it, and
            // join once the other has started (below). Raft orders two additions, so of two
            // machines that added themselves at once only the later one sees the other here.
            if let Some(other) = view
                .members
                .iter()
                .find(|o| o.id != m.id && !o.has_started())
            {
                let who = owner_or_display_name(f, other);
                return outcome(
                    Row::Join,
                    remove(m),
                    format!(
                        "member {who} ({:x}) was added too and has not started yet, and its env file may not list this node: withdrawing this node's never-started member {:x} to join once {who} has started",
                        other.id, m.id
                    ),
                );
            }
            let plan = start_in(f, view, me, m.is_learner);
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
    // etcd starts a joining member only when its ETCD_INITIAL_CLUSTER lists exactly the members
    // the cluster has by then ("member count is unequal"). A member added while another added
    // member has not started yet makes that one's env file wrong, and its etcd would not start
    // until its agent ran again: members join one at a time, as voters or as learners.
    if let Some(other) = view.members.iter().find(|m| !m.has_started()) {
        let who = owner_or_display_name(f, other);
        return wait(format!(
            "member {who} ({:x}) was added but its etcd has not started yet; joining once it has (a joining etcd must find exactly the members its env file lists)",
            other.id
        ));
    }
    let learners: Vec<&EtcdMember> = view.members.iter().filter(|m| m.is_learner).collect();
    let allowed = learners_allowed(f, view);
    if f.spec.join_as_learner && learners.len() >= allowed {
        let names: Vec<String> = learners.iter().map(|l| display_name(l)).collect();
        return wait(format!(
            "learner{} {} still catching up and etcd allows {}; waiting for a promotion",
            if names.len() == 1 { "" } else { "s" },
            names.join(", ") + if names.len() == 1 { " is" } else { " are" },
            if allowed == 1 {
                "one learner at a time".to_owned()
            } else {
                format!("{allowed} learners at a time (cluster.max_learners)")
            }
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

/// How many learners etcd accepts in this cluster: `cluster.max_learners` once this machine's
/// etcd and the cluster version are 3.6 or later (the cluster version is its lowest member's;
/// each member checks the limit itself when it applies a learner's addition, and up to 3.5 the
/// limit is one, fixed); one otherwise, and when a version is unknown. A member started without
/// the same setting refuses the addition ("too many learner members"), and nothing is added.
fn learners_allowed(f: &Facts<'_>, view: &ClusterView) -> usize {
    let cluster = f
        .probes
        .iter()
        .filter_map(|p| match &p.answer {
            PeerAnswer::Answered(v) if v.cluster_id == view.cluster_id => v.cluster_version,
            _ => None,
        })
        .max();
    let at_least_36 = |v: Option<EtcdVersion>| v.is_some_and(|v| v.line() >= (3, 6));
    if at_least_36(f.local_etcd.map(|l| l.version)) && at_least_36(cluster) {
        f.spec.max_learners
    } else {
        1
    }
}
