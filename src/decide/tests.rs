//! Every row of the decision table, and the edges around it.

use super::*;
use crate::config::ClusterSpec;
use crate::member::{Host, Scheme};

fn spec(size: usize) -> ClusterSpec {
    ClusterSpec {
        size,
        token: "t".into(),
        data_dir: "/var/lib/etcd".into(),
        peer_scheme: Scheme::Http,
        client_scheme: Scheme::Http,
        peer_port: 2380,
        client_port: 2379,
        remove_dead_members: true,
        join_as_learner: false,
        replace_stale_data: false,
        recover_lost_quorum: false,
        allow_upgrade_below_floor: false,
        max_learners: 1,
        bootstrap_settle: None,
    }
}

fn cand(i: usize) -> Candidate {
    Candidate {
        id: format!("id-{i}"),
        name: MemberName::parse(&format!("etcd-{i}")).unwrap(),
        host: Host::parse(&format!("10.0.0.{}", 10 + i)).unwrap(),
        created: None,
    }
}

fn purl(i: usize) -> String {
    format!("http://10.0.0.{}:2380", 10 + i)
}

/// A started member for machine `i`.
fn member(i: usize) -> EtcdMember {
    EtcdMember {
        id: 100 + i as u64,
        name: format!("etcd-{i}"),
        peer_urls: vec![purl(i)],
        client_urls: vec![format!("http://10.0.0.{}:2379", 10 + i)],
        is_learner: false,
    }
}

fn view(members: Vec<EtcdMember>) -> ClusterView {
    ClusterView {
        cluster_id: 0xc1,
        members,
        settled: true,
        cluster_version: None,
        server_version: None,
    }
}

struct World {
    spec: ClusterSpec,
    discovered: Vec<Candidate>,
    me: Option<usize>,
    data: DataDir,
    probes: Vec<Probe>,
    removed: usize,
    cluster_seen: Option<&'static str>,
    quiet_for: std::time::Duration,
    vouched: Vec<(MemberName, Vouch)>,
    unsettled: Vec<Candidate>,
    /// Whether the previous look agreed on the set this look sees (most tests are about other
    /// rules than the confirmation).
    confirmed: bool,
    wal: Option<crate::datadir::WalInfo>,
    alive: Vec<u64>,
    dead_before: Vec<u64>,
    data_copied: bool,
    local_etcd: Option<LocalEtcd>,
    backups: Option<Backups>,
    unfinished: Option<UnfinishedRecovery>,
}

/// What machine `i`'s agent says when its data dir is empty and it has discovered `n` machines
/// of a cluster of `n`.
fn vouch(i: usize, n: usize) -> Vouch {
    let mut set: Vec<_> = (0..n).map(|k| (cand(k).name, purl(k))).collect();
    set.sort();
    Vouch {
        agent: "etcd-bootstrap/test".into(),
        name: cand(i).name.to_string(),
        peer_urls: vec![purl(i)],
        cluster_token: "t".into(),
        data: VouchedData::Empty,
        bootstrap: Some(bootstrap_set(&set)),
        heard: (0..n)
            .filter(|&k| k != i)
            .map(|k| cand(k).name.to_string())
            .collect(),
        waiting: None,
        restore: None,
    }
}

impl World {
    /// `n` discovered machines, this node is machine 0, every peer's agent vouches for an empty
    /// data dir and the `n` machines it discovered.
    fn new(size: usize, n: usize) -> Self {
        let discovered: Vec<_> = (0..n).map(cand).collect();
        let probes = (1..n)
            .map(|i| Probe {
                peer: cand(i).name,
                answer: PeerAnswer::Vouched(vouch(i, n)),
            })
            .collect();
        World {
            spec: spec(size),
            discovered,
            me: Some(0),
            data: DataDir::Empty,
            probes,
            removed: 0,
            cluster_seen: None,
            // Quiet long enough: most tests are about other rules than the settle time.
            quiet_for: std::time::Duration::from_secs(60),
            vouched: Vec::new(),
            unsettled: Vec::new(),
            confirmed: true,
            wal: None,
            alive: Vec::new(),
            // Dead-member rules other than the confirmation are tested with it already done.
            dead_before: (100..120).collect(),
            local_etcd: None,
            data_copied: false,
            backups: None,
            unfinished: None,
        }
    }
    fn answer(mut self, i: usize, a: PeerAnswer) -> Self {
        let name = cand(i).name;
        self.probes.retain(|p| p.peer != name);
        self.probes.push(Probe {
            peer: name,
            answer: a,
        });
        self
    }
    fn all_answer(mut self, v: ClusterView) -> Self {
        for p in &mut self.probes {
            p.answer = PeerAnswer::Answered(v.clone());
        }
        self
    }
    fn decide(&self) -> Outcome {
        decide(&self.facts())
    }
    /// What a run would do from this world held still (`Session::preview`, as `plan` shows it),
    /// from a session that already knows what this world says the run knows.
    fn preview(&self) -> (Vec<(Action, String)>, Outcome) {
        let obs = self.observation();
        let session = Session {
            removed: self.removed,
            cluster_seen: self.cluster_seen.map(Into::into),
            dead_before: self.dead_before.clone(),
            agreed: self.confirmed.then(|| discovered_cluster_of(self)),
            data_copied: self.data_copied,
            ..Session::default()
        };
        session.preview(&self.spec, &obs, std::time::Duration::ZERO)
    }
    /// This world as one look.
    fn observation(&self) -> Observation {
        Observation {
            source: SourceUsed::default(),
            candidates: self.discovered.clone(),
            me: self.me,
            data: self.data,
            wal: self.wal.clone(),
            probes: self.probes.clone(),
            undiscovered_alive: self.alive.clone(),
            listing: 0,
            local_etcd: self.local_etcd.clone(),
            backups: self.backups.clone(),
            unfinished_recovery: self.unfinished.clone(),
        }
    }
    fn facts(&self) -> Facts<'_> {
        // Leaked: a few bytes a decision, in tests only, so `Facts` can borrow it like the rest.
        let agreed = self.confirmed.then(|| discovered_cluster_of(self));
        Facts {
            agreed_before: agreed.map(|a| &*a.leak()),
            unsettled: &self.unsettled,
            spec: &self.spec,
            discovered: &self.discovered,
            me: self.me.map(|i| &self.discovered[i]),
            data: self.data,
            probes: &self.probes,
            removed_this_run: self.removed,
            cluster_seen: self.cluster_seen,
            quiet_for: self.quiet_for,
            vouched: &self.vouched,
            wal: self.wal.as_ref(),
            undiscovered_alive: &self.alive,
            dead_before: &self.dead_before,
            data_copied: self.data_copied,
            local_etcd: self.local_etcd.as_ref(),
            backups: self.backups.as_ref(),
            unfinished_recovery: self.unfinished.as_ref(),
        }
    }
}

