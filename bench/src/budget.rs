//! 5. API budget: 100 agents (20 five-member clusters, one tag each) boot at once with one shared
//!    token against a mock that enforces DigitalOcean's limits (250 requests in any minute, 429
//!    with `Retry-After`), with shipped defaults (the agents vouch for each other on their peer
//!    ports). All must succeed, with at most twice the minimum number of requests.

use std::time::{Duration, Instant};

use crate::fleet;
use crate::lab::{AgentSetup, Api, Lab, initial_cluster_len};
use crate::measure::{self, Cmd};
use crate::mock::DO_PER_MINUTE;
use crate::report::{Report, dur};

const CLUSTER: usize = 5;

pub fn run(lab: &Lab, report: &mut Report) -> Result<(), String> {
    // The smoke test: a tenth of the agents, so the limit is on but not reached (the 429 path is
    // the unit tests' and the full run's: reaching it costs a minute).
    let agents = if lab.smoke { 10 } else { 100 };
    let per_minute = DO_PER_MINUTE;
    let dir = lab.scratch("budget");
    let mut cmds: Vec<Cmd> = Vec::new();
    let clusters = agents / CLUSTER;
    let tags: Vec<String> = (0..clusters).map(|c| format!("bench-budget-{c}")).collect();
    for (c, tag) in tags.iter().enumerate() {
        let machines = fleet::machines("etcd", 500_000 + 100 * c as u64, 70, CLUSTER)
            .into_iter()
            .map(|mut m| {
                // 127.70+.c.k: one /24 per cluster.
                m.ip = std::net::Ipv4Addr::new(
                    127,
                    70 + (c / 250) as u8,
                    (c % 250) as u8,
                    m.ip.octets()[3],
                );
                m
            })
            .collect::<Vec<_>>();
        lab.mock.add_droplets(tag, &machines);
        for (k, me) in machines.iter().enumerate() {
            let setup = AgentSetup {
                api: Api::DigitalOcean { tag },
                me,
                size: CLUSTER,
                cluster_extra: "",
                dir: &dir.join(format!("c{c}-m{k}")),
            };
            // A real run (a dry run never vouches): it writes its env file in its own dir and
            // vouches on its peer address, 127.70+.c.k:2380; no etcd is started.
            cmds.push(lab.agent_cmd(&format!("agent {c}/{k}"), &setup, &["run"]));
        }
    }
    lab.mock.take();
    lab.mock.limit(per_minute);
    let start = Instant::now();
    let mut children = Vec::new();
    for (i, cmd) in cmds.iter().enumerate() {
        let scratch = dir.join(format!("run-{i}"));
        std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
        let child = cmd
            .command(&scratch)
            .and_then(|mut c| c.spawn())
            .map_err(|e| e.to_string())?;
        children.push((child, scratch));
    }
    let mut slowest = Duration::ZERO;
    let mut failed = Vec::new();
    for (i, (child, scratch)) in children.into_iter().enumerate() {
        let (status, _) = measure::wait4(child.id() as libc::pid_t).map_err(|e| e.to_string())?;
        slowest = slowest.max(start.elapsed());
        let (c, k) = (i / CLUSTER, i % CLUSTER);
        let env = std::fs::read_to_string(dir.join(format!("c{c}-m{k}")).join("etcd.env"))
            .unwrap_or_default();
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0)
            || initial_cluster_len(&env) != CLUSTER
        {
            let err = std::fs::read_to_string(scratch.join("stderr")).unwrap_or_default();
            failed.push(format!(
                "{}: {}",
                cmds[i].label,
                err.lines().last().unwrap_or("")
            ));
        }
    }
    lab.mock.unlimit();
    let c = lab.mock.take();
    if !failed.is_empty() {
        return Err(format!(
            "{} of {agents} agents failed: {}",
            failed.len(),
            failed.join("; ")
        ));
    }
    // One listing at boot: waiting for the peers' vouches asks the peers, not the API.
    let looks = 1;
    let minimum = (agents * looks) as u64;
    let api = c.api();
    if c.metadata < agents as u64 || c.pages < minimum {
        return Err(format!(
            "{agents} agents asked {c:?}, below the minimum of {minimum} pages"
        ));
    }
    let ratio = api as f64 / minimum as f64;
    report.goal(
        &format!("API budget: {agents} agents at once"),
        "all succeed; ≤ 2× the minimum requests",
        format!(
            "{agents} of {agents} succeeded; {api} requests = {ratio:.2}× the minimum of {minimum}"
        ),
        ratio <= 2.0,
    );
    report.section(format!(
        "## 5. API budget: {agents} agents booting at once\n\n\
         {clusters} clusters of {CLUSTER} members, one tag each, one shared token, every agent `run` \
         with shipped defaults (it vouches on its own loopback peer address; no etcd is started). \
         The mock enforces \
         DigitalOcean's limit of {per_minute} requests in any 60 s (sliding window, 429 with \
         `Retry-After`, rejected requests not counted).\n\n\
         | Agents | Succeeded | API requests | of which 429 | Minimum | Ratio | Metadata requests | Last agent done after |\n\
         |---|---|---|---|---|---|---|---|\n\
         | {agents} | {agents} | {api} | {throttled} | {minimum} ({looks} listing{s} an agent) | {ratio:.2}× | {metadata} | {slowest} |\n\n\
         The minimum: one listing when the agent starts; waiting for the peers' vouches asks \
         the peers again, not the API.\n",
        throttled = c.throttled,
        metadata = c.metadata,
        s = if looks == 1 { "" } else { "s" },
        slowest = dur(slowest),
    ));
    Ok(())
}
