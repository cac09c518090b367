//! Deterministic simulation of racing boots, run against the real decision core and the real
//! run session (`decide::Session`): the simulation keeps only the world (machines, disks, etcd,
//! network, clock); what each agent remembers between looks and decides is the library's.
//!
//! Seeded, no sockets, no sleeps. N ∈ {1, 3, 5, 7} machines (plus, in some seeds, extra machines
//! carrying the tag) boot at random times. Each discovery poll sees an eventually consistent view:
//! machines appear late, addresses arrive late, a listing can miss a machine, and a terminated
//! machine stays listed for a while. As the run asks its peers again between two listings, about
//! a third of an agent's looks reuse its previous listing (same number, same machines) with fresh
//! probes: what needs two looks must still need two listings (with reused listings numbered as
//! new ones, seed 1784 forms two clusters: `regression_two_looks_at_one_listing_are_not_two_listings`). Probing a peer answers "refused", "timeout", "forming", a
//! member list, or, while the peer's agent waits, its vouch (its data and the set it would
//! bootstrap), according to the simulated state; partitions hide a machine from some agents.
//! etcd is modelled as far as the decision depends on it: bootstrap by identical initial cluster,
//! `existing` joins validated as etcd validates them, the strict reconfiguration check, removed
//! members. Machines crash (keeping their disks), also while their agent waits (after vouching),
//! lose their disks while their cluster runs, and are replaced by new machines; reboots take
//! from a second to 10 minutes (longer than any timer); sometimes the whole fleet power-cycles.
//!
//! Survivors' logs advance while their cluster has a quorum (each member keeps up most steps, so
//! survivors differ in how far they got) and remember the member list. A rare event loses a
//! majority of the members for good with their disks (a zone), creates replacements and reboots
//! the survivors; odd seeds run with `cluster.recover_lost_quorum` on. Another terminates the
//! whole fleet and creates a new one (new names and addresses). Half the seeds configure a
//! backup store (`[backup]`): the leader snapshots it every 20 to 60 s while a quorum runs; the
//! store cannot be read at some looks (in some seeds, at every look), and some seeds set
//! `backup.restore = false`. Half of the seeds model etcd versions: every machine starts on
//! etcd 3.5 (below or at the floor of the upgrade to 3.6), and machines created after a random
//! time carry 3.6 (a new image; one in four still the old one): the agents know their etcd's
//! version and each answering member's, and the cluster version is etcd's (the lowest of every
//! member's once all of them answer, never lowered).
//!
//! After every step the invariants are checked:
//! 1. at most one formed cluster (one that reached quorum) exists at any time, a cluster
//!    existing while any live machine holds its data (a cluster whose every machine was
//!    terminated with its disk is gone, and a fresh one may form);
//! 2. no node plans `new` while a formed cluster exists (unless it is a late initial member of
//!    that very bootstrap: same set and token, its member unstarted, which etcd's static
//!    bootstrap joins), or while it has data itself;
//! 3. every `existing` join's ETCD_INITIAL_CLUSTER matches the cluster it joins (same peer URLs,
//!    this node's member present and unstarted), so etcd never says "member count is unequal";
//! 4. every agent run ends, within its deadline, in a started etcd or a loud failure;
//! 5. a recovery (`--force-new-cluster`) happens only with the setting, only once a majority of
//!    the voters' machines is really gone, only from the freshest data any live machine holds of
//!    that cluster (so the recovered cluster's data is the freshest survivor's), and never while
//!    another recovery of the same cluster runs (one cluster, invariant 1);
//! 6. what `plan` shows is what the run does: at every look whose preview shows steps, the same
//!    session run in a copy of the world held still (its steps carried out by the simulation's
//!    etcd, not the preview's model) takes the same steps to the same decision;
//! 7. no cluster is bootstrapped empty while the backup store holds a snapshot of its token; a
//!    restore brings back the newest snapshot, every member of it the same one; and a recovery
//!    never brings back data staler than the newest snapshot of that cluster;
//! 8. no etcd starts in a cluster whose running members are of a newer minor line (etcd would
//!    refuse it, after the member was added), nor makes the running members span more than one
//!    minor line.
//!
//! A failing seed prints its trace; `SIM_SEED=<seed> cargo test --test simulation` replays one.
//! `SIM_SETTLE=20` runs the old rule (a first bootstrap on 20 s of silence) instead of vouching.
//! Modelled limit (see docs/decisions.md): a disk is only lost while its cluster still answers;
//! a node that lost its disk while every peer was down looks exactly like a first boot.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use etcd_bootstrap::config::ClusterSpec;
use etcd_bootstrap::datadir::{WalInfo, WalMember};
use etcd_bootstrap::decide::{
    self, Action, Backups, ClusterView, DataDir, Decision, EtcdMember, EtcdVersion, LocalEtcd,
    Observation, PeerAnswer, Probe, Session, SnapshotRef, SourceUsed, StartPlan, StoreLook, Vouch,
};
use etcd_bootstrap::envfile::ClusterState;
use etcd_bootstrap::member::{Candidate, Host, MemberName, Scheme, url};

/// Seeds run in CI; `SIM_SEEDS=100000 cargo test --release --test simulation` runs more by hand.
const SEEDS: u64 = 10_000;
const DEADLINE: u64 = 60; // polls an agent run may take before it fails loudly
const HORIZON: u64 = 900;
/// Time units are seconds. Most reboots take 1 to 15; one in five takes up to 10 minutes.
const LONG_REBOOT: u64 = 600;

#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Etcd {
    Stopped,
    Running { cluster: u64 },
}

/// A machine's agent: running (its run's session, the real one), or ended.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum Agent {
    Running {
        started: u64,
        next: u64,
        session: Session,
    },
    Done,
    Failed,
}

#[derive(Clone)]
struct Machine {
    cand: Candidate,
    listed_from: u64,
    address_from: u64,
    alive: bool,
    /// The cluster and member this machine's data dir belongs to.
    disk: Option<(u64, u64)>,
    etcd: Etcd,
    agent: Agent,
    /// What its waiting agent answers on the peer port (set while it waits, gone when the
    /// agent ends or the machine goes down).
    vouch: Option<Vouch>,
    /// The listing its agent's run last made (number, machines): a look while it waits may ask
    /// only the peers again and decide on that listing, as the run does between two listings.
    last_listing: Option<(u64, Vec<Candidate>)>,
    /// A terminated machine stays listed until then (listings lag).
    unlisted_from: u64,
    /// The raft index its data dir's log reached.
    index: u64,
    /// Its data dir's member list (id, peer URL, learner), as of when its etcd last ran.
    members_seen: Vec<(u64, String, bool)>,
    /// The run added this machine's member to that cluster: it decides on the membership the
    /// addition returned, which is there even when the cluster has no quorum until this member
    /// starts (etcd 3.5 does not answer member lists then).
    added_to: Option<u64>,
    /// The etcd its image carries, in seeds that model versions.
    version: Option<EtcdVersion>,
}

#[derive(Clone)]
struct Member {
    id: u64,
    name: String,
    peer_url: String,
    started: bool,
    learner: bool,
}

#[derive(Clone)]
struct Cluster {
    members: Vec<Member>,
    formed_at: Option<u64>,
    /// The commit index: grows while a quorum of its members runs (clients write).
    index: u64,
    /// Machines whose data it was recovered from, in order.
    recovered_from: Vec<usize>,
    /// The snapshot (its key) its members restored, when it was made from one.
    restored_from: Option<String>,
    /// etcd's cluster version, once decided (seeds that model versions).
    version: Option<EtcdVersion>,
}

/// The backup store: the snapshots of this cluster token, oldest first.
#[derive(Clone)]
struct Store {
    /// `backup.restore`.
    restore: bool,
    /// Percent of looks at which it cannot be read.
    unreadable: u64,
    /// The agents look at it (off only to show that invariant 7 catches an agent that does not).
    agents_look: bool,
    snapshots: Vec<SnapshotRef>,
    next_at: u64,
}