fn discovered_cluster_of(w: &World) -> Vec<(MemberName, String)> {
    let mut set: Vec<_> = w
        .discovered
        .iter()
        .map(|c| (c.name.clone(), w.spec.peer_url(&c.host)))
        .collect();
    set.sort();
    set
}

fn start(o: &Outcome) -> &StartPlan {
    match &o.decision {
        Decision::Start(p) => p,
        other => panic!("expected Start, got {other:?} ({})", o.reason),
    }
}

fn ic(plan: &StartPlan) -> String {
    plan.initial_cluster
        .iter()
        .map(|(n, u)| format!("{n}={u}"))
        .collect::<Vec<_>>()
        .join(",")
}

// ---- bootstrap -------------------------------------------------------------------------------

#[test]
fn bootstrap_when_exactly_size_members_and_nothing_listens_for_sizes_1_3_5_7() {
    for size in [1, 3, 5, 7] {
        let w = World::new(size, size);
        let o = w.decide();
        assert_eq!(o.row, Row::Bootstrap, "size {size}: {}", o.reason);
        let plan = start(&o);
        assert_eq!(plan.state, ClusterState::New);
        let expected: Vec<String> = (0..size).map(|i| format!("etcd-{i}={}", purl(i))).collect();
        assert_eq!(ic(plan), expected.join(","));
    }
}

#[test]
fn every_node_computes_the_same_initial_cluster_whatever_the_discovery_order() {
    let mut a = World::new(3, 3);
    a.discovered.reverse();
    a.me = Some(2); // still etcd-0 after the reverse
    let b = World::new(3, 3);
    assert_eq!(ic(start(&a.decide())), ic(start(&b.decide())));
}

#[test]
fn waits_for_missing_members_and_says_who_was_found() {
    for (size, found) in [(3, 2), (5, 4), (7, 1)] {
        let o = World::new(size, found).decide();
        assert_eq!(o.decision, Decision::Wait, "{}", o.reason);
        assert!(
            o.reason
                .contains(&format!("waiting for {size} members, found {found}")),
            "{}",
            o.reason
        );
        assert!(o.reason.contains("etcd-0"), "{}", o.reason);
    }
}

#[test]
fn extra_members_are_never_bootstrapped_with() {
    let o = World::new(3, 4).decide();
    assert_eq!(o.decision, Decision::Wait);
    assert_eq!(o.ends_in, None, "a wait on the fleet, not on the clock");
    assert!(
        o.reason.contains("found more than the 3 members, found 4"),
        "{}",
        o.reason
    );
}

#[test]
fn a_long_listing_is_summarized_not_spelled_out() {
    let o = World::new(3, 20).decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(
        o.reason.ends_with("found 20: etcd-0, etcd-1, etcd-10, etcd-11, etcd-12, etcd-13, etcd-14, etcd-15, etcd-16, etcd-17 and 10 more"),
        "{}",
        o.reason
    );
}

#[test]
fn waits_when_this_machine_is_not_discovered() {
    let mut w = World::new(3, 3);
    w.me = None;
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(
        o.reason.contains("not among the 3 discovered"),
        "{}",
        o.reason
    );
}

#[test]
fn silence_is_never_evidence_however_long_it_lasts() {
    let mut w = World::new(3, 3).answer(2, PeerAnswer::Refused);
    for secs in [0, 30, 600, 86_400] {
        w.quiet_for = std::time::Duration::from_secs(secs);
        let o = w.decide();
        assert_eq!(o.decision, Decision::Wait, "after {secs}s of silence");
        assert_eq!(
            o.reason,
            "waiting for etcd-2 (10.0.0.12) to vouch: a first bootstrap needs every member's agent to report an empty data dir"
        );
        assert_eq!(o.ends_in, None, "a wait on the fleet, not on the clock");
    }
}

#[test]
fn a_member_that_vouched_and_went_quiet_is_starting_its_etcd() {
    let mut w = World::new(3, 3).answer(1, PeerAnswer::Refused).answer(
        2,
        PeerAnswer::Unknown {
            reason: "timed out".into(),
        },
    );
    assert_eq!(w.decide().decision, Decision::Wait);
    w.vouched = vec![(cand(1).name, vouch(1, 3)), (cand(2).name, vouch(2, 3))];
    let o = w.decide();
    assert_eq!(o.row, Row::Bootstrap, "{}", o.reason);
    assert_eq!(start(&o).state, ClusterState::New);
}

#[test]
fn a_member_vouching_with_data_blocks_the_bootstrap_and_says_whose() {
    let mut v = vouch(2, 3);
    v.data = VouchedData::Member {
        cluster_id: "3004cd801c14dd7e".into(),
        member_id: "6818f1964ee7d1bb".into(),
        last_index: 42,
    };
    let w = World::new(3, 3).answer(2, PeerAnswer::Vouched(v.clone()));
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert_eq!(
        o.reason,
        "etcd-2 (10.0.0.12) holds data of cluster 3004cd801c14dd7e (member 6818f1964ee7d1bb, raft index 42): never bootstrapping a new cluster beside it; waiting for its etcd"
    );
    assert!(
        PeerAnswer::Vouched(v).shows_cluster(),
        "so the run never bootstraps after it"
    );
}

#[test]
fn a_vouch_for_another_set_token_or_address_is_awaited_not_trusted() {
    let mut other_set = vouch(1, 3);
    other_set.bootstrap.as_mut().unwrap()[2].peer_url = "http://10.9.9.9:2380".into();
    let mut other_token = vouch(1, 3);
    other_token.cluster_token = "other".into();
    let mut other_url = vouch(1, 3);
    other_url.peer_urls = vec!["http://10.9.9.9:2380".into()];
    let mut not_ready = vouch(1, 3);
    not_ready.bootstrap = None;
    for (v, says) in [
        (
            other_set,
            "would bootstrap a different member set (etcd-0=http://10.0.0.10:2380,etcd-1=http://10.0.0.11:2380,etcd-2=http://10.9.9.9:2380)",
        ),
        (
            other_token,
            "vouches for cluster token \"other\", this node's is \"t\"",
        ),
        (
            other_url,
            "vouches with peer URLs http://10.9.9.9:2380 where http://10.0.0.11:2380 was expected",
        ),
        (
            not_ready,
            "waiting for etcd-1 (10.0.0.11) to discover all 3 members",
        ),
    ] {
        let o = World::new(3, 3).answer(1, PeerAnswer::Vouched(v)).decide();
        assert_eq!(o.decision, Decision::Wait);
        assert!(o.reason.contains(says), "{}", o.reason);
    }
}

