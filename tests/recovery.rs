//! Lost-quorum recovery on real etcd 3.4 and 3.5: a 3-member cluster with a key loses two
//! machines with their disks for good; replacements boot at new addresses and the survivor
//! reboots. With `cluster.recover_lost_quorum` the survivor restarts the cluster from its own
//! data (copied aside first) and the replacements join it one at a time: 3 members, and the key.
//! Without it nobody decides anything: every agent says that the quorum is lost and who holds
//! the freshest data, and the survivor's data dir is untouched. The same recovery on a cluster
//! grown with a learner (joined, promoted, then snapshotted past): the survivor's log must count
//! the promoted member as the voter it is. And the same recovery from a data dir without v2
//! `.snap` files, which etcd's main branch no longer writes: who this member is, its cluster's
//! members and the recovery start's own snapshot are read from the log and the backend.

#[macro_use]
mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::*;

on_both_releases! {
    a_lost_quorum_is_recovered_from_the_survivors_data => 97,
    without_the_setting_a_lost_quorum_is_only_reported => 98,
    a_lost_quorum_of_a_cluster_grown_with_a_learner_is_recovered => 96,
    a_lost_quorum_is_recovered_from_data_without_snap_files => 99,
}

/// A cluster that lost two of its three machines: who survived, who replaces the others.
struct Loss {
    lab: Lab,
    survivor: usize,
    replacements: [usize; 2],
}

/// Machines 1 and 2 are terminated with their disks, replaced by machines 3 and 4 at new
/// addresses; machine 0's etcd stops (its reboot). Every config lists the machines that exist
/// now.
fn lose_two_of_three(etcd: Etcd, block: u8, extra: &str) -> Loss {
    let lab = formed(etcd, block);
    lose(lab, 0, [1, 2], extra)
}

/// Three machines formed with a small snapshot count, so that etcd snapshots after a few writes.
fn formed_snapshotting_often(etcd: Etcd, block: u8) -> (Lab, etcd_bootstrap::decide::ClusterView) {
    let mut lab = Lab::new(etcd, block, 3, 3);
    lab.etcd_env = vec![("ETCD_SNAPSHOT_COUNT".into(), "20".into())];
    lab.configure_all();
    lab.agents_ok_together(&[0, 1, 2]);
    for i in 0..3 {
        lab.start_etcd(i);
    }
    let view = lab.wait_healthy(&[0, 1, 2], 3);
    (lab, view)
}

