//! One run of the agent as pure state: what each look at the world adds to what the run knows
//! (peers quiet, listed, heard, vouched; members dead at the previous look; a cluster seen; what
//! this run changed), and the decision on it. Time is passed in, never read.
//!
//! The run loop (`run/mod.rs`), `plan` and `--dry-run` (`Session::preview`), `prune` and the
//! simulation (`tests/simulation.rs`) all drive this same code: what `plan` shows is what the run
//! does, and what the simulation proves is the loop that runs.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::{
    Action, Backups, DataDir, Decision, EtcdMember, Facts, LocalEtcd, Outcome, PeerAnswer, Probe,
    Prune, Row, UnfinishedRecovery, Vouch, VouchedData, bootstrap_set, dead_ids, decide, prune,
};
use crate::config::ClusterSpec;
use crate::datadir::WalInfo;
use crate::member::{Candidate, MemberName};

/// The largest listing whose machines a run remembers (see `Session::observe`).
const LISTING_MEMORY: usize = 64;

/// How far apart `preview` puts two looks at a world that holds still, when nothing says how
/// long to wait: a look confirms what the one before saw (dead members, an agreed set).
const NEXT_LOOK: Duration = Duration::from_secs(1);

/// Looking again this long after a wait would end, not at the very instant, so that one look
/// (not two) sees it over.
pub const SETTLE_MARGIN: Duration = Duration::from_millis(100);

/// Which source a listing came from, and why that one.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceUsed {
    pub name: &'static str,
    /// Set when a fallback is in use: what the source before it kept failing with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_because: Option<String>,
}

/// One look at the world.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Where `candidates` came from: the configured provider or a fallback.
    pub source: SourceUsed,
    pub candidates: Vec<Candidate>,
    pub me: Option<usize>,
    pub data: DataDir,
    /// What this machine's log says, when it holds a member.
    pub wal: Option<WalInfo>,
    pub probes: Vec<Probe>,
    /// Members no discovered machine owns that answered on their own client URL.
    pub undiscovered_alive: Vec<u64>,
    /// Which listing `candidates` came from: looks that only asked the peers again (the run's
    /// short-cadence re-asks between two listings) share their listing's number. What a look
    /// confirms (a dead member, an agreed set) it confirms only from an earlier *listing*: one
    /// listing that misses a machine must never count twice.
    pub listing: u64,
    /// The etcd this machine would start, when it could be asked (`etcd --version`).
    pub local_etcd: Option<LocalEtcd>,
    /// The backup store and what it holds, when `[backup]` is configured.
    pub backups: Option<Backups>,
    /// An earlier run's recovery start that never finished.
    pub unfinished_recovery: Option<UnfinishedRecovery>,
}

/// What one run remembers between looks. `now` is any clock that only moves forward (the run
/// passes the time since it started; the simulation its own).
#[derive(Clone, Debug, Default)]
pub struct Session {
    /// Dead members removed so far to let this node join (at most one per run).
    pub(super) removed: usize,
    /// A peer showed a cluster at some point of this run.
    pub(super) cluster_seen: Option<String>,
    /// Since when each peer has refused connections (or been bootstrapping) without a break.
    /// Kept across listings that miss a peer: only an answer from the peer itself resets it.
    pub(super) refusing_since: HashMap<String, Duration>,
    /// The first look of this run.
    pub(super) started: Option<Duration>,
    /// When each peer was last listed.
    pub(super) last_listed: HashMap<String, Duration>,
    /// Members that looked dead at the previous listing.
    pub(super) dead_before: Vec<u64>,
    /// Members that look dead at every look of the current listing so far.
    pub(super) dead_this_listing: Vec<u64>,
    /// The listing of the latest look.
    pub(super) listing: Option<u64>,
    /// The last vouch of each peer still at the address it vouched from.
    pub(super) vouched: Vec<(MemberName, Vouch)>,
    /// The last vouch of each peer in this run, by peer (name and address).
    pub(super) vouches: HashMap<String, (MemberName, Vouch)>,
    /// Every machine listed in this run, by name and address.
    pub(super) ever_listed: HashMap<String, Candidate>,
    /// Of those, the ones missing now that never vouched an empty data dir.
    pub(super) unsettled: Vec<Candidate>,
    /// The set every other member agreed to at the previous listing (`Outcome::agreed`).
    pub(super) agreed: Option<Vec<(MemberName, String)>>,
    /// The set agreed at every look of the current listing so far.
    pub(super) agreed_this_listing: Option<Vec<(MemberName, String)>>,
    /// The discovery source the looks so far listed from.
    pub(super) source: Option<&'static str>,
    /// This run copied the data dir aside for a lost-quorum recovery.
    pub(super) data_copied: bool,
}

