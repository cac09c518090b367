//! Life after the first boot (issue 13): a machine that boots late completes the cluster, on
//! real etcd 3.4 and 3.5. The first two agents run with the shipped default (no
//! `discovery.timeout`): they wait, untouched, however late the third machine is. (The boot
//! test makes the gap minutes long against a unit start timeout of one minute.) And a running
//! cluster grows when `cluster.size` is raised and machines are added.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;

on_both_releases! {
    a_machine_booting_late_completes_the_cluster => 90,
    raising_the_size_grows_the_cluster => 91,
}

/// Longer than the lab's usual deadline would allow for a first look, short enough for CI.
const LATE: Duration = Duration::from_secs(15);

fn a_machine_booting_late_completes_the_cluster(etcd: Etcd, block: u8) {
    let mut lab = Lab::new(etcd, block, 3, 3);
    lab.configure_all();
    for i in 0..3 {
        // The shipped default: no deadline.
        let path = lab.nodes[i].config();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("timeout = \"30s\"\n", "");
        std::fs::write(path, text).unwrap();
    }
    let mut early: Vec<_> = [0, 1].iter().map(|&i| lab.agent_spawn(i, &[])).collect();
    std::thread::sleep(LATE);
    for (i, agent) in early.iter_mut().enumerate() {
        assert!(
            agent.try_wait().unwrap().is_none(),
            "{} gave up before the third machine came",
            lab.nodes[i].name
        );
        assert!(!lab.nodes[i].env_file().exists());
    }
    let late = lab.agent_ok(2);
    assert!(
        stderr(&late).contains("row=\"bootstrap\""),
        "{}",
        stderr(&late)
    );
    for (i, agent) in early.into_iter().enumerate() {
        let out = agent.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(out.status.success(), "{}: {err}", lab.nodes[i].name);
        assert!(
            err.contains("waiting: "),
            "it said what it waited for: {err}"
        );
        assert!(err.contains("row=\"bootstrap\""), "{err}");
    }
    for i in 0..3 {
        lab.start_etcd(i);
    }
    let view = lab.wait_healthy(&[0, 1, 2], 3);
    assert_eq!(view.members.len(), 3);
}

/// `cluster.size` raised from 3 to 5 and two machines booted: each joins the running cluster
/// (one membership change per step, as the join rows do), and the cluster has five voters.
fn raising_the_size_grows_the_cluster(etcd: Etcd, block: u8) {
    let mut lab = formed(etcd, block);
    let net = lab.etcd.net;
    lab.size = 5;
    for i in 4..=5 {
        lab.add_node(&format!("127.{net}.{block}.{i}"));
    }
    lab.configure_all();
    // As at boot, each machine's etcd starts once its agent is done; etcd refuses a fifth
    // voter while the fourth has not started ("unhealthy cluster"), so the order matters.
    for i in [3, 4] {
        let out = lab.agent_ok(i);
        let err = stderr(&out);
        assert!(err.contains("added this node as a member"), "{err}");
        assert_eq!(
            lab.nodes[i].env_value("ETCD_INITIAL_CLUSTER_STATE"),
            "existing"
        );
        lab.start_etcd(i);
        lab.wait_listening(i);
    }
    let view = lab.wait_healthy(&[0, 1, 2, 3, 4], 5);
    assert!(view.members.iter().all(|m| !m.is_learner));
    // The first three restart on their data, in the larger cluster.
    let out = lab.agent_ok(0);
    assert!(stderr(&out).contains("row=\"restart\""), "{}", stderr(&out));
}
