//! Shrinking (`prune.rs`): which members beyond cluster.size a member of the cluster removes.

use super::*;

/// This node is machine 0 of a cluster of five members, of which machines 3 and 4 are no
/// longer discovered; `cluster.size` was lowered to `size`.
fn shrinking(size: usize) -> World {
    let mut w = World::new(size, 3).all_answer(view((0..5).map(member).collect()));
    w.dead_before = vec![103, 104];
    w
}

#[test]
fn nothing_is_pruned_at_or_below_the_size() {
    let w = shrinking(5);
    assert_eq!(
        prune(&w.facts()),
        Prune::Done("cluster c1 has 5 members and cluster.size is 5: nothing to prune".into())
    );
}

#[test]
fn a_member_confirmed_dead_at_two_looks_is_removed_one_at_a_time() {
    let w = shrinking(3);
    let Prune::Remove(Action::RemoveMember { id, .. }, why) = prune(&w.facts()) else {
        panic!("expected a removal")
    };
    assert_eq!(id, 103);
    assert_eq!(
        why,
        "cluster c1 has 5 members and cluster.size is 3: removing member etcd-3 (67, http://10.0.0.13:2380), which no discovered machine has and which did not answer at two looks"
    );
    // Seen dead only now: confirmed at the next look.
    let mut w = shrinking(3);
    w.dead_before.clear();
    assert!(
        matches!(prune(&w.facts()), Prune::Wait(why) if why.contains("confirming at the next look"))
    );
    // Alive on its own URL although not listed: not dead.
    let mut w = shrinking(3);
    w.alive = vec![103, 104];
    assert!(matches!(prune(&w.facts()), Prune::Done(why) if why.contains("none is provably dead")));
}

#[test]
fn a_removal_that_would_cost_the_quorum_waits() {
    // Five members, three dead: two live of four after a removal is below quorum 3.
    let mut w = World::new(3, 2).all_answer(view((0..5).map(member).collect()));
    w.dead_before = vec![102, 103, 104];
    assert!(
        matches!(prune(&w.facts()), Prune::Wait(why) if why.contains("would leave 2 live of 4, below quorum 3"))
    );
}
