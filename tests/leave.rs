//! `etcd-bootstrap leave` on real etcd 3.4 and 3.5: a follower leaves, then the leader (which
//! hands leadership over first); the cluster keeps serving (a key written before is read and a
//! new one written after each step) and loses one member each time; the last member refuses.

#[macro_use]
mod common;

use common::*;

on_both_releases! {
    a_follower_then_the_leader_leave_while_the_cluster_serves => 95,
    leaving_is_refused_when_it_would_cost_the_quorum => 96,
}

fn a_follower_then_the_leader_leave_while_the_cluster_serves(etcd: Etcd, block: u8) {
    let mut lab = formed(etcd, block);
    let kv = Kv::new();
    kv.put(&lab.nodes[0].client_url(), "before", "kept");
    let members = lab.members(0);
    let leader_id = kv.leader(&lab.nodes[0].client_url());
    let index_of = |id: u64| {
        let m = members.iter().find(|m| m.id == id).unwrap();
        lab.nodes.iter().position(|n| m.name == n.name).unwrap()
    };
    let leader = index_of(leader_id);
    let follower = (0..3).find(|&i| i != leader).unwrap();

    // A follower leaves, and its data dir goes aside once its etcd has stopped (a removed etcd
    // stops itself), so this disk would join afresh.
    let data_dir = lab.nodes[follower].data_dir();
    let out = lab.agent(follower, &["leave", "--move-data-aside"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("removed this member ("), "{err}");
    assert!(err.contains("moved the data dir aside to "), "{err}");
    assert!(!data_dir.exists());
    let moved = std::fs::read_dir(data_dir.parent().unwrap())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("data.left-"));
    assert!(moved, "no data.left-* beside {}", data_dir.display());
    assert!(
        !err.contains("handed leadership"),
        "a follower has no leadership to hand: {err}"
    );
    let rest: Vec<usize> = (0..3).filter(|&i| i != follower).collect();
    lab.wait_healthy(&rest, 2);
    assert_eq!(
        kv.get(&lab.nodes[leader].client_url(), "before"),
        b64("kept")
    );
    kv.put(&lab.nodes[leader].client_url(), "after-follower", "1");
    // Again: nothing left to do.
    let again = lab.agent(follower, &["leave"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("is not a member of the cluster: nothing to leave"));
    lab.stop_etcd(follower);

    // The leader leaves: leadership first goes to the other member.
    let other = rest.iter().copied().find(|&i| i != leader).unwrap();
    let out = lab.agent(leader, &["leave"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("handed leadership to the most caught-up healthy voter"),
        "{err}"
    );
    let view = lab.wait_healthy(&[other], 1);
    assert_eq!(view.members.len(), 1);
    assert_eq!(
        kv.get(&lab.nodes[other].client_url(), "before"),
        b64("kept")
    );
    kv.put(&lab.nodes[other].client_url(), "after-leader", "1");
    lab.stop_etcd(leader);

    // The last member refuses: leaving would end the cluster.
    let out = lab.agent(other, &["leave"]);
    assert_eq!(out.status.code(), Some(79), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is the cluster's only member"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lab.members(other).len(), 1);
}

/// One of three members is down: without a second, the other two would have no quorum.
fn leaving_is_refused_when_it_would_cost_the_quorum(etcd: Etcd, block: u8) {
    let mut lab = formed(etcd, block);
    lab.stop_etcd(2);
    // Refused only once it has asked until its deadline: a member may be electing a leader.
    let out = lab.agent(0, &["leave", "--timeout", "3s"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(79), "{err}");
    assert!(
        err.contains("did not leave the cluster within 3s: refusing to leave: without this member the cluster has 2 voters and needs 2 healthy for a quorum, but only 1 are (1 not: node-3)"),
        "{err}"
    );
    assert_eq!(lab.members(0).len(), 3, "nothing was removed");
}
