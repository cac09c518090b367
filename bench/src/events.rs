//! 8. Lifecycle events (issue 23), each against an operator who already knows the answer, on
//!    real etcd on loopback:
//!    - a whole-cluster power loss: a 3-member cluster formed by the agents loses power (every
//!      etcd killed at once, data kept); then either the agents start together again and each
//!      etcd starts when its agent exits (*agent*), or the same etcds start at once from the env
//!      files they had (*by hand*: `systemctl start etcd` everywhere). Both restart the same
//!      cluster, in alternating order, killed again between the two; until every member
//!      answers `/health`.
//!    - one member replaced: a 3-member cluster loses a machine with its disk, and a new
//!      machine at a new address takes its place. *Agent*: its agent runs (removes the dead
//!      member, adds itself as a learner), its etcd starts when the agent exits, and
//!      `etcd-bootstrap promote` starts with it. *By hand*: the same calls with the answer known
//!      (remove the dead member, add the new one as a learner, start its etcd, promote it as
//!      soon as etcd accepts). Until three voting members answer `/health`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::fleet::{self, Machine};
use crate::formation::{
    Etcds, agent_cmds, healthy, initial_cluster, requests_of, start_by_hand, start_then_healthy,
    start_when_done,
};
use crate::grow::{Children, all_vote, post};
use crate::lab::{AgentSetup, Api, Lab, env_map};
use crate::measure::stats;
use crate::report::{Report, dur, spread};

const NET: u8 = 98;
const DEADLINE: Duration = Duration::from_secs(90);

