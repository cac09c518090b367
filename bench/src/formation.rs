//! 3. Cluster formation: 3 and 5 real etcd members on loopback, from the moment the agents start
//!    (each etcd started as soon as its agent exits, as `Requires=`/`After=` would) to a healthy
//!    cluster, vs the same etcd processes started at once from hand-written env files.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fleet::{self, Machine};
use crate::lab::{AgentSetup, Api, Lab, env_map};
use crate::measure::{self, Cmd, stats};
use crate::report::{Report, dur, spread};

/// etcd 3.5 (`ETCD35_BIN`, as CI sets it), else `ETCD_BIN`, else Debian's.
pub fn etcd_bin() -> PathBuf {
    std::env::var_os("ETCD35_BIN")
        .or_else(|| std::env::var_os("ETCD_BIN"))
        .map_or_else(|| PathBuf::from("/usr/bin/etcd"), PathBuf::from)
}

const DEADLINE: Duration = Duration::from_secs(60);

pub fn run(lab: &Lab, report: &mut Report) -> Result<(), String> {
    let sizes: &[usize] = if lab.smoke { &[3] } else { &[3, 5] };
    let rounds = if lab.smoke { 1 } else { 15 };
    let mut t = format!(
        "## 3. Cluster formation (real etcd, loopback)\n\n\
         From start to every member answering `/health` with `true`. *Agent*: the members' agents \
         start together (`run`, DigitalOcean mock, shipped defaults: a first bootstrap waits for \
         every other member's vouch), each member's etcd starts when its agent exits. *Hand-written*: the same etcd processes start together from \
         env files written beforehand. {rounds} interleaved rounds; fresh data dirs on tmpfs.\n\n\
         | Members | Agent | Hand-written env files | Difference of medians | Agents' own time (start to the last agent's exit) | Agent requests (metadata + API) |\n\
         |---|---|---|---|---|---|\n"
    );
    for &n in sizes {
        let net = 80 + n as u8;
        let tag = format!("bench-formation-{n}");
        let machines = fleet::machines("etcd", 300_000 + 100 * n as u64, net, n);
        lab.mock.add_droplets(&tag, &machines);
        let mut agent_times = Vec::new();
        let mut agents_done = Vec::new();
        let mut hand_times = Vec::new();
        let mut requests = String::new();
        for round in 0..rounds {
            let dir = lab.scratch(&format!("formation-{n}-{round}"));
            lab.mock.take();
            // Alternate which goes first, so neither always follows a teardown.
            let order = crate::measure::alternating(round);
            for with_agent in order {
                let sub = dir.join(if with_agent { "agent" } else { "hand" });
                if with_agent {
                    let (healthy, agents) = form_with_agents(lab, &machines, &tag, &sub)?;
                    agent_times.push(healthy);
                    agents_done.push(agents);
                    requests = requests_of(lab, n)?;
                } else {
                    hand_times.push(form_by_hand(&machines, &sub)?);
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
        let (a, h, own) = (stats(&agent_times), stats(&hand_times), stats(&agents_done));
        report.events.push(crate::report::Event {
            name: format!("first boot, {n} members (section 3)"),
            agent: agent_times.clone(),
            hand: hand_times.clone(),
            own: agents_done.clone(),
            requests: requests.clone(),
        });
        let diff = a.median.as_secs_f64() - h.median.as_secs_f64();
        // The difference of two noisy medians can be negative; the agents' own time is the
        // overhead proper (etcd cannot start before its agent exits).
        let overhead = Duration::from_secs_f64(diff.max(0.0)).max(own.median);
        t += &format!(
            "| {n} | {} | {} | {:+.1} ms | {} | {requests} (last round) |\n",
            spread(&a),
            spread(&h),
            diff * 1000.0,
            spread(&own)
        );
        report.goal(
            &format!("Formation, {n} members, shipped defaults: healthy"),
            "≤ 1.5 s after the agents start (median)",
            format!("{} (by hand: {})", dur(a.median), dur(h.median)),
            a.median <= Duration::from_millis(1500),
        );
        report.goal(
            &format!("Formation, {n} members: agent overhead"),
            "≤ 50 ms (median)",
            format!(
                "{} (agents' own time {}; difference of medians {:+.1} ms)",
                dur(overhead),
                dur(own.median),
                diff * 1000.0
            ),
            overhead <= Duration::from_millis(50),
        );
    }
    t += "\nMost of either column is etcd's own first election (election timeout 1 s). The agents \
          decide on their peers' vouches, not on a timer: before issue 12 the shipped \
          `bootstrap_settle` made every first bootstrap wait 30 s more (31.5 s measured).\n";
    report.section(t);
    Ok(())
}

/// What `n` agents asked the mock since the last count ("metadata + API pages"), checked to be
/// one metadata request and at least one page each, nothing throttled or refused.
pub fn requests_of(lab: &Lab, n: usize) -> Result<String, String> {
    let c = lab.mock.take();
    if c.metadata != c.pages || c.pages < n as u64 || c.throttled + c.refused != 0 {
        return Err(format!("{n} agents asked {c:?}"));
    }
    Ok(format!("{} + {}", c.metadata, c.pages))
}

/// The time to a healthy cluster, and the time until the last agent exited.
fn form_with_agents(
    lab: &Lab,
    machines: &[Machine],
    tag: &str,
    dir: &Path,
) -> Result<(Duration, Duration), String> {
    let cmds = agent_cmds(lab, machines, tag, dir);
    start_then_healthy(&cmds, machines, dir).map(|(healthy, done, _)| (healthy, done))
}

/// `etcd-bootstrap run` for each machine (DigitalOcean mock, `tag`, shipped defaults), each
/// with its own dir `dir/m{i}`.
pub fn agent_cmds(lab: &Lab, machines: &[Machine], tag: &str, dir: &Path) -> Vec<Cmd> {
    machines
        .iter()
        .enumerate()
        .map(|(i, me)| {
            let setup = AgentSetup {
                api: Api::DigitalOcean { tag },
                me,
                size: machines.len(),
                cluster_extra: "",
                dir: &dir.join(format!("m{i}")),
            };
            lab.agent_cmd(&format!("agent {i}"), &setup, &["run"])
        })
        .collect()
}

/// Starts machine i's command `cmds[i]` (all together, in `dir/m{i}`) and each machine's etcd
/// from the env file in that dir as soon as its command exits, as `Requires=`/`After=` start
/// etcd.service. Returns the time to a healthy cluster, the time until the last command exited,
/// and the etcds (stopped when dropped).
pub fn start_then_healthy(
    cmds: &[Cmd],
    machines: &[Machine],
    dir: &Path,
) -> Result<(Duration, Duration, Etcds), String> {
    let n = machines.len();
    let mut etcds = Etcds::default();
    let start = Instant::now();
    let mut done = Duration::ZERO;
    let mut running = Vec::new();
    for (i, cmd) in cmds.iter().enumerate() {
        let scratch = dir.join(format!("m{i}"));
        let child = cmd
            .command(&scratch)
            .and_then(|mut c| c.spawn())
            .map_err(|e| format!("{} on machine {i}: {e}", cmd.label))?;
        running.push(Some(child));
    }
    loop {
        for (i, slot) in running.iter_mut().enumerate() {
            let label = format!("{} on machine {i}", cmds[i].label);
            if start_when_done(slot, &label, &dir.join(format!("m{i}")), &mut etcds)? {
                done = start.elapsed();
            }
        }
        if etcds.0.len() == n && healthy(machines) {
            return Ok((start.elapsed(), done, etcds));
        }
        if start.elapsed() > DEADLINE {
            return Err(format!(
                "{n} of `{}` and their etcds formed no healthy cluster in {DEADLINE:?} ({})",
                cmds[0].label,
                dir.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// When the agent in `slot` has exited: its etcd started from the env file it wrote in
/// `scratch`, as `Requires=`/`After=` start etcd.service (`true`; the slot is emptied). A failed
/// agent is an error with its last words.
pub fn start_when_done(
    slot: &mut Option<Child>,
    label: &str,
    scratch: &Path,
    etcds: &mut Etcds,
) -> Result<bool, String> {
    let Some(child) = slot else { return Ok(false) };
    let Some(status) = child.try_wait().map_err(|e| e.to_string())? else {
        return Ok(false);
    };
    *slot = None;
    if !status.success() {
        let err = std::fs::read_to_string(scratch.join("stderr")).unwrap_or_default();
        return Err(format!("{label} failed ({status}): {}", err.trim_end()));
    }
    let env = std::fs::read_to_string(scratch.join("etcd.env"))
        .map_err(|e| format!("{label}'s env file: {e}"))?;
    etcds.start(&env_map(&env), scratch)?;
    Ok(true)
}

fn form_by_hand(machines: &[Machine], dir: &Path) -> Result<Duration, String> {
    let start = Instant::now();
    let _etcds = start_by_hand(machines, dir)?;
    while !healthy(machines) {
        if start.elapsed() > DEADLINE {
            return Err(format!(
                "hand-started etcds formed no healthy cluster in {DEADLINE:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(start.elapsed())
}

/// These machines' etcds started together from env files written by hand (a new cluster of
/// exactly them).
pub fn start_by_hand(machines: &[Machine], dir: &Path) -> Result<Etcds, String> {
    let envs: Vec<Vec<(String, String)>> = machines
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let d = dir.join(format!("m{i}"));
            std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
            let text = hand_written(machines, m, &d);
            std::fs::write(d.join("etcd.env"), &text).map_err(|e| e.to_string())?;
            Ok(env_map(&text))
        })
        .collect::<Result<_, String>>()?;
    let mut etcds = Etcds::default();
    for (i, env) in envs.iter().enumerate() {
        etcds.start(env, &dir.join(format!("m{i}")))?;
    }
    Ok(etcds)
}

/// `name=peer-url,...` of these machines, as `ETCD_INITIAL_CLUSTER` (and etcdutl's
/// `--initial-cluster`) take it.
pub fn initial_cluster(machines: &[Machine]) -> String {
    machines
        .iter()
        .map(|m| format!("{}=http://{}:2380", m.name, m.ip))
        .collect::<Vec<_>>()
        .join(",")
}

/// What an operator writes for member `me`.
pub fn hand_written(machines: &[Machine], me: &Machine, dir: &Path) -> String {
    format!(
        "ETCD_NAME={name}\nETCD_DATA_DIR={dir}/data\nETCD_INITIAL_CLUSTER={cluster}\n\
         ETCD_INITIAL_CLUSTER_STATE=new\nETCD_INITIAL_CLUSTER_TOKEN=bench\n\
         ETCD_INITIAL_ADVERTISE_PEER_URLS=http://{ip}:2380\nETCD_LISTEN_PEER_URLS=http://{ip}:2380\n\
         ETCD_ADVERTISE_CLIENT_URLS=http://{ip}:2379\nETCD_LISTEN_CLIENT_URLS=http://{ip}:2379\n",
        name = me.name,
        dir = dir.display(),
        cluster = initial_cluster(machines),
        ip = me.ip,
    )
}

/// Started etcd processes; stopped (and reaped) when dropped.
#[derive(Default)]
pub struct Etcds(Vec<Child>);

impl Etcds {
    /// Kills the `i`th etcd started (a machine that loses power), and reaps it.
    pub fn kill(&mut self, i: usize) {
        let mut c = self.0.remove(i);
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Stops every etcd as `systemctl stop` does (SIGTERM) and waits for them.
    pub fn stop(&mut self) {
        for c in &mut self.0 {
            // SAFETY: a signal to a child this suite started and has not reaped.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        }
        for mut c in self.0.drain(..) {
            let _ = c.wait();
        }
    }

    pub fn start(&mut self, env: &[(String, String)], dir: &Path) -> Result<(), String> {
        let child = Command::new(etcd_bin())
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("etcd.log")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", etcd_bin().display()))?;
        self.0.push(child);
        Ok(())
    }
}

impl Drop for Etcds {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &self.0 {
            let _ = measure::wait4(c.id() as libc::pid_t);
        }
    }
}

pub fn healthy(machines: &[Machine]) -> bool {
    machines.iter().all(|m| health(m.ip))
}

/// etcd's `/health` on the member's client URL says `"health":"true"`.
fn health(ip: Ipv4Addr) -> bool {
    let addr = SocketAddr::from((ip, 2379));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET /health HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}
