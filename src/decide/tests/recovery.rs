//! The lost-quorum rows (`recovery.rs`): a survivor with data, no cluster answering.

use super::*;
use crate::datadir::{WalInfo, WalMember};

fn disk_member(id: u64, url: &str) -> WalMember {
    WalMember {
        id,
        name: format!("old-{id}"),
        peer_urls: vec![url.into()],
        is_learner: false,
        is_promote: false,
    }
}

/// Machine 0's data: member 100 of cluster c1 at raft index 9, whose other members are `others`.
fn survivor_data(others: &[WalMember]) -> WalInfo {
    let mut members = vec![disk_member(100, &purl(0))];
    members.extend_from_slice(others);
    WalInfo {
        member_id: 100,
        cluster_id: 0xc1,
        last_index: 9,
        commit: 9,
        members,
        members_complete: true,
        ..Default::default()
    }
}

fn data_vouch(i: usize, member_id: u64, last_index: u64) -> Vouch {
    Vouch {
        data: VouchedData::Member {
            cluster_id: "c1".into(),
            member_id: format!("{member_id:x}"),
            last_index,
        },
        bootstrap: None,
        heard: Vec::new(),
        ..vouch(i, 3)
    }
}

/// A 3-member cluster whose two other machines were terminated; machines 1 and 2 are their
/// replacements at new addresses, waiting with empty data dirs. Both gone members were already
/// gone at the previous look.
fn two_of_three_gone() -> World {
    let mut w = World::new(3, 3);
    w.data = DataDir::HasMember;
    w.wal = Some(survivor_data(&[
        disk_member(201, "http://10.0.9.1:2380"),
        disk_member(202, "http://10.0.9.2:2380"),
    ]));
    w.dead_before = vec![201, 202];
    w
}

#[test]
fn without_the_setting_a_lost_quorum_is_named_with_the_freshest_survivor_and_nothing_is_done() {
    let w = two_of_three_gone();
    let o = w.decide();
    assert_eq!((o.row, &o.decision), (Row::Wait, &Decision::Wait));
    assert_eq!(
        o.reason,
        "cluster c1 has lost its quorum: 2 of its 3 voting members are gone (old-201 (c9) at http://10.0.9.1:2380, old-202 (ca) at http://10.0.9.2:2380); survivors: etcd-0 (member 64, raft index 9). This node holds the freshest data; to restart the cluster from it, set cluster.recover_lost_quorum = true (or start etcd once with --force-new-cluster by hand, docs/recovery.md)"
    );
}

#[test]
fn with_the_setting_the_freshest_survivor_copies_its_data_then_forces_a_new_cluster_once() {
    let mut w = two_of_three_gone();
    w.spec.recover_lost_quorum = true;
    let o = w.decide();
    assert_eq!(
        (o.row, &o.decision),
        (Row::Recover, &Decision::Act(Action::CopyDataAside))
    );
    w.data_copied = true;
    let o = w.decide();
    assert_eq!(o.row, Row::Recover);
    let plan = start(&o);
    assert!(plan.force_new_cluster);
    assert_eq!(plan.state, ClusterState::Existing);
    assert_eq!(ic(plan), format!("etcd-0={}", purl(0)));
    assert!(
        o.reason
            .contains("as member 64 of cluster c1 at raft index 9"),
        "{}",
        o.reason
    );
    // `plan` shows both steps.
    let (steps, last) = World {
        data_copied: false,
        ..two_of_three_gone_on()
    }
    .preview();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].0, Action::CopyDataAside);
    assert!(start(&last).force_new_cluster);
}

fn two_of_three_gone_on() -> World {
    let mut w = two_of_three_gone();
    w.spec.recover_lost_quorum = true;
    w
}

#[test]
fn gone_is_confirmed_at_a_second_look_before_anything() {
    let mut w = two_of_three_gone_on();
    w.dead_before = vec![201];
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(o.reason.ends_with("confirming at the next look that old-202 (ca) at http://10.0.9.2:2380 is gone before anything else"), "{}", o.reason);
}

