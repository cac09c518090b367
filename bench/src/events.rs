//! 8. Lifecycle events (issue 23), each against an operator who already knows the answer, on
//!    real etcd on loopback, alternating which column goes first:
//!    - a whole-cluster power loss: a 3-member cluster formed by the agents loses power (every
//!      etcd killed at once, data kept); then either the agents start together again and each
//!      etcd starts when its agent exits (*agent*), or the same etcds start at once from the env
//!      files they had (*by hand*: `systemctl start etcd` everywhere). Both restart the same
//!      cluster, killed again between the two; until every member answers `/health`.
//!    - one member replaced: a 3-member cluster loses a machine with its disk, and a new machine
//!      at a new address takes its place.
//!    - grow 3 → 5: two new machines at once, `cluster.size` raised to 5.
//!    - shrink 5 → 3: `cluster.size` lowered, two machines terminated with their disks;
//!      `etcd-bootstrap prune` (its timer) removes their members.
//!    - a lost quorum of 3 and of 5: all but one (two) machines lost with their disks, the
//!      survivors power-cycled, as many new machines; `cluster.recover_lost_quorum = true`.
//!
//!    Where machines join, *agent* runs their agents together, starts each etcd when its agent
//!    exits and `etcd-bootstrap promote` with it (as the shipped units do); *by hand* makes the
//!    same etcd starts and member calls with the answer known (remove the lost members, add each
//!    new one as a learner, start its etcd, promote it as soon as etcd accepts, then the next).
//!    First boot and restore are measured in sections 3 and 7 and shown here with the rest.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fleet::{self, Machine};
use crate::formation::{
    Etcds, agent_cmds, healthy, initial_cluster, requests_of, start_by_hand, start_then_healthy,
    start_when_done,
};
use crate::grow::{Children, all_vote, post};
use crate::lab::{AgentSetup, Api, Lab, env_map};
use crate::measure::stats;
use crate::report::{Event, Report, dur, spread};

const DEADLINE: Duration = Duration::from_secs(90);

pub fn run(lab: &Lab, report: &mut Report) -> Result<(), String> {
    let rounds = if lab.smoke { 1 } else { 3 };
    // The power loss is cheap and its etcd election alone spreads 160 to 860 ms in either column:
    // three rounds made its ratio a coin (1.46x to 2.25x across runs, 0.97x over eight).
    let power_rounds = if lab.smoke { 1 } else { 9 };
    let measured = [
        power_loss(lab, power_rounds)?,
        replace_one(lab, rounds)?,
        grow_two(lab, rounds)?,
        shrink_two(lab, rounds)?,
        lost_quorum(lab, rounds, 3)?,
        lost_quorum(lab, rounds, 5)?,
    ];
    report.events.extend(measured);
    let mut t = format!(
        "## 8. Lifecycle events (issue 23)\n\n\
         Real etcd on loopback, shipped defaults, {rounds} rounds here ({power_rounds} for the \
         power loss, whose election alone varies by hundreds of milliseconds; sections 3 and 7 \
         for theirs), alternating which column goes first; until the cluster the event asks for \
         answers `/health` on every member, every member a voter. *Agent*: the agents of the \
         machines concerned start together, each etcd starts when its agent exits, and \
         `etcd-bootstrap promote` starts with it (as the shipped units do). *By hand*: the same \
         etcd starts and member calls, the answer known in advance: remove the lost members, \
         add each new machine as a learner, start its etcd, promote it as soon as etcd accepts, \
         then the next (etcd allows one learner at a time).\n\n\
         - *power loss*: a 3-member cluster formed by the agents loses power (every etcd killed, \
         data kept); by hand the etcds restart from the env files they had.\n\
         - *one member replaced*: a machine of 3 is lost with its disk; a new machine at a new \
         address takes its place.\n\
         - *grow 3 → 5*: two new machines at once, `cluster.size = 5`.\n\
         - *shrink 5 → 3*: `cluster.size = 3`, two machines terminated with their disks; \
         `etcd-bootstrap prune` on a survivor (what its timer runs) removes their members, by \
         hand two `member remove`.\n\
         - *lost quorum of 3, of 5*: two machines of 3 (three of 5) lost with their disks, the \
         survivors power-cycled, as many new machines, `cluster.recover_lost_quorum = true`; by \
         hand what docs/recovery.md says: the first survivor's etcd starts once with \
         `--force-new-cluster --snapshot-count=1` until it serves as a cluster of one with a \
         snapshot, stops, starts normally, then every other machine joins, one at a time (a \
         survivor's data dir moved aside first).\n\n\
         | Event | Agent | By hand | Ratio of medians | Agents' own time | Agent requests (metadata + API) |\n\
         |---|---|---|---|---|---|\n"
    );
    for e in &report.events {
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
    }
    let goals: Vec<_> = report
        .events
        .iter()
        .map(|e| {
            let (a, h) = (stats(&e.agent).median, stats(&e.hand).median);
            let ratio = a.as_secs_f64() / h.as_secs_f64().max(1e-9);
            (e.name.clone(), ratio, a, h)
        })
        .collect();
    for (name, ratio, a, h) in goals {
        report.goal(
            &format!("Event: {name}"),
            "≤ 1.5× by hand (median)",
            format!("{ratio:.2}× ({} vs {})", dur(a), dur(h)),
            ratio <= 1.5,
        );
    }
    t += "\n*Agents' own time*: from the agents' start to the last agent's exit (etcd cannot start \
          before it), or, for the shrink, `prune`'s run; the rest of the agent column is etcd's, \
          as in the by-hand column. *Requests*: what the agents asked the mock metadata service \
          and API in the last round.\n";
    report.section(t);
    Ok(())
}