#[test]
fn the_settle_fallback_is_opt_in_and_counts_only_refusals() {
    let mut w = World::new(3, 3).answer(2, PeerAnswer::Refused);
    w.spec.bootstrap_settle = Some(std::time::Duration::from_secs(30));
    w.quiet_for = std::time::Duration::from_secs(12);
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(
        o.reason.contains("18s more") && o.reason.contains("cluster.bootstrap_settle"),
        "{}",
        o.reason
    );
    // Only time ends this wait, and the run is told when: it need not poll the API meanwhile.
    assert_eq!(o.ends_in, Some(std::time::Duration::from_secs(18)));
    w.quiet_for = std::time::Duration::from_secs(30);
    let o = w.decide();
    assert_eq!(o.row, Row::Bootstrap);
    assert!(o.reason.contains("settle fallback"), "{}", o.reason);
    // A timeout is not a refusal: the fallback never counts it.
    let mut w = w.answer(
        2,
        PeerAnswer::Unknown {
            reason: "timed out".into(),
        },
    );
    w.quiet_for = std::time::Duration::from_secs(3600);
    assert_eq!(w.decide().decision, Decision::Wait);
}

#[test]
fn a_peer_already_bootstrapping_this_set_needs_no_vouch() {
    let forming: Vec<_> = (0..3)
        .map(|i| EtcdMember {
            client_urls: vec![],
            ..member(i)
        })
        .collect();
    let mut w = World::new(3, 3)
        .answer(
            1,
            PeerAnswer::Forming {
                members: forming.clone(),
            },
        )
        .answer(2, PeerAnswer::Forming { members: forming });
    w.quiet_for = std::time::Duration::ZERO;
    assert_eq!(w.decide().row, Row::Bootstrap);
}

#[test]
fn a_run_that_saw_a_cluster_never_bootstraps_when_it_goes_quiet() {
    let mut w = World::new(3, 3);
    w.cluster_seen = Some("etcd-2 (10.0.0.12) answered for cluster c1");
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert_eq!(
        o.reason,
        "etcd-2 (10.0.0.12) answered for cluster c1 earlier in this run, and no cluster answers now (its members may be rebooting, or its quorum is lost): never bootstrapping beside it"
    );
}

#[test]
fn a_stalled_cluster_blocks_bootstrap() {
    let w = World::new(3, 3).answer(
        1,
        PeerAnswer::Stalled {
            version: "3.5.0".into(),
        },
    );
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(o.reason.contains("without a leader"), "{}", o.reason);
}

#[test]
fn unknown_peer_blocks_bootstrap() {
    let w = World::new(3, 3).answer(
        2,
        PeerAnswer::Unknown {
            reason: "timed out".into(),
        },
    );
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(
        o.reason.contains(
            "waiting for etcd-2 (10.0.0.12) to vouch; it did not answer clearly: timed out"
        ),
        "{}",
        o.reason
    );
}

#[test]
fn an_unprobed_peer_counts_as_unknown() {
    let mut w = World::new(3, 3);
    w.probes.pop();
    assert_eq!(w.decide().decision, Decision::Wait);
}

#[test]
fn joins_a_bootstrap_in_progress_only_when_it_forms_the_same_member_set() {
    let forming: Vec<_> = (0..3)
        .map(|i| EtcdMember {
            client_urls: vec![],
            ..member(i)
        })
        .collect();
    let w = World::new(3, 3).answer(
        1,
        PeerAnswer::Forming {
            members: forming.clone(),
        },
    );
    let o = w.decide();
    assert_eq!(o.row, Row::Bootstrap);
    assert_eq!(start(&o).state, ClusterState::New);

    let mut other = forming.clone();
    other[2].peer_urls = vec!["http://10.9.9.9:2380".into()];
    let o = World::new(3, 3)
        .answer(1, PeerAnswer::Forming { members: other })
        .decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(o.reason.contains("different member set"), "{}", o.reason);
}

// ---- data dir present ------------------------------------------------------------------------

#[test]
fn data_present_never_bootstraps_new() {
    for size in [1, 3, 5, 7] {
        let mut w = World::new(size, size);
        w.data = DataDir::HasMember;
        let o = w.decide();
        assert_eq!(o.row, Row::RestartUnreachable);
        assert_eq!(start(&o).state, ClusterState::Existing);
    }
    // Even with too few members discovered, or peers that cannot be reached.
    let mut w = World::new(3, 1);
    w.data = DataDir::HasMember;
    assert_eq!(start(&w.decide()).state, ClusterState::Existing);
    let mut w = World::new(3, 3).answer(
        1,
        PeerAnswer::Unknown {
            reason: "tls".into(),
        },
    );
    w.data = DataDir::HasMember;
    assert_eq!(start(&w.decide()).state, ClusterState::Existing);
}

#[test]
fn restart_with_data_when_the_cluster_lists_this_member() {
    let mut w = World::new(3, 3).all_answer(view((0..3).map(member).collect()));
    w.data = DataDir::HasMember;
    let o = w.decide();
    assert_eq!(o.row, Row::Restart);
    let plan = start(&o);
    assert_eq!(plan.state, ClusterState::Existing);
    assert_eq!(
        ic(plan),
        format!("etcd-0={},etcd-1={},etcd-2={}", purl(0), purl(1), purl(2))
    );
}

#[test]
fn removed_member_with_data_is_refused_and_data_never_touched() {
    let mut w = World::new(3, 3).all_answer(view(vec![member(1), member(2)]));
    w.data = DataDir::HasMember;
    let o = w.decide();
    assert_eq!((o.row, &o.decision), (Row::Removed, &Decision::Refuse));
    assert!(o.reason.contains("replace_stale_data"), "{}", o.reason);

    w.spec.replace_stale_data = true;
    let o = w.decide();
    assert_eq!(o.decision, Decision::Act(Action::MoveDataAside));
    // After moving the data aside the node joins.
    let (steps, last) = w.preview();
    assert_eq!(steps[0].0, Action::MoveDataAside);
    assert!(matches!(steps[1].0, Action::AddMember { .. }), "{steps:?}");
    assert_eq!(last.row, Row::Reuse);
}