#[test]
fn a_member_that_answers_on_its_url_is_not_gone_and_the_survivor_restarts_as_usual() {
    let mut w = two_of_three_gone_on();
    w.alive = vec![202];
    let o = w.decide();
    assert_eq!(o.row, Row::RestartUnreachable);
    assert!(!start(&o).force_new_cluster);
}

#[test]
fn a_member_whose_machine_is_listed_and_silent_is_not_gone() {
    // The whole cluster rebooting at once: every member's machine is listed, nothing vouched.
    let mut w = two_of_three_gone_on();
    w.wal = Some(survivor_data(&[
        disk_member(101, &purl(1)),
        disk_member(102, &purl(2)),
    ]));
    w.dead_before = vec![101, 102];
    for i in [1, 2] {
        w = w.answer(i, PeerAnswer::Refused);
    }
    assert_eq!(w.decide().row, Row::RestartUnreachable);
    // Its machine vouched for an empty data dir: that member's data is gone.
    let w = w
        .answer(1, PeerAnswer::Vouched(vouch(1, 3)))
        .answer(2, PeerAnswer::Vouched(vouch(2, 3)));
    assert_eq!(w.decide().row, Row::Recover);
}

#[test]
fn a_machine_that_has_not_vouched_may_hold_fresher_data_so_the_survivor_waits_for_it() {
    let w = two_of_three_gone_on().answer(2, PeerAnswer::Refused);
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(
        o.reason.ends_with("waiting for etcd-2 (10.0.0.12) to vouch, since it may hold fresher data of the same cluster"),
        "{}",
        o.reason
    );
}

/// Five members: this node (100) and machine 1 (member 101) survive; three are gone.
fn two_survivors_of_five(their_index: u64) -> World {
    let mut w = World::new(5, 3);
    w.spec.recover_lost_quorum = true;
    w.data = DataDir::HasMember;
    w.wal = Some(survivor_data(&[
        disk_member(101, &purl(1)),
        disk_member(202, "http://10.0.9.2:2380"),
        disk_member(203, "http://10.0.9.3:2380"),
        disk_member(204, "http://10.0.9.4:2380"),
    ]));
    w.dead_before = vec![202, 203, 204];
    w.answer(1, PeerAnswer::Vouched(data_vouch(1, 101, their_index)))
}

#[test]
fn only_the_survivor_with_the_highest_raft_index_recovers_ties_to_the_lowest_member_id() {
    let o = two_survivors_of_five(50).decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(
        o.reason.ends_with("survivors: etcd-0 (member 64, raft index 9), etcd-1 (member 65, raft index 50). etcd-1 holds the freshest data: it recovers the cluster, and this node joins it afterwards"),
        "{}",
        o.reason
    );
    // Equal indexes: member 64 (this node) before 65.
    assert_eq!(two_survivors_of_five(9).decide().row, Row::Recover);
    assert_eq!(two_survivors_of_five(8).decide().row, Row::Recover);
}

#[test]
fn the_other_survivor_joins_the_recovered_cluster_afresh_keeping_its_data_aside() {
    // Machine 1 recovered: its cluster of one does not list this node's member.
    let mut w = World::new(3, 3);
    w.spec.recover_lost_quorum = true;
    w.data = DataDir::HasMember;
    w.wal = Some(wal(0xc1, 100));
    let w = w.answer(1, PeerAnswer::Answered(view(vec![member(1)])));
    let o = w.decide();
    assert_eq!(o.decision, Decision::Act(Action::MoveDataAside));
    assert!(
        o.reason.contains("cluster.recover_lost_quorum is on"),
        "{}",
        o.reason
    );
}

#[test]
fn a_replacement_joins_a_recovered_cluster_of_one() {
    // etcd allows a second voter beside a single started one (it is how such a cluster grows).
    let w = World::new(3, 3).answer(1, PeerAnswer::Answered(view(vec![member(1)])));
    let o = w.decide();
    assert_eq!(o.row, Row::Join);
    assert_eq!(
        o.decision,
        Decision::Act(Action::AddMember {
            peer_url: purl(0),
            learner: false
        })
    );
}

