//! `etcd-bootstrap status` against real etcd 3.4 and 3.5: a healthy cluster of three (exit 0),
//! an unstarted learner and then a member down (exit 1, degraded, named), a lost quorum (exit 2,
//! with what each member's peer port says: etcd without a leader, nothing, or a waiting agent
//! and what it waits for), and a NOSPACE alarm raised by etcd itself (exit 1). From the env
//! file and the etcd client settings only: the configs name a cloud provider and no token
//! exists anywhere. TLS: tests/tls.rs.

use std::time::{Duration, Instant};

#[macro_use]
mod common;

use common::*;

on_both_releases! {
    status_follows_the_cluster_from_healthy_to_degraded_to_no_quorum => 70,
    status_names_the_nospace_alarm => 71,
}

/// `status --format json` on node `i`: its exit code and the report.
fn status(lab: &Lab, i: usize) -> (Option<i32>, serde_json::Value) {
    let out = lab.agent(
        i,
        &[
            "--set",
            "discovery.provider=digitalocean",
            "--set",
            "discovery.digitalocean.tag=etcd",
            "status",
            "--format",
            "json",
        ],
    );
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), report)
}

fn status_follows_the_cluster_from_healthy_to_degraded_to_no_quorum(etcd: Etcd, block: u8) {
    let mut lab = formed(etcd, block);
    let (code, s) = status(&lab, 0);
    assert_eq!(code, Some(0), "{s:#}");
    assert_eq!(s["verdict"], "healthy");
    let members = s["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(members.iter().filter(|m| m["leader"] == true).count(), 1);
    for m in members {
        assert_eq!(m["healthy"], true, "{m:#}");
        assert_eq!(m["learner"], false);
        assert!(m["raft_index"].as_u64().unwrap() > 0, "{m:#}");
        assert!(m["db_size"].as_u64().unwrap() > 0, "{m:#}");
        assert!(m["version"].as_str().unwrap().starts_with("3."), "{m:#}");
    }
    assert!(s["cluster_version"].as_str().unwrap().starts_with("3."));
    assert_eq!(s["last_run"]["result"], "ok");
    // The text for people says the same.
    let out = lab.agent(0, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(": healthy (cluster version 3."), "{text}");
    assert!(!text.contains('\x1b'), "no colour into a pipe: {text}");

    // A machine joins as a learner: added, not started yet.
    let net = lab.etcd.net;
    lab.size = 4;
    let new = lab.add_node(&format!("127.{net}.{block}.4"));
    lab.configure_all();
    lab.agent_ok(new);
    let (code, s) = status(&lab, 0);
    assert_eq!(code, Some(1), "{s:#}");
    assert_eq!(s["verdict"], "degraded");
    let learner = s["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["learner"] == true)
        .expect("the learner is listed");
    assert_eq!(learner["started"], false);
    assert!(
        s["problems"][0]
            .as_str()
            .unwrap()
            .contains("is not healthy: not started yet"),
        "{s:#}"
    );
    lab.start_etcd(new);
    lab.wait_healthy(&[0, 1, 2, new], 4);

    // A member down: degraded, and named (once the others have a leader again, if it led).
    lab.stop_etcd(2);
    lab.wait_until_healthy(&[0, 1, new]);
    let (code, s) = status(&lab, 0);
    assert_eq!(code, Some(1), "{s:#}");
    let named = format!("member {} (", lab.nodes[2].name);
    assert!(
        s["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().starts_with(&named)),
        "{s:#}"
    );

    // Two of four voters down: no quorum. Each stopped member's peer port says that nothing runs
    // there.
    lab.stop_etcd(1);
    lab.stop_etcd(new);
    let (code, s) = status(&lab, 0);
    assert_eq!(code, Some(2), "{s:#}");
    assert_eq!(s["verdict"], "no_quorum");
    let answers = |s: &serde_json::Value| -> Vec<(String, String, String)> {
        s["peer_ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let f = |k: &str| p[k].as_str().unwrap().to_owned();
                (f("name"), f("answer"), f("detail"))
            })
            .collect()
    };
    // Each stopped member's peer port says that nothing runs there. (etcd 3.4 serves the member
    // list without a quorum, 3.5 does not: then the env file's members are asked, this node's
    // etcd among them.)
    let ports = answers(&s);
    let names: Vec<String> = lab.nodes.iter().map(|n| n.name.clone()).collect();
    let of = |ports: &[(String, String, String)], i: usize| {
        ports
            .iter()
            .find(|p| p.0 == names[i])
            .cloned()
            .unwrap_or_else(|| panic!("no peer port of {}: {ports:?}", names[i]))
    };
    for i in [1, 2] {
        assert_eq!(of(&ports, i).1, "nothing", "{ports:?}");
    }

    // Every etcd down; machines 2 and 4 are gone (no longer listed, silent). The agents of
    // machines 1 and 3, with their data, find the quorum lost and wait, vouching: status on
    // machine 1 says what each waits for, as its agent says it.
    lab.stop_etcd(0);
    for i in [0, 2] {
        lab.configure(i, &[0, 2]);
    }
    let mut agents = [lab.agent_spawn(0, &[]), lab.agent_spawn(2, &[])];
    let deadline = Instant::now() + Duration::from_secs(20);
    let ports = loop {
        let (code, s) = status(&lab, 0);
        assert_eq!(code, Some(2), "{s:#}");
        let ports = answers(&s);
        if [0, 2]
            .iter()
            .all(|&i| of(&ports, i).1 == "agent" && of(&ports, i).2.contains("quorum"))
        {
            break ports;
        }
        assert!(
            Instant::now() < deadline,
            "the agents never said why: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = String::from_utf8_lossy(&lab.agent(0, &["status"]).stdout).into_owned();
    for a in &mut agents {
        let _ = a.kill();
        let _ = a.wait();
    }
    for i in [0, 2] {
        let detail = of(&ports, i).2;
        assert!(
            detail.starts_with("its agent is waiting, with data of cluster "),
            "{detail}"
        );
    }
    assert_eq!(of(&ports, 1).1, "nothing", "{ports:?}");
    assert!(text.contains("peer ports:\n"), "{text}");
}

/// etcd raises NOSPACE itself once its database outgrows `--quota-backend-bytes`: status names
/// the alarm and says degraded, while every member is healthy.
fn status_names_the_nospace_alarm(etcd: Etcd, block: u8) {
    let mut lab = Lab::new(etcd, block, 3, 3);
    lab.etcd_env
        .push(("ETCD_QUOTA_BACKEND_BYTES".into(), (256 * 1024).to_string()));
    lab.configure_all();
    lab.agents_ok_together(&[0, 1, 2]);
    for i in 0..3 {
        lab.start_etcd(i);
    }
    lab.wait_healthy(&[0, 1, 2], 3);
    let (code, s) = status(&lab, 0);
    assert_eq!(
        (code, &s["alarms"]),
        (Some(0), &serde_json::json!([])),
        "{s:#}"
    );

    // 8 KiB values until etcd refuses: a few dozen against a quota of 256 KiB, 200 at most.
    let kv = Kv::new();
    let endpoint = lab.nodes[0].client_url();
    let value = "x".repeat(8192);
    let refused = (0..200)
        .find_map(|i| kv.try_put(&endpoint, &format!("k{i}"), &value).err())
        .expect("etcd never refused a write past its quota");
    assert!(refused.contains("database space exceeded"), "{refused}");

    let (code, s) = status(&lab, 0);
    assert_eq!(code, Some(1), "{s:#}");
    assert_eq!(s["verdict"], "degraded");
    assert_eq!(s["alarms"][0]["alarm"], "NOSPACE", "{s:#}");
    let named = s["problems"].as_array().unwrap().iter().any(|p| {
        p.as_str()
            .unwrap()
            .starts_with("alarm NOSPACE raised by member ")
    });
    assert!(named, "{s:#}");
    for m in s["members"].as_array().unwrap() {
        assert_eq!(m["healthy"], true, "{m:#}");
    }
}
