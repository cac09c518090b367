//! What the decision core is told: the observations the I/O layer made, as plain data.

use crate::config::ClusterSpec;
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
    /// Timeouts, TLS errors, 5xx, garbage: we cannot tell, so we must not decide on it.
    Unknown { reason: String },
}

impl PeerAnswer {
    /// Evidence that a cluster which once had a leader exists.
    pub fn shows_cluster(&self) -> bool {
        matches!(self, PeerAnswer::Answered(_) | PeerAnswer::Stalled { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Probe {
    pub peer: MemberName,
    pub answer: PeerAnswer,
}

/// Whether this machine's data dir holds an etcd member (`member/` exists).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataDir {
    Empty,
    HasMember,
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
    /// Some peer showed a cluster earlier in this run. A run that has seen a cluster never
    /// bootstraps a new one, even if that cluster's members all go quiet (they may be rebooting).
    pub cluster_seen: bool,
    /// How long the same member set has been discovered with nothing listening on any peer.
    pub quiet_for: std::time::Duration,
    /// Members no discovered machine owns that answered on their own client URL: alive, only
    /// missing from the listing (listings are eventually consistent).
    pub undiscovered_alive: &'a [u64],
    /// Members that already looked dead at the previous observation of this run.
    pub dead_before: &'a [u64],
}