pub fn run(lab: &Lab, report: &mut Report) -> Result<(), String> {
    let rounds = if lab.smoke { 1 } else { 5 };
    let n = 3;
    let tag = "bench-events-3";
    let machines = fleet::machines("event", 700_000, NET, n);
    lab.mock.add_droplets(tag, &machines);
    let (mut agent, mut own, mut hand) = (Vec::new(), Vec::new(), Vec::new());
    let mut requests = String::new();
    for round in 0..rounds {
        let dir = lab.scratch(&format!("events-power-{round}"));
        let cmds = agent_cmds(lab, &machines, tag, &dir);
        // Formed by the agents, then the power goes.
        drop(start_then_healthy(&cmds, &machines, &dir)?.2);
        lab.mock.take();
        let order = crate::measure::alternating(round);
        for with_agent in order {
            if with_agent {
                let (up, done, etcds) = start_then_healthy(&cmds, &machines, &dir)?;
                drop(etcds);
                agent.push(up);
                own.push(done);
                requests = requests_of(lab, n)?;
            } else {
                hand.push(restart_by_hand(&machines, &dir)?);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let power = Event {
        name: "power loss, 3 members",
        agent,
        hand,
        own,
        requests,
    };
    let replaced = replace_one(lab, rounds)?;
    let mut t = format!(
        "## 8. Lifecycle events (issue 23; so far: power loss, one member replaced)\n\n\
         Real etcd on loopback, shipped defaults, {rounds} rounds, alternating which column goes \
         first. *Power loss*: a 3-member cluster formed by the agents loses power (every etcd \
         killed at once, data kept); *agent*: the agents start together again and each etcd \
         starts when its agent exits; *by hand*: the same etcds start at once from the env files \
         they had; both restart the same cluster, killed again between; until every member \
         answers `/health`. *One member replaced*: a 3-member cluster loses a machine with its \
         disk and a new machine at a new address takes its place; *agent*: its agent runs, its \
         etcd starts when the agent exits, and `etcd-bootstrap promote` starts with it (as the \
         shipped units do); *by hand*: the same calls with the answer known (remove the dead \
         member, add the new one as a learner, start its etcd, promote it as soon as etcd \
         accepts); until three voting members answer `/health`.\n\n\
         | Event | Agent | By hand | Ratio of medians | Agents' own time | Agent requests (metadata + API) |\n\
         |---|---|---|---|---|---|\n"
    );
    for e in [&power, &replaced] {
        let (a, h, o) = (stats(&e.agent), stats(&e.hand), stats(&e.own));
        let ratio = a.median.as_secs_f64() / h.median.as_secs_f64().max(1e-9);
        t += &format!(
            "| {} | {} | {} | {ratio:.2}× | {} | {} (last round) |\n",
            e.name,
            spread(&a),
            spread(&h),
            spread(&o),
            e.requests
        );
        report.goal(
            &format!("Event: {}", e.name),
            "≤ 1.5× by hand (median)",
            format!("{ratio:.2}× ({} vs {})", dur(a.median), dur(h.median)),
            ratio <= 1.5,
        );
    }
    t += "\n*Agents' own time*: from the agents' start to the last agent's exit (etcd cannot start \
          before it); the rest of the agent column is etcd's, as in the by-hand column.\n";
    report.section(t);
    Ok(())
}

/// One event's figures, both columns.
struct Event {
    name: &'static str,
    agent: Vec<Duration>,
    hand: Vec<Duration>,
    own: Vec<Duration>,
    requests: String,
}

/// Machine 2 of a 3-member cluster is lost with its disk; machine 3 takes its place.
fn replace_one(lab: &Lab, rounds: usize) -> Result<Event, String> {
    let machines = fleet::machines("swap", 710_000, NET + 1, 4);
    let (before, after) = (&machines[..3], [&machines[0], &machines[1], &machines[3]]);
    let after: Vec<Machine> = after.into_iter().cloned().collect();
    let tag = "bench-events-replaced";
    lab.mock.add_droplets(tag, &after);
    let mut e = Event {
        name: "one member replaced, 3 members",
        agent: Vec::new(),
        hand: Vec::new(),
        own: Vec::new(),
        requests: String::new(),
    };
    for round in 0..rounds {
        let order = crate::measure::alternating(round);
        for with_agent in order {
            let dir = lab.scratch(&format!("events-replace-{round}-{with_agent}"));
            let mut etcds = start_by_hand(before, &dir)?;
            wait_until(|| healthy(before), "the 3-member cluster did not form")?;
            // Machine 2 goes with its disk.
            etcds.kill(2);
            let new = &machines[3];
            let scratch = dir.join("m3");
            lab.mock.take();
            let start = Instant::now();
            let mut promotes = Children::default();
            if with_agent {
                let setup = AgentSetup {
                    api: Api::DigitalOcean { tag },
                    me: new,
                    size: 3,
                    settle: None,
                    dir: &scratch,
                };
                let mut slot = Some(
                    lab.agent_cmd("agent", &setup, &["run"])
                        .command(&scratch)
                        .and_then(|mut c| c.spawn())
                        .map_err(|e| format!("agent: {e}"))?,
                );
                while !start_when_done(&mut slot, "agent", &scratch, &mut etcds)? {
                    if start.elapsed() > DEADLINE {
                        return Err(format!("the agent did not finish ({})", dir.display()));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                e.own.push(start.elapsed());
                let promote_dir = scratch.join("promote");
                std::fs::create_dir_all(&promote_dir).map_err(|e| e.to_string())?;
                promotes.0.push(
                    lab.agent_cmd("promote", &setup, &["promote", "--timeout", "2m"])
                        .command(&promote_dir)
                        .and_then(|mut c| c.spawn())
                        .map_err(|e| format!("promote: {e}"))?,
                );
                wait_until(
                    || all_vote(after[0].ip, 3) && healthy(&after),
                    "the replacement never became a healthy voting member",
                )?;
                e.agent.push(start.elapsed());
                let c = lab.mock.take();
                e.requests = format!("{} + {}", c.metadata, c.pages);
            } else {
                replace_by_hand(&before[2], new, &after, &scratch, &mut etcds)?;
                e.hand.push(start.elapsed());
            }
            drop(promotes);
            drop(etcds);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(e)
}

/// What an operator who knows the answer does: remove the lost member, add the new one as a
/// learner, start its etcd, and promote it as soon as etcd accepts. Returns once three voting
/// members answer `/health`.
fn replace_by_hand(
    lost: &Machine,
    new: &Machine,
    after: &[Machine],
    scratch: &Path,
    etcds: &mut Etcds,
) -> Result<(), String> {
    let via = after[0].ip;
    // Each call retried as an operator would: the lost machine may have been the leader, and
    // the others elect a new one first.
    let call = |path: &str, body: &str| -> Result<String, String> {
        let mut last = String::new();
        let mut answer = None;
        wait_until(
            || match post(via, path, body) {
                Ok(a) => {
                    answer = Some(a);
                    true
                }
                Err(e) => {
                    last = e;
                    false
                }
            },
            path,
        )
        .map_err(|e| format!("{e}: {last}"))?;
        Ok(answer.unwrap_or_default())
    };
    let list = call("/v3/cluster/member/list", "{}")?;
    let body = list.split("\r\n\r\n").nth(1).unwrap_or_default();
    let members: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let id = members["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == lost.name.as_str()))
        .and_then(|m| m["ID"].as_str())
        .ok_or("the lost member is not listed")?
        .to_owned();
    call("/v3/cluster/member/remove", &format!(r#"{{"ID":"{id}"}}"#))?;
    let added = call(
        "/v3/cluster/member/add",
        &format!(
            r#"{{"peerURLs":["http://{}:2380"],"isLearner":true}}"#,
            new.ip
        ),
    )?;
    let body = added.split("\r\n\r\n").nth(1).unwrap_or_default();
    let added: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let new_id = added["member"]["ID"]
        .as_str()
        .ok_or("member add named no ID")?
        .to_owned();
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let env = format!(
        "ETCD_NAME={name}\nETCD_DATA_DIR={dir}/data\nETCD_INITIAL_CLUSTER={cluster}\n\
         ETCD_INITIAL_CLUSTER_STATE=existing\nETCD_INITIAL_CLUSTER_TOKEN=bench\n\
         ETCD_INITIAL_ADVERTISE_PEER_URLS=http://{ip}:2380\nETCD_LISTEN_PEER_URLS=http://{ip}:2380\n\
         ETCD_ADVERTISE_CLIENT_URLS=http://{ip}:2379\nETCD_LISTEN_CLIENT_URLS=http://{ip}:2379\n",
        name = new.name,
        dir = scratch.display(),
        cluster = initial_cluster(after),
        ip = new.ip,
    );
    etcds.start(&env_map(&env), scratch)?;
    wait_until(
        || {
            post(
                via,
                "/v3/cluster/member/promote",
                &format!(r#"{{"ID":"{new_id}"}}"#),
            )
            .is_ok()
        },
        "etcd never accepted the promotion",
    )?;
    wait_until(
        || all_vote(via, 3) && healthy(after),
        "the hand-replaced member never became a healthy voting member",
    )
}

/// Polls `done` every 2 ms until it holds, or fails with `what` after DEADLINE.
fn wait_until(mut done: impl FnMut() -> bool, what: &str) -> Result<(), String> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > DEADLINE {
            return Err(format!("{what} within {DEADLINE:?}"));
        }
        // Often enough to see etcd's answer within milliseconds, as an operator's loop would.
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Every machine's etcd started at once from the env file it had; the time to a healthy
/// cluster. The etcds are killed again on return.
fn restart_by_hand(machines: &[Machine], dir: &Path) -> Result<Duration, String> {
    let start = Instant::now();
    let mut etcds = Etcds::default();
    for i in 0..machines.len() {
        let scratch = dir.join(format!("m{i}"));
        let env = std::fs::read_to_string(scratch.join("etcd.env"))
            .map_err(|e| format!("machine {i}'s env file: {e}"))?;
        etcds.start(&env_map(&env), &scratch)?;
    }
    wait_until(
        || healthy(machines),
        "etcds restarted by hand formed no healthy cluster",
    )?;
    Ok(start.elapsed())
}
