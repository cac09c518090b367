//! etcd's JSON shapes. The gRPC gateway writes uint64 as decimal strings, omits false and empty
//! fields and names fields as the proto does (`ID`, `peerURLs`, `isLearner`); the peer port's
//! `/members` writes ids as plain JSON numbers. Both are read leniently here and turned into the
//! decision core's types.

use serde::{Deserialize, Deserializer, Serialize};

use crate::decide::{ClusterView, EtcdMember};

#[derive(Deserialize)]
pub struct MemberListResponse {
    pub header: Header,
    #[serde(default)]
    pub members: Vec<Member>,
}

#[derive(Deserialize)]
pub struct Header {
    #[serde(default, deserialize_with = "u64_any")]
    pub cluster_id: u64,
    #[serde(default, deserialize_with = "u64_any")]
    pub member_id: u64,
    #[serde(default, deserialize_with = "u64_any")]
    pub revision: u64,
}

/// A member, as the gateway (`"ID"`, a decimal string) and the peer port's `/members` (`"id"`,
/// a number) both write it.
#[derive(Deserialize)]
pub struct Member {
    #[serde(rename = "ID", alias = "id", default, deserialize_with = "u64_any")]
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    pub is_learner: bool,
}

impl From<Member> for EtcdMember {
    fn from(m: Member) -> Self {
        EtcdMember {
            id: m.id,
            name: m.name,
            peer_urls: m.peer_urls,
            client_urls: m.client_urls,
            is_learner: m.is_learner,
        }
    }
}

impl From<MemberListResponse> for ClusterView {
    fn from(r: MemberListResponse) -> Self {
        ClusterView {
            cluster_id: r.header.cluster_id,
            members: r.members.into_iter().map(Into::into).collect(),
            settled: false,
            cluster_version: None,
            server_version: None,
        }
    }
}

/// `/version`, on the client port and the peer port alike.
#[derive(Deserialize)]
pub struct Version {
    #[serde(default)]
    pub etcdcluster: String,
    #[serde(default)]
    pub etcdserver: String,
}

/// etcd 3.5 takes `linearizable`; 3.4 ignores unknown fields. Linearizable matters: a member that
/// lost touch with the leader must not report a stale member list as the cluster's.
#[derive(Serialize)]
pub struct MemberListRequest {
    pub linearizable: bool,
}

#[derive(Serialize)]
pub struct MemberAddRequest<'a> {
    #[serde(rename = "peerURLs")]
    pub peer_urls: &'a [String],
    #[serde(rename = "isLearner")]
    pub is_learner: bool,
}

#[derive(Deserialize)]
pub struct MemberAddResponse {
    pub header: Header,
    pub member: Member,
    /// The membership after the addition.
    #[serde(default)]
    pub members: Vec<Member>,
}

/// Remove and promote take the id as a decimal string, like every uint64 on the gateway.
#[derive(Serialize)]
pub struct MemberIdRequest {
    #[serde(rename = "ID")]
    pub id: String,
}

#[derive(Deserialize)]
pub struct StatusResponse {
    pub header: Header,
    #[serde(default, deserialize_with = "u64_any")]
    pub leader: u64,
    #[serde(rename = "isLearner", default)]
    pub is_learner: bool,
    #[serde(rename = "raftIndex", default, deserialize_with = "u64_any")]
    pub raft_index: u64,
    #[serde(default)]
    pub version: String,
    #[serde(rename = "dbSize", default, deserialize_with = "u64_any")]
    pub db_size: u64,
    #[serde(rename = "dbSizeInUse", default, deserialize_with = "u64_any")]
    pub db_size_in_use: u64,
}

/// `POST /v3/maintenance/alarm` with `{"action":"GET"}`: the raised alarms (a member and
/// `NOSPACE` or `CORRUPT`; `NONE`, zero, is omitted like every zero value).
#[derive(Deserialize)]
pub struct AlarmResponse {
    #[serde(default)]
    pub alarms: Vec<AlarmMember>,
}

#[derive(Deserialize)]
pub struct AlarmMember {
    #[serde(rename = "memberID", default, deserialize_with = "u64_any")]
    pub member_id: u64,
    #[serde(default)]
    pub alarm: String,
}

#[derive(Deserialize)]
pub struct GatewayError {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub code: i64,
}

/// A uint64 written as a decimal string (gateway) or a number (peer port, etcdctl).
fn u64_any<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Str(String),
        Num(u64),
    }
    match Either::deserialize(d)? {
        Either::Num(n) => Ok(n),
        Either::Str(s) => s
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a uint64"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_gateway_member_list_with_string_ids_and_omitted_fields() {
        let body = r#"{"header":{"cluster_id":"14971558712265587833","member_id":"17185119425599647930","raft_term":"2"},
          "members":[{"ID":"17185119425599647930","name":"n1","peerURLs":["http://127.0.0.1:12380"],"clientURLs":["http://127.0.0.1:12379"]},
                     {"ID":"6892890215425721630","peerURLs":["http://127.0.0.1:22380"],"isLearner":true}]}"#;
        let view: ClusterView = serde_json::from_str::<MemberListResponse>(body)
            .unwrap()
            .into();
        assert_eq!(view.cluster_id, 14971558712265587833);
        assert_eq!(view.members[0].id, 17185119425599647930);
        assert!(view.members[0].has_started());
        assert_eq!(view.members[1].name, "");
        assert!(view.members[1].is_learner && !view.members[1].has_started());
    }

    #[test]
    fn reads_the_peer_port_member_list_with_numeric_ids() {
        let body =
            r#"[{"id":9573252243280361471,"peerURLs":["http://127.0.0.21:2380"],"name":"a"}]"#;
        let m: Vec<Member> = serde_json::from_str(body).unwrap();
        assert_eq!(m[0].id, 9573252243280361471);
    }

    #[test]
    fn add_request_spells_is_learner_as_etcd_expects() {
        let urls = vec!["http://x:2380".to_owned()];
        let body = serde_json::to_string(&MemberAddRequest {
            peer_urls: &urls,
            is_learner: true,
        })
        .unwrap();
        assert_eq!(body, r#"{"peerURLs":["http://x:2380"],"isLearner":true}"#);
        let body = serde_json::to_string(&MemberIdRequest {
            id: u64::MAX.to_string(),
        })
        .unwrap();
        assert_eq!(body, r#"{"ID":"18446744073709551615"}"#);
    }
}
