//! `etcd-bootstrap status`: the cluster as this member sees it, for people (aligned text) and
//! for scripts (JSON, docs/status.md), with an exit code for monitoring: 0 healthy, 1 degraded,
//! 2 no quorum. It works from the env file the run wrote and the `etcd_client` settings, like
//! `promote`: no discovery, no cloud token.
//!
//! `gather` asks (the I/O); `judge` turns what was asked into the verdict (pure, tested here).

mod learners;
mod peer_port;
mod text;

pub use peer_port::PeerPort;
pub use text::text;

use std::time::Duration;

use serde::Serialize;

use crate::config::Settings;
use crate::envfile::read_written;
use crate::error::Failure;
use crate::etcd::EtcdClient;

/// What `status` reports.
#[derive(Debug, Serialize)]
pub struct Status {
    /// `healthy`, `degraded` or `no_quorum`.
    pub verdict: Verdict,
    /// Why not healthy, one line each.
    pub problems: Vec<String>,
    /// The cluster's id (hex), when a member answered for it.
    pub cluster_id: Option<String>,
    /// The cluster version (`etcdcluster`), when a member answered.
    pub cluster_version: Option<String>,
    pub members: Vec<Member>,
    /// Raised alarms: `NOSPACE` or `CORRUPT`, with the member (hex id).
    pub alarms: Vec<Alarm>,
    /// When no member list could be had: each endpoint this node knows, and what it said.
    pub unreachable: Vec<Endpoint>,
    /// What the peer port says of each member that gave no status (of every member this node's
    /// env file names, when no member list could be had): etcd, a waiting agent, or nothing.
    pub peer_ports: Vec<PeerPort>,
    /// This machine's agent's last run (`outcome.json`), as written.
    pub last_run: Option<serde_json::Value>,
    /// With `[backup]`: the newest snapshot in the store (shown, not judged: alert on the
    /// snapshot metrics, docs/backup.md).
    pub backup: Option<Backup>,
}

#[derive(Debug, Serialize)]
pub struct Backup {
    /// `backup.url`.
    pub store: String,
    /// The newest complete snapshot's key, and its age in seconds.
    pub newest: Option<String>,
    pub age_seconds: Option<u64>,
    /// Why the store could not be read.
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Healthy,
    Degraded,
    NoQuorum,
}

