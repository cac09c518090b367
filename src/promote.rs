//! `etcd-bootstrap promote`: run from etcd.service's `ExecStartPost=` when nodes join as
//! learners. Waits until this node's learner has caught up and promotes it to a voting member.
//! etcd refuses a promotion until the learner is in sync ("can only promote a learner member
//! which is in sync with leader"); that answer is retried until the deadline.

use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::error::{Failure, Kind};
use crate::etcd::CallError;
use crate::member::url;
use crate::notify;
use crate::run::Agent;

enum Step {
    Done(String),
    Retry(String),
    Fail(Failure),
}

pub async fn promote(agent: &Agent, timeout: Duration) -> Result<String, Failure> {
    let deadline = Instant::now() + timeout;
    let mut backoff = Backoff::from_entropy(Duration::from_millis(500), Duration::from_secs(5));
    loop {
        let why = match attempt(agent).await {
            Step::Done(done) => return Ok(done),
            Step::Fail(failure) => return Err(failure),
            Step::Retry(why) => why,
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

async fn attempt(agent: &Agent) -> Step {
    let spec = &agent.settings.cluster;
    let obs = match agent.observe().await {
        Ok(obs) => obs,
        Err(e) if e.retryable => return Step::Retry(e.message),
        Err(e) => return Step::Fail(Failure::new(e.kind, e.message)),
    };
    let Some(me) = obs.me.map(|i| &obs.candidates[i]) else {
        return Step::Retry("this machine is not among the discovered members".into());
    };
    let my_peer = url(spec.peer_scheme, &me.host, spec.peer_port);
    // Our own etcd first (it has just started), then every peer.
    let endpoints = std::iter::once(me)
        .chain(obs.candidates.iter().filter(|c| c.name != me.name))
        .map(|c| url(spec.client_scheme, &c.host, spec.client_port));
    let mut last = String::from("no etcd answered");
    for endpoint in endpoints {
        let view = match agent.etcd().member_list(&endpoint).await {
            Ok(v) => v,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let Some(mine) = view.members.iter().find(|m| m.peer_urls.contains(&my_peer)) else {
            return Step::Fail(Failure::new(
                Kind::Unsafe,
                format!("the cluster does not list this node ({my_peer}); nothing to promote"),
            ));
        };
        if !mine.is_learner {
            return Step::Done(format!("{} is a voting member", me.name));
        }
        return match agent.etcd().member_promote(&endpoint, mine.id).await {
            Ok(()) => {
                tracing::info!(id = %format!("{:x}", mine.id), "promoted this learner to a voting member");
                Step::Done(format!("promoted {} to a voting member", me.name))
            }
            Err(CallError::Etcd { message, .. }) if message.contains("in sync") => {
                Step::Retry("this learner is not in sync with the leader yet".into())
            }
            Err(e) => Step::Retry(e.to_string()),
        };
    }
    Step::Retry(last)
}