#[test]
fn two_clusters_answering_is_refused() {
    let mut other = view(vec![member(2)]);
    other.cluster_id = 0xdead;
    let w = World::new(3, 3)
        .answer(1, PeerAnswer::Answered(view(vec![member(1)])))
        .answer(2, PeerAnswer::Answered(other));
    let o = w.decide();
    assert_eq!(o.decision, Decision::Refuse);
    assert!(o.reason.contains("two different clusters"), "{}", o.reason);
}

// ---- empty data dir, cluster answers ---------------------------------------------------------

#[test]
fn reuses_an_unstarted_member_with_this_peer_url() {
    let unstarted = EtcdMember {
        id: 7,
        name: String::new(),
        peer_urls: vec![purl(0)],
        client_urls: vec![],
        is_learner: false,
    };
    let w = World::new(3, 3).all_answer(view(vec![member(1), member(2), unstarted]));
    let o = w.decide();
    assert_eq!(o.row, Row::Reuse);
    let plan = start(&o);
    assert_eq!(plan.state, ClusterState::Existing);
    assert_eq!(
        ic(plan),
        format!("etcd-0={},etcd-1={},etcd-2={}", purl(0), purl(1), purl(2))
    );
}

#[test]
fn waits_for_the_cluster_version_to_settle_before_joining() {
    let mut v = view(vec![member(1), member(2)]);
    v.settled = false;
    let w = World::new(3, 3).all_answer(v);
    let (steps, last) = w.preview();
    assert_eq!(steps.len(), 1, "the add may happen: {steps:?}");
    assert_eq!(last.decision, Decision::Wait);
    assert!(last.reason.contains("settled"), "{}", last.reason);
}

#[test]
fn a_bootstrap_member_that_never_started_joins_its_bootstrap_as_new() {
    // The cluster formed from etcd-1 and etcd-2; etcd-0 was in the initial set but never ran.
    let never = EtcdMember {
        client_urls: vec![],
        ..member(0)
    };
    let o = World::new(3, 3)
        .all_answer(view(vec![never.clone(), member(1), member(2)]))
        .decide();
    assert_eq!(o.row, Row::Bootstrap, "{}", o.reason);
    let plan = start(&o);
    assert_eq!(
        plan.state,
        ClusterState::New,
        "as etcd's static bootstrap intends"
    );
    assert_eq!(
        ic(plan),
        "etcd-0=http://10.0.0.10:2380,etcd-1=http://10.0.0.11:2380,etcd-2=http://10.0.0.12:2380"
    );
    // Once the membership differs from the set this node would bootstrap (a member replaced),
    // its unstarted member is reused with `existing`.
    let mut replaced = member(2);
    replaced.peer_urls = vec!["http://10.0.0.99:2380".into()];
    let o = World::new(3, 3)
        .all_answer(view(vec![never, member(1), replaced]))
        .decide();
    assert_eq!(o.row, Row::Reuse, "{}", o.reason);
}

#[test]
fn a_started_member_with_this_url_and_empty_data_is_removed_then_added_again() {
    let w = World::new(3, 3).all_answer(view((0..3).map(member).collect()));
    let o = w.decide();
    assert_eq!(o.row, Row::ReplaceSelf);
    assert!(
        matches!(
            o.decision,
            Decision::Act(Action::RemoveMember { id: 100, .. })
        ),
        "{o:?}"
    );
    let (steps, last) = w.preview();
    assert_eq!(steps.len(), 2);
    assert!(
        matches!(steps[1].0, Action::AddMember { ref peer_url, learner: false } if *peer_url == purl(0))
    );
    assert_eq!(last.row, Row::Reuse);
    assert_eq!(ic(start(&last)).matches("etcd-0=").count(), 1);
}

#[test]
fn a_member_with_this_name_at_an_old_address_is_this_node() {
    let mut old = member(0);
    old.peer_urls = vec!["http://10.0.9.9:2380".into()];
    let o = World::new(3, 3)
        .all_answer(view(vec![old, member(1), member(2)]))
        .decide();
    assert_eq!(o.row, Row::ReplaceSelf);
    assert!(matches!(
        o.decision,
        Decision::Act(Action::RemoveMember { id: 100, .. })
    ));
}

#[test]
fn a_member_with_this_name_owned_by_another_machine_is_refused() {
    let mut clash = member(1);
    clash.name = "etcd-0".into();
    let o = World::new(3, 3)
        .all_answer(view(vec![clash, member(2)]))
        .decide();
    assert_eq!(o.decision, Decision::Refuse);
}

#[test]
fn joins_a_cluster_that_does_not_list_it() {
    let w = World::new(3, 3).all_answer(view(vec![member(1), member(2)]));
    let o = w.decide();
    assert_eq!(o.row, Row::Join);
    assert_eq!(
        o.decision,
        Decision::Act(Action::AddMember {
            peer_url: purl(0),
            learner: false
        })
    );
    let (_, last) = w.preview();
    let plan = start(&last);
    assert_eq!(plan.state, ClusterState::Existing);
    assert_eq!(
        ic(plan),
        format!("etcd-0={},etcd-1={},etcd-2={}", purl(0), purl(1), purl(2))
    );
}

#[test]
fn joins_as_learner_when_asked_and_waits_for_another_learner() {
    let mut w = World::new(3, 3).all_answer(view(vec![member(1), member(2)]));
    w.spec.join_as_learner = true;
    assert_eq!(
        w.decide().decision,
        Decision::Act(Action::AddMember {
            peer_url: purl(0),
            learner: true
        })
    );

    let mut l = member(3);
    l.is_learner = true;
    l.peer_urls = vec!["http://10.0.0.99:2380".into()];
    let mut w = World::new(4, 3).all_answer(view(vec![member(1), member(2), l]));
    w.spec.join_as_learner = true;
    w.spec.remove_dead_members = false;
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait, "{}", o.reason);
    assert!(o.reason.contains("one learner at a time"), "{}", o.reason);
}

