//! What a member's peer port says when its client port gives no status: etcd runs there (and
//! which cluster version it reports), its agent is waiting and vouching (with what it holds and
//! what it waits for), or nothing answers. This is what tells apart, while the quorum is lost,
//! a machine that is down from one whose etcd runs without a leader and one whose agent waits.

use serde::Serialize;

use crate::decide::VouchedData;
use crate::etcd::{CallError, EtcdClient};

const NOTHING: &str =
    "nothing listens on the peer port: etcd is not running and no agent is waiting";

#[derive(Debug, Serialize)]
pub struct PeerPort {
    pub name: String,
    pub peer_url: String,
    /// `etcd`, `agent`, `nothing` (connection refused) or `unknown` (no answer, or not one we
    /// know).
    pub answer: &'static str,
    /// The answer in words, one line.
    pub detail: String,
}

/// Asks `peer_url` the two questions a peer port answers without credentials beyond the peer
/// TLS settings: a waiting agent's vouch (etcd answers that path 404), then `/version`.
pub async fn look(etcd: &EtcdClient, name: &str, peer_url: &str) -> PeerPort {
    let (answer, detail) = match etcd.vouch(peer_url, None).await {
        Ok(Some(v)) => ("agent", agent_says(&v.data, v.waiting.as_deref())),
        Err(CallError::Refused(_)) => ("nothing", NOTHING.into()),
        Ok(None) | Err(_) => match etcd.cluster_version(peer_url).await {
            Ok(v) => (
                "etcd",
                format!(
                    "etcd runs (cluster version {}) but gives no status on its client port",
                    if v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
                    {
                        v
                    } else {
                        crate::member::excerpt(&v)
                    }
                ),
            ),
            Err(CallError::Refused(_)) => ("nothing", NOTHING.into()),
            Err(e) => ("unknown", e.to_string()),
        },
    };
    PeerPort {
        name: name.to_owned(),
        peer_url: peer_url.to_owned(),
        answer,
        detail,
    }
}

fn agent_says(data: &VouchedData, waiting: Option<&str>) -> String {
    let holds = match data {
        VouchedData::Empty => "an empty data dir".to_owned(),
        VouchedData::Member {
            cluster_id,
            member_id,
            last_index,
        } => format!("data of cluster {cluster_id} (member {member_id}, raft index {last_index})"),
        VouchedData::Unreadable => "a data dir whose log it cannot read".to_owned(),
    };
    match waiting {
        Some(w) => format!("its agent is waiting, with {holds}: {w}"),
        None => format!("its agent is waiting, with {holds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_says_what_it_holds_and_what_it_waits_for() {
        let data = VouchedData::Member {
            cluster_id: "c1".into(),
            member_id: "m2".into(),
            last_index: 42,
        };
        assert_eq!(
            agent_says(&data, Some("a survivor saying the quorum is lost")),
            "its agent is waiting, with data of cluster c1 (member m2, raft index 42): a survivor saying the quorum is lost"
        );
        assert_eq!(
            agent_says(&VouchedData::Empty, None),
            "its agent is waiting, with an empty data dir"
        );
    }
}
