//! `etcd-bootstrap promote`: run by `etcd-bootstrap-promote.service`, which the shipped etcd
//! drop-in starts with etcd, for nodes that join as learners (the default). Waits until this
//! node's learner has caught up and promotes it to a voting member.
//! etcd refuses a promotion until the learner is in sync ("can only promote a learner member
//! which is in sync with leader"); that answer is retried until the deadline.
//!
//! It works from the env file the run wrote (this node's URLs and the cluster's peers) and the
//! `etcd_client` settings, never from discovery: etcd.service runs it as etcd's user, without
//! the agent's credentials, so it must never need a cloud API token.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::config::Settings;
use crate::envfile::read_written;
use crate::error::{Failure, Kind};
use crate::etcd::{CallError, EtcdClient};
use crate::retry::{Try, until_done};

pub async fn promote(
    settings: &Settings,
    etcd: &EtcdClient,
    timeout: Duration,
) -> Result<String, Failure> {
    // The run that wrote the env file said whether etcd starts as a learner: a voter (every
    // bootstrap, every voter's restart) has nothing to promote, whether or not its cluster
    // answers right now. A record that does not say (none yet, a failed run) means asking.
    if started_as_learner(&settings.outcome_file) == Some(false) {
        return Ok(format!(
            "this node started as a voting member ({}): nothing to promote",
            settings.outcome_file.display()
        ));
    }
    let backoff = Backoff::from_entropy(Duration::from_millis(500), Duration::from_secs(5));
    until_done(
        timeout,
        backoff,
        "waiting to promote",
        "this learner was not promoted (it stays a learner, which the quorum does not count)",
        async || attempt(settings, etcd).await,
    )
    .await
}

/// What the last run's outcome record says: `Some(learner)` when that run wrote the env file.
fn started_as_learner(outcome_file: &std::path::Path) -> Option<bool> {
    let record = crate::outcome::read_last(outcome_file)?;
    if record.get("result")?.as_str()? != "ok" {
        return None;
    }
    record.get("learner")?.as_bool()
}

async fn attempt(settings: &Settings, etcd: &EtcdClient) -> Result<Try<String>, Failure> {
    let written = read_written(&settings.env_file, &settings.cluster)?;
    let mut last = String::from("no etcd answered");
    for endpoint in &written.endpoints {
        let view = match etcd.member_list(endpoint).await {
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
        return Ok(match etcd.member_promote(endpoint, mine.id).await {
            Ok(()) => {
                tracing::info!(id = %format!("{:x}", mine.id), "promoted this learner to a voting member");
                Try::Done(format!("promoted this node ({my_peer}) to a voting member"))
            }
            Err(CallError::Etcd { message, .. }) if message.contains("in sync") => {
                Try::again("this learner has not caught up with the leader yet")
            }
            Err(e) => Try::again(e.to_string()),
        });
    }
    Ok(Try::again(last))
}
