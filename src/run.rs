//! The I/O around the decision core: observe (discover, identify, inspect the data dir, probe
//! the peers), decide, carry out one step, and again, until etcd can start or the deadline passes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::backoff::Backoff;
use crate::config::Settings;
use crate::decide::{
    self, Action, DataDir, Decision, Facts, Outcome, PeerAnswer, Probe, StartPlan,
};
use crate::discovery::{self, AnyProvider, Discover, DiscoveryError, LocalMachine};
use crate::envfile::{self, EtcdEnv};
use crate::error::{Failure, Kind};
use crate::etcd::{CallError, EtcdClient};
use crate::http::AddressBook;
use crate::member::{Candidate, url};
use crate::notify;

/// One look at the world.
#[derive(Debug, Clone)]
pub struct Observation {
    pub candidates: Vec<Candidate>,
    pub me: Option<usize>,
    pub data: DataDir,
    pub probes: Vec<Probe>,
}

impl Observation {
    pub fn facts<'a>(&'a self, settings: &'a Settings, removed_this_run: usize) -> Facts<'a> {
        Facts {
            spec: &settings.cluster,
            discovered: &self.candidates,
            me: self.me.map(|i| &self.candidates[i]),
            data: self.data,
            probes: &self.probes,
            removed_this_run,
        }
    }
}

pub struct Agent {
    pub settings: Settings,
    provider: AnyProvider,
    etcd: EtcdClient,
    local: LocalMachine,
    addresses: AddressBook,
}

/// The result of a successful run: what was decided and the file that says it.
pub struct Done {
    pub outcome: Outcome,
    pub env: String,
    pub steps: Vec<(Action, String)>,
}

impl Agent {
    pub fn new(settings: Settings) -> Result<Self, Failure> {
        let addresses = AddressBook::default();
        let etcd = EtcdClient::new(&settings.etcd_client, addresses.clone())
            .map_err(|e| Failure::new(Kind::Config, e))?;
        let local = LocalMachine::read();
        let provider = AnyProvider::from_settings(&settings, addresses.clone(), &local)
            .map_err(|e| Failure::new(Kind::Config, e))?;
        Ok(Agent {
            settings,
            provider,
            etcd,
            local,
            addresses,
        })
    }