#[test]
fn joins_only_once_a_member_added_before_it_has_started() {
    // etcd-2's agent added it and wrote its env file with the three members there were; were
    // etcd-0 added before etcd-2's etcd starts, that etcd would find four and refuse to start.
    let added = EtcdMember {
        id: 9,
        name: String::new(),
        peer_urls: vec![purl(2)],
        client_urls: vec![],
        is_learner: false,
    };
    for learner in [false, true] {
        let mut w = World::new(5, 4).all_answer(view(vec![member(1), member(3), added.clone()]));
        w.spec.join_as_learner = learner;
        w.spec.max_learners = 2;
        let o = w.decide();
        assert_eq!(o.decision, Decision::Wait, "{}", o.reason);
        assert!(
            o.reason
                .starts_with("member etcd-2 (9) was added but its etcd has not started yet"),
            "{}",
            o.reason
        );
    }
    // Once it has started, this node joins.
    let w = World::new(5, 4).all_answer(view(vec![member(1), member(2), member(3)]));
    assert_eq!(
        w.decide().decision,
        Decision::Act(Action::AddMember {
            peer_url: purl(0),
            learner: false
        })
    );
}

#[test]
fn max_learners_lets_more_learners_join_only_where_every_etcd_reads_it() {
    // A learner catching up, and `cluster.max_learners = 2`.
    let world = |cluster: &str, local: &str| {
        let mut l = member(3);
        l.is_learner = true;
        l.peer_urls = vec!["http://10.0.0.99:2380".into()];
        let mut v = view(vec![member(1), member(2), l]);
        v.cluster_version = EtcdVersion::parse(cluster);
        // Members at 3.5.26, the floor of an upgrade to 3.6, or at the cluster's version.
        v.server_version = EtcdVersion::parse(cluster)
            .map(|c| c.max(EtcdVersion::new(3, 5, 26)))
            .or(EtcdVersion::parse("3.6.14"));
        let mut w = World::new(5, 3).all_answer(v);
        w.spec.join_as_learner = true;
        w.spec.remove_dead_members = false;
        w.spec.max_learners = 2;
        w.local_etcd = EtcdVersion::parse(local).map(|version| LocalEtcd {
            binary: "/usr/bin/etcd".into(),
            version,
        });
        w
    };
    // 3.6 everywhere: a second learner joins beside the first.
    assert_eq!(
        world("3.6.0", "3.6.14").decide().decision,
        Decision::Act(Action::AddMember {
            peer_url: purl(0),
            learner: true
        })
    );
    // Up to 3.5, in a cluster not at 3.6 yet, or with versions unknown: one at a time.
    for (cluster, local) in [("3.5.0", "3.5.26"), ("3.5.0", "3.6.14"), ("", "3.6.14")] {
        let o = world(cluster, local).decide();
        assert_eq!(o.decision, Decision::Wait, "{cluster} {local}");
        assert!(o.reason.contains("one learner at a time"), "{}", o.reason);
    }
    let mut w = world("3.6.0", "3.6.14");
    w.local_etcd = None;
    assert_eq!(w.decide().decision, Decision::Wait);
    // Two learners already: the limit is reached, and the wait says so.
    let mut w = world("3.6.0", "3.6.14");
    let mut second = member(4);
    second.is_learner = true;
    second.peer_urls = vec!["http://10.0.0.98:2380".into()];
    let mut v = view(vec![member(1), member(2), member(3), second]);
    v.members[2].is_learner = true;
    v.members[2].peer_urls = vec!["http://10.0.0.99:2380".into()];
    v.cluster_version = EtcdVersion::parse("3.6.0");
    v.server_version = EtcdVersion::parse("3.6.14");
    w = w.all_answer(v);
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait, "{}", o.reason);
    assert!(
        o.reason.contains(
            "are still catching up and etcd allows 2 learners at a time (cluster.max_learners)"
        ),
        "{}",
        o.reason
    );
}

#[test]
fn a_replacement_removes_one_dead_member_then_joins() {
    // Machines 0 (me, new), 1, 2 are discovered; member 3 is dead (no machine has its URL).
    let w = World::new(3, 3).all_answer(view(vec![member(1), member(2), member(3)]));
    let o = w.decide();
    assert_eq!(o.row, Row::Join);
    assert!(
        matches!(
            o.decision,
            Decision::Act(Action::RemoveMember { id: 103, .. })
        ),
        "{o:?}"
    );
    let (steps, last) = w.preview();
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(
        ic(start(&last)),
        format!("etcd-0={},etcd-1={},etcd-2={}", purl(0), purl(1), purl(2))
    );
}

#[test]
fn gone_at_two_looks_means_two_listings_never_the_peers_asked_twice_on_one() {
    let secs = std::time::Duration::from_secs;
    let w = World::new(3, 3).all_answer(view(vec![member(1), member(2), member(3)]));
    let first = w.observation();
    let mut session = Session::default();
    let o = session.decide(&w.spec, &first, secs(0));
    assert_eq!(o.decision, Decision::Wait, "{}", o.reason);
    assert!(
        o.reason.contains("confirming at the next look"),
        "{}",
        o.reason
    );
    // The run asks the peers again between two listings: however often, on one listing the
    // member is never confirmed gone.
    for t in 1..5 {
        assert_eq!(
            session.decide(&w.spec, &first, secs(t)).decision,
            Decision::Wait
        );
    }
    // The next listing confirms it.
    let second = Observation {
        listing: 1,
        ..first.clone()
    };
    assert!(matches!(
        session.clone().decide(&w.spec, &second, secs(6)).decision,
        Decision::Act(Action::RemoveMember { id: 103, .. })
    ));
    // Unless it answered at any ask of the first listing: then that listing never saw it gone.
    let mut session = Session::default();
    session.decide(&w.spec, &first, secs(0));
    let answered = Observation {
        undiscovered_alive: vec![103],
        ..first.clone()
    };
    session.decide(&w.spec, &answered, secs(1));
    session.decide(&w.spec, &first, secs(2));
    let o = session.decide(&w.spec, &second, secs(6));
    assert_eq!(o.decision, Decision::Wait, "{}", o.reason);
}

#[test]
fn a_member_missing_from_the_listing_but_answering_is_not_dead() {
    let mut w = World::new(3, 3).all_answer(view(vec![member(1), member(2), member(3)]));
    w.alive = vec![103];
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait, "{}", o.reason);
    assert!(
        o.reason.contains("already has 3 live members"),
        "{}",
        o.reason
    );
}

#[test]
fn a_dead_member_is_confirmed_at_a_second_look_before_removal() {
    let mut w = World::new(3, 3).all_answer(view(vec![member(1), member(2), member(3)]));
    w.dead_before = vec![];
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(
        o.reason.contains("confirming at the next look"),
        "{}",
        o.reason
    );
    assert_eq!(dead_ids(&w.facts()), vec![103]);
    w.dead_before = dead_ids(&w.facts());
    assert!(matches!(
        w.decide().decision,
        Decision::Act(Action::RemoveMember { id: 103, .. })
    ));
}

