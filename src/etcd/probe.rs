//! Asking one peer whether a cluster exists, telling apart the answers the decision core needs.

use crate::config::ClusterSpec;
use crate::decide::PeerAnswer;
use crate::member::Candidate;

use super::version::EtcdVersion;

use super::{CallError, EtcdClient};

/// What `/version` says for `etcdcluster` before a leader has settled the cluster version.
const NOT_DECIDED: &str = "not_decided";

/// Probes a peer's client port; when that does not answer, its peer port tells whether etcd runs
/// there at all and, if so, whether it is a bootstrap still waiting for its members.
///
/// A bootstrapping etcd binds its client port but serves nothing on it until the cluster has a
/// leader, so a plain client probe would hang on it and the nodes that boot later would wait for
/// each other forever; its peer port answers `/version` with `etcdcluster: not_decided` and lists
/// the members it is bootstrapping with, which is enough to join the same bootstrap safely.
///
/// `asker`: this agent's `vouch::ASKER_HEADER` while it vouches itself, so that a peer that
/// vouches too asks back at once when it is news.
pub async fn probe(
    client: &EtcdClient,
    spec: &ClusterSpec,
    peer: &Candidate,
    asker: Option<&str>,
) -> PeerAnswer {
    let client_url = spec.client_url(&peer.host);
    let peer_url = spec.peer_url(&peer.host);
    let client_err = match client.member_list(&client_url).await {
        Ok(mut view) => {
            if let Ok(v) = client.versions(&client_url).await {
                view.settled = v.etcdcluster != NOT_DECIDED;
                view.cluster_version = EtcdVersion::parse(&v.etcdcluster);
                view.server_version = EtcdVersion::parse(&v.etcdserver);
            }
            return PeerAnswer::Answered(view);
        }
        Err(e) => e,
    };
    // The client port refused or did not answer. On the peer port, a waiting agent vouches for
    // its machine; etcd answers that path 404 and then says, on `/version`, whether a bootstrap
    // is forming or a cluster without a leader is there. Only a refusal on both ports proves
    // that nothing runs there (etcd binds its peer port first). Every port's error is kept: the
    // one shown is the most telling (a peer port failing TLS verification beats a refused
    // client port: the machine is up, and its certificate is what to look at).
    let mut errors = vec![client_err];
    match client.vouch(&peer_url, asker).await {
        Ok(Some(v)) => return PeerAnswer::Vouched(v),
        Err(CallError::Refused(_)) if errors[0].is_refused() => return PeerAnswer::Refused,
        Err(e) => errors.push(e),
        Ok(None) => {}
    }
    match client.cluster_version(&peer_url).await {
        Err(CallError::Refused(_)) if errors[0].is_refused() => PeerAnswer::Refused,
        Ok(v) if v == NOT_DECIDED => match client.peer_members(&peer_url).await {
            // Members that published client URLs have run: this is a cluster restarted on its
            // data that has not found its leader again (etcd 3.5 says `not_decided` then too),
            // not a first bootstrap.
            Ok(members) if members.iter().any(|m| m.has_started()) => PeerAnswer::Stalled {
                version: NOT_DECIDED.into(),
            },
            Ok(members) => PeerAnswer::Forming { members },
            Err(e) => PeerAnswer::Unknown {
                reason: e.to_string(),
            },
        },
        Ok(v) if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.') => {
            PeerAnswer::Stalled { version: v }
        }
        Ok(v) => PeerAnswer::Unknown {
            reason: format!(
                "{}, while its peer port reports cluster version {}",
                most_telling(&errors),
                crate::member::excerpt(&v)
            ),
        },
        Err(e) => {
            errors.push(e);
            PeerAnswer::Unknown {
                reason: most_telling(&errors).to_string(),
            }
        }
    }
}

/// The first of the most telling errors (the client port's, among equals).
fn most_telling(errors: &[CallError]) -> &CallError {
    errors
        .iter()
        .rev()
        .max_by_key(|e| e.telling())
        .expect("at least the client port's error")
}