    pub async fn observe(&self) -> Result<Observation, DiscoveryError> {
        let listing = self.provider.list().await?;
        let candidates = discovery::validate(listing.candidates)?;
        let me = discovery::identify(
            &candidates,
            listing.self_id.as_deref(),
            &self.settings.node,
            &self.local,
        )
        .map_err(|message| DiscoveryError {
            retryable: false,
            kind: Kind::Config,
            message,
        })?
        .map(|m| {
            candidates
                .iter()
                .position(|c| c == m)
                .expect("identified among candidates")
        });
        let data =
            inspect_data_dir(&self.settings.cluster.data_dir).map_err(|f| DiscoveryError {
                retryable: false,
                kind: f.kind,
                message: f.message,
            })?;

        let mut tasks = JoinSet::new();
        for (i, peer) in candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != me)
        {
            let (client, spec, peer) = (
                self.etcd.clone(),
                self.settings.cluster.clone(),
                peer.clone(),
            );
            tasks.spawn(async move {
                (
                    i,
                    Probe {
                        peer: peer.name.clone(),
                        answer: crate::etcd::probe(&client, &spec, &peer).await,
                    },
                )
            });
        }
        let mut probes: Vec<(usize, Probe)> = tasks.join_all().await;
        probes.sort_by_key(|(i, _)| *i);
        Ok(Observation {
            candidates,
            me,
            data,
            probes: probes.into_iter().map(|(_, p)| p).collect(),
        })
    }

    /// Observe once and show what a run would do, without waiting or changing anything.
    pub async fn plan(&self) -> Result<(Observation, Vec<(Action, String)>, Outcome), Failure> {
        let obs = self
            .observe()
            .await
            .map_err(|e| Failure::new(e.kind, e.message))?;
        let (steps, outcome) = decide::simulate(&obs.facts(&self.settings, 0));
        Ok((obs, steps, outcome))
    }

    /// The whole run: wait until decidable, carry out the membership steps (or, in a dry run,
    /// only simulate them), write the env file (or, in a dry run, return it).
    pub async fn run(&self, dry_run: bool) -> Result<Done, Failure> {
        let d = &self.settings.discovery;
        let deadline = Instant::now() + d.timeout;
        let mut backoff = Backoff::from_entropy(d.interval, d.max_interval);
        let mut removed = 0;
        let mut last_reason = String::new();
        loop {
            let (waiting_for, wait_kind) = match self.observe().await {
                Err(e) if !e.retryable => return Err(Failure::new(e.kind, e.message)),
                Err(e) => (e.message, e.kind),
                Ok(obs) => {
                    let facts = obs.facts(&self.settings, removed);
                    let (steps, outcome) = if dry_run {
                        decide::simulate(&facts)
                    } else {
                        (Vec::new(), decide::decide(&facts))
                    };
                    match &outcome.decision {
                        Decision::Start(plan) => {
                            let me = &obs.candidates
                                [obs.me.expect("a start plan implies this node is known")];
                            let env = self.render_env(me, plan)?;
                            if !dry_run {
                                envfile::write_atomic(&self.settings.env_file, &env).map_err(
                                    |e| {
                                        Failure::new(
                                            Kind::CantCreate,
                                            format!(
                                                "cannot write {}: {e}",
                                                self.settings.env_file.display()
                                            ),
                                        )
                                    },
                                )?;
                            }
                            return Ok(Done {
                                outcome,
                                env,
                                steps,
                            });
                        }
                        Decision::Refuse => return Err(Failure::new(Kind::Unsafe, outcome.reason)),
                        Decision::Act(action) if !dry_run => {
                            tracing::info!(row = outcome.row.as_str(), "{}", outcome.reason);
                            notify::status(&outcome.reason);
                            match self.execute(&obs, action).await {
                                Ok(()) => {
                                    if matches!(action, Action::RemoveMember { .. })
                                        && outcome.row == decide::Row::Join
                                    {
                                        removed += 1;
                                    }
                                    backoff.reset();
                                    continue;
                                }
                                Err(e) => (format!("{e}; will retry"), Kind::Unavailable),
                            }
                        }
                        Decision::Act(_) => {
                            return Err(Failure::new(
                                Kind::Software,
                                "the simulated plan did not converge",
                            ));
                        }
                        Decision::Wait => (outcome.reason, Kind::Unavailable),
                    }
                }
            };

            if waiting_for != last_reason {
                tracing::info!("waiting: {waiting_for}");
                last_reason = waiting_for.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Failure::new(
                    wait_kind,
                    format!(
                        "no decision within discovery.timeout ({:?}): {waiting_for}",
                        d.timeout
                    ),
                ));
            }
            let pause = backoff.next_delay().min(deadline - now);
            notify::waiting(&waiting_for, pause + Duration::from_secs(30));
            tokio::time::sleep(pause).await;
        }
    }

    pub fn etcd(&self) -> &EtcdClient {
        &self.etcd
    }

    pub fn render_env(&self, me: &Candidate, plan: &StartPlan) -> Result<String, Failure> {
        envfile::render(&EtcdEnv {
            name: &me.name,
            host: &me.host,
            state: plan.state,
            initial_cluster: &plan.initial_cluster,
            spec: &self.settings.cluster,
            tls: &self.settings.tls,
            listen: &self.addresses.get(&me.host.to_string()),
        })
        .map_err(|e| {
            Failure::new(
                Kind::DataErr,
                format!("refusing to write the env file: {e}"),
            )
        })
    }

    /// Carries out one step through any peer that answered. Errors mean "observe again later".
    async fn execute(&self, obs: &Observation, action: &Action) -> Result<(), String> {
        if let Action::MoveDataAside = action {
            return move_aside(&self.settings.cluster.data_dir)
                .map(|to| tracing::warn!("moved the stale data dir aside to {}", to.display()))
                .map_err(|e| e.message);
        }
        let spec = &self.settings.cluster;
        let endpoints: Vec<String> = obs
            .probes
            .iter()
            .filter(|p| matches!(p.answer, PeerAnswer::Answered(_)))
            .filter_map(|p| obs.candidates.iter().find(|c| c.name == p.peer))
            .map(|c| url(spec.client_scheme, &c.host, spec.client_port))
            .collect();
        let mut last = String::from("no peer answered");
        for endpoint in &endpoints {
            let result = match action {
                Action::RemoveMember {
                    id,
                    name,
                    peer_urls,
                } => {
                    let r = self.etcd.member_remove(endpoint, *id).await;
                    if r.is_ok() {
                        tracing::warn!(member = %name, id = %format!("{id:x}"), peer_urls = %peer_urls.join(","), "removed member");
                    }
                    r.or_else(|e| already(e, "member not found"))
                }
                Action::AddMember { peer_url, learner } => {
                    let r = self.etcd.member_add(endpoint, peer_url, *learner).await;
                    if let Ok(m) = &r {
                        tracing::info!(id = %format!("{:x}", m.id), peer_url, learner, "added this node as a member");
                    }
                    r.map(drop)
                        .or_else(|e| already(e, "Peer URLs already exists"))
                }
                Action::MoveDataAside => unreachable!(),
            };
            match result {
                Ok(()) => return Ok(()),
                // etcd said no for now (too many learners, not enough started members): another
                // endpoint would say the same.
                Err(e @ CallError::Etcd { .. }) => return Err(e.to_string()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}

/// An answer that means the step was already done (by an earlier run or a racing node).
fn already(e: CallError, message: &str) -> Result<(), CallError> {
    match e.etcd_message() {
        Some(m) if m.contains(message) => Ok(()),
        _ => Err(e),
    }
}

pub fn inspect_data_dir(data_dir: &Path) -> Result<DataDir, Failure> {
    let member = data_dir.join("member");
    match std::fs::metadata(&member) {
        Ok(m) if m.is_dir() => Ok(DataDir::HasMember),
        Ok(_) => Err(Failure::new(
            Kind::IoErr,
            format!("{} exists but is not a directory", member.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DataDir::Empty),
        Err(e) => Err(Failure::new(
            Kind::IoErr,
            format!(
                "cannot inspect {}: {e}; refusing to guess whether it holds data",
                member.display()
            ),
        )),
    }
}

/// Renames the data dir to `<data_dir>.removed-<unix time>`; never deletes anything.
fn move_aside(data_dir: &Path) -> Result<PathBuf, Failure> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut to = PathBuf::from(format!("{}.removed-{secs}", data_dir.display()));
    let mut n = 1;
    while to.exists() {
        to = PathBuf::from(format!("{}.removed-{secs}-{n}", data_dir.display()));
        n += 1;
    }
    std::fs::rename(data_dir, &to).map(|()| to).map_err(|e| {
        Failure::new(
            Kind::CantCreate,
            format!("cannot move {} aside: {e}", data_dir.display()),
        )
    })
}