fn power_loss(lab: &Lab, rounds: usize) -> Result<Event, String> {
    let n = 3;
    let tag = "bench-events-3";
    let machines = fleet::machines("event", 700_000, 98, n);
    lab.mock.add_droplets(tag, &machines);
    let mut e = Event::new("power loss, 3 members");
    for round in 0..rounds {
        let dir = lab.scratch(&format!("events-power-{round}"));
        let cmds = agent_cmds(lab, &machines, tag, &dir);
        // Formed by the agents, then the power goes.
        drop(start_then_healthy(&cmds, &machines, &dir)?.2);
        lab.mock.take();
        for with_agent in crate::measure::alternating(round) {
            if with_agent {
                let (up, done, etcds) = start_then_healthy(&cmds, &machines, &dir)?;
                drop(etcds);
                e.agent.push(up);
                e.own.push(done);
                e.requests = requests_of(lab, n)?;
            } else {
                e.hand.push(restart_by_hand(&machines, &dir)?);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(e)
}

/// Machine 2 of a 3-member cluster is lost with its disk; machine 3 takes its place.
fn replace_one(lab: &Lab, rounds: usize) -> Result<Event, String> {
    let machines = fleet::machines("swap", 710_000, 99, 4);
    let before = &machines[..3];
    let after = vec![
        machines[0].clone(),
        machines[1].clone(),
        machines[3].clone(),
    ];
    let tag = "bench-events-replaced";
    lab.mock.add_droplets(tag, &after);
    let mut e = Event::new("one member replaced, 3 members");
    for round in 0..rounds {
        for with_agent in crate::measure::alternating(round) {
            let dir = lab.scratch(&format!("events-replace-{round}-{with_agent}"));
            let mut etcds = start_by_hand(before, &dir)?;
            wait_until(|| healthy(before), "the 3-member cluster did not form")?;
            // Machine 2 goes with its disk.
            etcds.kill(2);
            let joining = [(&machines[3], dir.join("m3"))];
            lab.mock.take();
            let start = Instant::now();
            if with_agent {
                let own = with_agents(lab, tag, 3, "", &joining, &mut etcds, || {
                    all_vote(after[0].ip, 3) && healthy(&after)
                })?;
                e.agent.push(start.elapsed());
                e.own.push(own);
                e.requests = requests_of(lab, 1)?;
            } else {
                remove_by_hand(after[0].ip, &[&before[2]])?;
                join_by_hand(&machines[3], &after, &joining[0].1, &mut etcds)?;
                e.hand.push(start.elapsed());
            }
            drop(etcds);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(e)
}

/// Two machines join a 3-member cluster at once; `cluster.size` is 5.
fn grow_two(lab: &Lab, rounds: usize) -> Result<Event, String> {
    let machines = fleet::machines("grown", 720_000, 86, 5);
    let tag = "bench-events-grow";
    lab.mock.add_droplets(tag, &machines);
    let mut e = Event::new("grow 3 → 5, two machines at once");
    for round in 0..rounds {
        for with_agent in crate::measure::alternating(round) {
            let dir = lab.scratch(&format!("events-grow-{round}-{with_agent}"));
            let mut etcds = start_by_hand(&machines[..3], &dir)?;
            wait_until(
                || healthy(&machines[..3]),
                "the 3-member cluster did not form",
            )?;
            let joining = [
                (&machines[3], dir.join("m3")),
                (&machines[4], dir.join("m4")),
            ];
            lab.mock.take();
            let start = Instant::now();
            if with_agent {
                let own = with_agents(lab, tag, 5, "", &joining, &mut etcds, || {
                    all_vote(machines[0].ip, 5) && healthy(&machines)
                })?;
                e.agent.push(start.elapsed());
                e.own.push(own);
                e.requests = requests_of(lab, 2)?;
            } else {
                join_by_hand(&machines[3], &machines[..4], &joining[0].1, &mut etcds)?;
                join_by_hand(&machines[4], &machines, &joining[1].1, &mut etcds)?;
                e.hand.push(start.elapsed());
            }
            drop(etcds);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(e)
}

/// A 5-member cluster whose `cluster.size` is lowered to 3 and whose machines 3 and 4 are
/// terminated with their disks.
fn shrink_two(lab: &Lab, rounds: usize) -> Result<Event, String> {
    let machines = fleet::machines("shrunk", 730_000, 87, 5);
    let kept = &machines[..3];
    let tag = "bench-events-shrink";
    lab.mock.add_droplets(tag, kept);
    let mut e = Event::new("shrink 5 → 3 (prune)");
    for round in 0..rounds {
        for with_agent in crate::measure::alternating(round) {
            let dir = lab.scratch(&format!("events-shrink-{round}-{with_agent}"));
            let mut etcds = start_by_hand(&machines, &dir)?;
            wait_until(|| healthy(&machines), "the 5-member cluster did not form")?;
            etcds.kill(4);
            etcds.kill(3);
            lab.mock.take();
            let start = Instant::now();
            if with_agent {
                let scratch = dir.join("prune");
                let setup = AgentSetup {
                    api: Api::DigitalOcean { tag },
                    me: &kept[0],
                    size: 3,
                    cluster_extra: "",
                    dir: &scratch,
                };
                let out = lab
                    .agent_cmd("prune", &setup, &["prune", "--timeout", "2m"])
                    .command(&scratch)
                    .and_then(|mut c| c.status())
                    .map_err(|e| format!("prune: {e}"))?;
                if !out.success() {
                    let err = std::fs::read_to_string(scratch.join("stderr")).unwrap_or_default();
                    return Err(format!("prune failed ({out}): {}", err.trim_end()));
                }
                e.own.push(start.elapsed());
                wait_until(
                    || all_vote(kept[0].ip, 3) && healthy(kept),
                    "prune left more than 3 members",
                )?;
                e.agent.push(start.elapsed());
                let c = lab.mock.take();
                e.requests = format!("{} + {}", c.metadata, c.pages);
            } else {
                remove_by_hand(kept[0].ip, &[&machines[3], &machines[4]])?;
                wait_until(|| all_vote(kept[0].ip, 3) && healthy(kept), "3 members")?;
                e.hand.push(start.elapsed());
            }
            drop(etcds);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(e)
}

/// An `n`-member cluster (3 or 5) loses all but its first `n / 2` machines with their disks (a
/// quorum); the survivors lose power and come back, and as many new machines as were lost
/// boot. The agents recover from the freshest survivor; by hand, the first survivor's etcd is
/// forced (`force_new_by_hand`), then every other machine joins (a survivor's stale data dir
/// moved aside first).
fn lost_quorum(lab: &Lab, rounds: usize, n: usize) -> Result<Event, String> {
    let survivors = n / 2;
    let lost = n - survivors;
    let machines = fleet::machines(
        &format!("quorum{n}"),
        740_000 + 100 * n as u64,
        85 + n as u8,
        n + lost,
    );
    let after: Vec<Machine> = machines[..survivors]
        .iter()
        .chain(&machines[n..])
        .cloned()
        .collect();
    let index = |m: &Machine| {
        machines
            .iter()
            .position(|x| x.name == m.name)
            .expect("listed")
    };
    let tag = format!("bench-events-quorum-{n}");
    lab.mock.add_droplets(&tag, &after);
    let mut e = Event::new(format!("lost quorum of {n}, recovered"));
    for round in 0..rounds {
        for with_agent in crate::measure::alternating(round) {
            let dir = lab.scratch(&format!("events-quorum{n}-{round}-{with_agent}"));
            let etcds = start_by_hand(&machines[..n], &dir)?;
            wait_until(|| healthy(&machines[..n]), "the cluster did not form")?;
            drop(etcds);
            lab.mock.take();
            let start = Instant::now();
            let mut etcds = Etcds::default();
            let dir_of = |m: &Machine| dir.join(format!("m{}", index(m)));
            if with_agent {
                // The survivors' agents too: their data dirs are where their etcds had them.
                let joining: Vec<(&Machine, std::path::PathBuf)> =
                    after.iter().map(|m| (m, dir_of(m))).collect();
                let own = with_agents(
                    lab,
                    &tag,
                    n,
                    "recover_lost_quorum = true\n",
                    &joining,
                    &mut etcds,
                    || all_vote(after[0].ip, n) && healthy(&after),
                )?;
                e.agent.push(start.elapsed());
                e.own.push(own);
                e.requests = requests_of(lab, n)?;
            } else {
                force_new_by_hand(&after[0], &dir_of(&after[0]), &mut etcds)?;
                for k in 1..n {
                    let scratch = dir_of(&after[k]);
                    // A survivor's data is no member's any more.
                    let _ = std::fs::rename(scratch.join("data"), scratch.join("data.stale"));
                    join_by_hand(&after[k], &after[..=k], &scratch, &mut etcds)?;
                }
                e.hand.push(start.elapsed());
            }
            drop(etcds);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(e)
}

/// docs/recovery.md by hand, on the survivor `m`: etcd started once with `--force-new-cluster`
/// and `--snapshot-count=1` until it serves as a cluster of one and has written a snapshot
/// (a member that joins must receive the survivor's database whole, etcd-io/etcd#14009), stopped,
/// and started again as etcd.service would.
fn force_new_by_hand(m: &Machine, scratch: &Path, etcds: &mut Etcds) -> Result<(), String> {
    let env = std::fs::read_to_string(scratch.join("etcd.env"))
        .map_err(|e| format!("the survivor's env file: {e}"))?;
    let env = env_map(&env);
    let snaps = || {
        std::fs::read_dir(scratch.join("data/member/snap"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
                    .count()
            })
            .unwrap_or(0)
    };
    let before = snaps();
    let mut forced = env.clone();
    forced.push(("ETCD_FORCE_NEW_CLUSTER".into(), "true".into()));
    forced.push(("ETCD_SNAPSHOT_COUNT".into(), "1".into()));
    let mut once = Etcds::default();
    once.start(&forced, scratch)?;
    wait_until(
        || snaps() > before && all_vote(m.ip, 1),
        "the forced start never served a cluster of one with a snapshot",
    )?;
    once.stop();
    etcds.start(&env, scratch)
}

/// The agents of `joining` (machine, its dir) start together with `cluster.size = size` and
/// `extra` in `[cluster]`; each one's etcd starts when it exits, and `etcd-bootstrap promote`
/// with it. Returns the time until the last agent exited, once `done` holds.
fn with_agents(
    lab: &Lab,
    tag: &str,
    size: usize,
    extra: &str,
    joining: &[(&Machine, std::path::PathBuf)],
    etcds: &mut Etcds,
    done: impl Fn() -> bool,
) -> Result<Duration, String> {
    let start = Instant::now();
    let setup = |me, dir| AgentSetup {
        api: Api::DigitalOcean { tag },
        me,
        size,
        cluster_extra: extra,
        dir,
    };
    let mut agents = Vec::new();
    for (me, dir) in joining {
        let child = lab
            .agent_cmd("agent", &setup(me, dir), &["run"])
            .command(dir)
            .and_then(|mut c| c.spawn())
            .map_err(|e| format!("agent of {}: {e}", me.name))?;
        agents.push(Some(child));
    }
    let mut promotes = Children::default();
    let mut own = Duration::ZERO;
    loop {
        for ((me, dir), slot) in joining.iter().zip(&mut agents) {
            if !start_when_done(slot, &format!("the agent of {}", me.name), dir, etcds)? {
                continue;
            }
            own = start.elapsed();
            let promote_dir = dir.join("promote");
            std::fs::create_dir_all(&promote_dir).map_err(|e| e.to_string())?;
            promotes.0.push(
                lab.agent_cmd("promote", &setup(me, dir), &["promote", "--timeout", "2m"])
                    .command(&promote_dir)
                    .and_then(|mut c| c.spawn())
                    .map_err(|e| format!("promote: {e}"))?,
            );
        }
        if agents.iter().all(Option::is_none) && done() {
            return Ok(own);
        }
        if start.elapsed() > DEADLINE {
            return Err(format!(
                "the agents did not finish the event within {DEADLINE:?} ({})",
                joining[0].1.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A call on etcd's JSON gateway at `via`, retried as an operator would until etcd accepts it
/// (a lost member may have been the leader, and the others elect a new one first).
fn call(via: std::net::Ipv4Addr, path: &str, body: &str) -> Result<Value, String> {
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
    let answer = answer.unwrap_or_default();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).map_err(|e| format!("{path}: {e}"))
}

/// `member remove` of each lost machine's member, found by name in `member list`.
fn remove_by_hand(via: std::net::Ipv4Addr, lost: &[&Machine]) -> Result<(), String> {
    let members = call(via, "/v3/cluster/member/list", "{}")?;
    for m in lost {
        let id = members["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|x| x["name"] == m.name.as_str()))
            .and_then(|x| x["ID"].as_str())
            .ok_or_else(|| format!("{} is not listed", m.name))?;
        call(
            via,
            "/v3/cluster/member/remove",
            &format!(r#"{{"ID":"{id}"}}"#),
        )?;
    }
    Ok(())
}

/// What an operator who knows the answer does for one new machine: add it as a learner, start
/// its etcd (`cluster`: the members after it joined, itself included), promote it as soon as
/// etcd accepts. Returns once every member of `cluster` votes and answers `/health`.
fn join_by_hand(
    new: &Machine,
    cluster: &[Machine],
    scratch: &Path,
    etcds: &mut Etcds,
) -> Result<(), String> {
    let via = cluster[0].ip;
    let added = call(
        via,
        "/v3/cluster/member/add",
        &format!(
            r#"{{"peerURLs":["http://{}:2380"],"isLearner":true}}"#,
            new.ip
        ),
    )?;
    let new_id = added["member"]["ID"]
        .as_str()
        .ok_or("member add named no ID")?
        .to_owned();
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let env = format!(
        "ETCD_NAME={name}\nETCD_DATA_DIR={dir}/data\nETCD_INITIAL_CLUSTER={initial}\n\
         ETCD_INITIAL_CLUSTER_STATE=existing\nETCD_INITIAL_CLUSTER_TOKEN=bench\n\
         ETCD_INITIAL_ADVERTISE_PEER_URLS=http://{ip}:2380\nETCD_LISTEN_PEER_URLS=http://{ip}:2380\n\
         ETCD_ADVERTISE_CLIENT_URLS=http://{ip}:2379\nETCD_LISTEN_CLIENT_URLS=http://{ip}:2379\n",
        name = new.name,
        dir = scratch.display(),
        initial = initial_cluster(cluster),
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
        || all_vote(via, cluster.len()) && healthy(cluster),
        "the member joined by hand never became a healthy voting member",
    )
}

/// Polls `done` every 5 ms until it holds, or fails with `what` after DEADLINE.
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
