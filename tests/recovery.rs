//! Lost-quorum recovery on real etcd 3.4 and 3.5: a 3-member cluster with a key loses two
//! machines with their disks for good; replacements boot at new addresses and the survivor
//! reboots. With `cluster.recover_lost_quorum` the survivor restarts the cluster from its own
//! data (copied aside first) and the replacements join it one at a time: 3 members, and the key.
//! Without it nobody decides anything: every agent says that the quorum is lost and who holds
//! the freshest data, and the survivor's data dir is untouched.

#[macro_use]
mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::*;

on_both_releases! {
    a_lost_quorum_is_recovered_from_the_survivors_data => 97,
    without_the_setting_a_lost_quorum_is_only_reported => 98,
}

/// Machines 1 and 2 are terminated with their disks, replaced by machines 3 and 4 at new
/// addresses; machine 0's etcd stops (its reboot). Returns the lab with every config listing
/// the machines that exist now.
fn lose_two_of_three(etcd: Etcd, block: u8, extra: &str) -> Lab {
    let mut lab = formed(etcd, block);
    let kv = Kv::new();
    kv.put(&lab.nodes[0].client_url(), "before", "kept");
    // Then the last write before the loss. Its commit reaches the survivor's log only with a
    // later entry, which never comes: a forced start may keep it (applied to the database) or
    // lose it (not applied yet), but every member must then agree on it, which is what
    // etcd-io/etcd#14009 breaks and this test checks. "before" is committed in every log.
    kv.put(&lab.nodes[0].client_url(), "last", "1");
    std::thread::sleep(Duration::from_millis(300));
    for i in [1, 2] {
        lab.stop_etcd(i);
        std::fs::remove_dir_all(lab.nodes[i].data_dir()).unwrap();
    }
    lab.stop_etcd(0);
    let prefix = format!("127.{}.{block}.", lab.etcd.net);
    for last in [4, 5] {
        lab.add_node(&format!("{prefix}{last}"));
    }
    lab.cluster_extra = extra.to_owned();
    for i in [0, 3, 4] {
        lab.configure(i, &[0, 3, 4]);
        // The recovery start runs etcd itself.
        let config = lab.nodes[i].config();
        let text = std::fs::read_to_string(&config).unwrap();
        let binary = format!("\n[etcd]\nbinary = \"{}\"\n", lab.etcd.bin.display());
        std::fs::write(&config, text + &binary).unwrap();
    }
    lab
}

/// Waits for a spawned agent and returns its exit code and stderr.
fn finish(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    (out.status.code(), stderr(&out))
}