impl Session {
    /// Takes in one look, made at `now`, and decides on it: what the run does next.
    pub fn decide(&mut self, spec: &ClusterSpec, obs: &Observation, now: Duration) -> Outcome {
        let (outcome, fresh) = self.look(spec, obs, now, decide);
        // Within one listing, only what every look of it agreed on.
        self.agreed_this_listing = if fresh || self.agreed_this_listing == outcome.agreed {
            outcome.agreed.clone()
        } else {
            None
        };
        outcome
    }

    /// `prune`'s look: which member beyond `cluster.size` to remove, if any.
    pub fn prune(&mut self, spec: &ClusterSpec, obs: &Observation, now: Duration) -> Prune {
        self.look(spec, obs, now, prune).0
    }

    /// One look taken in, `rule` applied to its facts, and the members that look dead now
    /// remembered for the next listing to confirm. Also says whether the look began a listing.
    fn look<T>(
        &mut self,
        spec: &ClusterSpec,
        obs: &Observation,
        now: Duration,
        rule: fn(&Facts<'_>) -> T,
    ) -> (T, bool) {
        self.observe(obs, now);
        // A new listing: what the previous one saw becomes what this one confirms. (The first
        // look of a run confirms what the session was given, nothing in a run.)
        let fresh = self.listing != Some(obs.listing);
        if fresh && self.listing.is_some() {
            self.dead_before = std::mem::take(&mut self.dead_this_listing);
            self.agreed = self.agreed_this_listing.take();
        }
        self.listing = Some(obs.listing);
        let facts = self.facts(spec, obs, now);
        let dead_now = dead_ids(&facts);
        let result = rule(&facts);
        // Within one listing, dead only while every look of it says so.
        if fresh {
            self.dead_this_listing = dead_now;
        } else {
            self.dead_this_listing.retain(|id| dead_now.contains(id));
        }
        (result, fresh)
    }

    /// This run copied the data dir aside for a lost-quorum recovery (and marked it so).
    pub fn copied_data(&self) -> bool {
        self.data_copied
    }

    /// Records that `action`, which `outcome` asked for, was carried out.
    pub fn carried_out(&mut self, action: &Action, outcome: &Outcome) {
        match action {
            Action::RemoveMember { .. } if outcome.row == Row::Join => self.removed += 1,
            Action::CopyDataAside => self.data_copied = true,
            _ => {}
        }
    }

    /// What a run in this state would do from this look if the world held still: each step
    /// applied to the look as etcd applies it, and a wait followed by one more look of the same
    /// world (which confirms dead members and an agreed set, and ends a timed wait), until it
    /// starts, refuses, or waits on something only the world can change. `plan` and `--dry-run`
    /// show this; it runs on a copy and changes nothing.
    pub fn preview(
        &self,
        spec: &ClusterSpec,
        obs: &Observation,
        now: Duration,
    ) -> (Vec<(Action, String)>, Outcome) {
        let mut session = self.clone();
        let mut obs = obs.clone();
        let mut now = now;
        let mut steps = Vec::new();
        let mut looked_again = false;
        loop {
            let out = session.decide(spec, &obs, now);
            match &out.decision {
                Decision::Act(action) if steps.len() < 8 => {
                    session.carried_out(action, &out);
                    apply(&mut obs, action);
                    steps.push((action.clone(), out.reason.clone()));
                    looked_again = false;
                    // As the run: a new listing after a step, except after an addition, whose
                    // answer (the new member list) is decided on at once.
                    if !matches!(action, Action::AddMember { .. }) {
                        obs.listing = obs.listing.wrapping_add(1);
                    }
                }
                Decision::Wait if !looked_again => {
                    looked_again = true;
                    now += out.ends_in.map_or(NEXT_LOOK, |d| d + SETTLE_MARGIN);
                    obs.listing = obs.listing.wrapping_add(1);
                }
                _ => return (steps, out),
            }
        }
    }

    /// The facts of one look, as this run knows them at `now`.
    pub fn facts<'a>(
        &'a self,
        spec: &'a ClusterSpec,
        obs: &'a Observation,
        now: Duration,
    ) -> Facts<'a> {
        Facts {
            spec,
            discovered: &obs.candidates,
            me: obs.me.map(|i| &obs.candidates[i]),
            data: obs.data,
            probes: &obs.probes,
            removed_this_run: self.removed,
            cluster_seen: self.cluster_seen.as_deref(),
            quiet_for: self.quiet_for(obs, spec.bootstrap_settle.unwrap_or_default(), now),
            vouched: &self.vouched,
            unsettled: &self.unsettled,
            agreed_before: self.agreed.as_deref(),
            wal: obs.wal.as_ref(),
            undiscovered_alive: &obs.undiscovered_alive,
            dead_before: &self.dead_before,
            data_copied: self.data_copied,
            local_etcd: obs.local_etcd.as_ref(),
            backups: obs.backups.as_ref(),
            unfinished_recovery: obs.unfinished_recovery.as_ref(),
        }
    }

    /// Adds one look to what the run knows.
    fn observe(&mut self, obs: &Observation, now: Duration) {
        // A fallback took over: what the run remembers of the earlier source's listings (its
        // machines, their quiet and vouches, an agreement on its set) must not count in a
        // decision on the new one's. A cluster seen, and what this run changed, are facts of
        // the world, not of a listing: they stay.
        if self.source.is_some_and(|s| s != obs.source.name) {
            *self = Session {
                removed: self.removed,
                cluster_seen: self.cluster_seen.take(),
                data_copied: self.data_copied,
                ..Session::default()
            };
        }
        self.source = Some(obs.source.name);
        let keys = probe_keys(obs);
        if self.cluster_seen.is_none() {
            self.cluster_seen = obs.probes.iter().zip(&keys).find_map(|(p, key)| {
                let what = p.answer.cluster_evidence()?;
                let host = key.split_once('=').map_or("", |(_, h)| h);
                Some(format!("{} ({host}) {what}", p.peer))
            });
        }
        self.started.get_or_insert(now);
        for (p, key) in obs.probes.iter().zip(&keys) {
            self.last_listed.insert(key.clone(), now);
            if let PeerAnswer::Vouched(v) = &p.answer {
                self.vouches
                    .insert(key.clone(), (p.peer.clone(), v.clone()));
            }
        }
        // Only listings a bootstrap could come from are remembered (a cluster has at most 9
        // members): a tag on 10,000 machines is "more than cluster.size" at every look anyway,
        // and remembering it would cost megabytes.
        if obs.candidates.len() <= LISTING_MEMORY {
            for c in &obs.candidates {
                self.ever_listed.insert(machine_key(c), c.clone());
            }
        }
        let listed: HashSet<String> = obs.candidates.iter().map(machine_key).collect();
        self.unsettled = self
            .ever_listed
            .iter()
            .filter(|(k, _)| !listed.contains(*k))
            .filter(|(k, _)| {
                !self
                    .vouches
                    .get(*k)
                    .is_some_and(|(_, v)| v.data == VouchedData::Empty)
            })
            .map(|(_, c)| c.clone())
            .collect();
        self.unsettled.sort_by(|a, b| a.name.cmp(&b.name));
        // A replacement that reuses a name is another peer: only vouches from the address each
        // peer has now count.
        self.vouched = keys
            .iter()
            .filter_map(|key| self.vouches.get(key).cloned())
            .collect();
        for (p, key) in obs.probes.iter().zip(keys) {
            // No etcd runs there (a waiting agent's vouch is no etcd either): the quiet the opt-in
            // settle measures.
            if matches!(
                p.answer,
                PeerAnswer::Refused | PeerAnswer::Forming { .. } | PeerAnswer::Vouched(_)
            ) {
                self.refusing_since.entry(key).or_insert(now);
            } else {
                self.refusing_since.remove(&key);
            }
        }
    }

    /// What this agent says of its machine to its peers while it waits, from this look (`None`
    /// until it has found itself among the discovered machines). A machine with data also says
    /// what it waits for (`waiting`: the reason of the wait), which its peers repeat.
    pub fn vouch(&self, spec: &ClusterSpec, obs: &Observation, waiting: &str) -> Option<Vouch> {
        let me = &obs.candidates[obs.me?];
        let data = match (&obs.data, &obs.wal) {
            (DataDir::Empty, _) => VouchedData::Empty,
            (DataDir::HasMember, Some(w)) => VouchedData::Member {
                cluster_id: format!("{:x}", w.cluster_id),
                member_id: format!("{:x}", w.member_id),
                last_index: w.last_index,
            },
            (DataDir::HasMember, None) => VouchedData::Unreadable,
        };
        let ready = obs.data == DataDir::Empty
            && self.cluster_seen.is_none()
            && obs.candidates.len() == spec.size;
        let bootstrap = ready.then(|| {
            let mut set: Vec<_> = obs
                .candidates
                .iter()
                .map(|c| (c.name.clone(), spec.peer_url(&c.host)))
                .collect();
            set.sort();
            bootstrap_set(&set)
        });
        let restore = obs.backups.as_ref().and_then(|b| b.would_restore());
        let mut heard: Vec<String> = self
            .vouched
            .iter()
            .filter(|(_, v)| {
                v.data == VouchedData::Empty
                    && bootstrap.is_some()
                    && v.bootstrap == bootstrap
                    && v.restore == restore
            })
            .map(|(n, _)| n.to_string())
            .collect();
        heard.sort();
        Some(Vouch {
            agent: concat!("etcd-bootstrap/", env!("CARGO_PKG_VERSION")).into(),
            name: me.name.to_string(),
            peer_urls: vec![spec.peer_url(&me.host)],
            cluster_token: spec.token.clone(),
            waiting: (data != VouchedData::Empty).then(|| waiting.to_owned()),
            data,
            bootstrap,
            heard,
            restore,
        })
    }

    /// The names of the peers whose vouch this run holds (probed with a short timeout).
    pub fn vouched_names(&self) -> Vec<MemberName> {
        self.vouched.iter().map(|(n, _)| n.clone()).collect()
    }

    /// How long every peer of this look has been quiet: the shortest of their quiets. With no
    /// peer listed (a one-member cluster, or a listing that missed the others), how long this
    /// run has been looking.
    fn quiet_for(&self, obs: &Observation, settle: Duration, now: Duration) -> Duration {
        let since = |t: &Duration| now.saturating_sub(*t);
        // A peer listed within the settle time but missing now: the listing is not settled
        // (eventually consistent listings miss machines), so this is no quiet at all.
        let keys = probe_keys(obs);
        let listed: HashSet<&String> = keys.iter().collect();
        if self
            .last_listed
            .iter()
            .any(|(k, t)| since(t) < settle && !listed.contains(k))
        {
            return Duration::ZERO;
        }
        let run = self.started.as_ref().map_or(Duration::ZERO, since);
        keys.iter()
            .map(|key| self.refusing_since.get(key).map_or(Duration::ZERO, since))
            .min()
            .unwrap_or(run)
    }
}

