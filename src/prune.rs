//! `etcd-bootstrap prune`: run by `etcd-bootstrap-prune.timer` on each member, beside its
//! running etcd. Removes the members beyond `cluster.size` whose machines are gone for good (the
//! rule in `decide/prune.rs`), one per step, looking again after each. This is how a cluster
//! shrinks when `cluster.size` is lowered and machines are terminated: nobody joins to remove
//! their members, and a survivor's boot cannot (with members gone, its reboot may cost the
//! quorum that a removal needs).

use std::time::{Duration, Instant};

use crate::decide::{self, Prune};
use crate::error::{Failure, Kind};
use crate::run::{Agent, RunMemory};

pub async fn prune(agent: &Agent, timeout: Duration) -> Result<String, Failure> {
    let deadline = Instant::now() + timeout;
    let mut memory = RunMemory::default();
    let mut removed = Vec::new();
    loop {
        let obs = agent
            .observe()
            .await
            .map_err(|e| Failure::new(e.kind, e.message))?;
        let (dead_now, step) = {
            let facts = obs.facts(&agent.settings, &memory);
            (decide::dead_ids(&facts), decide::prune(&facts))
        };
        memory.dead_before = dead_now;
        match step {
            Prune::Done(why) if removed.is_empty() => return Ok(why),
            Prune::Done(why) => {
                return Ok(format!("removed {}; {why}", removed.join(", ")));
            }
            Prune::Remove(action, why) => {
                tracing::info!("{why}");
                match agent.carry_out(&obs, &action).await {
                    Ok(()) => {
                        if let decide::Action::RemoveMember { id, name, .. } = &action {
                            removed.push(format!("{name} ({id:x})"));
                        }
                        continue;
                    }
                    // etcd refuses removals for a few seconds after its leader is connected
                    // ("unhealthy cluster"), and calls time out under load: look again.
                    Err(e) => wait_or_fail(deadline, timeout, &format!("{why}, but: {e}"))?,
                }
            }
            Prune::Wait(why) => wait_or_fail(deadline, timeout, &why)?,
        }
        tokio::time::sleep(
            agent
                .settings
                .discovery
                .interval
                .min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
    }
}

fn wait_or_fail(deadline: Instant, timeout: Duration, why: &str) -> Result<(), Failure> {
    if Instant::now() >= deadline {
        return Err(Failure::new(
            Kind::Unavailable,
            format!("prune did not finish within {timeout:?}: {why}"),
        ));
    }
    tracing::info!("waiting: {why}");
    Ok(())
}
