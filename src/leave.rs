//! `etcd-bootstrap leave`: decommissioning. If this member leads, leadership goes to the
//! healthiest other voter first (the most caught-up one, so the cluster does not wait an
//! election out); then this member is removed through another member. Never below quorum: a
//! removal that would leave fewer healthy voters than the smaller cluster's quorum is refused.
//! Idempotent: a node the cluster no longer lists has nothing left to do.
//!
//! Like `promote`, it works from the env file the run wrote (this node's URLs and its peers'),
//! not from discovery: a machine being torn down may already be gone from its cloud's listing,
//! and no cloud API token is needed.

use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::config::Settings;
use crate::datadir;
use crate::decide::EtcdMember;
use crate::envfile::read_written;
use crate::error::{Failure, Kind};
use crate::etcd::EtcdClient;
use crate::retry::{Try, until_done};

pub async fn leave(
    settings: &Settings,
    etcd: &EtcdClient,
    timeout: Duration,
    move_data_aside: bool,
) -> Result<String, Failure> {
    let deadline = Instant::now() + timeout;
    let backoff = Backoff::from_entropy(Duration::from_millis(200), Duration::from_secs(2));
    let left = until_done(
        timeout,
        backoff,
        "leaving",
        "did not leave the cluster",
        async || attempt(settings, etcd).await,
    )
    .await?;
    if !move_data_aside {
        return Ok(left);
    }
    let written = read_written(&settings.env_file, &settings.cluster)?;
    // A removed etcd stops itself; its data dir may be renamed only once it has.
    while etcd.cluster_version(&written.endpoints[0]).await.is_ok() {
        if Instant::now() >= deadline {
            return Err(Failure::new(
                Kind::Unavailable,
                format!(
                    "{left}, but etcd still answers at {} after {timeout:?}: stop it (systemctl stop etcd), then move {} aside",
                    written.endpoints[0],
                    settings.cluster.data_dir.display()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let to = datadir::move_aside(&settings.cluster.data_dir, "left")?;
    Ok(format!(
        "{left}; moved the data dir aside to {}",
        to.display()
    ))
}

async fn attempt(settings: &Settings, etcd: &EtcdClient) -> Result<Try<String>, Failure> {
    let written = read_written(&settings.env_file, &settings.cluster)?;
    let mut view = None;
    let mut last = String::from("no member answered");
    for endpoint in &written.endpoints {
        match etcd.member_list(endpoint).await {
            Ok(v) => {
                view = Some(v);
                break;
            }
            Err(e) => last = e.to_string(),
        }
    }
    let Some(view) = view else {
        return Ok(Try::again(last));
    };
    let my_peer = &written.my_peer;
    let Some(me) = view.members.iter().find(|m| m.peer_urls.contains(my_peer)) else {
        return Ok(Try::Done(format!(
            "this node ({my_peer}) is not a member of the cluster: nothing to leave"
        )));
    };
    let others: Vec<&EtcdMember> = view.members.iter().filter(|m| m.id != me.id).collect();
    if others.is_empty() {
        return Err(Failure::new(
            Kind::Unsafe,
            format!(
                "refusing to leave: this node ({my_peer}) is the cluster's only member; removing it would end the cluster (stop etcd instead)"
            ),
        ));
    }
    // Who of the others is healthy, and how far each got (for the leadership handoff).
    let mut healthy: Vec<(&EtcdMember, u64, String)> = Vec::new();
    let mut unhealthy = Vec::new();
    for m in others.iter().filter(|m| !m.is_learner) {
        let mut fine = None;
        for url in &m.client_urls {
            if let (Ok(true), Ok(status)) = (etcd.healthy(url).await, etcd.status(url).await) {
                fine = Some((status.raft_index, url.clone()));
                break;
            }
        }
        match fine {
            Some((index, url)) => healthy.push((m, index, url)),
            None => unhealthy.push(name_of(m)),
        }
    }
    let voters_after = others.iter().filter(|m| !m.is_learner).count();
    let quorum_after = crate::decide::quorum(voters_after);
    // Asked again until the deadline (a member may be electing a leader, or rebooting), then
    // refused.
    if healthy.len() < quorum_after {
        return Ok(Try::Again {
            kind: Kind::Unsafe,
            why: format!(
                "refusing to leave: without this member the cluster has {voters_after} voters and needs {quorum_after} healthy for a quorum, but only {} are ({} not: {}); bring them back first",
                healthy.len(),
                unhealthy.len(),
                unhealthy.join(", ")
            ),
        });
    }
    let mine = &written.endpoints[0];
    if let Ok(status) = etcd.status(mine).await
        && status.leader == me.id
    {
        let (target, index, _) = healthy
            .iter()
            .max_by_key(|(m, index, _)| (*index, std::cmp::Reverse(m.id)))
            .expect("a quorum of healthy voters is at least one");
        return match etcd.move_leader(mine, target.id).await {
            Ok(()) => {
                tracing::info!(
                    to = %name_of(target),
                    id = %format!("{:x}", target.id),
                    raft_index = index,
                    "handed leadership to the most caught-up healthy voter"
                );
                Ok(Try::again(format!(
                    "leadership handed to {}; removing this member next",
                    name_of(target)
                )))
            }
            Err(e) => Ok(Try::again(format!("cannot hand leadership over yet: {e}"))),
        };
    }
    // Removed through another member: this one may be asked to remove itself while it leads.
    let via = &healthy[0].2;
    match etcd.member_remove(via, me.id).await {
        Ok(()) => {
            tracing::warn!(id = %format!("{:x}", me.id), peer_url = %my_peer, "removed this member from the cluster");
            Ok(Try::Done(format!(
                "removed this member ({}, id {:x}) from the cluster; {} remain",
                name_of(me),
                me.id,
                others.len()
            )))
        }
        Err(e) => Ok(Try::again(format!("cannot remove this member yet: {e}"))),
    }
}

fn name_of(m: &EtcdMember) -> String {
    if m.name.is_empty() {
        format!("{:x}", m.id)
    } else {
        m.name.clone()
    }
}