#[test]
fn only_one_dead_member_is_removed_per_run() {
    let w = World::new(5, 3).all_answer(view(vec![member(1), member(2), member(3), member(4)]));
    // 4 members, 2 healthy: removing one leaves 2 of 3, quorum 2: allowed.
    assert!(matches!(
        w.decide().decision,
        Decision::Act(Action::RemoveMember { .. })
    ));
    let (steps, _) = w.preview();
    let removals = steps
        .iter()
        .filter(|(a, _)| matches!(a, Action::RemoveMember { .. }))
        .count();
    assert_eq!(removals, 1, "{steps:?}");
    // After the first removal the second dead member stays for a later run; with 2 healthy of
    // 3 voters, a fourth voter would be below quorum, so the node waits rather than asks etcd.
    let mut w = World::new(5, 3).all_answer(view(vec![member(1), member(2), member(4)]));
    w.removed = 1;
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait, "{}", o.reason);
    assert!(o.reason.contains("etcd-4"), "{}", o.reason);
}

#[test]
fn a_dead_member_is_not_removed_when_quorum_would_be_lost() {
    // 3 members: one healthy (1), one whose machine does not answer (2), one dead (3).
    let w = World::new(3, 3)
        .answer(
            1,
            PeerAnswer::Answered(view(vec![member(1), member(2), member(3)])),
        )
        .answer(
            2,
            PeerAnswer::Unknown {
                reason: "timed out".into(),
            },
        );
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(o.reason.contains("below quorum"), "{}", o.reason);
}

#[test]
fn dead_members_are_kept_when_removal_is_off_and_a_full_cluster_is_not_joined() {
    let mut w = World::new(3, 3).all_answer(view(vec![member(1), member(2), member(3)]));
    w.spec.remove_dead_members = false;
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(
        o.reason.contains("below quorum 3") && o.reason.contains("etcd-3"),
        "{}",
        o.reason
    );

    let o = World::new(3, 4)
        .all_answer(view(vec![member(1), member(2), member(3)]))
        .decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(
        o.reason.contains("already has 3 live members"),
        "{}",
        o.reason
    );
}

#[test]
fn unstarted_members_of_other_machines_are_named_from_discovery() {
    let pending = EtcdMember {
        id: 9,
        name: String::new(),
        peer_urls: vec![purl(2)],
        client_urls: vec![],
        is_learner: false,
    };
    let mine = EtcdMember {
        id: 8,
        name: String::new(),
        peer_urls: vec![purl(0)],
        client_urls: vec![],
        is_learner: false,
    };
    // Two added members, neither started: etcd-2's env file may have been written before this
    // node was added, and its etcd would refuse a cluster one member longer. This node's member
    // never ran, so it is withdrawn, and etcd-2 is named from discovery.
    let w = World::new(3, 3).all_answer(view(vec![member(1), pending.clone(), mine]));
    let o = w.decide();
    assert!(
        matches!(
            o.decision,
            Decision::Act(Action::RemoveMember { id: 8, .. })
        ),
        "{o:?}"
    );
    assert!(
        o.reason.starts_with("member etcd-2 (9) was added too"),
        "{}",
        o.reason
    );
    // Then it waits for etcd-2 to start, and joins after it.
    let (_, last) = w.preview();
    assert_eq!(last.decision, Decision::Wait, "{}", last.reason);
    assert!(
        last.reason
            .starts_with("member etcd-2 (9) was added but its etcd has not started yet"),
        "{}",
        last.reason
    );
    let started = World::new(3, 3)
        .all_answer(view(vec![member(1), member(2)]))
        .decide();
    assert_eq!(started.row, Row::Join);
}

#[test]
fn members_with_names_that_cannot_be_written_get_unique_placeholders() {
    let mut weird = member(5);
    weird.name = "bad name".into();
    let mut dup = member(6);
    dup.name = "etcd-1".into();
    let mut w = World::new(5, 3).all_answer(view(vec![member(1), member(2), weird, dup]));
    w.data = DataDir::HasMember;
    w.probes.iter_mut().for_each(|p| {
        if let PeerAnswer::Answered(v) = &mut p.answer {
            v.members.push(member(0));
        }
    });
    let plan = start(&w.decide()).clone();
    let names: std::collections::BTreeSet<_> = plan
        .initial_cluster
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(
        names.len(),
        plan.initial_cluster.len(),
        "names are unique: {plan:?}"
    );
    assert!(ic(&plan).contains("member-69="), "{}", ic(&plan));
}

// ---- whose data it is --------------------------------------------------------------------------

fn wal(cluster_id: u64, member_id: u64) -> crate::datadir::WalInfo {
    crate::datadir::WalInfo {
        member_id,
        cluster_id,
        last_index: 9,
        commit: 9,
        members: Vec::new(),
        members_complete: false,
        ..Default::default()
    }
}

#[test]
fn data_of_another_cluster_is_refused_even_when_the_urls_match() {
    let mut w = World::new(3, 3).all_answer(view((0..3).map(member).collect()));
    w.data = DataDir::HasMember;
    w.wal = Some(wal(0xbad, 100));
    let o = w.decide();
    assert_eq!((o.row, &o.decision), (Row::Removed, &Decision::Refuse));
    assert_eq!(
        o.reason,
        "/var/lib/etcd holds data of cluster bad (member 64), but the cluster answering is c1: refusing to start or join it with another cluster's data. Move the data dir aside by hand or set cluster.replace_stale_data = true"
    );
    w.spec.replace_stale_data = true;
    assert_eq!(w.decide().decision, Decision::Act(Action::MoveDataAside));
}

#[test]
fn a_restart_is_recognised_by_member_id_from_the_log() {
    let mut w = World::new(3, 3).all_answer(view((0..3).map(member).collect()));
    w.data = DataDir::HasMember;
    w.wal = Some(wal(0xc1, 100));
    assert_eq!(w.decide().row, Row::Restart);
    // Same cluster, but the member in the log is gone from it: removed, whatever the URLs say.
    w.wal = Some(wal(0xc1, 999));
    assert_eq!(w.decide().decision, Decision::Refuse);
}

