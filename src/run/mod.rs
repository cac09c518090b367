//! The I/O around the decision core: observe (discover, identify, inspect the data dir, probe
//! the peers), decide, carry out one step, and again, until etcd can start or the deadline passes.

use std::cell::{Cell, OnceCell};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::backoff::Backoff;
use crate::backup::{
    self,
    store::{Store, StoreError},
};
use crate::config::Settings;
use crate::datadir;
use crate::decide::{
    self, Action, Backups, Decision, LocalEtcd, Observation, Outcome, PeerAnswer, Probe,
    SETTLE_MARGIN, Session, StartPlan, StoreLook,
};
use crate::discovery::{self, DiscoveryError, LocalMachine, Sources};
use crate::envfile::{self, EtcdEnv};
use crate::error::{Failure, Kind};
use crate::etcd::{CallError, EtcdClient};
use crate::http::AddressBook;
use crate::member::{Candidate, MemberName, Scheme};
use crate::notify;
use crate::preflight::{self, Checked};

mod force_new;
pub(crate) mod local_etcd;
mod voucher_slot;

use voucher_slot::VoucherSlot;

/// How often a waiting node asks its peers again between two listings, for what it awaits of
/// them or of etcd (a vouch, a learner's promotion, a member's start, a leader): often at
/// first, when machines booting together arrive, then every half second. The listing itself
/// keeps its backoff (`discovery.interval` doubling to `discovery.max_interval`): a cloud API
/// has a rate limit, the peers on the cluster's network do not.
const PEER_LOOK_FAST: Duration = Duration::from_millis(50);
const PEER_LOOK: Duration = Duration::from_millis(500);
const FAST_FOR: Duration = Duration::from_secs(5);
/// How soon a step etcd refused for now ("unhealthy cluster" while it counts a new quorum,
/// too many learners, not enough started members) is tried again, on the same listing, for
/// `FAST_FOR` after the first refusal; then at the listing's own pace.
const STEP_RETRY: Duration = Duration::from_millis(100);
/// Listings longer than this are not re-asked between listings (a selector that matches
/// thousands of machines would be thousands of requests each time).
const WATCH_MAX: usize = 16;

/// How long a peer that vouched in this run is given to answer a probe (see `probe_peers`).
const QUICK_PROBE: Duration = Duration::from_millis(100);

/// The longest a node that decided to bootstrap waits for the peers it heard to read that it
/// heard them (`Agent::farewell`): a round of PEER_LOOK_FAST, when they would ask anyway.
const FAREWELL: Duration = PEER_LOOK_FAST;

/// The shortest time between two rounds of questions to the peers that news woke.
const NEWS_GAP: Duration = Duration::from_millis(5);

/// What a wait asks the peers with (`Agent::watch_peers`).
struct Asked {
    /// Peers that vouched earlier in this run (asked with `QUICK_PROBE`).
    vouched: Vec<MemberName>,
    /// This agent's `vouch::ASKER_HEADER`, while it vouches.
    asker: Option<String>,
    /// Told when a peer's question says its vouch changed.
    news: Option<std::sync::Arc<tokio::sync::Notify>>,
    /// Ask at once rather than after the first round's pause: this node's vouch is news.
    at_once: bool,
    /// Until then every PEER_LOOK_FAST, then every PEER_LOOK.
    fast_until: Instant,
}

/// How many peers are probed at the same time.
const PROBES_AT_ONCE: usize = 64;

pub struct Agent {
    pub settings: Settings,
    provider: Sources,
    etcd: EtcdClient,
    local: LocalMachine,
    addresses: AddressBook,
    /// Time spent listing and asking peers so far, for the outcome record.
    spent_listing: Cell<Duration>,
    spent_probing: Cell<Duration>,
    /// How many listings this run made: each look's `Observation::listing`.
    listings: Cell<u64>,
    /// This machine's etcd, once asked (`None` inside: it could not be told).
    local_etcd: OnceCell<Option<LocalEtcd>>,
    /// Where etcd is, as the preflight found it (`preflight::etcd_binary`).
    etcd_binary: OnceCell<PathBuf>,
    /// The backup store (`[backup]`), opened at the first look that needs it.
    store: tokio::sync::OnceCell<Store>,
}

