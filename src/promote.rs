//! `etcd-bootstrap promote`: run from etcd.service's `ExecStartPost=` when nodes join as
//! learners. Waits until this node's learner has caught up and promotes it to a voting member.
//! etcd refuses a promotion until the learner is in sync ("can only promote a learner member
//! which is in sync with leader"); that answer is retried until the deadline.
//!
//! It works from the env file the run wrote (this node's URLs and the cluster's peers), not from
//! discovery: etcd.service needs no API token for it.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::error::{Failure, Kind};
use crate::etcd::CallError;
use crate::retry::{Try, until_done};
use crate::run::Agent;

pub async fn promote(agent: &Agent, timeout: Duration) -> Result<String, Failure> {
    let backoff = Backoff::from_entropy(Duration::from_millis(500), Duration::from_secs(5));
    until_done(
        timeout,
        backoff,
        "waiting to promote",
        "promotion did not succeed",
        async || attempt(agent).await,
    )
    .await
}

/// What promote and leave need from the env file: this node's peer URL, and client endpoints,
/// this node's first.
pub(crate) struct Written {
    pub my_peer: String,
    pub endpoints: Vec<String>,
}

pub(crate) fn read_env_file(agent: &Agent) -> Result<Written, Failure> {
    let path = &agent.settings.env_file;
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            Kind::Unavailable,
            format!(
                "cannot read {}: {e}; run etcd-bootstrap first",
                path.display()
            ),
        )
    })?;
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .map(str::to_owned)
            .ok_or_else(|| Failure::new(Kind::DataErr, format!("{} has no {key}", path.display())))
    };
    let my_peer = get("ETCD_INITIAL_ADVERTISE_PEER_URLS")?;
    let spec = &agent.settings.cluster;
    // This node's etcd first (it has just started), then every peer's client URL.
    let mut endpoints: Vec<String> = get("ETCD_ADVERTISE_CLIENT_URLS")?
        .split(',')
        .map(str::to_owned)
        .collect();
    for pair in get("ETCD_INITIAL_CLUSTER")?.split(',') {
        let peer_url = pair.split_once('=').map_or(pair, |(_, u)| u);
        if let Some(host) = peer_url
            .split_once("://")
            .and_then(|(_, rest)| rest.rsplit_once(':'))
            .map(|(h, _)| h)
            && peer_url != my_peer
        {
            endpoints.push(format!(
                "{}://{host}:{}",
                spec.client_scheme, spec.client_port
            ));
        }
    }
    Ok(Written { my_peer, endpoints })
}

async fn attempt(agent: &Agent) -> Result<Try<String>, Failure> {
    let written = read_env_file(agent)?;
    let mut last = String::from("no etcd answered");
    for endpoint in &written.endpoints {
        let view = match agent.etcd().member_list(endpoint).await {
            Ok(v) => v,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let my_peer = &written.my_peer;
        let Some(mine) = view.members.iter().find(|m| m.peer_urls.contains(my_peer)) else {
            return Err(Failure::new(
                Kind::Unsafe,
                format!("the cluster does not list this node ({my_peer}); nothing to promote"),
            ));
        };
        if !mine.is_learner {
            return Ok(Try::Done(format!(
                "this node ({my_peer}) is a voting member"
            )));
        }
        return Ok(match agent.etcd().member_promote(endpoint, mine.id).await {
            Ok(()) => {
                tracing::info!(id = %format!("{:x}", mine.id), "promoted this learner to a voting member");
                Try::Done(format!("promoted this node ({my_peer}) to a voting member"))
            }
            Err(CallError::Etcd { message, .. }) if message.contains("in sync") => {
                Try::again("this learner is not in sync with the leader yet")
            }
            Err(e) => Try::again(e.to_string()),
        });
    }
    Ok(Try::again(last))
}