#[test]
fn the_distribution_default_cluster_is_named_with_the_command_that_clears_it() {
    let mut w = World::new(3, 3);
    w.data = DataDir::HasMember;
    let mut debian = wal(0x3004cd801c14dd7e, 0x6818f1964ee7d1bb);
    debian.members = vec![crate::datadir::WalMember {
        id: 0x6818f1964ee7d1bb,
        // Debian's unit names it after the host.
        name: "etcd-host-1".into(),
        peer_urls: vec!["http://localhost:2380".into()],
        is_learner: false,
        is_promote: false,
    }];
    w.wal = Some(debian);
    let o = w.decide();
    assert_eq!(o.decision, Decision::Refuse);
    assert_eq!(
        o.reason,
        "/var/lib/etcd holds the single-member cluster 3004cd801c14dd7e that the distribution's etcd package started on install (member \"etcd-host-1\", peer URL http://localhost:2380), not this cluster's data. Clear it with: systemctl stop etcd && mv /var/lib/etcd /var/lib/etcd.distribution-default"
    );
    w.spec.replace_stale_data = true;
    assert_eq!(w.decide().decision, Decision::Act(Action::MoveDataAside));
}

#[test]
fn a_bootstrap_without_a_vouch_to_cross_check_needs_two_looks_in_a_row() {
    // Peers' vouches carry their own listings: no second look is needed.
    let mut w = World::new(3, 3);
    w.confirmed = false;
    assert_eq!(w.decide().row, Row::Bootstrap);
    // A cluster of one has nobody to vouch.
    let mut w = World::new(1, 1);
    w.confirmed = false;
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(
        o.reason.contains("confirming at one more look"),
        "{}",
        o.reason
    );
    assert_eq!(o.ends_in, Some(CONFIRM_AFTER));
    assert_eq!(o.agreed, Some(discovered_cluster_of(&w)));
    w.confirmed = true;
    assert_eq!(w.decide().row, Row::Bootstrap);
}

#[test]
fn a_machine_listed_earlier_and_missing_now_blocks_a_bootstrap() {
    let mut w = World::new(3, 3);
    w.unsettled = vec![cand(7)];
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert!(
        o.reason.starts_with(
            "etcd-7 (10.0.0.17) was listed earlier in this run, is missing now and never vouched"
        ),
        "{}",
        o.reason
    );
}

#[test]
fn a_peer_still_vouching_must_have_heard_this_node_first() {
    let mut v = vouch(2, 3);
    v.heard.retain(|n| n != "etcd-0");
    let w = World::new(3, 3).answer(2, PeerAnswer::Vouched(v.clone()));
    let o = w.decide();
    assert_eq!(o.decision, Decision::Wait);
    assert_eq!(
        o.reason,
        "waiting for etcd-2 (10.0.0.12) to hear this node's vouch (it agrees to bootstrap this set)"
    );
    // Gone quiet after that vouch: it decided, so it had heard everyone it needed; its word holds.
    let mut w = World::new(3, 3).answer(2, PeerAnswer::Refused);
    w.vouched = vec![(cand(2).name, v)];
    assert_eq!(w.decide().row, Row::Bootstrap);
}

mod prune;
mod recovery;
mod restore;

/// Found by reading and confirmed on the library: `plan` and the run kept the run's memory in
/// two copies, and this node (its old member still listed at its old address) with one dead
/// member got "remove old self, then wait: below quorum" from `plan` while the run removed the
/// dead member and joined. Both now drive one `Session`: `plan` shows the run's steps, and a
/// run against a small etcd (below, not `preview`'s own model) takes exactly those steps.
#[test]
fn regression_plan_shows_what_the_run_does_with_an_old_self_and_a_dead_member() {
    let mut old = member(0);
    old.peer_urls = vec!["http://10.0.9.9:2380".into()];
    let mut dead = member(3);
    dead.peer_urls = vec!["http://10.0.0.99:2380".into()];
    let mut w = World::new(3, 3).all_answer(view(vec![old, member(1), dead]));
    // A run's first look: nothing confirmed yet.
    w.dead_before = Vec::new();
    w.confirmed = false;
    let (steps, shown) = w.preview();
    let shown_steps: Vec<Action> = steps.into_iter().map(|(a, _)| a).collect();
    assert!(
        matches!(
            shown_steps.as_slice(),
            [
                Action::RemoveMember { id: 100, .. },
                Action::RemoveMember { id: 103, .. },
                Action::AddMember { .. }
            ]
        ),
        "{shown_steps:?}"
    );
    assert_eq!(shown.row, Row::Reuse);

    // The run: looks at one second apart, each step carried out by etcd before the next look.
    let mut session = Session::default();
    let mut world = w;
    let mut ran = Vec::new();
    let mut now = std::time::Duration::ZERO;
    let mut listing = 0;
    let last = loop {
        // Each look a listing of its own, as the run lists again before each look here.
        let obs = Observation {
            listing,
            ..world.observation()
        };
        listing += 1;
        let out = session.decide(&world.spec, &obs, now);
        now += std::time::Duration::from_secs(1);
        match &out.decision {
            Decision::Act(action) => {
                session.carried_out(action, &out);
                ran.push(action.clone());
                for p in &mut world.probes {
                    if let PeerAnswer::Answered(v) = &mut p.answer {
                        match action {
                            Action::RemoveMember { id, .. } => v.members.retain(|m| m.id != *id),
                            Action::AddMember { peer_url, .. } => v.members.push(EtcdMember {
                                id: 900,
                                name: String::new(),
                                peer_urls: vec![peer_url.clone()],
                                client_urls: Vec::new(),
                                is_learner: false,
                            }),
                            _ => {}
                        }
                    }
                }
            }
            Decision::Wait if now.as_secs() < 10 => {}
            _ => break out,
        }
    };
    assert_eq!(ran, shown_steps);
    assert_eq!((last.row, last.decision), (shown.row, shown.decision));
}

/// The reason of the `version` row's refusal in `w`.
fn refusal(w: World) -> String {
    let o = w.decide();
    assert_eq!(
        (o.row, &o.decision),
        (Row::Version, &Decision::Refuse),
        "{}",
        o.reason
    );
    o.reason
}

/// A cluster at `cluster` whose answering members run etcd `server`, and this machine's etcd.
fn versions(cluster: &str, server: &str, local: &str) -> World {
    let mut v = view(vec![member(1), member(2)]);
    v.cluster_version = EtcdVersion::parse(cluster);
    v.server_version = EtcdVersion::parse(server);
    let mut w = World::new(3, 3).all_answer(v);
    w.local_etcd = EtcdVersion::parse(local).map(|version| LocalEtcd {
        binary: "/usr/bin/etcd".into(),
        version,
    });
    w
}

