//! `etcd-bootstrap prune`: run by `etcd-bootstrap-prune.timer` on each member, beside its
//! running etcd. Removes the members beyond `cluster.size` whose machines are gone for good (the
//! rule in `decide/prune.rs`), one per step, looking again after each. This is how a cluster
//! shrinks when `cluster.size` is lowered and machines are terminated: nobody joins to remove
//! their members, and a survivor's boot cannot (with members gone, its reboot may cost the
//! quorum that a removal needs).

use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::decide::{self, Prune, Session};
use crate::error::Failure;
use crate::retry::{Try, until_done};
use crate::run::Agent;

pub async fn prune(agent: &Agent, timeout: Duration) -> Result<String, Failure> {
    let interval = agent.settings.discovery.interval;
    let started = Instant::now();
    let mut session = Session::default();
    let mut removed = Vec::new();
    until_done(
        timeout,
        Backoff::from_entropy(interval, interval),
        "waiting",
        "prune did not finish",
        async || loop {
            let obs = agent
                .observe()
                .await
                .map_err(|e| Failure::new(e.kind, e.message))?;
            let step = session.prune(&agent.settings.cluster, &obs, started.elapsed());
            return Ok(match step {
                Prune::Done(why) if removed.is_empty() => Try::Done(why),
                Prune::Done(why) => Try::Done(format!("removed {}; {why}", removed.join(", "))),
                Prune::Remove(action, why) => {
                    tracing::info!("{why}");
                    match agent.carry_out(&obs, &action).await {
                        // Removed: look again at once.
                        Ok(()) => {
                            if let decide::Action::RemoveMember { id, name, .. } = &action {
                                removed.push(format!("{name} ({id:x})"));
                            }
                            continue;
                        }
                        // etcd refuses removals for a few seconds after its leader is
                        // connected ("unhealthy cluster"), and calls time out under load.
                        Err(e) => Try::again(format!("{why}, but: {e}")),
                    }
                }
                Prune::Wait(why) => Try::again(why),
            });
        },
    )
    .await
}
