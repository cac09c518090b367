//! 6. Growing a loaded cluster: a 3-member cluster (real etcd, loopback) holding data and taking
//!    writes is grown to 5 by two machines whose agents start together (`cluster.size = 5`),
//!    joining as learners (the default; each promoted by `etcd-bootstrap promote`, started with
//!    its etcd as the shipped unit does) or as voters (`join_as_learner = false`). Measured: from
//!    the agents' start until all five members vote and answer `/health`, and the writes that
//!    failed or stalled meanwhile. This is the figure behind the `join_as_learner` default.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::fleet::{self, Machine};
use crate::formation::{healthy, start_by_hand, start_when_done};
use crate::lab::{AgentSetup, Api, Lab};
use crate::measure::{self, stats};
use crate::report::{Report, dur, spread};

const DEADLINE: Duration = Duration::from_secs(120);
/// Each write waits this long at most; a write still unanswered counts as failed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// What one grow measured.
struct Grown {
    /// Agents' start to five voting, healthy members.
    all_voting: Duration,
    /// Agents' start to the last agent's exit.
    agents: Duration,
    writes: u64,
    failed: u64,
    slowest: Duration,
}

pub fn run(lab: &Lab, report: &mut Report) -> Result<(), String> {
    let rounds = if lab.smoke { 1 } else { 5 };
    // The data the joiners catch up on: 16 MiB (smoke: 100 KiB).
    let (keys, value_len) = if lab.smoke { (100, 1024) } else { (4096, 4096) };
    let machines = fleet::machines("grow", 500_000, 95, 5);
    let modes = [("learners (the default)", true), ("voters", false)];
    for (_, learner) in modes {
        lab.mock.add_droplets(&tag(learner), &machines);
    }
    let mut results: Vec<Vec<Grown>> = vec![Vec::new(), Vec::new()];
    for round in 0..rounds {
        // Alternate which goes first, so neither always follows a teardown.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for k in order {
            let dir = lab.scratch(&format!("grow-{round}-{k}"));
            lab.mock.take();
            results[k].push(grow(lab, &machines, modes[k].1, &dir, keys, value_len)?);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let mut t = format!(
        "## 6. Growing a loaded cluster: learners or voters\n\n\
         A 3-member cluster (etcd on loopback) holding {} MiB ({keys} keys of {} KiB) and taking \
         writes one after another (each given {WRITE_TIMEOUT:?}) grows to 5: two machines' agents \
         start together with `cluster.size = 5`, each machine's etcd starts when its agent exits, \
         and `etcd-bootstrap promote` starts with it (as `etcd-bootstrap-promote.service` does). \
         Until every member votes and answers `/health`. {rounds} interleaved rounds.\n\n\
         | Joining as | Until all 5 vote | Agents' own time | Writes that failed during the grow | Slowest write |\n\
         |---|---|---|---|---|\n",
        keys * value_len / (1024 * 1024),
        value_len / 1024,
    );
    for (k, (label, _)) in modes.iter().enumerate() {
        let r = &results[k];
        let voting = stats(&r.iter().map(|g| g.all_voting).collect::<Vec<_>>());
        let agents = stats(&r.iter().map(|g| g.agents).collect::<Vec<_>>());
        let failed: u64 = r.iter().map(|g| g.failed).sum();
        let writes: u64 = r.iter().map(|g| g.writes).sum();
        let slowest = r.iter().map(|g| g.slowest).max().unwrap_or_default();
        t += &format!(
            "| {label} | {} | {} | {failed} of {writes} | {} |\n",
            spread(&voting),
            spread(&agents),
            dur(slowest)
        );
    }
    t += "\nWith learners the second machine waits for the first one's promotion (etcd allows one \
          learner at a time); as voters it waits only until the first one's etcd has started (a \
          joining etcd must find exactly the members its env file lists), and the cluster counts \
          each new voter in its quorum before it has caught up.\n";
    report.section(t);
    Ok(())
}

fn tag(learner: bool) -> String {
    format!("bench-grow-{}", if learner { "learners" } else { "voters" })
}

fn grow(
    lab: &Lab,
    machines: &[Machine],
    learner: bool,
    dir: &Path,
    keys: usize,
    value_len: usize,
) -> Result<Grown, String> {
    let (old, new) = machines.split_at(3);
    let mut etcds = start_by_hand(old, dir)?;
    let start = Instant::now();
    while !healthy(old) {
        if start.elapsed() > DEADLINE {
            return Err("the 3-member cluster did not form".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let value = "x".repeat(value_len);
    for i in 0..keys {
        put(old[i % 3].ip, &format!("data-{i}"), &value)
            .map_err(|e| format!("preloading key {i}: {e}"))?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let targets: Vec<Ipv4Addr> = old.iter().map(|m| m.ip).collect();
        std::thread::spawn(move || {
            let (mut writes, mut failed, mut slowest) = (0u64, 0u64, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = put(targets[writes as usize % 3], &format!("w-{writes}"), "v").is_ok();
                slowest = slowest.max(t.elapsed());
                writes += 1;
                failed += u64::from(!ok);
            }
            (writes, failed, slowest)
        })
    };

    let start = Instant::now();
    let mut agents: Vec<Option<Child>> = Vec::new();
    for (i, me) in new.iter().enumerate() {
        let scratch = dir.join(format!("new{i}"));
        let cmd = agent(lab, me, &scratch, learner, &["run"]);
        agents.push(Some(
            cmd.command(&scratch)
                .and_then(|mut c| c.spawn())
                .map_err(|e| format!("agent {i}: {e}"))?,
        ));
    }
    let mut promotes = Children::default();
    let mut agents_done = Duration::ZERO;
    let all_voting = loop {
        for (i, slot) in agents.iter_mut().enumerate() {
            let scratch = dir.join(format!("new{i}"));
            if !start_when_done(slot, &format!("agent {i}"), &scratch, &mut etcds)? {
                continue;
            }
            agents_done = start.elapsed();
            // As etcd-bootstrap-promote.service starts with etcd.
            let promote_dir = scratch.join("promote");
            std::fs::create_dir_all(&promote_dir).map_err(|e| e.to_string())?;
            let promote = agent(
                lab,
                &new[i],
                &scratch,
                learner,
                &["promote", "--timeout", "2m"],
            );
            promotes.0.push(
                promote
                    .command(&promote_dir)
                    .and_then(|mut c| c.spawn())
                    .map_err(|e| format!("promote {i}: {e}"))?,
            );
        }
        if agents.iter().all(Option::is_none) && all_vote(old[0].ip, 5) && healthy(machines) {
            break start.elapsed();
        }
        if start.elapsed() > DEADLINE {
            return Err(format!(
                "the cluster did not grow to 5 voting members in {DEADLINE:?} ({})",
                dir.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    stop.store(true, Ordering::Relaxed);
    let (writes, failed, slowest) = writer.join().map_err(|_| "the writer panicked")?;
    let _ = lab.mock.take();
    drop(promotes);
    drop(etcds);
    Ok(Grown {
        all_voting,
        agents: agents_done,
        writes,
        failed,
        slowest,
    })
}

/// `etcd-bootstrap --config <config> <args>` for a joining machine, as learner or voter.
fn agent(lab: &Lab, me: &Machine, dir: &Path, learner: bool, args: &[&str]) -> measure::Cmd {
    let tag = tag(learner);
    let setup = AgentSetup {
        api: Api::DigitalOcean { tag: &tag },
        me,
        size: 5,
        cluster_extra: "",
        dir,
    };
    lab.agent_cmd(&format!("agent {}", me.name), &setup, args)
        .env(
            "ETCD_BOOTSTRAP_CLUSTER__JOIN_AS_LEARNER",
            learner.to_string(),
        )
}

/// Processes (promotes, servers) ended and reaped when dropped.
#[derive(Default)]
pub struct Children(pub Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One request on a fresh connection (etcd's JSON gateway): the status line and the body.
pub fn post(ip: Ipv4Addr, path: &str, body: &str) -> Result<String, String> {
    let addr = SocketAddr::from((ip, 2379));
    let mut s = TcpStream::connect_timeout(&addr, WRITE_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(WRITE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {ip}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    if !out.starts_with("HTTP/1.0 200") && !out.starts_with("HTTP/1.1 200") {
        return Err(out.lines().next().unwrap_or("no answer").to_owned());
    }
    Ok(out)
}

pub fn put(ip: Ipv4Addr, key: &str, value: &str) -> Result<(), String> {
    post(
        ip,
        "/v3/kv/put",
        &format!(r#"{{"key":"{}","value":"{}"}}"#, b64(key), b64(value)),
    )
    .map(drop)
}

/// The member at `ip` serves `key` (a linearizable read through the cluster).
pub fn has_key(ip: Ipv4Addr, key: &str) -> Result<bool, String> {
    let out = post(ip, "/v3/kv/range", &format!(r#"{{"key":"{}"}}"#, b64(key)))?;
    Ok(out.contains(r#""kvs":"#))
}

/// Standard base64, as etcd's gateway wants keys and values (the suite adds no crate for it).
fn b64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(s.len().div_ceil(3) * 4);
    for chunk in s.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= chunk.len() {
                A[(n >> shift) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}

/// The cluster lists `n` members, every one started and none a learner.
pub fn all_vote(ip: Ipv4Addr, n: usize) -> bool {
    let Ok(out) = post(ip, "/v3/cluster/member/list", "{}") else {
        return false;
    };
    let Some(body) = out.split("\r\n\r\n").nth(1) else {
        return false;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return false;
    };
    let Some(members) = v["members"].as_array() else {
        return false;
    };
    members.len() == n
        && members.iter().all(|m| {
            m.get("isLearner").is_none_or(|l| l == false)
                && m["clientURLs"].as_array().is_some_and(|c| !c.is_empty())
        })
}