/// What `plan` shows: one look, what a run would do on it, and the preflight checks.
pub struct Plan {
    pub obs: Observation,
    pub steps: Vec<(Action, String)>,
    pub outcome: Outcome,
    pub checked: Checked,
}

/// The result of a successful run: what was decided and the file that says it.
pub struct Done {
    pub this_node: MemberName,
    pub outcome: Outcome,
    /// Where the members came from.
    pub source: discovery::SourceUsed,
    pub env: String,
    pub steps: Vec<(Action, String)>,
}

/// The client for this cluster's etcd (and its peers' agents) from the settings alone: all that
/// `promote` and `leave` need, with no discovery and no cloud token.
pub fn etcd_client(settings: &Settings, addresses: AddressBook) -> Result<EtcdClient, Failure> {
    let spec = &settings.cluster;
    let tls = spec.peer_scheme == Scheme::Https || spec.client_scheme == Scheme::Https;
    EtcdClient::new(&settings.etcd_client, tls, addresses)
        .map_err(|e| Failure::new(Kind::Config, e))
}

impl Agent {
    pub fn new(settings: Settings) -> Result<Self, Failure> {
        let addresses = AddressBook::default();
        let etcd = etcd_client(&settings, addresses.clone())?;
        let local = LocalMachine::read();
        let provider = Sources::from_settings(&settings, addresses.clone(), &local)
            .map_err(|e| Failure::new(Kind::Config, e))?;
        Ok(Agent {
            settings,
            provider,
            etcd,
            local,
            addresses,
            spent_listing: Cell::default(),
            listings: Cell::default(),
            spent_probing: Cell::default(),
            local_etcd: OnceCell::new(),
            etcd_binary: OnceCell::new(),
            store: tokio::sync::OnceCell::new(),
        })
    }

    pub async fn observe(&self) -> Result<Observation, DiscoveryError> {
        self.observe_with(&[], None).await
    }

    /// `vouched`: peers that vouched earlier in this run, asked with a short timeout (below).
    /// `asker`: how this agent names itself to its peers while it vouches.
    async fn observe_with(
        &self,
        vouched: &[MemberName],
        asker: Option<&str>,
    ) -> Result<Observation, DiscoveryError> {
        let listing_started = Instant::now();
        // This machine's etcd is asked while the provider lists (once a run: it is cached).
        let (listed, local_etcd) = tokio::join!(self.provider.list(), self.local_etcd());
        add_elapsed(&self.spent_listing, listing_started);
        self.listings.set(self.listings.get() + 1);
        let (listing, source) = listed?;
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
            datadir::inspect(&self.settings.cluster.data_dir).map_err(|f| DiscoveryError {
                retryable: false,
                kind: f.kind,
                message: f.message,
            })?;

        let probing_started = Instant::now();
        let probes = self.probe_peers(&candidates, me, vouched, asker).await;
        let undiscovered_alive = self
            .undiscovered_alive(&candidates, &probes, data.wal.as_ref())
            .await;
        add_elapsed(&self.spent_probing, probing_started);
        let backups = self.look_at_backups(&probes, data.dir).await;
        let unfinished_recovery =
            datadir::recovery_mark::unfinished(&self.settings.cluster.data_dir).map(|copy| {
                let member = copy.join("member");
                decide::UnfinishedRecovery {
                    copy_present: member.is_dir(),
                    copy_wal: datadir::read_member(&member),
                    copy,
                }
            });
        Ok(Observation {
            source,
            candidates,
            me,
            data: data.dir,
            wal: data.wal,
            probes,
            undiscovered_alive,
            listing: self.listings.get(),
            local_etcd,
            backups,
            unfinished_recovery,
        })
    }

    /// What the backup store holds, when `[backup]` is configured and it can matter
    /// (`Backups::worth_a_look`).
    async fn look_at_backups(&self, probes: &[Probe], data: datadir::DataDir) -> Option<Backups> {
        let backup = self.settings.backup.as_ref()?;
        let recover = self.settings.cluster.recover_lost_quorum;
        let look = if !Backups::worth_a_look(probes, data, recover) {
            StoreLook::NotNeeded
        } else {
            match self.store(backup).await {
                Ok(store) => backup::boot::newest(store, &self.settings.cluster.token).await,
                Err(e) => StoreLook::Unreadable { reason: e.message },
            }
        };
        Some(Backups {
            store: backup.store.to_string(),
            restore: backup.restore,
            look,
        })
    }

