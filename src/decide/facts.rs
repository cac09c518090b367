//! What the decision core is told: the observations the I/O layer made, as plain data.

use crate::config::ClusterSpec;
use crate::datadir::DataDir;
pub use crate::etcd::version::EtcdVersion;
use crate::member::{Candidate, MemberName};

/// A member as etcd's member API reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EtcdMember {
    pub id: u64,
    /// Empty for a member added through the API that has not started yet.
    pub name: String,
    pub peer_urls: Vec<String>,
    /// Empty until the member has started and published itself to the cluster.
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl EtcdMember {
    /// A member has run when it published its client URLs; a member added by the API (no name)
    /// and a bootstrap member that never came up (a name, but nothing published) have not.
    pub fn has_started(&self) -> bool {
        !self.client_urls.is_empty()
    }
}

/// A running cluster's answer to `member/list`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClusterView {
    pub cluster_id: u64,
    pub members: Vec<EtcdMember>,
    /// The cluster version is decided. For its first seconds a cluster reports `not_decided`, and
    /// etcd refuses to join such a cluster ("incompatible with current running cluster").
    pub settled: bool,
    /// The cluster version it reports (`etcdcluster` of `/version`), once decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_version: Option<EtcdVersion>,
    /// The answering member's own etcd (`etcdserver` of `/version`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<EtcdVersion>,
}

/// What probing one peer told us.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PeerAnswer {
    /// Its client port answered `member/list`: a cluster that has served clients exists.
    Answered(ClusterView),
    /// Connection refused on its client port: no etcd runs there.
    Refused,
    /// Its client port does not answer, but its peer port reports a cluster whose version was
    /// never decided (no leader ever ran it), with these members: a bootstrap in progress.
    Forming { members: Vec<EtcdMember> },
    /// Its client port does not answer, but its peer port reports a decided cluster version: a
    /// cluster exists there (restarted on its data, waiting for a quorum). Never bootstrap then.
    Stalled { version: String },
    /// No etcd runs there, but its agent answered on the peer port: what that machine says of
    /// its data and of the cluster it would bootstrap.
    Vouched(Vouch),
    /// Timeouts, TLS errors, 5xx, garbage: we cannot tell, so we must not decide on it.
    Unknown { reason: String },
}

/// What a waiting agent says of its own machine, on its peer port
/// (`GET /etcd-bootstrap/v1/vouch`, docs/vouching.md). Nothing in it is secret: an etcd peer
/// sees all of it (name, URLs, token, ids) in its own traffic.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Vouch {
    /// `etcd-bootstrap/<version>`.
    pub agent: String,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub cluster_token: String,
    pub data: VouchedData,
    /// The members this agent would bootstrap (sorted by name), when it has discovered all of
    /// them and seen no cluster; otherwise absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<Vec<BootstrapMember>>,
    /// The peers whose vouch for that same set, with an empty data dir, this agent has heard in
    /// this run (names, sorted). A node stops vouching and bootstraps only once every peer still
    /// vouching has heard it, so none is left waiting for a vouch it never saw.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heard: Vec<String>,
    /// What this agent waits for, when its machine holds data: a survivor saying that the
    /// quorum is lost, and who holds the freshest data. Peers waiting on it repeat it in their own
    /// status, so every machine says the same thing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// The snapshot this agent would restore instead of bootstrapping empty: the newest of this
    /// cluster token in the backup store (`[backup]`). A restore needs every member to name the
    /// same one; absent: the store holds none, or no store is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreRef>,
}

/// A snapshot as vouches name it: its key in the store and the sha256 of its database.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestoreRef {
    pub key: String,
    pub sha256: String,
}

/// The newest complete snapshot of this cluster token in the backup store, from its manifest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotRef {
    /// The database's key, relative to the store's prefix.
    pub key: String,
    pub sha256: String,
    pub db_size: u64,
    /// etcd's cluster id (hex), revision and raft index when it was taken.
    pub cluster_id: String,
    pub revision: u64,
    pub raft_index: u64,
    /// Unix seconds.
    pub taken_at: i64,
    /// The etcd that took it, as its manifest records it.
    pub etcd_version: String,
}

impl SnapshotRef {
    pub fn named(&self) -> RestoreRef {
        RestoreRef {
            key: self.key.clone(),
            sha256: self.sha256.clone(),
        }
    }
}

/// What a look at the backup store found (`[backup]` configured).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "found", rename_all = "snake_case")]
pub enum StoreLook {
    /// Not looked at: a cluster answered, so no restore or recovery can be at stake.
    NotNeeded,
    /// The store was read and holds no complete snapshot of this token.
    Nothing,
    Newest(SnapshotRef),
    /// It could not be read (refused, timed out, garbage): never taken as "no snapshot".
    Unreadable {
        reason: String,
    },
}

/// The backup store as the decision sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Backups {
    /// `backup.url`, as shown to people (no secret in it).
    pub store: String,
    /// `backup.restore`: restore a found snapshot at a first bootstrap (else wait, naming it).
    pub restore: bool,
    pub look: StoreLook,
}

impl Backups {
    /// Whether a look at the store can matter: no cluster answers, and this node's data dir is
    /// empty (a first bootstrap may have to restore) or a lost quorum may be recovered (a
    /// snapshot fresher than every survivor is a better copy). A restart on data never waits
    /// for the store. The run and the simulation both ask this.
    pub fn worth_a_look(probes: &[Probe], data: DataDir, recover_lost_quorum: bool) -> bool {
        let answered = probes
            .iter()
            .any(|p| matches!(p.answer, PeerAnswer::Answered(_)));
        !answered && (data == DataDir::Empty || recover_lost_quorum)
    }