impl Verdict {
    /// The exit code, for monitoring (docs/status.md).
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Healthy => 0,
            Verdict::Degraded => 1,
            Verdict::NoQuorum => 2,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Member {
    pub name: String,
    /// Hex, as etcd logs it.
    pub id: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub learner: bool,
    /// It has run and published its client URLs.
    pub started: bool,
    /// It answered `/health` with `true` (it sees a leader).
    pub healthy: bool,
    pub leader: bool,
    pub raft_index: Option<u64>,
    /// How many raft entries it is behind the leader.
    pub behind_leader: Option<u64>,
    pub db_size: Option<u64>,
    pub db_size_in_use: Option<u64>,
    pub version: Option<String>,
    /// For a learner: how long it has been one, in seconds (docs/status.md says from when).
    pub learner_for_seconds: Option<u64>,
    /// Why it gave no status, when it did not.
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Alarm {
    pub member: String,
    pub alarm: String,
}

#[derive(Debug, Serialize)]
pub struct Endpoint {
    pub url: String,
    pub answer: String,
}

/// Asks the cluster, through this node's etcd first and then its peers'. `now` is Unix seconds;
/// a learner for `learner_grace` or longer makes the cluster degraded.
pub async fn gather(
    settings: &Settings,
    etcd: &EtcdClient,
    now: u64,
    learner_grace: Duration,
) -> Result<Status, Failure> {
    // The store is listed while the cluster is asked: a slow store costs no extra wait.
    let (status, backup) = tokio::join!(
        gather_cluster(settings, etcd, now, learner_grace),
        newest_backup(settings, now)
    );
    let mut status = status?;
    status.backup = backup;
    Ok(status)
}

async fn newest_backup(settings: &Settings, now: u64) -> Option<Backup> {
    let backup = settings.backup.as_ref()?;
    let mut out = Backup {
        store: backup.store.to_string(),
        newest: None,
        age_seconds: None,
        error: None,
    };
    let found = async {
        let store = crate::backup::store::Store::open(backup).await?;
        crate::backup::snapshot::Found::list(&store, &settings.cluster.token).await
    };
    match found.await {
        Ok(found) => {
            if let Some(newest) = found.complete.iter().max() {
                out.newest = Some(newest.database());
                out.age_seconds = Some(now.saturating_sub(newest.taken_at.max(0) as u64));
            }
        }
        Err(e) => out.error = Some(e.message),
    }
    Some(out)
}

async fn gather_cluster(
    settings: &Settings,
    etcd: &EtcdClient,
    now: u64,
    learner_grace: Duration,
) -> Result<Status, Failure> {
    let written = read_written(&settings.env_file, &settings.cluster)?;
    let last_run = crate::outcome::read_last(&settings.outcome_file);
    let mut unreachable = Vec::new();
    let mut answered = None;
    for endpoint in &written.endpoints {
        match etcd.member_list(endpoint).await {
            Ok(view) => {
                answered = Some((endpoint.clone(), view));
                break;
            }
            Err(e) => unreachable.push(Endpoint {
                url: endpoint.clone(),
                answer: e.to_string(),
            }),
        }
    }
    // The verdict and the problems are `judge`'s, from what is gathered here.
    let mut status = Status {
        verdict: Verdict::NoQuorum,
        problems: Vec::new(),
        cluster_id: None,
        cluster_version: None,
        members: Vec::new(),
        alarms: Vec::new(),
        unreachable: Vec::new(),
        peer_ports: Vec::new(),
        last_run,
        backup: None,
    };
    let Some((endpoint, view)) = answered else {
        status.unreachable = unreachable;
        // Without a member list, the env file's members are all there is to ask.
        let mut looks = tokio::task::JoinSet::new();
        for (i, (name, url)) in written.peers.into_iter().enumerate() {
            let etcd = etcd.clone();
            looks.spawn(async move { (i, peer_port::look(&etcd, &name, &url).await) });
        }
        status.peer_ports = in_order(looks.join_all().await);
        return Ok(judge(status, learner_grace));
    };
    status.alarms = etcd
        .alarms(&endpoint)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(id, alarm)| Alarm {
            member: format!("{id:x}"),
            alarm,
        })
        .collect();
    // etcd's `/health` says false while any alarm is raised, whatever the member's state: then
    // a member that reports a leader is healthy, and the alarm is named on its own.
    let alarmed = !status.alarms.is_empty();
    // Every member is asked at once: a member that does not answer costs one timeout, not one
    // a member.
    let mut looks = tokio::task::JoinSet::new();
    for (i, m) in view.members.iter().cloned().enumerate() {
        let etcd = etcd.clone();
        looks.spawn(async move { (i, look(&etcd, m, alarmed).await) });
    }
    let mut memory = learners::Memory::load(&settings.outcome_file);
    // This machine's own join, when the last run here made it a learner.
    let joined = status
        .last_run
        .as_ref()
        .filter(|r| r["learner"] == true)
        .and_then(|r| r["finished_at"].as_u64());
    for (member, peer_port) in in_order(looks.join_all().await) {
        let mut member = member;
        if member.learner {
            let mine = member.peer_urls.contains(&written.my_peer);
            let since = memory.since(&member.id, now, joined.filter(|_| mine));
            member.learner_for_seconds = Some(now.saturating_sub(since));
        }
        status.members.push(member);
        status.peer_ports.extend(peer_port);
    }
    let learner_ids: Vec<&str> = status
        .members
        .iter()
        .filter(|m| m.learner)
        .map(|m| m.id.as_str())
        .collect();
    memory.keep_only(&learner_ids);
    status.cluster_id = Some(format!("{:x}", view.cluster_id));
    status.cluster_version = etcd.cluster_version(&endpoint).await.ok();
    Ok(judge(status, learner_grace))
}

/// One member: its status and health from its client URLs, and, when it gives none, what its
/// peer port says.
async fn look(
    etcd: &EtcdClient,
    m: crate::decide::EtcdMember,
    alarmed: bool,
) -> (Member, Option<PeerPort>) {
    let mut member = Member {
        name: m.name.clone(),
        id: format!("{:x}", m.id),
        peer_urls: m.peer_urls.clone(),
        client_urls: m.client_urls.clone(),
        learner: m.is_learner,
        started: m.has_started(),
        healthy: false,
        leader: false,
        raft_index: None,
        behind_leader: None,
        db_size: None,
        db_size_in_use: None,
        version: None,
        learner_for_seconds: None,
        error: None,
    };
    for url in &m.client_urls {
        match etcd.status(url).await {
            Ok(s) => {
                member.healthy = if alarmed {
                    s.leader != 0
                } else {
                    etcd.healthy(url).await.unwrap_or(false)
                };
                member.leader = s.leader == m.id;
                member.raft_index = Some(s.raft_index);
                member.db_size = Some(s.db_size);
                member.db_size_in_use = Some(s.db_size_in_use);
                member.version = Some(s.version);
                member.error = None;
                break;
            }
            Err(e) => member.error = Some(e.to_string()),
        }
    }
    if !member.started {
        member.error = Some("not started yet (added, never ran)".into());
    }
    let peer_port = match m.peer_urls.first() {
        Some(url) if member.raft_index.is_none() => {
            let name = if m.name.is_empty() {
                &member.id
            } else {
                &m.name
            };
            Some(peer_port::look(etcd, name, url).await)
        }
        _ => None,
    };
    (member, peer_port)
}

/// An age in the largest units that say it: `45s`, `12m`, `2h05m`.
pub fn age_words(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Results of tasks that carry their index, back in that order.
fn in_order<T>(mut done: Vec<(usize, T)>) -> Vec<T> {
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, t)| t).collect()
}