fn a_lost_quorum_is_recovered_from_the_survivors_data(etcd: Etcd, block: u8) {
    let mut lab = lose_two_of_three(etcd, block, "recover_lost_quorum = true\n");
    let data = lab.nodes[0].data_dir();
    let before = dir_snapshot(&data);
    let mut replacements: Vec<(usize, Child)> = [3, 4]
        .into_iter()
        .map(|i| (i, lab.agent_spawn(i, &[])))
        .collect();

    // `plan` on the survivor shows who recovers and why, once the replacements have vouched.
    let deadline = Instant::now() + Duration::from_secs(20);
    let plan = loop {
        let out = lab.agent(0, &["plan"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("recover") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(plan.contains("copy the data dir aside"), "{plan}");
    assert!(plan.contains("--force-new-cluster"), "{plan}");
    assert!(plan.contains("This node holds the freshest data"), "{plan}");

    let out = lab.agent_ok(0);
    let err = stderr(&out);
    assert!(
        err.contains("has lost its quorum: 2 of its 3 voting members are gone (node-"),
        "{err}"
    );
    assert!(err.contains("copied the data dir to "), "{err}");
    assert!(
        err.contains("starting etcd once with --force-new-cluster as member "),
        "{err}"
    );
    assert!(
        err.contains("the recovery start served as a cluster of one and took its snapshot"),
        "{err}"
    );
    assert!(
        !lab.nodes[0].env().contains("FORCE_NEW_CLUSTER"),
        "etcd.service never forces"
    );
    // The copy holds exactly what the data dir held.
    let copy = std::fs::read_dir(data.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("data.before-recovery-"))
        .expect("a copy beside the data dir");
    let rel = |snap: Vec<(std::path::PathBuf, u64)>, root: &std::path::Path| {
        snap.into_iter()
            .map(|(p, n)| (p.strip_prefix(root).unwrap().to_owned(), n))
            .collect::<Vec<_>>()
    };
    assert_eq!(rel(dir_snapshot(&copy), &copy), rel(before, &data));

    // etcd.service starts the cluster of one. A replacement may add itself at once, which
    // leaves it without a quorum until that replacement's etcd starts: as under systemd, each
    // replacement's etcd starts as soon as its agent has written its file.
    lab.start_etcd(0);

    // The replacements join one at a time (the agents see to it): each one's etcd starts once
    // its agent is done.
    while !replacements.is_empty() {
        let deadline = Instant::now() + Duration::from_secs(40);
        let done = loop {
            if let Some(k) = replacements
                .iter_mut()
                .position(|(_, c)| c.try_wait().unwrap().is_some())
            {
                break k;
            }
            assert!(Instant::now() < deadline, "no replacement's agent finished");
            std::thread::sleep(Duration::from_millis(100));
        };
        let (i, child) = replacements.remove(done);
        let (code, err) = finish(child);
        assert_eq!(code, Some(0), "{err}");
        assert!(
            err.contains("Its agent says: cluster "),
            "the survivor's words are repeated: {err}"
        );
        lab.start_etcd(i);
    }
    let view = lab.wait_healthy(&[0, 3, 4], 3);
    let last = Kv::new().get(&lab.nodes[0].client_url(), "last");
    assert_eq!(view.members.len(), 3);
    // Every member serves the survivor's data, and they agree on the last write too (a joiner
    // replaying the forced log would miss what the survivor kept, etcd-io/etcd#14009).
    for i in [0, 3, 4] {
        let kv = Kv::new();
        let url = lab.nodes[i].client_url();
        assert_eq!(
            kv.get(&url, "before"),
            b64("kept"),
            "on {}",
            lab.nodes[i].name
        );
        assert_eq!(kv.get(&url, "last"), last, "on {}", lab.nodes[i].name);
    }
    Kv::new().put(&lab.nodes[4].client_url(), "after", "1");

    // A later boot of the survivor is an ordinary restart (the others answer, or are electing a
    // new leader right then), never a second recovery.
    lab.stop_etcd(0);
    let out = lab.agent_ok(0);
    let err = stderr(&out);
    assert!(err.contains("row=\"restart"), "{err}");
    assert!(!err.contains("force-new-cluster"), "{err}");
    lab.start_etcd(0);
    lab.wait_healthy(&[0, 3, 4], 3);
}

fn without_the_setting_a_lost_quorum_is_only_reported(etcd: Etcd, block: u8) {
    let lab = lose_two_of_three(etcd, block, "");
    for i in [0, 3, 4] {
        let n = &lab.nodes[i];
        let text = std::fs::read_to_string(n.config()).unwrap();
        std::fs::write(
            n.config(),
            text.replace("timeout = \"30s\"", "timeout = \"8s\""),
        )
        .unwrap();
    }
    let data = lab.nodes[0].data_dir();
    let before = dir_snapshot(&data);
    let env_before = lab.nodes[0].env();
    let replacements: Vec<Child> = [3, 4]
        .into_iter()
        .map(|i| lab.agent_spawn(i, &[]))
        .collect();
    let out = lab.agent(0, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(
        err.contains("no decision within discovery.timeout (8s): cluster "),
        "{err}"
    );
    assert!(
        err.contains("has lost its quorum: 2 of its 3 voting members are gone (node-"),
        "{err}"
    );
    assert!(
        err.contains("survivors: node-1 (member "),
        "the freshest survivor is named: {err}"
    );
    assert!(
        err.contains("This node holds the freshest data; to restart the cluster from it, set cluster.recover_lost_quorum = true"),
        "{err}"
    );
    for child in replacements {
        let (code, err) = finish(child);
        assert_eq!(code, Some(69), "{err}");
        assert!(err.contains("Its agent says: cluster "), "{err}");
        assert!(err.contains("has lost its quorum"), "{err}");
    }
    assert_eq!(dir_snapshot(&data), before, "the data dir is untouched");
    assert_eq!(lab.nodes[0].env(), env_before, "the env file is untouched");
    let copies = std::fs::read_dir(data.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("before-recovery"))
        .count();
    assert_eq!(copies, 0);
}