/// An action applied to a look the way etcd applies it: what `preview` assumes happened.
fn apply(obs: &mut Observation, action: &Action) {
    for p in &mut obs.probes {
        if let PeerAnswer::Answered(view) = &mut p.answer {
            match action {
                Action::RemoveMember { id, .. } => view.members.retain(|m| m.id != *id),
                Action::AddMember { peer_url, learner } => view.members.push(EtcdMember {
                    id: 0,
                    name: String::new(),
                    peer_urls: vec![peer_url.clone()],
                    client_urls: vec![],
                    is_learner: *learner,
                }),
                Action::MoveDataAside | Action::CopyDataAside | Action::UndoRecoveryStart => {}
            }
        }
    }
    if *action == Action::MoveDataAside {
        obs.data = DataDir::Empty;
        obs.wal = None;
    }
    if *action == Action::UndoRecoveryStart
        && let Some(u) = obs.unfinished_recovery.take()
    {
        obs.data = DataDir::HasMember;
        obs.wal = u.copy_wal;
    }
}

/// A machine is its name and address: a replacement with a reused name is another machine.
fn machine_key(c: &Candidate) -> String {
    format!("{}={}", c.name, c.host)
}

/// Each probe's machine key, in probe order, with one lookup table rather than a search of the
/// listing per probe (listings can hold 10,000 machines).
fn probe_keys(obs: &Observation) -> Vec<String> {
    let by_name: HashMap<&MemberName, &Candidate> =
        obs.candidates.iter().map(|c| (&c.name, c)).collect();
    obs.probes
        .iter()
        .map(|p| match by_name.get(&p.peer) {
            Some(c) => machine_key(c),
            None => format!("{}=", p.peer),
        })
        .collect()
}
