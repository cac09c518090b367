//! `etcd-bootstrap promote`: run from etcd.service's `ExecStartPost=` when nodes join as
//! learners. Waits until this node's learner has caught up and promotes it to a voting member.
//! etcd refuses a promotion until the learner is in sync ("can only promote a learner member
//! which is in sync with leader"); that answer is retried until the deadline.

use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::error::{Failure, Kind};
use crate::etcd::{CallError, EtcdClient};
use crate::member::url;
use crate::notify;
use crate::run::Agent;

pub async fn promote(
    agent: &Agent,
    client: &EtcdClient,
    timeout: Duration,
) -> Result<String, Failure> {
    let deadline = Instant::now() + timeout;
    let mut backoff = Backoff::from_entropy(Duration::from_millis(500), Duration::from_secs(5));
    loop {
        let why = match attempt(agent, client).await {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => "this learner is not in sync with the leader yet".to_owned(),
            Err(Ok(failure)) => return Err(failure),
            Err(Err(retry)) => retry,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(Failure::new(
                Kind::Unavailable,
                format!("promotion did not succeed within {timeout:?}: {why}"),
            ));
        }
        tracing::info!("waiting to promote: {why}");
        let pause = backoff.next_delay().min(deadline - now);
        notify::waiting(
            &format!("waiting to promote: {why}"),
            pause + Duration::from_secs(30),
        );
        tokio::time::sleep(pause).await;
    }
}

/// `Ok(Some)`: done. `Ok(None)`: not in sync yet. `Err(Ok)`: give up. `Err(Err)`: retry.
async fn attempt(
    agent: &Agent,
    client: &EtcdClient,
) -> Result<Option<String>, Result<Failure, String>> {
    let spec = &agent.settings.cluster;
    let obs = agent.observe().await.map_err(|e| {
        if e.retryable {
            Err(e.message)
        } else {
            Ok(Failure::new(e.kind, e.message))
        }
    })?;
    let Some(me) = obs.me.map(|i| &obs.candidates[i]) else {
        return Err(Err(
            "this machine is not among the discovered members".into()
        ));
    };
    let my_peer = url(spec.peer_scheme, &me.host, spec.peer_port);
    // Our own etcd first (it has just started), then every peer.
    let endpoints: Vec<String> = std::iter::once(me)
        .chain(obs.candidates.iter().filter(|c| c.name != me.name))
        .map(|c| url(spec.client_scheme, &c.host, spec.client_port))
        .collect();
    let mut last = String::from("no etcd answered");
    for endpoint in &endpoints {
        let view = match client.member_list(endpoint).await {
            Ok(v) => v,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let Some(mine) = view.members.iter().find(|m| m.peer_urls.contains(&my_peer)) else {
            return Err(Ok(Failure::new(
                Kind::Unsafe,
                format!("the cluster does not list this node ({my_peer}); nothing to promote"),
            )));
        };
        if !mine.is_learner {
            return Ok(Some(format!("{} is a voting member", me.name)));
        }
        return match client.member_promote(endpoint, mine.id).await {
            Ok(()) => {
                tracing::info!(id = %format!("{:x}", mine.id), "promoted this learner to a voting member");
                Ok(Some(format!("promoted {} to a voting member", me.name)))
            }
            Err(CallError::Etcd { message, .. }) if message.contains("in sync") => Ok(None),
            Err(e) => Err(Err(e.to_string())),
        };
    }
    Err(Err(last))
}
