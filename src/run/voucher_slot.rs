//! The vouch endpoint's place in a run: started when the agent first waits, given each new
//! vouch, stopped before the env file is written (so etcd can bind the peer port).

use std::sync::Arc;

use tokio::sync::Notify;

use super::Agent;
use crate::decide::{Vouch, VouchedData};
use crate::envfile;
use crate::member::{Candidate, MemberName, Scheme};
use crate::notify;

/// The vouch endpoint of one run: started at the first observation that identifies this node,
/// given each new observation's vouch, stopped before the env file is written.
pub struct VoucherSlot {
    enabled: bool,
    running: Option<crate::vouch::Voucher>,
    /// The last reason it could not start, said once.
    refused: Option<String>,
    /// Whom it vouches for, as of the last offer.
    name: Option<MemberName>,
}

impl VoucherSlot {
    pub fn new(enabled: bool) -> Self {
        VoucherSlot {
            enabled,
            running: None,
            refused: None,
            name: None,
        }
    }

    /// Vouches `vouch` from now on: whether that is news for the peers (the endpoint started,
    /// or what it says changed), which they hear soonest when this agent asks them at once.
    pub async fn offer(&mut self, agent: &Agent, me: &Candidate, vouch: &Vouch) -> bool {
        if !self.enabled {
            return false;
        }
        self.name = Some(me.name.clone());
        if let Some(v) = &self.running {
            return v.update(vouch);
        }
        let spec = &agent.settings.cluster;
        let addresses: Vec<std::net::SocketAddr> =
            envfile::listen_hosts(&me.host, &agent.addresses.get(&me.host.to_string()))
                .into_iter()
                .filter_map(|h| match h {
                    crate::member::Host::Ip(ip) => Some((ip, spec.peer_port).into()),
                    crate::member::Host::Dns(_) => None,
                })
                .collect();
        let https = spec.peer_scheme == Scheme::Https;
        match crate::vouch::Voucher::start(&addresses, https, &agent.settings.tls, vouch).await {
            Ok(v) => {
                tracing::info!(
                    "vouching for this machine on {} (data dir {})",
                    v.addresses
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    match &vouch.data {
                        VouchedData::Empty => "empty".to_owned(),
                        VouchedData::Member {
                            cluster_id,
                            member_id,
                            ..
                        } => format!("member {member_id} of cluster {cluster_id}"),
                        VouchedData::Unreadable => "unreadable".to_owned(),
                    }
                );
                self.running = Some(v);
                self.refused = None;
                true
            }
            Err(e) => {
                if self.refused.as_deref() != Some(e.as_str()) {
                    tracing::warn!("{e}");
                    notify::status(&e);
                    self.refused = Some(e);
                }
                false
            }
        }
    }

    /// How this agent names itself when it asks its peers (`vouch::ASKER_HEADER`), while it
    /// vouches.
    pub fn asker(&self) -> Option<String> {
        let name = self.name.as_ref()?;
        self.running.as_ref().map(|v| v.asker(name.as_str()))
    }

    /// Told when a peer asked with a vouch it had not asked with before, while this vouches.
    pub fn news(&self) -> Option<Arc<Notify>> {
        self.running.as_ref().map(|v| v.news())
    }

    /// While it vouches: whether `name` has been answered with a vouch that names it among the
    /// peers heard, and the signal that one more has.
    pub fn told(&self) -> Option<(impl Fn(&str) -> bool + '_, Arc<Notify>)> {
        let v = self.running.as_ref()?;
        Some((|name: &str| v.told(name), v.told_news()))
    }

    pub async fn stop(&mut self) {
        if let Some(v) = self.running.take() {
            v.stop().await;
        }
    }
}