#[test]
fn nothing_is_proved_gone_when_the_data_does_not_say_who_the_members_are() {
    let mut w = two_of_three_gone_on();
    w.wal.as_mut().unwrap().members_complete = false;
    assert_eq!(w.decide().row, Row::RestartUnreachable);
    let mut w = two_of_three_gone_on();
    w.wal = None; // a log that could not be read
    assert_eq!(w.decide().row, Row::RestartUnreachable);
}

#[test]
fn replacements_repeat_the_survivors_words() {
    let mut v = data_vouch(0, 100, 9);
    v.waiting = Some("cluster c1 has lost its quorum\n(forged line)".into());
    let w = World::new(3, 3).answer(1, PeerAnswer::Vouched(v));
    let mut w = w;
    w.me = Some(2);
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(
        o.reason
            .ends_with("Its agent says: cluster c1 has lost its quorum\\n(forged line)"),
        "{}",
        o.reason
    );
}

#[test]
fn a_live_member_the_listing_misses_or_a_machine_listed_earlier_blocks_a_recovery() {
    let mut w = World::new(5, 3);
    w.spec.recover_lost_quorum = true;
    w.data = DataDir::HasMember;
    w.wal = Some(survivor_data(
        &(201..=204)
            .map(|id| disk_member(id, &format!("http://10.0.9.{}:2380", id - 200)))
            .collect::<Vec<_>>(),
    ));
    w.dead_before = vec![201, 202, 203];
    w.alive = vec![204];
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(
        o.reason.ends_with("member old-204 (cc) at http://10.0.9.4:2380 answers on its URL but no discovered machine has it: waiting until the listing shows it, so that it can say how far it got"),
        "{}",
        o.reason
    );

    // A machine listed earlier in this run and missing now, even one whose member looks gone:
    // a listing that misses it and a network that hides it must not make a second recovery.
    let mut w = two_of_three_gone_on();
    w.unsettled = vec![Candidate {
        host: Host::parse("10.0.9.1").unwrap(),
        ..cand(7)
    }];
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(
        o.reason
            .contains("etcd-7 (10.0.9.1) was listed earlier in this run and is missing now"),
        "{}",
        o.reason
    );
}

/// The backup store is one more copy of the cluster: a survivor staler than its newest snapshot
/// does not recover (it waits, naming the snapshot), a staler or other cluster's snapshot changes
/// nothing, and a store that cannot be read is waited on.
#[test]
fn a_snapshot_fresher_than_every_survivor_stops_the_recovery_from_a_stale_one() {
    let snapshot = |cluster_id: &str, raft_index| SnapshotRef {
        cluster_id: cluster_id.into(),
        raft_index,
        ..super::restore::snapshot()
    };
    let with = |look| {
        let mut w = two_of_three_gone();
        w.spec.recover_lost_quorum = true;
        w.backups = Some(Backups {
            store: "file:///mnt/backups".into(),
            restore: true,
            look,
        });
        w.decide()
    };
    // Survivor at raft index 9.
    let o = with(StoreLook::Newest(snapshot("c1", 10)));
    assert_eq!(o.decision, Decision::Wait);
    assert!(
        o.reason
            .contains("fresher than every survivor (raft index 9)")
            && o.reason.contains("etcd-bootstrap restore --replace-data"),
        "{}",
        o.reason
    );
    for look in [
        StoreLook::Newest(snapshot("c1", 9)),
        StoreLook::Newest(snapshot("c2", 900)),
        StoreLook::Nothing,
    ] {
        assert_eq!(with(look).decision, Decision::Act(Action::CopyDataAside));
    }
    let o = with(StoreLook::Unreadable {
        reason: "timed out".into(),
    });
    assert_eq!(o.decision, Decision::Wait);
    assert!(
        o.reason.contains("cannot be read (timed out)"),
        "{}",
        o.reason
    );
}

/// `two_of_three_gone_on` with this machine's etcd at `local` and its data recording `data`.
fn recovery_on(local: &str, data: &str) -> World {
    let mut w = two_of_three_gone_on();
    w.wal.as_mut().unwrap().data_version = EtcdVersion::parse(data);
    w.local_etcd = EtcdVersion::parse(local).map(|version| LocalEtcd {
        binary: "/usr/bin/etcd".into(),
        version,
    });
    w
}

