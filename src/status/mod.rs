//! `etcd-bootstrap status`: the cluster as this member sees it, for people (aligned text) and
//! for scripts (JSON, docs/status.md), with an exit code for monitoring: 0 healthy, 1 degraded,
//! 2 no quorum. It works from the env file the run wrote and the `etcd_client` settings, like
//! `promote`: no discovery, no cloud token.
//!
//! `gather` asks (the I/O); `judge` turns what was asked into the verdict (pure, tested here).

mod text;

pub use text::text;

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
    /// This machine's agent's last run (`outcome.json`), as written.
    pub last_run: Option<serde_json::Value>,
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

/// Asks the cluster, through this node's etcd first and then its peers'.
pub async fn gather(settings: &Settings, etcd: &EtcdClient) -> Result<Status, Failure> {
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
        last_run,
    };
    let Some((endpoint, view)) = answered else {
        status.unreachable = unreachable;
        return Ok(judge(status));
    };
    for m in &view.members {
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
            error: None,
        };
        for url in &m.client_urls {
            match etcd.status(url).await {
                Ok(s) => {
                    member.healthy = etcd.healthy(url).await.unwrap_or(false);
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
        status.members.push(member);
    }
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
    status.cluster_id = Some(format!("{:x}", view.cluster_id));
    status.cluster_version = etcd.cluster_version(&endpoint).await.ok();
    Ok(judge(status))
}

/// The verdict and the problems, from what was gathered: no member list, or fewer healthy
/// voters than a quorum, is `no_quorum`; any member not healthy, a learner, or an alarm is
/// `degraded`.
pub fn judge(mut s: Status) -> Status {
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
        } else if m.learner {
            s.problems.push(format!(
                "member {who} ({}) is a learner, not promoted yet (etcd-bootstrap-promote.service on its machine promotes it once it has caught up)",
                m.id
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
            error: (!healthy).then(|| "connection refused".into()),
        }
    }

    fn cluster(members: Vec<Member>, alarms: Vec<Alarm>) -> Status {
        judge(Status {
            verdict: Verdict::Healthy,
            problems: Vec::new(),
            cluster_id: Some("c1".into()),
            cluster_version: Some("3.5.0".into()),
            members,
            alarms,
            unreachable: Vec::new(),
            last_run: None,
        })
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
        assert!(s.problems[0].contains("is a learner, not promoted yet"));
        assert_eq!(s.problems[1], "alarm NOSPACE raised by member 1");

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
