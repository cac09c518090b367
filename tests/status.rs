//! `etcd-bootstrap status` against real etcd 3.4 and 3.5: a healthy cluster of three (exit 0),
//! an unstarted learner and then a member down (exit 1, degraded, named), and a lost quorum
//! (exit 2). From the env file and the etcd client settings only: the configs name a cloud
//! provider and no token exists anywhere.

#[macro_use]
mod common;

use common::*;

on_both_releases! {
    status_follows_the_cluster_from_healthy_to_degraded_to_no_quorum => 70,
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

    // Two of four voters down: no quorum.
    lab.stop_etcd(1);
    lab.stop_etcd(new);
    let (code, s) = status(&lab, 0);
    assert_eq!(code, Some(2), "{s:#}");
    assert_eq!(s["verdict"], "no_quorum");
}
