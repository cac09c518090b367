//! The decision table against real etcd (3.4 from Debian, 3.5 from upstream), driving the agent
//! binary with the static provider. Each scenario runs once per etcd release, on its own block of
//! loopback addresses, and kills every etcd it started when it ends (pass or fail).

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::*;

on_both_releases! {
    three_nodes_boot_at_once => 1,
    staggered_boots_join_the_same_bootstrap => 2,
    restart_with_data_keeps_membership => 3,
    wiped_data_dir_is_removed_and_added_again => 4,
    replacement_removes_the_dead_member_and_joins => 5,
    running_twice_before_etcd_starts_adds_one_member => 6,
    removed_member_with_data_is_refused_then_moved_aside => 7,
    learner_join_then_promote => 8,
}

fn ids_by_name(lab: &Lab, via: usize) -> Vec<(String, u64)> {
    let mut v: Vec<_> = lab
        .members(via)
        .into_iter()
        .map(|m| (m.name, m.id))
        .collect();
    v.sort();
    v
}

fn three_nodes_boot_at_once(etcd: Etcd, block: u8) {
    let mut lab = Lab::new(etcd, block, 3, 3);
    lab.configure_all();
    std::thread::scope(|s| {
        let lab = &lab;
        let runs: Vec<_> = (0..3).map(|i| s.spawn(move || lab.agent_ok(i))).collect();
        runs.into_iter().for_each(|r| drop(r.join().unwrap()));
    });
    let first = lab.nodes[0].env_value("ETCD_INITIAL_CLUSTER");
    for i in 0..3 {
        assert_eq!(lab.nodes[i].env_value("ETCD_INITIAL_CLUSTER_STATE"), "new");
        assert_eq!(
            lab.nodes[i].env_value("ETCD_INITIAL_CLUSTER"),
            first,
            "every node wrote the same cluster"
        );
        lab.start_etcd(i);
    }
    let view = lab.wait_healthy(&[0, 1, 2], 3);
    let mut names: Vec<_> = view.members.iter().map(|m| m.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["node-1", "node-2", "node-3"]);
}

