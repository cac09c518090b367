//! Shrinking 5 → 3 on real etcd 3.4 and 3.5: `cluster.size` lowered, two machines terminated
//! with their disks. Nobody joins to remove their members, so `etcd-bootstrap prune` (its timer
//! runs it on every member) removes them, one at a time, once each looked dead at two looks;
//! the cluster keeps serving and a key written before is still there.

#[macro_use]
mod common;

use common::*;

on_both_releases! {
    lowering_the_size_and_terminating_machines_shrinks_the_cluster => 92,
}

fn lowering_the_size_and_terminating_machines_shrinks_the_cluster(etcd: Etcd, block: u8) {
    let mut lab = Lab::new(etcd, block, 5, 5);
    lab.configure_all();
    lab.agents_ok_together(&[0, 1, 2, 3, 4]);
    for i in 0..5 {
        lab.start_etcd(i);
    }
    lab.wait_healthy(&[0, 1, 2, 3, 4], 5);
    Kv::new().put(&lab.nodes[0].client_url(), "before", "kept");

    // Nothing to prune while the cluster has cluster.size members.
    let out = lab.agent(0, &["prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has 5 members and cluster.size is 5: nothing to prune"),
        "{}",
        stderr(&out)
    );

    lab.size = 3;
    for i in [3, 4] {
        lab.stop_etcd(i);
        std::fs::remove_dir_all(lab.nodes[i].data_dir()).unwrap();
    }
    for i in 0..3 {
        lab.configure(i, &[0, 1, 2]);
    }
    let out = lab.agent(0, &["prune"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    // Each removal on the evidence (a call etcd refused or that timed out is tried again).
    assert!(
        err.contains("which no discovered machine has and which did not answer at two looks"),
        "{err}"
    );
    assert_eq!(err.matches("removed member member=").count(), 2, "{err}");
    assert!(
        err.contains("has 3 members and cluster.size is 3: nothing to prune"),
        "{err}"
    );
    let view = lab.wait_healthy(&[0, 1, 2], 3);
    let names: Vec<&str> = view.members.iter().map(|m| m.name.as_str()).collect();
    assert!(
        !names.contains(&"node-4") && !names.contains(&"node-5"),
        "{names:?}"
    );
    for i in 0..3 {
        assert_eq!(
            Kv::new().get(&lab.nodes[i].client_url(), "before"),
            b64("kept")
        );
    }
    // Again on another member: nothing left to do.
    let out = lab.agent(1, &["prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing to prune"),
        "{}",
        stderr(&out)
    );
}