#[derive(Clone)]
struct World {
    rng: Rng,
    chaos: bool,
    /// (observer, hidden machine, until): a partition between two machines.
    hidden: Vec<(usize, usize, u64)>,
    /// Listings made so far, by every agent: each listing's number.
    listings: u64,
    /// Off only to show that the invariants catch it: a look that reuses a listing is numbered as
    /// a new one, so the session cannot tell two looks from two listings.
    number_reused_listings: bool,
    spec: ClusterSpec,
    machines: Vec<Machine>,
    clusters: BTreeMap<u64, Cluster>,
    formed: BTreeSet<u64>,
    next_member_id: u64,
    trace: Vec<String>,
    now: u64,
    /// Recoveries carried out (for the figures).
    recoveries: usize,
    /// Permanent losses of a majority (for the figures).
    majority_losses: usize,
    /// Check at every poll that what `plan` shows is what the run does (off inside the copy
    /// that checks it).
    check_preview: bool,
    /// Polls at which that was checked (for the figures).
    previews_checked: u64,
    /// `[backup]`, in the seeds that configure it.
    store: Option<Store>,
    /// Clusters made from a snapshot (for the figures).
    restores: usize,
    /// Whole fleets lost (for the figures).
    fleet_losses: usize,
    /// The etcd new machines' image carries, in seeds that model versions; from the given time
    /// on, the image carries the next version (a rolling upgrade by replacing machines).
    image: Option<EtcdVersion>,
    upgrade: Option<(u64, EtcdVersion)>,
    /// Members started beside members of another minor line, and agents refused by a version
    /// rule (for the figures).
    mixed_starts: usize,
    version_refusals: usize,
}

fn hash(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish() | 1
}

impl World {
    fn new(seed: u64, n: usize, settle: Option<u64>, recover: bool) -> Self {
        let mut rng = Rng(seed);
        let extras = if rng.chance(20) {
            1 + rng.below(2) as usize
        } else {
            0
        };
        let spec = ClusterSpec {
            size: n,
            token: "sim".into(),
            data_dir: "/var/lib/etcd".into(),
            peer_scheme: Scheme::Http,
            client_scheme: Scheme::Http,
            peer_port: 2380,
            client_port: 2379,
            remove_dead_members: true,
            join_as_learner: false,
            replace_stale_data: false,
            recover_lost_quorum: recover,
            allow_upgrade_below_floor: false,
            max_learners: 1,
            bootstrap_settle: settle.map(std::time::Duration::from_secs),
        };
        let mut w = World {
            rng,
            chaos: true,
            number_reused_listings: false,
            hidden: Vec::new(),
            listings: 0,
            spec,
            machines: Vec::new(),
            clusters: BTreeMap::new(),
            formed: BTreeSet::new(),
            next_member_id: 1,
            recoveries: 0,
            majority_losses: 0,
            check_preview: std::env::var_os("SIM_NO_PREVIEW").is_none(),
            previews_checked: 0,
            store: None,
            restores: 0,
            fleet_losses: 0,
            image: None,
            upgrade: None,
            mixed_starts: 0,
            version_refusals: 0,
            trace: vec![format!(
                "seed {seed}: {n} members, {extras} extra tagged machines"
            )],
            now: 0,
        };
        for _ in 0..n + extras {
            w.add_machine(0);
        }
        w
    }

    /// Configures a backup store, empty.
    fn with_store(mut self, restore: bool, unreadable: u64) -> Self {
        self.trace.push(format!(
            "backup store: backup.restore = {restore}, unreadable at {unreadable}% of looks"
        ));
        self.store = Some(Store {
            restore,
            unreadable,
            agents_look: true,
            snapshots: Vec::new(),
            next_at: 20,
        });
        self
    }

    /// Models etcd versions: machines carry `from`, and new ones `to` from time `at` on.
    fn with_versions(mut self, from: EtcdVersion, to: EtcdVersion, at: u64) -> Self {
        self.trace.push(format!(
            "etcd {from} on every machine; new machines get {to} from t={at}"
        ));
        self.image = Some(from);
        self.upgrade = Some((at, to));
        for m in &mut self.machines {
            m.version = Some(from);
        }
        self
    }

    fn add_machine(&mut self, now: u64) {
        let i = self.machines.len();
        let boot = now + self.rng.below(20);
        let listed_from = now + self.rng.below(10);
        let address_from = listed_from
            + if self.rng.chance(30) {
                self.rng.below(8)
            } else {
                0
            };
        self.machines.push(Machine {
            cand: Candidate {
                id: format!("m{i}"),
                name: MemberName::parse(&format!("etcd-{i}")).unwrap(),
                host: Host::parse(&format!("10.0.{}.{}", i / 250, i % 250 + 1)).unwrap(),
                created: None,
            },
            listed_from,
            address_from,
            alive: true,
            disk: None,
            etcd: Etcd::Stopped,
            vouch: None,
            last_listing: None,
            unlisted_from: u64::MAX,
            index: 0,
            members_seen: Vec::new(),
            added_to: None,
            // After the upgrade, one machine in four still comes from the old image (a stale
            // launch template): it must never join the upgraded cluster.
            version: match self.upgrade {
                Some((at, to)) if now >= at && !self.rng.chance(25) => Some(to),
                _ => self.image,
            },
            agent: Agent::Running {
                started: boot,
                next: boot,
                session: Session::default(),
            },
        });
        self.trace.push(format!(
            "t={now}: machine etcd-{i} created, boots at {boot}"
        ));
    }

    fn peer_url(&self, i: usize) -> String {
        url(Scheme::Http, &self.machines[i].cand.host, 2380)
    }

    fn quorum_started(c: &Cluster) -> bool {
        let voters: Vec<_> = c.members.iter().filter(|m| !m.learner).collect();
        voters.iter().filter(|m| m.started).count() >= decide::quorum(voters.len())
    }

    /// What probing machine `j` from machine `i` tells, as the agent's probe would report it.
    fn probe(&mut self, i: usize, j: usize) -> PeerAnswer {
        let now = self.now;
        let partitioned = self
            .hidden
            .iter()
            .any(|&(o, h, until)| o == i && h == j && now < until);
        if !self.machines[j].alive || partitioned || self.rng.chance(3) {
            return PeerAnswer::Unknown {
                reason: "timed out".into(),
            };
        }
        self.answer(i, j)
    }

    /// What machine `j` answers machine `i` when the network delivers it.
    fn answer(&self, i: usize, j: usize) -> PeerAnswer {
        let Etcd::Running { cluster } = self.machines[j].etcd else {
            return match &self.machines[j].vouch {
                Some(v) => PeerAnswer::Vouched(v.clone()),
                None => PeerAnswer::Refused,
            };
        };
        let c = &self.clusters[&cluster];
        let members = c
            .members
            .iter()
            .map(|m| EtcdMember {
                id: m.id,
                name: m.name.clone(),
                peer_urls: vec![m.peer_url.clone()],
                client_urls: if m.started {
                    vec![m.peer_url.replace("2380", "2379")]
                } else {
                    vec![]
                },
                is_learner: m.learner,
            })
            .collect();
        match c.formed_at {
            // A cluster without quorum right now does not answer linearizable member lists.
            Some(t) if Self::quorum_started(c) || self.machines[i].added_to == Some(cluster) => {
                PeerAnswer::Answered(ClusterView {
                    cluster_version: self.cluster_version(cluster),
                    server_version: self.machines[j].version,
                    cluster_id: cluster,
                    members,
                    settled: self.now > t,
                })
            }
            Some(_) => PeerAnswer::Stalled {
                version: "3.5.0".into(),
            },
            None => PeerAnswer::Forming {
                members: members
                    .into_iter()
                    .map(|m| EtcdMember {
                        client_urls: vec![],
                        ..m
                    })
                    .collect(),
            },
        }
    }