/// Nodes that boot one after another: the second finds the first etcd bootstrapping (its client
/// port does not answer yet) and joins the same bootstrap; the third finds a running cluster that
/// lists it as a never-started initial member and reuses that member.
fn staggered_boots_join_the_same_bootstrap(etcd: Etcd, block: u8) {
    let mut lab = Lab::new(etcd, block, 3, 3);
    lab.configure_all();
    // Two machines boot first and wait for the third's vouch; it boots a second later, and its
    // etcd starts as soon as its agent is done, as etcd.service would.
    let early: Vec<_> = [0, 1].map(|i| lab.agent_spawn(i, &[])).into();
    std::thread::sleep(Duration::from_secs(1));
    for i in [0, 1] {
        assert!(
            !lab.nodes[i].env_file().exists(),
            "no bootstrap before node-3 vouched"
        );
    }
    let out = lab.agent_ok(2);
    assert!(
        stderr(&out).contains("row=\"bootstrap\""),
        "{}",
        stderr(&out)
    );
    lab.start_etcd(2);
    let started = Instant::now();
    for (i, agent) in early.into_iter().enumerate() {
        let out = agent.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(lab.nodes[i].env_value("ETCD_INITIAL_CLUSTER_STATE"), "new");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the early agents saw the late one within a few looks at their peers: {:?}",
        started.elapsed()
    );
    lab.start_etcd(0);
    lab.wait_until_healthy(&[0, 2]); // two of three started: quorum
    // The second's etcd never started; its agent runs again and finds its unstarted initial
    // member in a cluster of exactly its set: it starts with `new`, as the static bootstrap
    // intends (the same cluster and member ids), and joins.
    let out = lab.agent_ok(1);
    assert!(
        stderr(&out)
            .contains("has not started yet: starting with it as the static bootstrap intends"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lab.nodes[1].env_value("ETCD_INITIAL_CLUSTER_STATE"), "new");
    lab.start_etcd(1);
    lab.wait_healthy(&[0, 1, 2], 3);
}

fn restart_with_data_keeps_membership(etcd: Etcd, block: u8) {
    let mut lab = formed(etcd, block);
    let before = ids_by_name(&lab, 1);
    lab.stop_etcd(0);
    let out = lab.agent_ok(0);
    assert!(stderr(&out).contains("restart"), "{}", stderr(&out));
    assert_eq!(
        lab.nodes[0].env_value("ETCD_INITIAL_CLUSTER_STATE"),
        "existing"
    );
    lab.start_etcd(0);
    lab.wait_healthy(&[0, 1, 2], 3);
    assert_eq!(ids_by_name(&lab, 0), before, "membership unchanged");
}

fn wiped_data_dir_is_removed_and_added_again(etcd: Etcd, block: u8) {
    let mut lab = formed(etcd, block);
    let before = ids_by_name(&lab, 1);
    lab.stop_etcd(0);
    std::fs::remove_dir_all(lab.nodes[0].data_dir()).unwrap();
    let out = lab.agent_ok(0);
    assert!(stderr(&out).contains("replace-self"), "{}", stderr(&out));
    assert_eq!(
        lab.nodes[0].env_value("ETCD_INITIAL_CLUSTER_STATE"),
        "existing"
    );
    lab.start_etcd(0);
    let view = lab.wait_healthy(&[0, 1, 2], 3);
    let old_id = before.iter().find(|(n, _)| n == "node-1").unwrap().1;
    let new = view.members.iter().find(|m| m.name == "node-1").unwrap();
    assert_ne!(new.id, old_id, "node-1 came back as a new member");
}

fn replacement_removes_the_dead_member_and_joins(etcd: Etcd, block: u8) {
    let mut lab = formed(etcd, block);
    // Machine 3 dies for good; machine 4 takes its place with a new name and address.
    lab.stop_etcd(2);
    std::fs::remove_dir_all(&lab.nodes[2].dir).unwrap();
    let ip = format!("127.{}.{block}.4", lab.etcd.net);
    let new = lab.add_node(&ip);
    lab.configure(new, &[0, 1, new]);
    let out = lab.agent_ok(new);
    let log = stderr(&out);
    assert!(
        log.contains("removed member") && log.contains("node-3"),
        "the removal is logged with the name: {log}"
    );
    lab.start_etcd(new);
    let view = lab.wait_healthy(&[0, 1, new], 3);
    let mut names: Vec<_> = view.members.iter().map(|m| m.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["node-1", "node-2", "node-4"]);
}

fn running_twice_before_etcd_starts_adds_one_member(etcd: Etcd, block: u8) {
    let mut lab = formed(etcd, block);
    lab.stop_etcd(2);
    std::fs::remove_dir_all(&lab.nodes[2].dir).unwrap();
    let new = lab.add_node(&format!("127.{}.{block}.4", lab.etcd.net));
    lab.configure(new, &[0, 1, new]);
    lab.agent_ok(new);
    let first = lab.nodes[new].env();
    let out = lab.agent_ok(new);
    assert!(stderr(&out).contains("reuse"), "{}", stderr(&out));
    assert_eq!(
        lab.nodes[new].env(),
        first,
        "the second run writes the same file"
    );
    let members = lab.members(0);
    assert_eq!(members.len(), 3, "no second member was added: {members:?}");
    lab.start_etcd(new);
    lab.wait_healthy(&[0, 1, new], 3);
}

fn removed_member_with_data_is_refused_then_moved_aside(etcd: Etcd, block: u8) {
    let mut lab = formed(etcd, block);
    lab.stop_etcd(2);
    let id = lab
        .members(0)
        .iter()
        .find(|m| m.name == "node-3")
        .unwrap()
        .id;
    lab.remove_member(0, id);
    let env_before = lab.nodes[2].env();
    let data_before = dir_snapshot(&lab.nodes[2].data_dir());
    assert!(!data_before.is_empty());

    let out = lab.agent(2, &[]);
    assert_eq!(out.status.code(), Some(79), "refused as unsafe");
    assert!(
        stderr(&out).contains("no longer lists") && stderr(&out).contains("replace_stale_data"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lab.nodes[2].env(), env_before, "env file untouched");
    assert_eq!(
        dir_snapshot(&lab.nodes[2].data_dir()),
        data_before,
        "data untouched"
    );

    let out = lab.agent(2, &["--set", "cluster.replace_stale_data=true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!lab.nodes[2].data_dir().exists(), "the data dir was moved");
    let moved: Vec<_> = std::fs::read_dir(&lab.nodes[2].dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("data.removed-"))
        .collect();
    assert_eq!(moved.len(), 1, "moved aside, not deleted");
    assert_eq!(
        dir_snapshot(&moved[0].path()).len(),
        data_before.len(),
        "every file kept"
    );
    lab.start_etcd(2);
    lab.wait_healthy(&[0, 1, 2], 3);
}

fn learner_join_then_promote(etcd: Etcd, block: u8) {
    let mut lab = formed(etcd, block);
    lab.stop_etcd(2);
    std::fs::remove_dir_all(&lab.nodes[2].dir).unwrap();
    let new = lab.add_node(&format!("127.{}.{block}.4", lab.etcd.net));
    lab.configure(new, &[0, 1, new]);
    let out = lab.agent(new, &["--set", "cluster.join_as_learner=true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let peer = lab.nodes[new].peer_url();
    let me = lab
        .members(0)
        .into_iter()
        .find(|m| m.peer_urls.contains(&peer))
        .unwrap();
    assert!(me.is_learner, "isLearner reached etcd: {me:?}");
    lab.start_etcd(new);
    let t = Instant::now();
    // As etcd.service runs it: a cloud fleet's config, and no API token anywhere (the token is
    // the agent's credential, not etcd's).
    let out = lab.agent(
        new,
        &[
            "--set",
            "discovery.provider=digitalocean",
            "--set",
            "discovery.digitalocean.tag=etcd",
            "promote",
            "--timeout",
            "60s",
        ],
    );
    assert!(!stderr(&out).contains("token"), "{}", stderr(&out));
    assert!(
        out.status.success(),
        "promote failed after {:?}: {}",
        t.elapsed(),
        stderr(&out)
    );
    let me = lab
        .members(0)
        .into_iter()
        .find(|m| m.peer_urls.contains(&peer))
        .unwrap();
    assert!(!me.is_learner, "now a voting member: {me:?}");
    lab.wait_healthy(&[0, 1, new], 3);
}

/// Peers whose ports accept connections and never answer: nothing may be decided before the
/// deadline, and the env file stays as it was.
#[test]
fn peers_that_never_answer_block_any_decision_until_the_deadline() {
    let mut lab = Lab::new(etcd34(), 9, 3, 3);
    lab.configure_all();
    let mut holders = Vec::new();
    for i in 1..3 {
        for port in [2379, 2380] {
            let l = std::net::TcpListener::bind((lab.nodes[i].ip.as_str(), port)).unwrap();
            holders.push(std::thread::spawn(move || {
                // Accept and hold every connection without a byte of answer.
                let mut held = Vec::new();
                for c in l.incoming().take(64) {
                    held.push(c);
                }
            }));
        }
    }
    std::fs::write(lab.nodes[0].env_file(), "PREVIOUS=1\n").unwrap();
    let t = Instant::now();
    let out = lab.agent(0, &["--timeout", "4s"]);
    assert_eq!(out.status.code(), Some(69), "unavailable: {}", stderr(&out));
    assert!(
        t.elapsed() >= Duration::from_secs(4),
        "no decision before the deadline"
    );
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));
    assert_eq!(lab.nodes[0].env(), "PREVIOUS=1\n");
    lab.nodes.clear();
    drop(holders); // the holder threads end with the process
}

/// The opt-in fallback for fleets whose agents cannot reach each other: with
/// cluster.bootstrap_settle set, a peer that stays silent that long counts as empty. (Unset, the
/// shipped default, silence never counts: tests/vouching.rs.)
#[test]
fn the_settle_fallback_bootstraps_on_silence_only_when_configured() {
    let mut lab = Lab::new(etcd34(), 12, 2, 2);
    lab.bootstrap_settle = Some("3s");
    lab.configure_all();
    let t = Instant::now();
    let out = lab.agent_ok(0);
    assert!(
        t.elapsed() >= Duration::from_secs(3),
        "bootstrapped after {:?}",
        t.elapsed()
    );
    let err = stderr(&out);
    assert!(
        err.contains("cluster.bootstrap_settle") && err.contains("settle fallback"),
        "the wait and the fallback are explained: {err}"
    );
    assert_eq!(lab.nodes[0].env_value("ETCD_INITIAL_CLUSTER_STATE"), "new");
}

/// The agent killed (SIGKILL) right after `member add` succeeded, before it wrote the env file:
/// the next run finds the unstarted member, reuses it, and the cluster comes back to 3 members.
#[test]
fn killed_between_member_add_and_env_write_then_run_again() {
    use std::io::BufRead;
    let mut lab = formed(etcd34(), 13);
    lab.stop_etcd(2);
    std::fs::remove_dir_all(&lab.nodes[2].dir).unwrap();
    let new = lab.add_node(&format!("127.{}.13.4", lab.etcd.net));
    lab.configure(new, &[0, 1, new]);
    let mut agent = std::process::Command::new(AGENT)
        .arg("--config")
        .arg(lab.nodes[new].config())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = std::io::BufReader::new(agent.stderr.take().unwrap());
    for line in log.lines() {
        if line.unwrap().contains("added this node as a member") {
            agent.kill().unwrap(); // SIGKILL
            break;
        }
    }
    agent.wait().unwrap();
    // The kill races the agent's next steps: on a loaded machine it may already have written
    // the env file (atomically: whole or absent) when the signal lands. Removing it leaves
    // exactly the state of a kill before the write, which is what this test is about.
    if lab.nodes[new].env_file().exists() {
        std::fs::remove_file(lab.nodes[new].env_file()).unwrap();
    }
    let members = lab.members(0);
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(
        members
            .iter()
            .any(|m| m.peer_urls.contains(&lab.nodes[new].peer_url()) && !m.has_started())
    );

    let out = lab.agent_ok(new);
    assert!(stderr(&out).contains("reuse"), "{}", stderr(&out));
    assert_eq!(lab.members(0).len(), 3, "no second member was added");
    lab.start_etcd(new);
    lab.wait_healthy(&[0, 1, new], 3);
}