    /// The snapshot a first bootstrap would restore, as a vouch names it.
    pub fn would_restore(&self) -> Option<RestoreRef> {
        match &self.look {
            StoreLook::Newest(s) => Some(s.named()),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BootstrapMember {
    pub name: String,
    pub peer_url: String,
}

/// A machine's data dir, as its agent reads it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum VouchedData {
    Empty,
    /// A member of this cluster (ids in hex, as etcd logs them), with the last raft index its
    /// log holds.
    Member {
        cluster_id: String,
        member_id: String,
        last_index: u64,
    },
    /// `member/` exists but its log could not be read: data all the same.
    Unreadable,
}

impl PeerAnswer {
    /// Evidence that a cluster which once had a leader exists, or that a machine holds data of
    /// one: what it was, in words, for the messages of the rest of the run.
    pub fn cluster_evidence(&self) -> Option<String> {
        match self {
            PeerAnswer::Answered(v) => Some(format!("answered for cluster {:x}", v.cluster_id)),
            PeerAnswer::Stalled { version } => {
                Some(format!("ran etcd {version} on its data without a leader"))
            }
            PeerAnswer::Vouched(v) => match &v.data {
                VouchedData::Empty => None,
                VouchedData::Member { cluster_id, .. } => {
                    Some(format!("held data of cluster {cluster_id}"))
                }
                VouchedData::Unreadable => Some("held an etcd data dir".into()),
            },
            _ => None,
        }
    }

    pub fn shows_cluster(&self) -> bool {
        self.cluster_evidence().is_some()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Probe {
    pub peer: MemberName,
    pub answer: PeerAnswer,
}

impl Facts<'_> {
    /// What probing the discovered machine `name` told, if it was probed.
    pub fn answer_of(&self, name: &MemberName) -> Option<&PeerAnswer> {
        self.probes
            .iter()
            .find(|p| p.peer == *name)
            .map(|p| &p.answer)
    }
}

/// Everything the core decides from. No clocks, no sockets: the same facts give the same plan.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    pub spec: &'a ClusterSpec,
    /// Validated candidates, names unique.
    pub discovered: &'a [Candidate],
    /// This machine among `discovered`, when it could be identified.
    pub me: Option<&'a Candidate>,
    pub data: DataDir,
    /// One entry per discovered peer other than this machine.
    pub probes: &'a [Probe],
    /// Dead members this run already removed (at most one per run is removed).
    pub removed_this_run: usize,
    /// What showed a cluster earlier in this run ("node-3 (10.0.0.3) answered for cluster
    /// c1"), if anything did. A run that has seen a cluster, or a machine holding its data, never
    /// bootstraps a new one, even if it all goes quiet (its members may be rebooting).
    pub cluster_seen: Option<&'a str>,
    /// How long the same member set has been discovered with nothing listening on any peer
    /// (used only with the opt-in `cluster.bootstrap_settle`).
    pub quiet_for: std::time::Duration,
    /// The last vouch each peer gave in this run, by name, for peers still at the address they
    /// vouched from. A peer that vouched and went quiet is starting the etcd it vouched for.
    pub vouched: &'a [(MemberName, Vouch)],
    /// Machines listed earlier in this run, missing from this listing, that never vouched an
    /// empty data dir: a listing that misses a machine may be hiding its data.
    pub unsettled: &'a [Candidate],
    /// The set this node would have bootstrapped at the previous look, when only a second look
    /// was missing. Without a peer's vouch to cross-check the listing (a cluster of one, or
    /// peers already forming), a bootstrap needs two looks in a row to agree, so one listing that
    /// missed a machine with data cannot decide alone.
    pub agreed_before: Option<&'a [(MemberName, String)]>,
    /// What this machine's own log says, when its data dir holds a member.
    pub wal: Option<&'a crate::datadir::WalInfo>,
    /// Members no discovered machine owns that answered on their own client URL: alive, only
    /// missing from the listing (listings are eventually consistent).
    pub undiscovered_alive: &'a [u64],
    /// Members that already looked dead at the previous observation of this run.
    pub dead_before: &'a [u64],
    /// This run already copied the data dir aside for a lost-quorum recovery.
    pub data_copied: bool,
    /// The etcd this machine would start, when it could be asked.
    pub local_etcd: Option<&'a LocalEtcd>,
    /// The backup store, when `[backup]` is configured.
    pub backups: Option<&'a Backups>,
    /// An earlier run's lost-quorum recovery start that never finished.
    pub unfinished_recovery: Option<&'a UnfinishedRecovery>,
}

/// What an earlier run's recovery start that never finished left (`datadir::recovery_mark`):
/// the copy of the data dir it made before it, and what that copy holds. That start may have
/// written forced membership changes into the data dir's log and then failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnfinishedRecovery {
    pub copy: std::path::PathBuf,
    /// The copy holds a member dir: it can be put back.
    pub copy_present: bool,
    /// What the copy's log says: the data dir once it is back.
    pub copy_wal: Option<crate::datadir::WalInfo>,
}

/// The etcd binary this machine starts (`etcd.binary`) and the version it reports.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LocalEtcd {
    pub binary: String,
    pub version: EtcdVersion,
}