    fn listing(&mut self, now: u64) -> Option<Vec<Candidate>> {
        let mut out = Vec::new();
        for k in 0..self.machines.len() {
            let m = &self.machines[k];
            if (!m.alive && m.unlisted_from <= now) || m.listed_from > now {
                continue;
            }
            if m.address_from > now {
                return None; // "machine X has no private address yet": retried
            }
            if self.rng.chance(3) {
                continue; // an eventually consistent listing missed it
            }
            out.push(self.machines[k].cand.clone());
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Some(out)
    }

    fn fail(&self, why: String) -> ! {
        panic!(
            "INVARIANT VIOLATED: {why}\ntrace:\n{}",
            self.trace.join("\n")
        );
    }

    /// One look of machine `i` at the world, as its agent's probes and listing would see it:
    /// the world only (listing, probes, its data dir, who answers); what the agent makes of it
    /// is the real `Session`'s.
    fn look(&mut self, i: usize, now: u64, may_reuse: bool) -> Option<Observation> {
        let (number, listing) = match self.machines[i].last_listing.clone() {
            Some(last) if may_reuse && self.chaos && self.rng.chance(30) => {
                if self.number_reused_listings {
                    self.listings += 1;
                    (self.listings, last.1)
                } else {
                    last
                }
            }
            _ => {
                let listing = self.listing(now)?;
                self.listings += 1;
                (self.listings, listing)
            }
        };
        self.machines[i].last_listing = Some((number, listing.clone()));
        let me = listing
            .iter()
            .position(|c| c.id == self.machines[i].cand.id);
        let data = if self.machines[i].disk.is_some() {
            DataDir::HasMember
        } else {
            DataDir::Empty
        };
        let my_id = self.machines[i].cand.id.clone();
        let mut probes = Vec::new();
        for c in listing.iter().filter(|c| c.id != my_id) {
            let j = self
                .machines
                .iter()
                .position(|m| m.cand.id == c.id)
                .unwrap();
            let answer = self.probe(i, j);
            probes.push(Probe {
                peer: c.name.clone(),
                answer,
            });
        }
        // Members missing from the listing that answer on their own client URL.
        let mut alive: Vec<u64> = probes
            .iter()
            .find_map(|p| match &p.answer {
                PeerAnswer::Answered(v) => Some(v.clone()),
                _ => None,
            })
            .map(|v| {
                v.members
                    .iter()
                    .filter(|m| {
                        !listing
                            .iter()
                            .any(|c| m.peer_urls.contains(&url(Scheme::Http, &c.host, 2380)))
                    })
                    .filter(|m| {
                        self.machines.iter().any(|x| {
                            x.alive
                                && x.etcd
                                    == Etcd::Running {
                                        cluster: v.cluster_id,
                                    }
                                && x.disk.is_some_and(|(_, id)| id == m.id)
                        })
                    })
                    .map(|m| m.id)
                    .collect()
            })
            .unwrap_or_default();
        let wal = self.machines[i]
            .disk
            .map(|(cluster_id, member_id)| WalInfo {
                member_id,
                cluster_id,
                last_index: self.machines[i].index,
                commit: self.machines[i].index,
                members: self.machines[i]
                    .members_seen
                    .iter()
                    .map(|(id, url, learner)| WalMember {
                        id: *id,
                        name: String::new(),
                        peer_urls: vec![url.clone()],
                        is_learner: *learner,
                        is_promote: false,
                    })
                    .collect(),
                members_complete: true,
                // The backend records the cluster version it last applied.
                data_version: self.cluster_version(cluster_id),
                ..WalInfo::default()
            });
        // No cluster answers: the members its data lists that no listed machine has are asked
        // on their own peer URLs (any machine there, etcd or a waiting agent, answers).
        if !probes
            .iter()
            .any(|p| matches!(p.answer, PeerAnswer::Answered(_)))
            && let Some(w) = &wal
        {
            for m in w.members.iter().filter(|m| m.id != w.member_id) {
                let peer = &m.peer_urls[0];
                let listed = listing
                    .iter()
                    .any(|c| url(Scheme::Http, &c.host, 2380) == *peer);
                let answers = (0..self.machines.len()).any(|x| {
                    let hidden = self
                        .hidden
                        .iter()
                        .any(|&(o, h, until)| o == i && h == x && now < until);
                    let mx = &self.machines[x];
                    !hidden
                        && mx.alive
                        && self.peer_url(x) == *peer
                        && (matches!(mx.etcd, Etcd::Running { .. }) || mx.vouch.is_some())
                });
                if !listed && answers {
                    alive.push(m.id);
                }
            }
        }
        let backups = self.backups(&probes, data);
        Some(Observation {
            source: SourceUsed {
                name: "sim",
                fallback_because: None,
            },
            candidates: listing,
            listing: number,
            me,
            data,
            wal,
            probes,
            undiscovered_alive: alive,
            local_etcd: self.machines[i].version.map(|version| LocalEtcd {
                binary: "/usr/bin/etcd".into(),
                version,
            }),
            backups,
            // The modelled recovery start always serves (a failed one is tested on real etcd,
            // tests/recovery.rs).
            unfinished_recovery: None,
        })
    }

    /// etcd's cluster version (`major.minor.0`): decided by the leader as the lowest of every
    /// member's etcd once every member answers, and never lowered (etcd keeps it in its data).
    fn cluster_version(&self, cluster: u64) -> Option<EtcdVersion> {
        self.clusters.get(&cluster).and_then(|c| c.version)
    }

    /// Raises each cluster's version when every member runs and reports a higher lowest line.
    fn decide_cluster_versions(&mut self) {
        let ids: Vec<u64> = self.clusters.keys().copied().collect();
        for id in ids {
            let c = &self.clusters[&id];
            let versions: Option<Vec<EtcdVersion>> = c
                .members
                .iter()
                .map(|member| {
                    self.machines
                        .iter()
                        .find(|m| {
                            m.alive
                                && m.etcd == Etcd::Running { cluster: id }
                                && m.disk == Some((id, member.id))
                        })
                        .and_then(|m| m.version)
                })
                .collect();
            let Some(lowest) = versions.and_then(|v| v.into_iter().min()) else {
                continue;
            };
            let lowest = EtcdVersion::new(lowest.major, lowest.minor, 0);
            let c = self.clusters.get_mut(&id).unwrap();
            if c.version.is_none_or(|v| v < lowest) {
                c.version = Some(lowest);
            }
        }
    }

    /// Invariant 8, for machine `i` starting etcd in `cluster`: etcd refuses a member older than
    /// the cluster version (a joiner after it was added, a restart on its data as a downgrade),
    /// and the agent's own rule keeps the running members within one minor line.
    fn check_versions(&mut self, i: usize, cluster: u64) {
        let Some(mine) = self.machines[i].version else {
            return;
        };
        if let Some(cv) = self.cluster_version(cluster)
            && mine.line() < cv.line()
        {
            self.fail(format!(
                "etcd-{i} starts etcd {mine} in cluster {cluster:x} at cluster version {cv}: etcd refuses it"
            ));
        }
        let others: Vec<EtcdVersion> = (0..self.machines.len())
            .filter(|&k| k != i)
            .filter(|&k| {
                let m = &self.machines[k];
                m.alive && m.etcd == Etcd::Running { cluster }
            })
            .filter_map(|k| self.machines[k].version)
            .collect();
        let (Some(low), Some(high)) = (others.iter().min(), others.iter().max()) else {
            return;
        };
        let (low, high) = (mine.min(*low), mine.max(*high));
        if low.major != high.major || high.minor > low.minor + 1 {
            self.fail(format!(
                "etcd-{i} starts etcd {mine} in cluster {cluster:x}, whose running members span {low} to {high}: more than one minor line"
            ));
        }
        if low.line() != high.line() {
            self.mixed_starts += 1;
        }
    }

    /// The agent's look at the backup store, when one is configured: asked only when it can
    /// matter (the run's own rule), and then unreadable at some looks.
    fn backups(&mut self, probes: &[Probe], data: DataDir) -> Option<Backups> {
        let store = self.store.as_ref().filter(|s| s.agents_look)?;
        let (restore, unreadable, newest) = (
            store.restore,
            store.unreadable,
            store.snapshots.last().cloned(),
        );
        let look = if !Backups::worth_a_look(probes, data, self.spec.recover_lost_quorum) {
            StoreLook::NotNeeded
        } else if self.rng.chance(unreadable) {
            StoreLook::Unreadable {
                reason: "HTTP 503 Service Unavailable".into(),
            }
        } else {
            newest.map_or(StoreLook::Nothing, StoreLook::Newest)
        };
        Some(Backups {
            store: "s3://sim-backups/etcd".into(),
            restore,
            look,
        })
    }

    /// One poll of machine `i`'s agent, and as many immediate steps as its decisions ask for:
    /// the run loop's steps, on the real session.
    fn poll(&mut self, i: usize) {
        let Agent::Running {
            started,
            ref mut session,
            ..
        } = self.machines[i].agent
        else {
            return;
        };
        let mut session = std::mem::take(session);
        let now = self.now;
        let at = Duration::from_secs(now);
        for step in 0..6 {
            // A run that waits asks its peers again between two listings, on the listing it has.
            let Some(obs) = self.look(i, now, step == 0) else {
                break;
            };
            // The property `plan` rests on: what it shows from this state is what the run
            // does, in this world held still (a copy of it).
            if self.check_preview {
                self.preview_is_what_runs(i, &session, &obs);
            }
            // The property `plan` rests on: what it shows from this state is what the run
            // does, checked against this world held still (a copy of it).
            let out = session.decide(&self.spec, &obs, at);
            let name = self.machines[i].cand.name.to_string();
            match out.decision {
                Decision::Wait => {
                    // Only while it waits does the agent speak for its machine.
                    self.machines[i].vouch = session.vouch(&self.spec, &obs, &out.reason);
                    break;
                }
                Decision::Refuse => {
                    if out.row.as_str() == "version" {
                        self.version_refusals += 1;
                    }
                    self.trace
                        .push(format!("t={now}: {name} refuses: {}", out.reason));
                    self.end_agent(i, Agent::Failed);
                    return;
                }
                Decision::Act(ref action) => {
                    self.trace.push(format!("t={now}: {name} {action:?}"));
                    if !self.carry_out(i, &obs, action) {
                        break;
                    }
                    session.carried_out(action, &out);
                }
                Decision::Start(plan) => {
                    self.trace.push(format!(
                        "t={now}: {name} starts {:?} ({}) with {:?}",
                        plan.state,
                        out.row.as_str(),
                        plan.initial_cluster
                    ));
                    // The agent stops vouching before etcd takes the port.
                    self.end_agent(i, Agent::Done);
                    if plan.force_new_cluster {
                        self.force_new_cluster(i);
                    } else {
                        self.start(i, &plan);
                    }
                    return;
                }
            }
        }
        let next = now + 1 + self.rng.below(3);
        if next > started + DEADLINE {
            self.trace.push(format!(
                "t={now}: etcd-{i} agent fails loudly at its deadline"
            ));
            self.end_agent(i, Agent::Failed);
            return;
        }
        self.machines[i].agent = Agent::Running {
            started,
            next,
            session,
        };
    }

    /// `plan` (`Session::preview`, with its own model of etcd) against the run: the same session
    /// in a copy of this world where nothing happens but the agent's own steps, carried out by
    /// the simulation's etcd, each followed by a new look (the peers that answered asked again,
    /// the others as they were), a wait by one more look. The steps and the decision must be
    /// the same.
    fn preview_is_what_runs(&mut self, i: usize, session: &Session, obs: &Observation) {
        let now = Duration::from_secs(self.now);
        let (shown, ends) = session.preview(&self.spec, obs, now);
        let shown: Vec<Action> = shown.into_iter().map(|(a, _)| a).collect();
        // No step: the run's looks are the preview's own (nothing changes the world), so the
        // two cannot differ; only steps, carried out by etcd, can.
        if shown.is_empty() {
            return;
        }
        let trace = std::mem::take(&mut self.trace);
        let mut world = self.clone();
        self.trace = trace;
        self.previews_checked += 1;
        world.check_preview = false;
        let mut session = session.clone();
        let mut obs = obs.clone();
        let mut at = now;
        let mut ran = Vec::new();
        let mut looked_again = false;
        let done = loop {
            let out = session.decide(&world.spec, &obs, at);
            match &out.decision {
                Decision::Act(action) if ran.len() < shown.len().max(1) + 1 => {
                    if !world.carry_out(i, &obs, action) {
                        break out;
                    }
                    session.carried_out(action, &out);
                    ran.push(action.clone());
                    obs = world.asked_again(i, &obs);
                    // The run lists again after a step, except after an addition.
                    if !matches!(action, Action::AddMember { .. }) {
                        obs.listing += 1;
                    }
                    looked_again = false;
                }
                Decision::Wait if !looked_again => {
                    looked_again = true;
                    obs.listing += 1;
                    at += out
                        .ends_in
                        .map_or(Duration::from_secs(1), |d| d + decide::SETTLE_MARGIN);
                }
                _ => break out,
            }
        };
        if ran != shown || (&done.row, &done.decision) != (&ends.row, &ends.decision) {
            self.fail(format!(
                "plan differs from the run for etcd-{i} at t={}: plan shows {shown:?} then {:?} ({}); the run did {ran:?} then {:?} ({})",
                self.now, ends.decision, ends.reason, done.decision, done.reason
            ));
        }
    }

    /// The look after a step, in a world that holds still: every peer that answered for a
    /// cluster asked again (its etcd carried out the step), the others as they were.
    fn asked_again(&self, i: usize, obs: &Observation) -> Observation {
        let mut obs = obs.clone();
        for p in &mut obs.probes {
            if matches!(p.answer, PeerAnswer::Answered(_)) {
                let j = self
                    .machines
                    .iter()
                    .position(|m| m.cand.name == p.peer)
                    .unwrap();
                p.answer = self.answer(i, j);
            }
        }
        if self.machines[i].disk.is_none() {
            obs.data = DataDir::Empty;
            obs.wal = None;
        }
        obs
    }

    /// etcd (or the disk) carrying out an agent's step, as the run's `execute` asks for it.
    /// `false`: refused for now (the agent looks again later).
    fn carry_out(&mut self, i: usize, obs: &Observation, action: &Action) -> bool {
        let now = self.now;
        let cluster = obs.probes.iter().find_map(|p| match &p.answer {
            PeerAnswer::Answered(v) => Some(v.cluster_id),
            _ => None,
        });
        match (action, cluster) {
            (Action::RemoveMember { id, .. }, Some(c)) => {
                self.clusters
                    .get_mut(&c)
                    .unwrap()
                    .members
                    .retain(|m| m.id != *id);
                for m in self
                    .machines
                    .iter_mut()
                    .filter(|m| m.disk.is_some_and(|d| d == (c, *id)))
                {
                    // A removed member's etcd stops itself.
                    m.etcd = Etcd::Stopped;
                }
                true
            }
            (Action::AddMember { peer_url, learner }, Some(c)) => {
                let cl = self.clusters.get_mut(&c).unwrap();
                let voters = cl.members.iter().filter(|m| !m.learner).count();
                let started = cl
                    .members
                    .iter()
                    .filter(|m| !m.learner && m.started)
                    .count();
                // etcd allows a second voter beside a lone started one.
                let one_to_two = voters == 1 && started == 1;
                if !learner && started < decide::quorum(voters + 1) && !one_to_two {
                    self.trace
                        .push(format!("t={now}: etcd refuses the add (strict reconfig)"));
                    return false;
                }
                let id = self.next_member_id;
                self.next_member_id += 1;
                cl.members.push(Member {
                    id,
                    name: String::new(),
                    peer_url: peer_url.clone(),
                    started: false,
                    learner: *learner,
                });
                self.machines[i].added_to = Some(c);
                true
            }
            (Action::CopyDataAside, _) => true,
            (Action::MoveDataAside, _) => {
                self.machines[i].disk = None;
                true
            }
            _ => false,
        }
    }

    fn end_agent(&mut self, i: usize, how: Agent) {
        self.machines[i].agent = how;
        self.forget(i);
    }

    /// The vouch ends with the agent (its session with its run).
    fn forget(&mut self, i: usize) {
        let m = &mut self.machines[i];
        m.vouch = None;
        m.last_listing = None;
        m.added_to = None;
    }

    fn start(&mut self, i: usize, plan: &StartPlan) {
        let (state, ic) = (plan.state, plan.initial_cluster.as_slice());
        let restore = plan.restore.as_ref().map(|s| s.key.clone());
        let my_url = self.peer_url(i);
        let now = self.now;
        if let Some((cluster, member)) = self.machines[i].disk {
            if state == ClusterState::New {
                self.fail(format!("etcd-{i} planned new over its own data"));
            }
            // Restart on data: etcd ignores the initial-cluster settings.
            self.check_versions(i, cluster);
            let ok = self
                .clusters
                .get_mut(&cluster)
                .and_then(|c| c.members.iter_mut().find(|m| m.id == member))
                .map(|m| m.started = true);
            if ok.is_some() {
                self.machines[i].etcd = Etcd::Running { cluster };
            }
            return;
        }
        match state {
            ClusterState::New => {
                let mut key: Vec<String> = ic.iter().map(|(n, u)| format!("{n}={u}")).collect();
                key.sort();
                let id = hash(&format!("{}|{}", key.join(","), self.spec.token));
                if let Some(&c) = self.live_formed().first() {
                    // A late initial member of the very bootstrap that formed (same set and
                    // token, so the same cluster id; its member still unstarted, the set
                    // unchanged) joins it, as etcd's static bootstrap intends. Anything else is a
                    // second cluster.
                    let cl = &self.clusters[&c];
                    let same_set = cl.members.len() == ic.len()
                        && cl
                            .members
                            .iter()
                            .all(|m| ic.iter().any(|(_, u)| *u == m.peer_url));
                    let unstarted = cl
                        .members
                        .iter()
                        .any(|m| m.peer_url == my_url && !m.started);
                    if c != id || !same_set || !unstarted {
                        self.fail(format!("etcd-{i} planned new while cluster {c:x} exists"));
                    }
                    if restore.is_some() && restore != cl.restored_from {
                        self.fail(format!(
                            "etcd-{i} restores {restore:?} into cluster {c:x}, made from {:?}",
                            cl.restored_from
                        ));
                    }
                    self.check_versions(i, c);
                    let me = self
                        .clusters
                        .get_mut(&c)
                        .unwrap()
                        .members
                        .iter_mut()
                        .find(|m| m.peer_url == my_url)
                        .unwrap();
                    me.started = true;
                    let member = me.id;
                    self.machines[i].disk = Some((c, member));
                    self.machines[i].etcd = Etcd::Running { cluster: c };
                    return;
                }
                self.check_restore(i, plan);
                // The same member set and token give the same cluster id, as in etcd. A formed
                // cluster of that id that no live machine holds data of is gone: start afresh.
                if self.formed.contains(&id) {
                    self.formed.remove(&id);
                    self.clusters.remove(&id);
                    self.trace.push(format!(
                        "t={now}: cluster {id:x} is gone; bootstrapped again"
                    ));
                }
                let index = plan.restore.as_ref().map_or(0, |s| s.raft_index);
                if !self.clusters.contains_key(&id) && restore.is_some() {
                    self.restores += 1;
                    self.trace.push(format!(
                        "t={now}: cluster {id:x} is made from snapshot {restore:?}"
                    ));
                }
                let cl = self.clusters.entry(id).or_insert_with(|| Cluster {
                    members: ic
                        .iter()
                        .map(|(n, u)| Member {
                            id: hash(u),
                            name: n.to_string(),
                            peer_url: u.clone(),
                            started: false,
                            learner: false,
                        })
                        .collect(),
                    formed_at: None,
                    index,
                    recovered_from: Vec::new(),
                    restored_from: restore.clone(),
                    version: None,
                });
                if cl.restored_from != restore {
                    let why = format!(
                        "etcd-{i} starts cluster {id:x} from {restore:?}, its other members from {:?}",
                        cl.restored_from
                    );
                    self.fail(why);
                }
                let cl = self.clusters.get_mut(&id).unwrap();
                let me = cl
                    .members
                    .iter_mut()
                    .find(|m| m.peer_url == my_url)
                    .expect("a node bootstraps with itself");
                me.started = true;
                let member = me.id;
                self.machines[i].disk = Some((id, member));
                self.machines[i].index = index;
                self.machines[i].etcd = Etcd::Running { cluster: id };
            }
            ClusterState::Existing => {
                let urls: BTreeSet<&String> = ic.iter().map(|(_, u)| u).collect();
                // etcd asks the other peers of its initial cluster which cluster it joins.
                let target = (0..self.machines.len())
                    .filter(|&k| k != i && urls.contains(&self.peer_url(k)))
                    .find_map(|k| match self.machines[k].etcd {
                        Etcd::Running { cluster } => Some(cluster),
                        Etcd::Stopped => None,
                    });
                let Some(id) = target else {
                    self.fail(format!(
                        "etcd-{i} joins with {ic:?} but none of those peers runs etcd"
                    ));
                };
                self.check_versions(i, id);
                let c = self.clusters.get_mut(&id).unwrap();
                if !c.members.iter().any(|m| m.peer_url == my_url && !m.started) {
                    let why = format!(
                        "etcd-{i} joins cluster {id:x}, which does not list it as unstarted"
                    );
                    self.fail(why);
                }
                let theirs: BTreeSet<&String> = c.members.iter().map(|m| &m.peer_url).collect();
                if urls != theirs {
                    let why = format!(
                        "etcd-{i} joins with {urls:?}, the cluster has {theirs:?}: member count is unequal"
                    );
                    self.fail(why);
                }
                if c.formed_at.is_none_or(|t| now <= t) {
                    self.fail(format!(
                        "etcd-{i} joins cluster {id:x} before its version settled"
                    ));
                }
                let me = c.members.iter_mut().find(|m| m.peer_url == my_url).unwrap();
                me.started = true;
                let member = me.id;
                self.machines[i].disk = Some((id, member));
                self.machines[i].etcd = Etcd::Running { cluster: id };
            }
        }
    }

    /// Invariant 7, for a node that makes a new cluster: from the store's newest snapshot when
    /// the store holds one (a snapshot of this token is positive evidence that the cluster
    /// existed), never empty beside it.
    fn check_restore(&self, i: usize, plan: &StartPlan) {
        let Some(store) = &self.store else {
            return;
        };
        let newest = store.snapshots.last().map(|s| &s.key);
        match (newest, plan.restore.as_ref().map(|s| &s.key)) {
            (Some(k), None) => self.fail(format!(
                "etcd-{i} bootstraps an empty cluster while the store holds snapshot {k}"
            )),
            (Some(k), Some(r)) if k != r => self.fail(format!(
                "etcd-{i} restores {r} while the store's newest snapshot is {k}"
            )),
            (None, Some(r)) => self.fail(format!(
                "etcd-{i} restores {r}, which the store does not hold"
            )),
            _ => {}
        }
    }

    /// The leader of the live cluster snapshots it into the store (`etcd-bootstrap snapshot`
    /// on its timer), every 20 to 60 s while a quorum runs.
    fn snapshot(&mut self) {
        let now = self.now;
        let Some(store) = &self.store else {
            return;
        };
        if now < store.next_at {
            return;
        }
        let Some(&id) = self.live_formed().iter().find(|&&id| self.live_quorum(id)) else {
            return;
        };
        let index = self.clusters[&id].index;
        let next_at = now + 20 + self.rng.below(40);
        let key = format!("sim/{now:06}.db");
        let store = self.store.as_mut().unwrap();
        store.next_at = next_at;
        store.snapshots.push(SnapshotRef {
            sha256: format!("{:064x}", hash(&key)),
            key,
            db_size: 1 << 20,
            cluster_id: format!("{id:x}"),
            revision: index,
            raft_index: index,
            taken_at: 1_700_000_000 + now as i64,
            etcd_version: "3.5.0".into(),
        });
    }

    /// Every machine of the fleet is terminated with its disk (a bad `terraform apply`, a lost
    /// region) and a new fleet of `cluster.size` machines is created.
    fn lose_fleet(&mut self) {
        let n = self.spec.size;
        if self.live_formed().is_empty() || self.machines.len() + n > 24 {
            return;
        }
        self.fleet_losses += 1;
        self.trace.push(format!(
            "t={}: the whole fleet is terminated; {n} new machines are created",
            self.now
        ));
        for k in 0..self.machines.len() {
            if self.machines[k].alive {
                self.terminate(k);
            }
        }
        for _ in 0..n {
            self.add_machine(self.now);
        }
    }

    /// A survivor's etcd started once with --force-new-cluster: its data becomes a cluster of
    /// one. Checked here: it really was the freshest survivor, the quorum really was lost (a
    /// majority of the voters' machines gone with their disks), and its member was still in the
    /// cluster (one recovery per loss, never a second cluster from the same data).
    fn force_new_cluster(&mut self, i: usize) {
        let Some((cluster, member)) = self.machines[i].disk else {
            self.fail(format!("etcd-{i} forced a new cluster without data"));
        };
        let mine = self.machines[i].index;
        for (j, m) in self.machines.iter().enumerate() {
            if j != i && m.alive && m.disk.is_some_and(|(c, _)| c == cluster) && m.index > mine {
                self.fail(format!(
                    "etcd-{i} recovered cluster {cluster:x} from raft index {mine}, but etcd-{j} holds {}",
                    m.index
                ));
            }
        }
        let hex = format!("{cluster:x}");
        if let Some(s) = self
            .store
            .iter()
            .flat_map(|s| &s.snapshots)
            .find(|s| s.cluster_id == hex && s.raft_index > mine)
        {
            self.fail(format!(
                "etcd-{i} recovered cluster {cluster:x} from raft index {mine}, but the store holds {} at raft index {}",
                s.key, s.raft_index
            ));
        }
        let c = &self.clusters[&cluster];
        let voters: Vec<&Member> = c.members.iter().filter(|m| !m.learner).collect();
        let alive = voters
            .iter()
            .filter(|v| {
                self.machines
                    .iter()
                    .any(|m| m.alive && m.disk == Some((cluster, v.id)))
            })
            .count();
        if alive >= decide::quorum(voters.len()) {
            self.fail(format!(
                "etcd-{i} forced a new cluster while {alive} of the {} voters' machines of {cluster:x} were alive",
                voters.len()
            ));
        }
        // Its member is gone from the cluster when another survivor recovered it already: that
        // is a second cluster from the same data, unless every machine of that recovery is
        // gone with its disk (then this is the freshest data left, and a new recovery).
        if !c.members.iter().any(|m| m.id == member)
            && let Some(j) = (0..self.machines.len()).find(|&j| {
                let m = &self.machines[j];
                m.alive
                    && m.disk.is_some_and(|(cl, id)| {
                        cl == cluster && c.members.iter().any(|x| x.id == id)
                    })
            })
        {
            self.fail(format!(
                "etcd-{i} forced a new cluster from member {member:x}, which cluster {cluster:x} no longer has, while etcd-{j} runs it (a second recovery)"
            ));
        }
        let my_url = self.peer_url(i);
        let c = self.clusters.get_mut(&cluster).unwrap();
        c.members.retain(|m| m.id == member);
        if c.members.is_empty() {
            c.members.push(Member {
                id: member,
                name: String::new(),
                peer_url: my_url,
                started: true,
                learner: false,
            });
        }
        c.members[0].started = true;
        c.index = mine;
        c.recovered_from.push(i);
        // The forced start writes the new membership into the log at once.
        let url = c.members[0].peer_url.clone();
        self.machines[i].members_seen = vec![(member, url, false)];
        self.recoveries += 1;
        self.machines[i].etcd = Etcd::Running { cluster };
        self.trace.push(format!(
            "t={}: etcd-{i} recovers cluster {cluster:x} from its data at raft index {mine}",
            self.now
        ));
    }

    /// A quorum of the cluster's voters runs on machines that hold their data.
    fn live_quorum(&self, id: u64) -> bool {
        let c = &self.clusters[&id];
        let voters: Vec<&Member> = c.members.iter().filter(|m| !m.learner).collect();
        let running = voters
            .iter()
            .filter(|v| {
                self.machines.iter().any(|m| {
                    m.alive && m.etcd == Etcd::Running { cluster: id } && m.disk == Some((id, v.id))
                })
            })
            .count();
        running >= decide::quorum(voters.len())
    }

    /// Clients write while a quorum runs; members keep up (most steps) and remember the member
    /// list, as their data dirs do.
    fn advance_logs(&mut self) {
        let ids: Vec<u64> = self.clusters.keys().copied().collect();
        for id in ids {
            let live = self.clusters[&id].formed_at.is_some() && self.live_quorum(id);
            if live {
                self.clusters.get_mut(&id).unwrap().index += 1;
            }
            let c = &self.clusters[&id];
            let seen: Vec<(u64, String, bool)> = c
                .members
                .iter()
                .map(|m| (m.id, m.peer_url.clone(), m.learner))
                .collect();
            let index = c.index;
            for k in 0..self.machines.len() {
                let m = &self.machines[k];
                let member_here = m
                    .disk
                    .is_some_and(|(c, mid)| c == id && seen.iter().any(|(sid, _, _)| *sid == mid));
                if m.alive && m.etcd == (Etcd::Running { cluster: id }) && member_here {
                    let catch_up = live && self.rng.chance(80);
                    let m = &mut self.machines[k];
                    m.members_seen = seen.clone();
                    if catch_up {
                        m.index = index;
                    }
                }
            }
        }
    }

    /// A majority of the live cluster's members is gone for good with their disks (a zone
    /// lost); replacements are created, and the survivors reboot.
    fn lose_majority(&mut self) {
        let Some(&id) = self.live_formed().first() else {
            return;
        };
        let voters: Vec<u64> = self.clusters[&id]
            .members
            .iter()
            .filter(|m| !m.learner)
            .map(|m| m.id)
            .collect();
        let holders: Vec<usize> = (0..self.machines.len())
            .filter(|&k| {
                let m = &self.machines[k];
                m.alive
                    && m.disk
                        .is_some_and(|(c, mid)| c == id && voters.contains(&mid))
            })
            .collect();
        let lose = voters.len() - decide::quorum(voters.len()) + 1;
        if holders.len() <= lose || self.machines.len() + lose > 16 {
            return;
        }
        self.majority_losses += 1;
        self.trace.push(format!(
            "t={}: {lose} of cluster {id:x}'s {} voters are lost for good; the survivors reboot",
            self.now,
            voters.len()
        ));
        let (gone, survivors) = holders.split_at(lose);
        for &k in gone {
            self.terminate(k);
            self.add_machine(self.now);
        }
        for &k in survivors {
            self.stop(k);
            self.reboot(k);
        }
    }

    fn update_formation(&mut self) {
        for (&id, c) in self.clusters.iter_mut() {
            if c.formed_at.is_none() && Self::quorum_started(c) {
                c.formed_at = Some(self.now);
                self.formed.insert(id);
                self.trace
                    .push(format!("t={}: cluster {id:x} formed", self.now));
            }
        }
        let live = self.live_formed();
        if live.len() > 1 {
            self.fail(format!("two clusters exist: {live:x?}"));
        }
    }

    /// Formed clusters some live machine still holds data of.
    fn live_formed(&self) -> Vec<u64> {
        self.formed
            .iter()
            .copied()
            .filter(|id| {
                self.machines
                    .iter()
                    .any(|m| m.alive && m.disk.is_some_and(|(c, _)| c == *id))
            })
            .collect()
    }

    fn chaos(&mut self) {
        if !self.chaos {
            return;
        }
        let now = self.now;
        let n = self.machines.len();
        let k = self.rng.below(n as u64) as usize;
        let roll = self.rng.below(1000);
        let running = self.machines[k].alive && matches!(self.machines[k].agent, Agent::Done);
        if roll < 6 && running {
            self.trace.push(format!(
                "t={now}: etcd-{k} crashes and reboots with its disk"
            ));
            self.stop(k);
            self.reboot(k);
        } else if roll < 9 && running && self.cluster_answers() {
            self.trace
                .push(format!("t={now}: etcd-{k} reboots with an empty disk"));
            self.stop(k);
            self.machines[k].disk = None;
            self.reboot(k);
        } else if roll < 12 && running && self.machines.len() < 16 {
            self.trace.push(format!(
                "t={now}: etcd-{k} is terminated; a replacement is created"
            ));
            self.terminate(k);
            self.add_machine(now);
        } else if (13..15).contains(&roll)
            && self.machines[k].alive
            && matches!(self.machines[k].agent, Agent::Running { .. })
        {
            self.trace.push(format!(
                "t={now}: etcd-{k} crashes while its agent waits (it may have vouched)"
            ));
            self.stop(k);
            self.reboot(k);
        } else if (18..20).contains(&roll) {
            self.lose_majority();
        } else if roll == 20 && self.rng.chance(30) {
            self.lose_fleet();
        } else if (15..18).contains(&roll) {
            let o = self.rng.below(n as u64) as usize;
            let until = now + 1 + self.rng.below(120);
            self.trace.push(format!(
                "t={now}: a partition hides etcd-{k} from etcd-{o} until {until}"
            ));
            self.hidden.push((o, k, until));
        } else if roll == 12 {
            self.trace
                .push(format!("t={now}: the whole fleet power-cycles"));
            for k in 0..n {
                if self.machines[k].alive {
                    self.stop(k);
                    self.reboot(k);
                }
            }
        }
    }

    fn cluster_answers(&self) -> bool {
        self.live_formed()
            .iter()
            .any(|id| Self::quorum_started(&self.clusters[id]))
    }

    /// The machine is gone with its disk; listings still show it for a while.
    fn terminate(&mut self, k: usize) {
        self.stop(k);
        self.machines[k].alive = false;
        self.machines[k].vouch = None;
        self.machines[k].unlisted_from = self.now + self.rng.below(30);
    }

    /// The process stops; its member stays "started" in the list (it published before).
    fn stop(&mut self, k: usize) {
        self.machines[k].etcd = Etcd::Stopped;
    }

    fn reboot(&mut self, k: usize) {
        let length = if self.rng.chance(20) {
            self.rng.below(LONG_REBOOT)
        } else {
            self.rng.below(15)
        };
        self.reboot_for(k, 1 + length);
    }

    fn reboot_for(&mut self, k: usize, length: u64) {
        let at = self.now + length;
        self.forget(k);
        self.machines[k].agent = Agent::Running {
            started: at,
            next: at,
            session: Session::default(),
        };
    }

    fn run(&mut self) {
        while self.now < HORIZON {
            self.step();
        }
    }

    fn step(&mut self) {
        {
            for i in 0..self.machines.len() {
                if let Agent::Running { next, .. } = self.machines[i].agent
                    && next <= self.now
                {
                    self.poll(i);
                    self.update_formation();
                }
            }
            // Invariant 4: no agent run outlives its deadline.
            for (i, m) in self.machines.iter().enumerate() {
                if let Agent::Running { started, .. } = m.agent
                    && self.now > started + DEADLINE + 3
                {
                    self.fail(format!(
                        "etcd-{i}'s agent is still running past its deadline"
                    ));
                }
            }
            self.chaos();
            self.advance_logs();
            self.decide_cluster_versions();
            self.snapshot();
            self.now += 1;
        }
    }
}

/// The old rule, `SIM_SETTLE=<seconds>`, or vouching (the default).
fn settle() -> Option<u64> {
    std::env::var("SIM_SETTLE")
        .ok()
        .map(|s| s.parse().expect("SIM_SETTLE is a number"))
}

/// What one seed did, for the figures.
struct Ran {
    formed: bool,
    majority_losses: usize,
    recoveries: usize,
    previews_checked: u64,
    backed_up: bool,
    /// Its store could not be read at any look: no cluster can form, rightly.
    store_unreadable: bool,
    fleet_losses: usize,
    restores: usize,
    mixed_starts: usize,
    version_refusals: usize,
}

/// The world of one seed: odd seeds with `cluster.recover_lost_quorum` on; seeds 4..8 of every
/// 8 with a backup store, which every 4th of those cannot read at any look, and every 4th
/// (others) with `backup.restore = false`; seeds 64..128 of every 128 with etcd 3.5 (alternately
/// below and at the floor of the upgrade to 3.6) and replacements on 3.6 from some time on.
fn world(seed: u64) -> World {
    let n = [1, 3, 5, 7][(seed % 4) as usize];
    let mut w = World::new(seed, n, settle(), seed % 2 == 1);
    if (seed / 64) % 2 == 1 {
        let from = EtcdVersion::new(3, 5, [20, 26][(seed / 128 % 2) as usize]);
        w = w.with_versions(from, EtcdVersion::new(3, 6, 14), 60 + seed % 300);
    }
    if (seed / 4).is_multiple_of(2) {
        return w;
    }
    let unreadable = if (seed / 8) % 4 == 1 { 100 } else { 5 };
    w.with_store((seed / 8) % 4 != 2, unreadable)
}

fn simulate(seed: u64) -> Ran {
    let mut w = world(seed);
    w.run();
    Ran {
        formed: !w.formed.is_empty(),
        majority_losses: w.majority_losses,
        recoveries: w.recoveries,
        previews_checked: w.previews_checked,
        backed_up: w.store.as_ref().is_some_and(|s| !s.snapshots.is_empty()),
        store_unreadable: w.store.as_ref().is_some_and(|s| s.unreadable == 100),
        fleet_losses: w.fleet_losses,
        restores: w.restores,
        mixed_starts: w.mixed_starts,
        version_refusals: w.version_refusals,
    }
}

/// The failure of the old rule, scripted: a formed 3-member cluster loses two machines with their
/// disks; replacements arrive while the survivor, which kept the data, reboots for 100 s. With a
/// 20 s settle the replacements take its silence for an empty machine and bootstrap an empty
/// cluster beside its data; with vouching they wait for it.
fn slow_reboot_after_two_replacements(settle: Option<u64>) -> World {
    // A seed in which the old rule's failure shows (the test checks that it does).
    let mut w = World::new(1, 3, settle, false);
    w.chaos = false;
    while w.now < 60 {
        w.step();
    }
    assert!(
        w.machines.iter().all(|m| matches!(m.agent, Agent::Done)) && w.cluster_answers(),
        "the cluster formed first:\n{}",
        w.trace.join("\n")
    );
    for k in [0, 1] {
        w.terminate(k);
        w.machines[k].unlisted_from = w.now; // gone from listings at once
        w.add_machine(w.now);
    }
    w.stop(2);
    w.reboot_for(2, 100);
    w.trace.push(format!(
        "t={}: etcd-2 (the survivor) reboots for 100 s",
        w.now
    ));
    w.run();
    w
}

#[test]
fn regression_a_reboot_longer_than_the_settle_never_strands_the_data() {
    let w = slow_reboot_after_two_replacements(None);
    assert_eq!(w.live_formed().len(), 1, "{}", w.trace.join("\n"));
    let after = w
        .trace
        .iter()
        .skip_while(|l| !l.contains("the survivor"))
        .collect::<Vec<_>>();
    assert!(
        after.iter().all(|l| !l.contains("starts New")),
        "no replacement bootstraps: {}",
        w.trace.join("\n")
    );
    // Its two peers are gone for good: without recover_lost_quorum the survivor decides nothing
    // (it says the quorum is lost) and leaves its data as it is.
    assert!(
        after.iter().all(|l| !l.contains("etcd-2 starts")),
        "the survivor does not start on a lost quorum: {}",
        w.trace.join("\n")
    );
    assert!(w.machines[2].disk.is_some());
    // The test can fail: the old rule fails it.
    let old = std::panic::catch_unwind(|| slow_reboot_after_two_replacements(Some(20)));
    let message = old
        .err()
        .and_then(|e| e.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(
        message.contains("INVARIANT VIOLATED") && message.contains("planned new while cluster"),
        "the old rule should have bootstrapped beside the survivor's data: {message}"
    );
}

/// A formed 5-member cluster loses three machines with their disks for good; replacements boot
/// and the two survivors, one of them behind the other, reboot. With `fresher_snapshot`, the
/// backup store holds a snapshot taken one entry after the freshest survivor's log.
fn majority_lost(recover: bool, fresher_snapshot: bool) -> (World, u64) {
    let mut w = World::new(3, 5, None, recover);
    if fresher_snapshot {
        w = w.with_store(true, 0);
    }
    w.chaos = false;
    while w.now < 80 {
        w.step();
    }
    let id = *w.formed.first().expect("formed");
    assert!(
        w.machines.iter().all(|m| matches!(m.agent, Agent::Done)) && w.cluster_answers(),
        "the cluster formed first:\n{}",
        w.trace.join("\n")
    );
    let head = w.clusters[&id].index;
    w.machines[3].index = head;
    w.machines[4].index = head - 5;
    if let Some(store) = &mut w.store {
        store.next_at = u64::MAX;
        let mut s = store
            .snapshots
            .last()
            .expect("snapshotted while it ran")
            .clone();
        s.key = "sim/fresher.db".into();
        s.raft_index = head + 1;
        store.snapshots.push(s);
    }
    for k in [0, 1, 2] {
        w.terminate(k);
        w.machines[k].unlisted_from = w.now;
        w.add_machine(w.now);
    }
    for k in [3, 4] {
        w.stop(k);
        w.reboot_for(k, 5 + k as u64);
    }
    w.trace.push(format!(
        "t={}: three of five lost for good; etcd-3 (raft index {head}) and etcd-4 (index {}) reboot",
        w.now,
        head - 5
    ));
    w.run();
    (w, head)
}

#[test]
fn a_lost_majority_is_recovered_from_the_freshest_survivor_and_only_with_the_setting() {
    let (w, head) = majority_lost(true, false);
    let trace = w.trace.join("\n");
    assert_eq!(w.recoveries, 1, "{trace}");
    let id = *w.formed.first().unwrap();
    assert!(
        trace.contains(&format!(
            "etcd-3 recovers cluster {id:x} from its data at raft index {head}"
        )),
        "from the freshest survivor's data: {trace}"
    );
    assert_eq!(w.live_formed(), [id], "one cluster, the same one: {trace}");
    let c = &w.clusters[&id];
    let running = w
        .machines
        .iter()
        .filter(|m| m.alive && m.etcd == (Etcd::Running { cluster: id }))
        .count();
    assert_eq!(
        (c.members.len(), running),
        (5, 5),
        "back to five members: {trace}"
    );
    assert!(c.members.iter().all(|m| m.started), "{trace}");

    // Without the setting, or with a fresher snapshot in the store (the survivors wait for an
    // operator to restore it), nothing recovers and the survivors keep their data.
    for (recover, fresher) in [(false, false), (true, true)] {
        let (w, _) = majority_lost(recover, fresher);
        let trace = w.trace.join("\n");
        assert_eq!(w.recoveries, 0, "{trace}");
        let after: Vec<&String> = w
            .trace
            .iter()
            .skip_while(|l| !l.contains("three of five lost"))
            .collect();
        assert!(after.iter().all(|l| !l.contains(" starts ")), "{trace}");
        assert!(w.machines[3].disk.is_some() && w.machines[4].disk.is_some());
    }
}

/// "Two looks" means two listings: a look that only asked the peers again, on the listing it had,
/// never confirms what that listing saw. Seed 1784 (one violation in the first 3,000 seeds with
/// the guard off): a cluster of one, two machines carry the tag, and each listing misses one of
/// them. Counting a reused listing as a second one, each agent takes the same incomplete
/// listing, seen twice, for a set agreed at two looks, and both bootstrap: two clusters. With
/// the guard, the same seed keeps every invariant.
#[test]
fn regression_two_looks_at_one_listing_are_not_two_listings() {
    const SEED: u64 = 1784;
    let mut w = world(SEED);
    w.run();
    assert!(w.live_formed().len() <= 1, "{}", w.trace.join("\n"));
    let blind = std::panic::catch_unwind(|| {
        let mut w = world(SEED);
        w.number_reused_listings = true;
        w.run();
    });
    let message = blind
        .err()
        .and_then(|e| e.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(
        message.contains("INVARIANT VIOLATED") && message.contains("planned new while cluster"),
        "agents that count a reused listing twice should have bootstrapped twice: {message}"
    );
}

#[test]
fn ten_thousand_seeds_of_racing_boots_keep_every_invariant() {
    if let Ok(seed) = std::env::var("SIM_SEED") {
        let seed: u64 = seed.parse().expect("SIM_SEED is a number");
        let mut w = world(seed);
        w.run();
        println!("{}", w.trace.join("\n"));
        return;
    }
    let seeds: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEEDS);
    let runs: Vec<Ran> = (0..seeds).map(simulate).collect();
    let formed = runs.iter().filter(|r| r.formed).count() as u64;
    let could_form = runs.iter().filter(|r| !r.store_unreadable).count() as u64;
    let lost = |on: bool| {
        runs.iter()
            .enumerate()
            .filter(|(seed, r)| (seed % 2 == 1) == on && r.majority_losses > 0)
            .count()
    };
    let recoveries: usize = runs.iter().map(|r| r.recoveries).sum();
    let previews: u64 = runs.iter().map(|r| r.previews_checked).sum();
    let backed_up = runs.iter().filter(|r| r.backed_up).count();
    let fleets_lost: usize = runs.iter().map(|r| r.fleet_losses).sum();
    let restores: usize = runs.iter().map(|r| r.restores).sum();
    let mixed: usize = runs.iter().map(|r| r.mixed_starts).sum();
    let refused: usize = runs.iter().map(|r| r.version_refusals).sum();
    println!(
        "simulated {seeds} seeds: 0 invariant violations; plan showed what the run did at all {previews} looks that showed steps; a cluster formed in {formed} (none of the {} whose store was never readable); a majority lost for good in {} seeds with recover_lost_quorum on ({recoveries} recoveries) and {} with it off (0 recoveries); a backup store held snapshots in {backed_up} seeds; {fleets_lost} whole fleets lost, {restores} clusters restored from the newest snapshot and none bootstrapped empty beside one; {mixed} etcd starts beside members of another minor line (an upgrade in progress), none refused by etcd; {refused} agents refused by a version rule (an upgrade from below its floor, an etcd older than the cluster)",
        seeds - could_form,
        lost(true),
        lost(false)
    );
    assert!(
        restores > 0,
        "no seed restored a cluster: the restore row is not exercised"
    );
    assert!(
        mixed > 0,
        "no member started beside another minor line: the version rules are not exercised"
    );
    assert_eq!(
        runs.iter()
            .enumerate()
            .filter(|(seed, r)| seed % 2 == 0 && r.recoveries > 0)
            .count(),
        0,
        "no recovery without the setting"
    );
    assert!(
        runs.iter().all(|r| !(r.store_unreadable && r.formed)),
        "a store that cannot be read is never taken for an empty one"
    );
    // Liveness is not promised (a node may fail loudly, as every node must when more machines
    // than cluster.size carry the tag), but a simulation in which clusters never form would be
    // testing nothing. Seeds whose store is never readable must not form one.
    assert!(
        formed > could_form * 3 / 4,
        "only {formed} of the {could_form} seeds with a readable store (or none) formed a cluster"
    );
}

/// A formed 3-member cluster with a backup store snapshotted once; then every machine is
/// terminated with its disk and a new fleet (new names and addresses) boots.
fn fleet_recreated(configure: impl FnOnce(&mut Store)) -> World {
    let mut w = World::new(1, 3, None, false).with_store(true, 0);
    w.chaos = false;
    while w.now < 60 {
        w.step();
    }
    assert!(
        w.cluster_answers() && !w.store.as_ref().unwrap().snapshots.is_empty(),
        "the cluster formed and was snapshotted first:\n{}",
        w.trace.join("\n")
    );
    configure(w.store.as_mut().unwrap());
    w.store.as_mut().unwrap().next_at = u64::MAX;
    w.lose_fleet();
    for k in 0..3 {
        w.machines[k].unlisted_from = w.now;
    }
    w.run();
    w
}

#[test]
fn a_fleet_recreated_after_total_loss_restores_the_newest_snapshot_never_bootstraps_empty() {
    let w = fleet_recreated(|_| {});
    let trace = w.trace.join("\n");
    let newest = w.store.as_ref().unwrap().snapshots.last().unwrap().clone();
    let live = w.live_formed();
    assert_eq!(live.len(), 1, "{trace}");
    let c = &w.clusters[&live[0]];
    assert_eq!(c.restored_from.as_ref(), Some(&newest.key), "{trace}");
    assert!(
        c.index >= newest.raft_index && c.members.len() == 3,
        "{trace}"
    );
    assert!(
        (3..6).all(|k| w.machines[k].etcd == Etcd::Running { cluster: live[0] }),
        "the three new machines run it: {trace}"
    );

    // backup.restore = false, or a store that cannot be read: the new fleet waits, and nothing
    // starts.
    for configure in [
        (|s: &mut Store| s.restore = false) as fn(&mut Store),
        |s: &mut Store| s.unreadable = 100,
    ] {
        let w = fleet_recreated(configure);
        let after: Vec<&String> = w
            .trace
            .iter()
            .skip_while(|l| !l.contains("whole fleet is terminated"))
            .collect();
        assert!(
            after.iter().all(|l| !l.contains(" starts ")) && w.live_formed().is_empty(),
            "{}",
            w.trace.join("\n")
        );
    }

    // The invariant can fail: agents that do not look at the store bootstrap empty beside it.
    let blind = std::panic::catch_unwind(|| fleet_recreated(|s| s.agents_look = false));
    let message = blind
        .err()
        .and_then(|e| e.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(
        message.contains("INVARIANT VIOLATED")
            && message.contains("bootstraps an empty cluster while the store holds"),
        "agents blind to the store should have bootstrapped empty: {message}"
    );
}