/// The verdict and the problems, from what was gathered: no member list, or fewer healthy
/// voters than a quorum, is `no_quorum`; any member not healthy, a learner for `learner_grace`
/// or longer, or an alarm is `degraded`. A learner younger than that is catching up, as every
/// joining machine does (it is promoted once in sync): shown, not a problem.
pub fn judge(mut s: Status, learner_grace: Duration) -> Status {
    s.problems.clear();
    if s.cluster_id.is_none() {
        s.verdict = Verdict::NoQuorum;
        s.problems.push(format!(
            "no member answered with the member list (asked {}): the cluster has no quorum here, or etcd is down",
            s.unreachable.len()
        ));
        return s;
    }
    let voters = s.members.iter().filter(|m| !m.learner).count();
    let healthy_voters = s.members.iter().filter(|m| !m.learner && m.healthy).count();
    let leader_index = s
        .members
        .iter()
        .find(|m| m.leader)
        .and_then(|m| m.raft_index);
    for m in &mut s.members {
        m.behind_leader = leader_index
            .zip(m.raft_index)
            .map(|(l, i)| l.saturating_sub(i));
    }
    for m in &s.members {
        let who = if m.name.is_empty() { &m.id } else { &m.name };
        if !m.healthy {
            s.problems.push(format!(
                "member {who} ({}) is not healthy: {}",
                m.id,
                m.error.as_deref().unwrap_or("it does not see a leader")
            ));
        } else if let Some(age) = m
            .learner_for_seconds
            .filter(|&a| a >= learner_grace.as_secs())
        {
            s.problems.push(format!(
                "member {who} ({}) is still a learner after {}: see etcd-bootstrap-promote.service on its machine (it promotes the learner once it has caught up)",
                m.id,
                age_words(age)
            ));
        }
    }
    for a in &s.alarms {
        s.problems
            .push(format!("alarm {} raised by member {}", a.alarm, a.member));
    }
    s.verdict = if healthy_voters < crate::decide::quorum(voters) {
        s.problems.insert(
            0,
            format!(
                "only {healthy_voters} of {voters} voting members are healthy, fewer than the quorum of {}",
                crate::decide::quorum(voters)
            ),
        );
        Verdict::NoQuorum
    } else if s.problems.is_empty() {
        Verdict::Healthy
    } else {
        Verdict::Degraded
    };
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, healthy: bool, learner: bool, leader: bool, index: u64) -> Member {
        Member {
            name: name.into(),
            id: format!("{:x}", name.len()),
            peer_urls: Vec::new(),
            client_urls: Vec::new(),
            learner,
            started: true,
            healthy,
            leader,
            raft_index: healthy.then_some(index),
            behind_leader: None,
            db_size: None,
            db_size_in_use: None,
            version: None,
            learner_for_seconds: learner.then_some(600),
            error: (!healthy).then(|| "connection refused".into()),
        }
    }

    const GRACE: Duration = Duration::from_secs(600);

    fn cluster(members: Vec<Member>, alarms: Vec<Alarm>) -> Status {
        judge(
            Status {
                verdict: Verdict::Healthy,
                problems: Vec::new(),
                cluster_id: Some("c1".into()),
                cluster_version: Some("3.5.0".into()),
                members,
                alarms,
                unreachable: Vec::new(),
                peer_ports: Vec::new(),
                last_run: None,
                backup: None,
            },
            GRACE,
        )
    }

    #[test]
    fn ages_in_words() {
        assert_eq!(
            [0, 59, 60, 3599, 3600, 7500].map(age_words),
            ["0s", "59s", "1m", "59m", "1h00m", "2h05m"]
        );
    }

    #[test]
    fn verdicts_healthy_degraded_and_no_quorum() {
        let s = cluster(
            vec![
                member("a", true, false, true, 10),
                member("bb", true, false, false, 7),
                member("ccc", true, false, false, 10),
            ],
            Vec::new(),
        );
        assert_eq!((s.verdict, s.verdict.exit_code()), (Verdict::Healthy, 0));
        assert_eq!(s.members[1].behind_leader, Some(3));

        let s = cluster(
            vec![
                member("a", true, false, true, 10),
                member("bb", false, false, false, 0),
                member("ccc", true, false, false, 10),
            ],
            Vec::new(),
        );
        assert_eq!(s.verdict, Verdict::Degraded);
        assert_eq!(
            s.problems,
            ["member bb (2) is not healthy: connection refused"]
        );

        let s = cluster(
            vec![
                member("a", true, false, true, 10),
                member("dddd", true, true, false, 10),
            ],
            vec![Alarm {
                member: "1".into(),
                alarm: "NOSPACE".into(),
            }],
        );
        assert_eq!(s.verdict, Verdict::Degraded);
        assert_eq!(
            s.problems[0],
            "member dddd (4) is still a learner after 10m: see etcd-bootstrap-promote.service on its machine (it promotes the learner once it has caught up)"
        );
        assert_eq!(s.problems[1], "alarm NOSPACE raised by member 1");

        // A learner younger than the grace is catching up, as every joining machine does.
        let mut young = member("dddd", true, true, false, 3);
        young.learner_for_seconds = Some(599);
        let s = cluster(vec![member("a", true, false, true, 10), young], Vec::new());
        assert_eq!(s.verdict, Verdict::Healthy, "{:?}", s.problems);
        assert_eq!(s.members[1].behind_leader, Some(7));

        let s = cluster(
            vec![
                member("a", true, false, true, 10),
                member("bb", false, false, false, 0),
                member("ccc", false, false, false, 0),
            ],
            Vec::new(),
        );
        assert_eq!((s.verdict, s.verdict.exit_code()), (Verdict::NoQuorum, 2));
        assert_eq!(
            s.problems[0],
            "only 1 of 3 voting members are healthy, fewer than the quorum of 2"
        );
    }
}