    /// Where etcd is: as the preflight found it, or (for commands without one) `etcd.binary`,
    /// else /usr/bin/etcd.
    fn etcd_binary(&self) -> PathBuf {
        self.etcd_binary
            .get()
            .or(self.settings.etcd.binary.as_ref())
            .cloned()
            .unwrap_or_else(|| preflight::DEFAULT_ETCD.into())
    }

    /// Takes in where the preflight found etcd.
    fn found(&self, checked: &preflight::Checked) {
        if let Some(binary) = &checked.etcd_binary {
            let _ = self.etcd_binary.set(binary.clone());
        }
    }

    /// This machine's etcd, asked once per run. When it cannot be told, etcd's version rules
    /// are not checked before starting it (etcd checks them itself, later): said once.
    async fn local_etcd(&self) -> Option<LocalEtcd> {
        if let Some(known) = self.local_etcd.get() {
            return known.clone();
        }
        let asked = local_etcd::ask(&self.etcd_binary()).await;
        if let Err(e) = &asked {
            tracing::warn!(
                "{e}: this machine's etcd version is unknown, so etcd's version rules are not checked before it starts (set etcd.binary to the etcd that etcd.service runs)"
            );
        }
        self.local_etcd.get_or_init(|| asked.ok()).clone()
    }