#[test]
fn the_recovery_starts_only_with_an_etcd_that_can_open_the_data() {
    // The case of issue #22: a 3.5 cluster recovered on a machine whose etcd is 3.4. Refused
    // before the copy, so before anything is forced.
    for (local, data) in [("3.4.23", "3.5.0"), ("3.7.1", "3.5.0")] {
        let w = recovery_on(local, data);
        let o = w.decide();
        assert_eq!(
            (o.row, &o.decision),
            (Row::Version, &Decision::Refuse),
            "{local} on {data}: {}",
            o.reason
        );
        let (steps, _) = w.preview();
        assert!(steps.is_empty(), "{steps:?}");
    }
    // The same line, one line newer (an upgrade in place), or data that records no version.
    for (local, data) in [("3.5.1", "3.5.0"), ("3.6.14", "3.5.0"), ("3.4.23", "")] {
        assert_eq!(
            recovery_on(local, data).decide().decision,
            Decision::Act(Action::CopyDataAside),
            "{local} on {data:?}"
        );
    }
}

/// What an earlier run's recovery start that failed left: the copy from before it, holding
/// `survivor_data`; the data dir itself as that start left it (a cluster of one).
fn after_a_failed_recovery_start(copy_present: bool) -> World {
    let mut w = two_of_three_gone_on();
    let copy = w.wal.clone();
    // The forced start rewrote the membership: only this member is left in the log.
    w.wal.as_mut().unwrap().members.truncate(1);
    w.unfinished = Some(UnfinishedRecovery {
        copy: "/var/lib/etcd.before-recovery-1700000000".into(),
        copy_present,
        copy_wal: copy.filter(|_| copy_present),
    });
    w
}

#[test]
fn after_a_recovery_start_that_failed_the_copy_goes_back_before_anything_else() {
    let w = after_a_failed_recovery_start(true);
    let o = w.decide();
    assert_eq!(
        (o.row, &o.decision),
        (Row::Recover, &Decision::Act(Action::UndoRecoveryStart))
    );
    assert_eq!(
        o.reason,
        "an earlier run's recovery start with --force-new-cluster did not finish: /var/lib/etcd may hold the membership changes it forced; putting back the copy from before it (/var/lib/etcd.before-recovery-1700000000) before deciding anything"
    );
    // First, whatever else the world says: a cluster answering, or this machine unidentified.
    let mut answering = after_a_failed_recovery_start(true);
    answering = answering.all_answer(view(vec![member(0), member(1), member(2)]));
    assert_eq!(
        answering.decide().decision,
        Decision::Act(Action::UndoRecoveryStart)
    );
    let mut unknown = after_a_failed_recovery_start(true);
    unknown.me = None;
    assert_eq!(
        unknown.decide().decision,
        Decision::Act(Action::UndoRecoveryStart)
    );
    // `plan` shows the step, then decides on the copy's data: the recovery again, from its
    // start (the altered log alone would read as a cluster of one and restart).
    let (steps, last) = w.preview();
    assert_eq!(steps[0].0, Action::UndoRecoveryStart);
    assert_eq!(steps[1].0, Action::CopyDataAside);
    assert!(start(&last).force_new_cluster);
    // This run's own recovery, under way since it copied the data dir (and marked it so), is
    // not an earlier one's.
    let mut own = after_a_failed_recovery_start(true);
    own.wal = own.unfinished.as_ref().unwrap().copy_wal.clone();
    own.data_copied = true;
    assert!(start(&own.decide()).force_new_cluster);
}

#[test]
fn without_its_copy_a_data_dir_a_recovery_start_left_is_never_started() {
    let o = after_a_failed_recovery_start(false).decide();
    assert_eq!((o.row, &o.decision), (Row::Recover, &Decision::Refuse));
    assert!(
        o.reason.contains(
            "and the copy it made (/var/lib/etcd.before-recovery-1700000000) is not there"
        ) && o
            .reason
            .contains("then remove /var/lib/etcd.recovery-started"),
        "{}",
        o.reason
    );
}