/// Machine 1 is replaced by machine 3, which joins as a learner and is promoted; etcd then
/// snapshots past the promotion (a small snapshot count), so the survivor's log holds the
/// learner's addition below its newest snapshot and the promotion as etcd writes it
/// (`"peerURLs":null,"isPromote":true`). Then machines 0 and 2 are lost; 3 survives.
fn lose_two_of_a_learner_grown_cluster(etcd: Etcd, block: u8, extra: &str) -> Loss {
    let (mut lab, _) = formed_snapshotting_often(etcd, block);
    lab.stop_etcd(1);
    std::fs::remove_dir_all(lab.nodes[1].data_dir()).unwrap();
    let learner = lab.add_node(&format!("127.{}.{block}.6", lab.etcd.net));
    lab.configure(learner, &[0, 2, learner]);
    let out = lab.agent(learner, &["--set", "cluster.join_as_learner=true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    lab.start_etcd(learner);
    let out = lab.agent(learner, &["promote", "--timeout", "60s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    lab.wait_healthy(&[0, 2, learner], 3);
    let kv = Kv::new();
    for k in 0..60 {
        kv.put(&lab.nodes[0].client_url(), &format!("fill-{k}"), "x");
    }
    // The survivor's data, read by the agent with etcd stopped: three voters, no learner.
    lab.stop_etcd(learner);
    assert!(
        std::fs::read_dir(lab.nodes[learner].data_dir().join("member/snap"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".snap")),
        "etcd wrote a snapshot after the promotion"
    );
    let out = lab.agent(learner, &["plan", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let members = plan["data_wal"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(
        members.iter().all(|m| m.get("isLearner").is_none()),
        "every member is a voter: {members:?}"
    );
    lab.start_etcd(learner);
    lab.wait_healthy(&[0, 2, learner], 3);
    lose(lab, learner, [0, 2], extra)
}

/// A cluster that snapshots often (its log holds snapshot records past its first entries)
/// loses machines 1 and 2; then the survivor's v2 `.snap` files are removed, as etcd's main
/// branch never writes them. The agent must still know whose data it is and who its members
/// were: from the log (which starts at the cluster's first entry here) and the backend.
fn lose_two_of_three_without_snap_files(etcd: Etcd, block: u8) -> Loss {
    let (lab, view) = formed_snapshotting_often(etcd, block);
    let kv = Kv::new();
    for k in 0..60 {
        kv.put(&lab.nodes[0].client_url(), &format!("fill-{k}"), "x");
    }
    let loss = lose(lab, 0, [1, 2], RECOVER);
    let member = loss.lab.nodes[0].data_dir().join("member");
    let mut removed = 0;
    for e in std::fs::read_dir(member.join("snap")).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(".snap") {
            std::fs::remove_file(e.path()).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 0, "etcd wrote .snap files to remove");

    // Whose data it is, from the log alone.
    let mine = view
        .members
        .iter()
        .find(|m| m.name == loss.lab.nodes[0].name)
        .unwrap();
    let out = loss.lab.agent(0, &["plan", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let wal = &plan["data_wal"];
    assert_eq!(wal["member_id"], format!("{:x}", mine.id), "{wal}");
    assert_eq!(wal["cluster_id"], format!("{:x}", view.cluster_id), "{wal}");
    let mut ids: Vec<&str> = wal["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = view.members.iter().map(|m| format!("{:x}", m.id)).collect();
    expected.sort();
    assert_eq!(ids, expected, "{wal}");
    assert_eq!(wal["members_complete"], true, "{wal}");
    assert!(
        wal["data_version"].as_str().is_some(),
        "the backend records a cluster version: {wal}"
    );
    // The backend's own member list (what etcd 3.6 and later start from) says the same.
    let recorded = etcd_bootstrap::datadir::bolt::read(&member.join("snap/db")).unwrap();
    let mut in_backend: Vec<(u64, String, Vec<String>)> = recorded
        .members
        .unwrap()
        .into_iter()
        .map(|m| (m.id, m.name, m.peer_urls))
        .collect();
    in_backend.sort();
    let mut listed: Vec<(u64, String, Vec<String>)> = view
        .members
        .iter()
        .map(|m| (m.id, m.name.clone(), m.peer_urls.clone()))
        .collect();
    listed.sort();
    assert_eq!(in_backend, listed);
    assert!(recorded.consistent_index.unwrap() > 60);
    // A log whose first segments were purged (here: its one segment renamed as if it began
    // later; the reader goes by the name) and no `.snap` file: the member list comes from the
    // backend, whole.
    let purged = loss.lab.nodes[0].dir.join("purged");
    std::fs::create_dir_all(purged.join("snap")).unwrap();
    std::fs::copy(member.join("snap/db"), purged.join("snap/db")).unwrap();
    std::fs::create_dir_all(purged.join("wal")).unwrap();
    for e in std::fs::read_dir(member.join("wal")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().replace(
            "0000000000000000-0000000000000000",
            "0000000000000001-0000000000000010",
        );
        std::fs::copy(e.path(), purged.join("wal").join(name)).unwrap();
    }
    let info = etcd_bootstrap::datadir::read_member(&purged).unwrap();
    assert!(info.members_complete, "{info:?}");
    let mut ids: Vec<u64> = info.members.iter().map(|m| m.id).collect();
    ids.sort();
    assert_eq!(ids, listed.iter().map(|m| m.0).collect::<Vec<_>>());
    std::fs::remove_dir_all(purged).unwrap();
    loss
}

fn a_lost_quorum_is_recovered_from_data_without_snap_files(etcd: Etcd, block: u8) {
    recovered(lose_two_of_three_without_snap_files(etcd, block));
}

fn lose(mut lab: Lab, survivor: usize, lost: [usize; 2], extra: &str) -> Loss {
    let kv = Kv::new();
    kv.put(&lab.nodes[survivor].client_url(), "before", "kept");
    // Then the last write before the loss. Its commit reaches the survivor's log only with a
    // later entry, which never comes: a forced start may keep it (applied to the database) or
    // lose it (not applied yet), but every member must then agree on it, which is what
    // etcd-io/etcd#14009 breaks and this test checks. "before" is committed in every log.
    kv.put(&lab.nodes[survivor].client_url(), "last", "1");
    std::thread::sleep(Duration::from_millis(300));
    for i in lost {
        lab.stop_etcd(i);
        std::fs::remove_dir_all(lab.nodes[i].data_dir()).unwrap();
    }
    lab.stop_etcd(survivor);
    let prefix = lab.nodes[survivor]
        .ip
        .rsplit_once('.')
        .unwrap()
        .0
        .to_owned();
    let replacements = [4, 5].map(|last| lab.add_node(&format!("{prefix}.{last}")));
    let machines = [survivor, replacements[0], replacements[1]];
    lab.cluster_extra = extra.to_owned();
    // The recovery start runs etcd itself: `etcd.binary`, which every config names.
    for i in machines {
        lab.configure(i, &machines);
    }
    Loss {
        lab,
        survivor,
        replacements,
    }
}

/// Waits for a spawned agent and returns its exit code and stderr.
fn finish(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    (out.status.code(), stderr(&out))
}

fn a_lost_quorum_is_recovered_from_the_survivors_data(etcd: Etcd, block: u8) {
    recovered(lose_two_of_three(etcd, block, RECOVER));
}

fn a_lost_quorum_of_a_cluster_grown_with_a_learner_is_recovered(etcd: Etcd, block: u8) {
    recovered(lose_two_of_a_learner_grown_cluster(etcd, block, RECOVER));
}

const RECOVER: &str = "recover_lost_quorum = true\n";

fn recovered(loss: Loss) {
    let Loss {
        lab,
        survivor: s,
        replacements: [r1, r2],
    } = loss;
    let data = lab.nodes[s].data_dir();
    let before = dir_snapshot(&data);
    let replacements: Vec<(usize, Child)> = [r1, r2]
        .into_iter()
        .map(|i| (i, lab.agent_spawn(i, &[])))
        .collect();

    // `plan` on the survivor shows who recovers and why, once the replacements have vouched.
    let deadline = Instant::now() + Duration::from_secs(20);
    let plan = loop {
        let out = lab.agent(s, &["plan"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("recover") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(plan.contains("copy the data dir aside"), "{plan}");
    assert!(plan.contains("--force-new-cluster"), "{plan}");
    assert!(plan.contains("This node holds the freshest data"), "{plan}");

    let out = lab.agent_ok(s);
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
        !lab.nodes[s].env().contains("FORCE_NEW_CLUSTER"),
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

    joined_after_recovery(lab, s, [r1, r2], replacements);
}

/// After the survivor's recovery run: etcd.service starts the cluster of one, the replacements
/// (whose agents are running) join it, and every member serves the survivor's data.
fn joined_after_recovery(
    mut lab: Lab,
    s: usize,
    [r1, r2]: [usize; 2],
    mut replacements: Vec<(usize, Child)>,
) {
    let all = [s, r1, r2];
    // etcd.service starts the cluster of one. A replacement may add itself at once, which
    // leaves it without a quorum until that replacement's etcd starts: as under systemd, each
    // replacement's etcd starts as soon as its agent has written its file.
    lab.start_etcd(s);

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
    let view = lab.wait_healthy(&all, 3);
    let last = Kv::new().get(&lab.nodes[s].client_url(), "last");
    assert_eq!(view.members.len(), 3);
    // Every member serves the survivor's data, and they agree on the last write too (a joiner
    // replaying the forced log would miss what the survivor kept, etcd-io/etcd#14009).
    for i in all {
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
    Kv::new().put(&lab.nodes[r2].client_url(), "after", "1");

    // A later boot of the survivor is an ordinary restart (the others answer, or are electing a
    // new leader right then), never a second recovery.
    lab.stop_etcd(s);
    let out = lab.agent_ok(s);
    let err = stderr(&out);
    assert!(err.contains("row=\"restart"), "{err}");
    assert!(!err.contains("force-new-cluster"), "{err}");
    lab.start_etcd(s);
    lab.wait_healthy(&all, 3);
}

/// The case issue #22 reports: a 3.5 cluster's survivor recovers with Debian's etcd 3.4 as
/// `etcd.binary`. The agent refuses that start before it copies or forces anything: the data's
/// backend records cluster version 3.5 (exit 79, data untouched).
///
/// An etcd whose version cannot be asked (a wrapper; etcd's rules are then left to etcd) still
/// fails that start: it writes its forced membership changes into the 3.5 log, refuses the data
/// and exits, and the run fails. The next run (etcd 3.5 now) never starts the data as that start
/// left it: it puts the copy from before back first, then recovers from it, and the replacements
/// join.
#[test]
fn a_recovery_start_that_failed_is_undone_before_the_next_run() {
    let Loss {
        mut lab,
        survivor: s,
        replacements: [r1, r2],
    } = lose_two_of_three(etcd35(), 93, RECOVER);
    let data = lab.nodes[s].data_dir();
    let before = dir_snapshot(&data);
    let replacements: Vec<(usize, Child)> = [r1, r2]
        .into_iter()
        .map(|i| (i, lab.agent_spawn(i, &[])))
        .collect();

    lab.nodes[s].bin = Some(etcd34().bin);
    lab.configure(s, &[s, r1, r2]);
    let out = lab.agent(s, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(79), "{err}");
    assert!(
        err.contains("was last written at cluster version 3.5 and this machine's etcd (")
            && err.contains("is 3.4.23: an older etcd refuses a newer data dir"),
        "{err}"
    );
    assert_eq!(dir_snapshot(&data), before, "the data dir is untouched");
    let beside = |what: &str| {
        std::fs::read_dir(data.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().contains(what))
    };
    assert_eq!(beside("before-recovery"), None, "nothing was copied");

    let wrapper = lab.nodes[s].dir.join("etcd-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n[ \"$1\" = --version ] && exit 1\nexec {} \"$@\"\n",
            etcd34().bin.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    lab.nodes[s].bin = Some(wrapper);
    lab.configure(s, &[s, r1, r2]);
    let out = lab.agent(s, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(
        err.contains("during the recovery start with --force-new-cluster"),
        "{err}"
    );
    let marker = std::path::PathBuf::from(format!("{}.recovery-started", data.display()));
    assert!(marker.exists(), "the unfinished recovery is remembered");

    lab.nodes[s].bin = None;
    lab.configure(s, &[s, r1, r2]);
    let out = lab.agent_ok(s);
    let err = stderr(&out);
    assert!(
        err.contains("did not finish: put the data dir back as it was before it (from "),
        "{err}"
    );
    assert!(
        err.contains("the recovery start served as a cluster of one and took its snapshot"),
        "{err}"
    );
    assert!(!marker.exists(), "a recovery that served is done");
    let failed = beside("data.failed-recovery-")
        .expect("what the failed start left is kept beside the data dir");
    assert_ne!(
        dir_snapshot(&failed).len(),
        0,
        "the failed start's data dir is kept whole"
    );
    joined_after_recovery(lab, s, [r1, r2], replacements);
}

fn without_the_setting_a_lost_quorum_is_only_reported(etcd: Etcd, block: u8) {
    let Loss { lab, .. } = lose_two_of_three(etcd, block, "");
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