#[test]
fn an_etcd_older_than_the_cluster_is_refused_before_any_membership_change() {
    let o = versions("3.5.0", "3.5.1", "3.4.23").decide();
    assert_eq!((o.row, &o.decision), (Row::Version, &Decision::Refuse));
    assert_eq!(
        o.reason,
        "cluster c1: it is at cluster version 3.5 and this machine's etcd (/usr/bin/etcd) is 3.4.23: etcd refuses a member older than its cluster, and only after the member is added; install etcd 3.5 or later here (or point etcd.binary at it); nothing was changed (docs/versions.md)"
    );
    // Even where the join would first remove a dead member, or reuse an unstarted one.
    let mut w = versions("3.5.0", "3.5.1", "3.4.23");
    let mut v = view(vec![member(1), member(2), member(5)]);
    v.cluster_version = EtcdVersion::parse("3.5.0");
    w = w.all_answer(v);
    assert_eq!(w.decide().row, Row::Version);
    let (steps, _) = w.preview();
    assert!(steps.is_empty(), "{steps:?}");
    // And a restart on this machine's data (an etcd swapped for an older one in place).
    let mut w = versions("3.5.0", "3.5.1", "3.4.23");
    w.data = DataDir::HasMember;
    w = w.all_answer({
        let mut v = view(vec![member(0), member(1), member(2)]);
        v.cluster_version = EtcdVersion::parse("3.5.0");
        v
    });
    assert_eq!(w.decide().row, Row::Version);
}

/// This machine restarting on its data, written at cluster version `data`, with etcd `local`,
/// when nothing answers (the whole fleet down) or when its cluster answers at `data`.
fn restart_on(local: &str, data: &str, cluster_answers: bool) -> World {
    let mut w = versions(data, data, local);
    if !cluster_answers {
        w.probes
            .iter_mut()
            .for_each(|p| p.answer = PeerAnswer::Refused);
    } else {
        w = w.all_answer({
            let mut v = view(vec![member(0), member(1), member(2)]);
            v.cluster_version = EtcdVersion::parse(data);
            v
        });
    }
    w.data = DataDir::HasMember;
    w.wal = Some(crate::datadir::WalInfo {
        data_version: EtcdVersion::parse(data),
        ..wal(0xc1, 100)
    });
    w
}

#[test]
fn a_restart_on_data_a_newer_etcd_wrote_is_refused_whether_or_not_a_cluster_answers() {
    // The whole fleet down: the data's own version says it.
    assert_eq!(
        refusal(restart_on("3.4.23", "3.5.0", false)),
        "/var/lib/etcd was last written at cluster version 3.5 and this machine's etcd (/usr/bin/etcd) is 3.4.23: an older etcd refuses a newer data dir, after writing to it; install etcd 3.5 or later here (or point etcd.binary at it), or downgrade the cluster first (`etcdctl downgrade enable`, etcd 3.6 and later); nothing was changed (docs/versions.md)"
    );
    // Two lines newer than the data: etcd upgrades one at a time.
    assert!(
        refusal(restart_on("3.7.1", "3.5.0", false))
            .contains("start this data with etcd 3.6 first")
    );
    // With the cluster answering, its own version refuses the same starts first.
    for local in ["3.4.23", "3.7.1"] {
        refusal(restart_on(local, "3.5.0", true));
    }
    // The same line, or one newer (an upgrade in place): the ordinary restart.
    for local in ["3.5.1", "3.6.14"] {
        assert_eq!(
            restart_on(local, "3.5.0", false).decide().row,
            Row::RestartUnreachable
        );
    }
    assert_eq!(
        restart_on("3.5.1", "3.5.0", true).decide().row,
        Row::Restart
    );
    // Data that records no version, or an etcd that could not be asked: left to etcd.
    assert_eq!(
        restart_on("3.4.23", "", false).decide().row,
        Row::RestartUnreachable
    );
    let mut w = restart_on("3.4.23", "3.5.0", false);
    w.local_etcd = None;
    assert_eq!(w.decide().row, Row::RestartUnreachable);
}

#[test]
fn an_upgrade_goes_one_minor_version_at_a_time_from_the_floor() {
    // Members on 3.4 and a 3.5 joining: an upgrade in progress.
    assert_eq!(versions("3.4.0", "3.4.23", "3.5.1").decide().row, Row::Join);
    // Same line: the ordinary join.
    assert_eq!(versions("3.5.0", "3.5.1", "3.5.1").decide().row, Row::Join);
    // Two minors ahead.
    assert!(refusal(versions("3.4.0", "3.4.23", "3.6.0")).contains(
        "etcd-1 runs etcd 3.4.23 and this machine's etcd (/usr/bin/etcd) is 3.6.0: etcd upgrades one minor version at a time; upgrade the members to 3.5 first"
    ));
    // 3.5 → 3.6 below 3.5.26: refused unless allowed.
    let reason = refusal(versions("3.5.0", "3.5.21", "3.6.14"));
    assert!(reason.contains(
        "etcd-1 runs 3.5.21, etcd-2 runs 3.5.21 and this machine's etcd (/usr/bin/etcd) is 3.6.14: an upgrade to 3.6 starts only from 3.5.26"
    ));
    assert!(reason.contains("cluster.allow_upgrade_below_floor"));
    let mut w = versions("3.5.0", "3.5.21", "3.6.14");
    w.spec.allow_upgrade_below_floor = true;
    assert_eq!(w.decide().row, Row::Join);
    assert_eq!(
        versions("3.5.0", "3.5.26", "3.6.14").decide().row,
        Row::Join
    );
    // 3.6 → 3.7 from 3.6.11.
    assert_eq!(
        versions("3.6.0", "3.6.10", "3.7.1").decide().row,
        Row::Version
    );
    assert_eq!(versions("3.6.0", "3.6.11", "3.7.1").decide().row, Row::Join);
}

#[test]
fn versions_not_known_are_not_guessed_at() {
    // This machine's etcd could not be asked: etcd checks at its start, as before.
    assert_eq!(
        versions("3.5.0", "3.5.1", "unknown").decide().row,
        Row::Join
    );
    // A new cluster reports 3.0 until its leader has heard every member: no rule against anyone.
    assert_eq!(versions("3.0.0", "3.5.1", "3.5.1").decide().row, Row::Join);
    assert_eq!(
        versions("3.0.0", "3.4.23", "3.4.23").decide().row,
        Row::Join
    );
    // A cluster whose version is not decided yet says nothing about versions.
    assert_eq!(
        versions("not_decided", "3.5.1", "3.4.23").decide().row,
        Row::Join
    );
}
