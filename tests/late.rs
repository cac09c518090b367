//! Life after the first boot (issue 13): a machine that boots late completes the cluster, on
//! real etcd 3.4 and 3.5. The first two agents run with the shipped default (no
//! `discovery.timeout`): they wait, untouched, however late the third machine is. (The boot
//! test makes the gap minutes long against a unit start timeout of one minute.)

#[macro_use]
mod common;

use std::time::Duration;

use common::*;

on_both_releases! {
    a_machine_booting_late_completes_the_cluster => 90,
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
