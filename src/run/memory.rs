//! What one look at the world saw (`Observation`), and what a run remembers between looks
//! (`RunMemory`): peers' quiet and vouches, machines listed, dead members, a cluster seen.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::config::{ClusterSpec, Settings};
use crate::datadir::WalInfo;
use crate::decide::{self, DataDir, Facts, PeerAnswer, Probe, Vouch, VouchedData};
use crate::discovery::SourceUsed;
use crate::member::{Candidate, MemberName};

/// The largest listing whose machines a run remembers (see `RunMemory::observe`).
const LISTING_MEMORY: usize = 64;

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
}

impl Observation {
    pub fn facts<'a>(&'a self, settings: &'a Settings, memory: &'a RunMemory) -> Facts<'a> {
        Facts {
            spec: &settings.cluster,
            discovered: &self.candidates,
            me: self.me.map(|i| &self.candidates[i]),
            data: self.data,
            probes: &self.probes,
            removed_this_run: memory.removed,
            cluster_seen: memory.cluster_seen.as_deref(),
            quiet_for: memory
                .quiet_for(self, settings.cluster.bootstrap_settle.unwrap_or_default()),
            vouched: &memory.vouched,
            unsettled: &memory.unsettled,
            agreed_before: memory.agreed.as_deref(),
            wal: self.wal.as_ref(),
            undiscovered_alive: &self.undiscovered_alive,
            dead_before: &memory.dead_before,
            data_copied: memory.data_copied.is_some(),
        }
    }

    /// What this agent says of its machine to its peers, from this observation (`None` until it
    /// has found itself among the discovered machines).
    pub fn vouch(&self, spec: &ClusterSpec, memory: &RunMemory) -> Option<Vouch> {
        let cluster_seen = memory.cluster_seen.is_some();
        let me = &self.candidates[self.me?];
        let data = match (&self.data, &self.wal) {
            (DataDir::Empty, _) => VouchedData::Empty,
            (DataDir::HasMember, Some(w)) => VouchedData::Member {
                cluster_id: format!("{:x}", w.cluster_id),
                member_id: format!("{:x}", w.member_id),
                last_index: w.last_index,
            },
            (DataDir::HasMember, None) => VouchedData::Unreadable,
        };
        let ready =
            self.data == DataDir::Empty && !cluster_seen && self.candidates.len() == spec.size;
        let bootstrap = ready.then(|| {
            let mut set: Vec<_> = self
                .candidates
                .iter()
                .map(|c| (c.name.clone(), spec.peer_url(&c.host)))
                .collect();
            set.sort();
            decide::bootstrap_set(&set)
        });
        let mut heard: Vec<String> = memory
            .vouched
            .iter()
            .filter(|(_, v)| {
                v.data == VouchedData::Empty && bootstrap.is_some() && v.bootstrap == bootstrap
            })
            .map(|(n, _)| n.to_string())
            .collect();
        heard.sort();
        Some(Vouch {
            agent: concat!("etcd-bootstrap/", env!("CARGO_PKG_VERSION")).into(),
            name: me.name.to_string(),
            peer_urls: vec![spec.peer_url(&me.host)],
            cluster_token: spec.token.clone(),
            data,
            bootstrap,
            heard,
            waiting: None,
        })
    }
}

/// What one run remembers between observations.
#[derive(Default)]
pub struct RunMemory {
    /// Dead members removed so far (at most one per run).
    pub removed: usize,
    /// A peer showed a cluster at some point of this run.
    pub cluster_seen: Option<String>,
    /// Since when each peer has refused connections (or been bootstrapping) without a break.
    /// Kept across listings that miss a peer: only an answer from the peer itself resets it.
    refusing_since: HashMap<String, Instant>,
    /// The first observation of this run.
    started: Option<Instant>,
    /// When each peer was last listed.
    last_listed: HashMap<String, Instant>,
    /// Members that looked dead at the previous observation.
    pub dead_before: Vec<u64>,
    /// The last vouch of each peer still at the address it vouched from.
    pub vouched: Vec<(MemberName, Vouch)>,
    /// The last vouch of each peer in this run, by peer (name and address).
    vouches: HashMap<String, (MemberName, Vouch)>,
    /// Every machine listed in this run, by name and address.
    ever_listed: HashMap<String, Candidate>,
    /// Of those, the ones missing now that never vouched an empty data dir.
    pub unsettled: Vec<Candidate>,
    /// The set every other member agreed to at the previous look (`Outcome::agreed`).
    pub agreed: Option<Vec<(MemberName, String)>>,
    /// The discovery source the looks so far listed from.
    source: Option<&'static str>,
    /// Where this run copied the data dir before a lost-quorum recovery.
    pub data_copied: Option<std::path::PathBuf>,
}

impl RunMemory {
    /// The memory of a run that looked once: only what the peers vouched in that look (`plan`).
    pub fn of_one_look(obs: &Observation) -> Self {
        RunMemory {
            vouched: obs
                .probes
                .iter()
                .filter_map(|p| match &p.answer {
                    PeerAnswer::Vouched(v) => Some((p.peer.clone(), v.clone())),
                    _ => None,
                })
                .collect(),
            ..RunMemory::default()
        }
    }

    pub fn observe(&mut self, obs: &Observation) {
        // A fallback took over: what the run remembers of the earlier source's listings (its
        // machines, their quiet and vouches, an agreement on its set) must not count in a
        // decision on the new one's. A cluster seen, and members removed, are facts of the
        // world, not of a listing: they stay.
        if self.source.is_some_and(|s| s != obs.source.name) {
            *self = RunMemory {
                removed: self.removed,
                cluster_seen: self.cluster_seen.take(),
                data_copied: self.data_copied.take(),
                ..RunMemory::default()
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
        let now = Instant::now();
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

    /// The names of the peers whose vouch this run holds (probed with a short timeout).
    pub fn vouched_names(&self) -> Vec<MemberName> {
        self.vouched.iter().map(|(n, _)| n.clone()).collect()
    }

    /// How long every peer of this observation has been quiet: the shortest of their quiets.
    /// With no peer listed (a one-member cluster, or a listing that missed the others), how long
    /// this run has been looking.
    fn quiet_for(&self, obs: &Observation, settle: Duration) -> Duration {
        // A peer listed within the settle time but missing now: the listing is not settled
        // (eventually consistent listings miss machines), so this is no quiet at all.
        let keys = probe_keys(obs);
        let listed: HashSet<&String> = keys.iter().collect();
        if self
            .last_listed
            .iter()
            .any(|(k, t)| t.elapsed() < settle && !listed.contains(k))
        {
            return Duration::ZERO;
        }
        let run = self.started.map_or(Duration::ZERO, |s| s.elapsed());
        keys.iter()
            .map(|key| {
                self.refusing_since
                    .get(key)
                    .map_or(Duration::ZERO, Instant::elapsed)
            })
            .min()
            .unwrap_or(run)
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
