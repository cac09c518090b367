//! The `restore` row (`vouching.rs`): a fleet that would bootstrap empty while the backup store
//! holds a snapshot of its token restores that snapshot instead, on every member's word.

use super::*;

pub(super) fn snapshot() -> SnapshotRef {
    SnapshotRef {
        key: "t/snapshot-20261201T180500Z-00000000000000c1.db".into(),
        sha256: "ab".repeat(32),
        db_size: 20480,
        cluster_id: "c1".into(),
        revision: 4711,
        raft_index: 5120,
        taken_at: 1_796_148_300,
        etcd_version: "3.5.1".into(),
    }
}

fn store(look: StoreLook) -> Backups {
    Backups {
        store: "s3://backups/etcd/".into(),
        restore: true,
        look,
    }
}

/// Every machine's agent found `snapshot()` in the store and names it in its vouch.
fn fleet_with_a_snapshot() -> World {
    let mut w = World::new(3, 3);
    w.backups = Some(store(StoreLook::Newest(snapshot())));
    for p in &mut w.probes {
        if let PeerAnswer::Vouched(v) = &mut p.answer {
            v.restore = Some(snapshot().named());
        }
    }
    w
}

/// `w` with the opt-in settle on, and its peers silent for longer than it.
fn on_the_settle_fallback(mut w: World) -> World {
    w.spec.bootstrap_settle = Some(std::time::Duration::from_secs(30));
    for i in 1..3 {
        w = w.answer(i, PeerAnswer::Refused);
    }
    w
}

#[test]
fn a_fleet_that_finds_a_snapshot_of_its_token_restores_it_rather_than_bootstrapping_empty() {
    let w = fleet_with_a_snapshot();
    let o = w.decide();
    assert_eq!(o.row, Row::Restore, "{}", o.reason);
    let plan = start(&o);
    assert_eq!(plan.state, ClusterState::New);
    assert_eq!(plan.restore, Some(snapshot()));
    assert_eq!(plan.initial_cluster, discovered_cluster_of(&w));
    assert!(
        o.reason
            .contains("restoring snapshot t/snapshot-20261201T180500Z")
            && o.reason.contains("revision 4711"),
        "{}",
        o.reason
    );
    // `plan` shows the same.
    assert_eq!(w.preview().1, o);
}

#[test]
fn a_peer_that_names_another_snapshot_or_none_is_waited_for() {
    for theirs in [
        None,
        Some(RestoreRef {
            key: "t/snapshot-20261130T180500Z-00000000000000c1.db".into(),
            sha256: "cd".repeat(32),
        }),
    ] {
        let mut w = fleet_with_a_snapshot();
        let mut v = vouch(2, 3);
        v.restore = theirs.clone();
        let w = {
            w.probes.retain(|p| p.peer != cand(2).name);
            w.answer(2, PeerAnswer::Vouched(v))
        };
        let o = w.decide();
        assert_eq!(o.decision, Decision::Wait, "{theirs:?}: {}", o.reason);
        assert!(
            o.reason.contains("etcd-2")
                && o.reason
                    .contains("waiting until the agents see the same backup store"),
            "{}",
            o.reason
        );
    }
    // And the other way round: this node found nothing, a peer names a snapshot.
    let mut w = World::new(3, 3);
    w.backups = Some(store(StoreLook::Nothing));
    let mut v = vouch(1, 3);
    v.restore = Some(snapshot().named());
    let o = w.answer(1, PeerAnswer::Vouched(v)).decide();
    assert_eq!(o.decision, Decision::Wait, "{}", o.reason);
    assert!(
        o.reason.contains("this node would bootstrap empty"),
        "{}",
        o.reason
    );
}

#[test]
fn a_store_that_cannot_be_read_is_never_taken_for_an_empty_one() {
    let mut w = World::new(3, 3);
    w.backups = Some(store(StoreLook::Unreadable {
        reason: "the store answered 403 AccessDenied".into(),
    }));
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(
        o.reason
            .contains("s3://backups/etcd/ cannot be read (the store answered 403")
            && o.reason.contains("waits until the store answers"),
        "{}",
        o.reason
    );
    // Not even on the opt-in settle fallback.
    let w = on_the_settle_fallback(w);
    assert_eq!(w.decide().decision, Decision::Wait);
    assert_eq!(w.preview().1.decision, Decision::Wait);
}

#[test]
fn with_restore_off_the_fleet_waits_and_names_the_snapshot_and_the_setting() {
    let mut w = fleet_with_a_snapshot();
    w.backups.as_mut().unwrap().restore = false;
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(
        o.reason
            .contains("t/snapshot-20261201T180500Z-00000000000000c1.db")
            && o.reason.contains("Set backup.restore = true"),
        "{}",
        o.reason
    );
}

#[test]
fn an_empty_store_bootstraps_as_without_backups() {
    let mut w = World::new(3, 3);
    w.backups = Some(store(StoreLook::Nothing));
    let o = w.decide();
    assert_eq!(o.row, Row::Bootstrap, "{}", o.reason);
    assert_eq!(start(&o).restore, None);
}

#[test]
fn the_settle_fallback_restores_too_never_empty() {
    let o = on_the_settle_fallback(fleet_with_a_snapshot()).decide();
    assert_eq!(o.row, Row::Restore, "{}", o.reason);
    assert_eq!(start(&o).restore, Some(snapshot()));
}

#[test]
fn the_vouch_names_the_snapshot_this_node_would_restore() {
    let w = fleet_with_a_snapshot();
    let obs = w.observation();
    let v = Session::default().vouch(&w.spec, &obs, "").unwrap();
    assert_eq!(v.restore, Some(snapshot().named()));
    // An older agent's vouch (no `restore`) reads as naming none; ours omits it when none.
    let json = serde_json::to_value(vouch(1, 3)).unwrap();
    assert!(json.get("restore").is_none());
}

#[test]
fn a_snapshot_taken_by_a_newer_etcd_is_not_restored_by_an_older_one() {
    let with_local = |local: &str| {
        let mut w = fleet_with_a_snapshot();
        w.local_etcd = EtcdVersion::parse(local).map(|version| LocalEtcd {
            binary: "/usr/bin/etcd".into(),
            version,
        });
        w
    };
    let w = with_local("3.4.23");
    let o = w.decide();
    assert_eq!((o.row, &o.decision), (Row::Version, &Decision::Refuse));
    assert!(
        o.reason.contains("taken by etcd 3.5.1")
            && o.reason.contains("(/usr/bin/etcd) is 3.4.23")
            && o.reason.contains("install etcd 3.5 or later"),
        "{}",
        o.reason
    );
    assert_eq!(w.preview().1, o);
    // The same line, a newer one, or a version that cannot be told: restored.
    for local in ["3.5.0", "3.6.14", "unknown"] {
        let o = with_local(local).decide();
        assert_eq!(o.row, Row::Restore, "{local}: {}", o.reason);
    }
}
