//! The core path end to end: three real etcd processes (Debian's etcd-server) on 127.0.0.11–13,
//! started from env files the agent wrote with the static provider and shipped defaults (the
//! agents vouch for each other), form one healthy cluster.

mod common;

use common::*;

#[test]
fn three_static_members_on_loopback_form_a_healthy_cluster() {
    let mut lab = Lab::with_prefix(etcd34(), "127.0.0.", 11, 3, 3);
    lab.configure_all();
    lab.agents_ok_together(&[0, 1, 2]);
    for i in 0..3 {
        let env = lab.nodes[i].env();
        assert!(env.contains("ETCD_INITIAL_CLUSTER_STATE=new\n"), "{env}");
        assert!(
            env.contains("ETCD_INITIAL_CLUSTER=node-11=http://127.0.0.11:2380,node-12=http://127.0.0.12:2380,node-13=http://127.0.0.13:2380\n"),
            "{env}"
        );
    }
    for i in 0..3 {
        lab.start_etcd(i);
    }
    let view = lab.wait_healthy(&[0, 1, 2], 3);
    assert!(view.members.iter().all(|m| !m.is_learner));
}