    /// Probes every discovered machine but this one. A peer that vouched earlier in this run and
    /// does not answer within QUICK_PROBE is starting the etcd it vouched for (a starting etcd
    /// holds its ports before it serves them, for about a second): its silence is that, and
    /// waiting out the full timeout for it would only delay the peers that start with it.
    async fn probe_peers(
        &self,
        candidates: &[Candidate],
        me: Option<usize>,
        vouched: &[MemberName],
        asker: Option<&str>,
    ) -> Vec<Probe> {
        // Peers are probed at once, but no more than PROBES_AT_ONCE in flight: a tag on 10,000
        // machines must not run the agent out of file descriptors (the unit's limit is 1,024),
        // nor hold 10,000 waiting tasks in memory (12 MB, BENCHMARKS.md).
        let mut peers = candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != me);
        let mut tasks = JoinSet::new();
        let mut probes: Vec<(usize, Probe)> = Vec::with_capacity(candidates.len());
        loop {
            while tasks.len() < PROBES_AT_ONCE {
                let Some((i, peer)) = peers.next() else { break };
                let (client, spec, peer, asker) = (
                    self.etcd.clone(),
                    self.settings.cluster.clone(),
                    peer.clone(),
                    asker.map(str::to_owned),
                );
                let quick = vouched.contains(&peer.name);
                tasks.spawn(async move {
                    let probe = crate::etcd::probe(&client, &spec, &peer, asker.as_deref());
                    let answer = if quick {
                        tokio::time::timeout(QUICK_PROBE, probe)
                            .await
                            .unwrap_or_else(|_| PeerAnswer::Unknown {
                                reason: format!(
                                    "no answer within {QUICK_PROBE:?} after it vouched (its etcd is starting)"
                                ),
                            })
                    } else {
                        probe.await
                    };
                    (
                        i,
                        Probe {
                            peer: peer.name,
                            answer,
                        },
                    )
                });
            }
            match tasks.join_next().await {
                Some(done) => probes.push(done.expect("a probe never panics")),
                None => break,
            }
        }
        probes.sort_by_key(|(i, _)| *i);
        probes.into_iter().map(|(_, p)| p).collect()
    }

    /// Asks members that no discovered machine owns whether they are alive: a listing that
    /// missed a machine must not make its member look dead. With a cluster answering, the members
    /// it lists, on their client URLs; with none, the members this node's data lists (who may
    /// have lost the quorum), on their peer URLs, where any answer at all counts.
    async fn undiscovered_alive(
        &self,
        candidates: &[Candidate],
        probes: &[Probe],
        wal: Option<&datadir::WalInfo>,
    ) -> Vec<u64> {
        let spec = &self.settings.cluster;
        let owned: Vec<String> = candidates.iter().map(|c| spec.peer_url(&c.host)).collect();
        let unowned = |urls: &[String]| urls.iter().all(|u| !owned.contains(u));
        let mut alive = Vec::new();
        let Some(view) = probes.iter().find_map(|p| match &p.answer {
            PeerAnswer::Answered(v) => Some(v),
            _ => None,
        }) else {
            for m in wal
                .iter()
                .flat_map(|w| w.members.iter().filter(|m| m.id != w.member_id))
                .filter(|m| unowned(&m.peer_urls))
            {
                for url in &m.peer_urls {
                    match self.etcd.vouch(url, None).await {
                        Err(e) if e.is_silence() => {}
                        _ => {
                            alive.push(m.id);
                            break;
                        }
                    }
                }
            }
            return alive;
        };
        for m in view.members.iter().filter(|m| unowned(&m.peer_urls)) {
            for endpoint in &m.client_urls {
                if let Ok(v) = self.etcd.member_list(endpoint).await
                    && v.cluster_id == view.cluster_id
                {
                    alive.push(m.id);
                    break;
                }
            }
        }
        alive
    }

    /// Observe once and show what a run would do, without waiting or changing anything.
    pub async fn plan(&self) -> Result<Plan, Failure> {
        let mut checked = preflight::before_discovery(&self.settings).await?;
        self.found(&checked);
        // One look: a source that fails is passed over at once, to show what a run would
        // fall back to.
        self.provider.impatient();
        let obs = self
            .observe()
            .await
            .map_err(|e| Failure::new(e.kind, e.message))?;
        // What a run starting now would do, if the world held still: the same session the run
        // keeps, from its first look.
        let (steps, outcome) =
            Session::default().preview(&self.settings.cluster, &obs, Duration::ZERO);
        if let Some(me) = obs.me.map(|i| &obs.candidates[i]) {
            checked.passed.extend(preflight::names(&self.settings, me)?);
        }
        Ok(Plan {
            obs,
            steps,
            outcome,
            checked,
        })
    }

    /// The whole run: wait until decidable, carry out the membership steps (or, in a dry run,
    /// only simulate them), write the env file (or, in a dry run, return it).
    pub async fn run(&self, dry_run: bool) -> Result<Done, Failure> {
        let checked = preflight::before_discovery(&self.settings).await?;
        self.found(&checked);
        for line in &checked.passed {
            tracing::debug!("preflight: {line}");
        }
        for line in &checked.warnings {
            tracing::warn!("{line}");
        }
        // A dry run never vouches: peers would bootstrap on the word of a node that then does
        // not start.
        let mut voucher = VoucherSlot::new(!dry_run);
        let result = self.run_with(dry_run, &mut voucher).await;
        voucher.stop().await;
        result
    }

    async fn run_with(&self, dry_run: bool, voucher: &mut VoucherSlot) -> Result<Done, Failure> {
        let d = &self.settings.discovery;
        // Off by default: waiting that only the peers' arrival can end goes on as long as it
        // takes (a machine may boot hours late); errors waiting cannot fix fail at once.
        let deadline = d.timeout.map(|t| Instant::now() + t);
        let mut backoff = Backoff::from_entropy(d.interval, d.max_interval);
        let started = Instant::now();
        let mut session = Session::default();
        let mut last_reason = String::new();
        // Since when the run has waited for what it waits for now: the peers are asked often
        // in the first FAST_FOR of a wait, then less.
        let mut wait_began = Instant::now();
        let mut peer_look: Option<Observation> = None;
        // When the next listing is due, and since when etcd has refused a step for now.
        let mut list_due: Option<Instant> = None;
        let mut refused_since: Option<Instant> = None;
        // While a fallback source is in use, STATUS= says so beside what is awaited.
        let mut via_fallback = String::new();
        loop {
            let mut settle_left = None;
            // A step etcd refused for now: tried again soon, on the same listing.
            let mut retry: Option<Observation> = None;
            let fresh = peer_look.is_none();
            // Waiting on the peers or etcd: what they said last, to ask them again.
            let mut watch: Option<Observation> = None;
            // This node's vouch is news to its peers: ask them at once, which tells them.
            let mut news_for_peers = false;
            let looked = match peer_look.take() {
                // The peers said something new: decide on it with the same listing.
                Some(obs) => Ok(obs),
                None => {
                    self.observe_with(&session.vouched_names(), voucher.asker().as_deref())
                        .await
                }
            };
            let (waiting_for, wait_kind) = match looked {
                Err(e) if !e.retryable => return Err(Failure::new(e.kind, e.message)),
                Err(e) => (e.message, e.kind),
                Ok(obs) => {
                    if obs.source.fallback_because.is_some() {
                        via_fallback = format!(" [members from {}, a fallback]", obs.source.name);
                    }
                    let spec = &self.settings.cluster;
                    let now = started.elapsed();
                    let (steps, outcome) = if dry_run {
                        // A dry run changes nothing: it shows the steps the run would take from
                        // here, and ends where that run would. The session still takes in
                        // this look.
                        let preview = session.preview(spec, &obs, now);
                        session.decide(spec, &obs, now);
                        preview
                    } else {
                        (Vec::new(), session.decide(spec, &obs, now))
                    };
                    match &outcome.decision {
                        Decision::Start(plan) => {
                            let me = &obs.candidates
                                [obs.me.expect("a start plan implies this node is known")];
                            preflight::names(&self.settings, me)?;
                            let env = self.render_env(me, plan, obs.local_etcd.as_ref())?;
                            if voucher.told().is_some()
                                && let Some(v) =
                                    session.vouch(&self.settings.cluster, &obs, &outcome.reason)
                                && v.bootstrap.is_some()
                                && voucher.offer(self, me, &v).await
                            {
                                self.farewell(&obs, &v.heard, voucher).await;
                            }
                            // etcd must be able to bind the peer port as soon as it starts.
                            voucher.stop().await;
                            if let Some(snapshot) = plan.restore.as_ref().filter(|_| !dry_run) {
                                let said = self.restore(snapshot, me, plan).await?;
                                tracing::warn!("{said}");
                            }
                            if plan.force_new_cluster && !dry_run {
                                force_new::run_once(
                                    &self.etcd_binary(),
                                    &env,
                                    &self.settings.cluster.data_dir,
                                    &self.etcd,
                                )
                                .await?;
                                datadir::recovery_mark::finish(&self.settings.cluster.data_dir);
                            } else if session.copied_data() && !dry_run {
                                // Copied, then a member came back and nothing was forced: the
                                // data dir etcd.service now starts is the cluster's, and a
                                // later run must not take it for a failed recovery's and put the
                                // older copy back over it. The copy stays, as a copy.
                                datadir::recovery_mark::finish(&self.settings.cluster.data_dir);
                            }
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
                                this_node: me.name.clone(),
                                outcome,
                                source: obs.source.clone(),
                                env,
                                steps,
                            });
                        }
                        Decision::Refuse => {
                            return Err(Failure::refused(outcome.row.as_str(), outcome.reason));
                        }
                        Decision::Act(action) if !dry_run => {
                            tracing::info!(row = outcome.row.as_str(), "{}", outcome.reason);
                            notify::status(&outcome.reason);
                            match self.execute(&obs, action).await {
                                Ok(after) => {
                                    session.carried_out(action, &outcome);
                                    backoff.reset();
                                    refused_since = None;
                                    // The membership the addition answered with: decide on it
                                    // at once. Adding a second voter to a cluster of one leaves
                                    // it without a quorum until this node starts, and etcd 3.5
                                    // then no longer answers member lists: observing again
                                    // would wait for good.
                                    if let Some(view) = after {
                                        peer_look = Some(with_view(&obs, view));
                                    }
                                    continue;
                                }
                                Err(e) => {
                                    retry = Some(obs.clone());
                                    (format!("{e}; will retry"), Kind::Unavailable)
                                }
                            }
                        }
                        Decision::Act(_) => {
                            return Err(Failure::new(
                                Kind::Software,
                                "the simulated plan did not converge",
                            ));
                        }
                        Decision::Wait => {
                            // Only while it waits does the agent speak for its machine: a node
                            // that has decided lets its etcd have the peer port at once.
                            let vouch =
                                session.vouch(&self.settings.cluster, &obs, &outcome.reason);
                            if let Some(v) = vouch {
                                let me = &obs.candidates
                                    [obs.me.expect("a vouch implies this node is known")];
                                news_for_peers = voucher.offer(self, me, &v).await;
                            }
                            settle_left = outcome.ends_in;
                            // An untimed wait is for the peers or etcd (or a listing, which
                            // comes when due anyway): ask the peers again meanwhile.
                            if outcome.ends_in.is_none() && obs.candidates.len() <= WATCH_MAX {
                                watch = Some(obs.clone());
                            }
                            (outcome.reason, Kind::Unavailable)
                        }
                    }
                }
            };

            if waiting_for != last_reason {
                tracing::info!("waiting: {waiting_for}");
                last_reason = waiting_for.clone();
                wait_began = Instant::now();
            }
            let now = Instant::now();
            if let (Some(deadline), Some(timeout)) = (deadline, d.timeout)
                && now >= deadline
            {
                return Err(Failure::new(
                    wait_kind,
                    format!("no decision within discovery.timeout ({timeout:?}): {waiting_for}"),
                ));
            }
            // The next listing: when a timed wait ends (looking again at least every
            // discovery.max_interval; each listing lists every page from the API), else on the
            // listing's backoff, counted from the last listing: deciding again on what the peers
            // said in between does not move it.
            let due = match (settle_left, list_due) {
                (Some(left), _) => now + (left + SETTLE_MARGIN).min(d.max_interval),
                (None, Some(due)) if !fresh => due,
                (None, _) => now + backoff.next_delay(),
            }
            .min(deadline.unwrap_or(now + Duration::from_secs(86_400 * 365)));
            list_due = Some(due);
            let pause = due.saturating_duration_since(now);
            notify::waiting(
                &format!("{waiting_for}{via_fallback}"),
                pause + Duration::from_secs(30),
            );
            if retry.is_none() {
                refused_since = None;
            }
            let retry_fast =
                retry.is_some() && now.duration_since(*refused_since.get_or_insert(now)) < FAST_FOR;
            match (retry.filter(|_| retry_fast), watch) {
                (Some(obs), _) if pause > STEP_RETRY => {
                    tokio::time::sleep(STEP_RETRY).await;
                    let probes = self
                        .probe_peers(
                            &obs.candidates,
                            obs.me,
                            &session.vouched_names(),
                            voucher.asker().as_deref(),
                        )
                        .await;
                    peer_look = Some(Observation { probes, ..obs });
                }
                (_, Some(obs)) => {
                    let asked = Asked {
                        vouched: session.vouched_names(),
                        asker: voucher.asker(),
                        news: voucher.news(),
                        at_once: news_for_peers,
                        fast_until: wait_began + FAST_FOR,
                    };
                    peer_look = self
                        .watch_peers(&obs, &asked, pause)
                        .await
                        .map(|probes| Observation { probes, ..obs });
                }
                _ => tokio::time::sleep(pause).await,
            }
        }
    }

    /// Waits up to `pause`, asking the peers again (every 50 ms in the first 5 s of a wait, then
    /// every 500 ms, and at once when a peer's question says its vouch changed) and returning what they said as
    /// soon as one says something new. The peers are on the cluster's own network and cheap to
    /// ask; the listing (a cloud API with a rate limit) is not asked again for it. So a machine
    /// that vouches, or starts its etcd, late is seen at once, not at the next backoff step (up
    /// to discovery.max_interval).
    async fn watch_peers(
        &self,
        obs: &Observation,
        asked: &Asked,
        pause: Duration,
    ) -> Option<Vec<Probe>> {
        let start = Instant::now();
        let until = start + pause;
        let mut at_once = asked.at_once;
        let mut last_asked: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if now >= until {
                return None;
            }
            let step = if now < asked.fast_until {
                PEER_LOOK_FAST
            } else {
                PEER_LOOK
            };
            if !std::mem::take(&mut at_once) {
                let round = tokio::time::sleep(step.min(until - now));
                match &asked.news {
                    Some(news) => {
                        tokio::select! {
                            () = round => {}
                            () = news.notified() => {
                                // Not more often than NEWS_GAP: two peers whose vouches keep
                                // changing must not ask each other in a tight loop.
                                if let Some(last) = last_asked {
                                    tokio::time::sleep_until((last + NEWS_GAP).into()).await;
                                }
                            }
                        }
                    }
                    None => round.await,
                }
            }
            let probing_started = Instant::now();
            last_asked = Some(probing_started);
            let probes = self
                .probe_peers(
                    &obs.candidates,
                    obs.me,
                    &asked.vouched,
                    asked.asker.as_deref(),
                )
                .await;
            add_elapsed(&self.spent_probing, probing_started);
            if probes != obs.probes {
                return Some(probes);
            }
        }
    }

    /// Before a node that decided to bootstrap goes quiet: the peers it heard that still vouch
    /// are told its last vouch, which names them (a question carrying its new digest makes them
    /// ask back at once), for at most FAREWELL. Without it a peer that has not yet read that this
    /// node heard it keeps asking, and meets the starting etcd that now holds the port
    /// (QUICK_PROBE, then its next round: 150 ms and more on 2 cores, BENCHMARKS.md). The vouch
    /// is the one a wait on this same look would have served, so no peer decides on anything a
    /// wait could not have told it; the farewell only brings that forward.
    async fn farewell(&self, obs: &Observation, heard: &[String], voucher: &VoucherSlot) {
        let Some((told, told_news)) = voucher.told() else {
            return;
        };
        let deadline = tokio::time::Instant::now() + FAREWELL;
        let asker = voucher.asker();
        let mut waiting: Vec<&Candidate> = obs
            .probes
            .iter()
            .filter(|p| matches!(p.answer, PeerAnswer::Vouched(_)))
            .filter(|p| heard.iter().any(|h| *h == p.peer.as_str()))
            .filter_map(|p| obs.candidates.iter().find(|c| c.name == p.peer))
            .collect();
        // Only the vouch is asked: the question is what tells them, and an answer that is not a
        // vouch says the peer awaits nothing more.
        let mut tells = JoinSet::new();
        for peer in &waiting {
            let (client, url, name, asker) = (
                self.etcd.clone(),
                self.settings.cluster.peer_url(&peer.host),
                peer.name.clone(),
                asker.clone(),
            );
            tells.spawn(async move {
                let vouches = matches!(client.vouch(&url, asker.as_deref()).await, Ok(Some(_)));
                (name, vouches)
            });
        }
        let began = Instant::now();
        loop {
            waiting.retain(|c| !told(c.name.as_str()));
            if waiting.is_empty() {
                tracing::debug!(
                    "every peer still vouching read that it was heard, in {:?}",
                    began.elapsed()
                );
                return;
            }
            tokio::select! {
                Some(Ok((name, vouches))) = tells.join_next() => {
                    // A peer that no longer vouches has decided, or is gone: it awaits nothing.
                    if !vouches {
                        waiting.retain(|c| c.name != name);
                    }
                }
                () = told_news.notified() => {}
                () = tokio::time::sleep_until(deadline) => {
                    tracing::debug!(
                        "going quiet after {FAREWELL:?} although {} did not read that it was heard",
                        waiting.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                    );
                    return;
                }
            }
        }
    }

    /// The backup store, opened (its credentials loaded) once a run.
    async fn store(&self, backup: &crate::config::BackupSettings) -> Result<&Store, StoreError> {
        self.store.get_or_try_init(|| Store::open(backup)).await
    }

    /// Carries out the `restore` row: the snapshot every member named, made this member's data.
    async fn restore(
        &self,
        snapshot: &decide::SnapshotRef,
        me: &Candidate,
        plan: &StartPlan,
    ) -> Result<String, Failure> {
        let backup = self.settings.backup.as_ref().ok_or_else(|| {
            Failure::new(Kind::Software, "a restore was decided without [backup]")
        })?;
        let store = self.store(backup).await?;
        backup::boot::restore_at_boot(
            store,
            backup,
            &self.etcd_binary(),
            snapshot,
            &self.settings.cluster.data_dir,
            &me.name,
            &plan.initial_cluster,
            &self.settings.cluster.token,
        )
        .await
    }

    /// Time spent so far listing machines, and asking peers.
    pub fn time_spent(&self) -> (Duration, Duration) {
        (self.spent_listing.get(), self.spent_probing.get())
    }

    pub fn etcd(&self) -> &EtcdClient {
        &self.etcd
    }

    /// The env file for `plan`, spelled for `local` (this machine's etcd, when it was asked).
    pub fn render_env(
        &self,
        me: &Candidate,
        plan: &StartPlan,
        local: Option<&LocalEtcd>,
    ) -> Result<String, Failure> {
        envfile::render(&EtcdEnv {
            name: &me.name,
            host: &me.host,
            state: plan.state,
            initial_cluster: &plan.initial_cluster,
            spec: &self.settings.cluster,
            tls: &self.settings.tls,
            listen: &self.addresses.get(&me.host.to_string()),
            // Not for the first start of a restore: every member holds the same snapshot, checked
            // against its manifest's sha256, so the check compares identical copies; and since
            // etcd asks its peers before it serves its own, members starting together on data
            // wait on each other up to its request timeout (7 to 15 s measured, BENCHMARKS.md).
            // The next boot's env file has it again.
            corrupt_check: local
                .filter(|_| self.settings.etcd.initial_corrupt_check && plan.restore.is_none())
                .map(|l| l.version),
            etcd: local.map(|l| l.version),
        })
        .map_err(|e| {
            Failure::new(
                Kind::DataErr,
                format!("refusing to write the env file: {e}"),
            )
        })
    }

    /// Carries out one membership change through any peer that answered (`prune`).
    pub async fn carry_out(&self, obs: &Observation, action: &Action) -> Result<(), String> {
        self.execute(obs, action).await.map(drop)
    }

    /// Carries out one step through any peer that answered. Errors mean "observe again later".
    async fn execute(
        &self,
        obs: &Observation,
        action: &Action,
    ) -> Result<Option<decide::ClusterView>, String> {
        let data_dir = &self.settings.cluster.data_dir;
        match action {
            Action::MoveDataAside => {
                return datadir::move_aside(data_dir, "removed")
                    .map(|to| tracing::warn!("moved the stale data dir aside to {}", to.display()))
                    .map(|()| None)
                    .map_err(|e| e.message);
            }
            Action::CopyDataAside => {
                let to = datadir::copy_aside(data_dir, "before-recovery").map_err(|e| e.message)?;
                datadir::recovery_mark::begin(data_dir, &to).map_err(|e| e.message)?;
                tracing::warn!(
                    "copied the data dir to {} before recovering from it",
                    to.display()
                );
                return Ok(None);
            }
            Action::UndoRecoveryStart => {
                if let Some(said) =
                    datadir::recovery_mark::undo_unfinished(data_dir).map_err(|e| e.message)?
                {
                    tracing::warn!("{said}");
                }
                return Ok(None);
            }
            _ => {}
        }
        let spec = &self.settings.cluster;
        let endpoints: Vec<String> = obs
            .probes
            .iter()
            .filter(|p| matches!(p.answer, PeerAnswer::Answered(_)))
            .filter_map(|p| obs.candidates.iter().find(|c| c.name == p.peer))
            .map(|c| spec.client_url(&c.host))
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
                    r.map(|()| None)
                        .or_else(|e| already(e, "member not found").map(|()| None))
                }
                Action::AddMember { peer_url, learner } => {
                    let r = self.etcd.member_add(endpoint, peer_url, *learner).await;
                    if let Ok((m, _)) = &r {
                        tracing::info!(id = %format!("{:x}", m.id), peer_url, learner, "added this node as a member");
                    }
                    r.map(|(_, after)| Some(after))
                        .or_else(|e| already(e, "Peer URLs already exists").map(|()| None))
                }
                Action::MoveDataAside | Action::CopyDataAside | Action::UndoRecoveryStart => {
                    unreachable!("done above")
                }
            };
            match result {
                Ok(after) => return Ok(after),
                // etcd said no for now (too many learners, not enough started members): another
                // endpoint would say the same.
                Err(e @ CallError::Etcd { .. }) => return Err(e.to_string()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}

/// The observation with every answering peer reporting `view` instead.
fn with_view(obs: &Observation, view: decide::ClusterView) -> Observation {
    let mut obs = obs.clone();
    for p in &mut obs.probes {
        if let PeerAnswer::Answered(v) = &mut p.answer {
            *v = view.clone();
        }
    }
    obs
}

/// Adds the time since `since` to a run's tally.
fn add_elapsed(tally: &Cell<Duration>, since: Instant) {
    tally.set(tally.get() + since.elapsed());
}

/// An answer that means the step was already done (by an earlier run or a racing node).
fn already(e: CallError, message: &str) -> Result<(), CallError> {
    match e.etcd_message() {
        Some(m) if m.contains(message) => Ok(()),
        _ => Err(e),
    }
}
