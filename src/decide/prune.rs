//! Shrinking: members beyond `cluster.size` whose machines are gone for good are removed by a
//! member of the cluster (`etcd-bootstrap prune`, run by a timer), since nobody joins to remove
//! them. The same evidence as a joining node's: no discovered machine has the member's peer URL,
//! it does not answer on its client URLs, and so at two looks in a row. One member per step,
//! only while the members left alive would still make a quorum of the smaller cluster.

use super::facts::Facts;
use super::{Action, answered_view, dead_members, display_name, quorum, remove};

/// One step of a prune.
#[derive(Debug, PartialEq, Eq)]
pub enum Prune {
    /// Nothing (more) to remove: why.
    Done(String),
    /// Remove this member, then look again.
    Remove(Action, String),
    /// Look again: why.
    Wait(String),
}

pub fn prune(f: &Facts<'_>) -> Prune {
    let view = match answered_view(f) {
        Ok(Some(view)) => view,
        Ok(None) => {
            return Prune::Wait(
                "no member of the cluster answers (a prune runs on a member, beside a running cluster)"
                    .into(),
            );
        }
        Err(reason) => return Prune::Done(reason),
    };
    let members = view.members.len();
    if members <= f.spec.size {
        return Prune::Done(format!(
            "cluster {:x} has {members} members and cluster.size is {}: nothing to prune",
            view.cluster_id, f.spec.size
        ));
    }
    let dead = dead_members(f, view);
    let Some(d) = dead.iter().find(|d| f.dead_before.contains(&d.id)) else {
        return match dead.first() {
            Some(d) => Prune::Wait(format!(
                "member {} ({:x}) looks dead (no discovered machine has {}, and it does not answer); confirming at the next look before removing it",
                display_name(d),
                d.id,
                d.peer_urls.join(",")
            )),
            None => Prune::Done(format!(
                "cluster {:x} has {members} members, more than cluster.size {}, but none is provably dead: nothing removed (to shrink a live cluster, run `etcd-bootstrap leave` on the machines to retire)",
                view.cluster_id, f.spec.size
            )),
        };
    };
    let live = members - dead.len();
    let after = members - 1;
    if live < quorum(after) {
        return Prune::Wait(format!(
            "member {} ({:x}) is dead, but removing it would leave {live} live of {after}, below quorum {}",
            display_name(d),
            d.id,
            quorum(after)
        ));
    }
    let super::Decision::Act(action) = remove(d) else {
        unreachable!("remove() is an action")
    };
    Prune::Remove(
        action,
        format!(
            "cluster {:x} has {members} members and cluster.size is {}: removing member {} ({:x}, {}), which no discovered machine has and which did not answer at two looks",
            view.cluster_id,
            f.spec.size,
            display_name(d),
            d.id,
            d.peer_urls.join(",")
        ),
    )
}
