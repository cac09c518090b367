//! `provider = "dns"`: etcd's DNS SRV convention, as `--discovery-srv` reads it.
//!
//! Records `_etcd-server-ssl[-NAME]._tcp.DOMAIN` list https peers and `_etcd-server[-NAME]._tcp.DOMAIN`
//! http peers; each target is a member whose peer URL is `scheme://TARGET:PORT` (the host name,
//! not its address, so certificates with DNS SANs keep working). etcd's own SRV discovery only
//! bootstraps; through this provider the agent also joins, restarts and waits for the full set.
//! Reference: https://etcd.io/docs/v3.5/op-guide/clustering/#dns-discovery

use std::net::IpAddr;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};

use super::{Discover, DiscoveryError, Listing};
use crate::config::DnsSettings;
use crate::error::Kind;
use crate::http::AddressBook;
use crate::member::{Candidate, Host, MemberName, Scheme, excerpt};

pub struct DnsSrv {
    settings: DnsSettings,
    scheme: Scheme,
    peer_port: u16,
    resolver: TokioResolver,
    addresses: AddressBook,
    /// This machine's addresses (interfaces and `node.address`), to find itself among the targets.
    local: Vec<IpAddr>,
}

impl DnsSrv {
    pub fn new(
        settings: DnsSettings,
        scheme: Scheme,
        peer_port: u16,
        addresses: AddressBook,
        local: Vec<IpAddr>,
    ) -> Result<Self, String> {
        // No cache: the agent polls while records appear, and must see each change.
        let mut opts = ResolverOpts::default();
        opts.cache_size = 0;
        opts.timeout = std::time::Duration::from_secs(2);
        opts.attempts = 2;
        let builder = if settings.nameservers.is_empty() {
            Resolver::builder_tokio()
                .map_err(|e| format!("cannot read the system resolver configuration: {e}"))?
        } else {
            let servers = settings
                .nameservers
                .iter()
                .map(|ns| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = ns.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = ns.port();
                    NameServerConfig::new(ns.ip(), true, vec![udp, tcp])
                })
                .collect();
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let resolver = builder
            .with_options(opts)
            .build()
            .map_err(|e| format!("cannot set up the DNS resolver: {e}"))?;
        Ok(DnsSrv {
            settings,
            scheme,
            peer_port,
            resolver,
            addresses,
            local,
        })
    }

    fn record_name(&self, scheme: Scheme) -> String {
        let service = match scheme {
            Scheme::Https => "_etcd-server-ssl",
            Scheme::Http => "_etcd-server",
        };
        let suffix = self
            .settings
            .service_name
            .as_deref()
            .map(|s| format!("-{s}"))
            .unwrap_or_default();
        format!("{service}{suffix}._tcp.{}.", self.settings.domain)
    }

    /// SRV answers as (target with trailing dot, port); `None` when the name has no records.
    async fn srv(&self, name: &str) -> Result<Option<Vec<(String, u16)>>, DiscoveryError> {
        crate::outcome::counters::discovery_request();
        match self.resolver.srv_lookup(name).await {
            Ok(lookup) => Ok(Some(
                lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::SRV(srv) => Some((srv.target.to_utf8(), srv.port)),
                        _ => None,
                    })
                    .collect(),
            )),
            Err(e) if e.is_no_records_found() => Ok(None),
            Err(e) => Err(retry(format!(
                "DNS lookup of {name} failed: {}",
                one_line(&e)
            ))),
        }
    }
}

impl Discover for DnsSrv {
    async fn list(&self) -> Result<Listing, DiscoveryError> {
        let name = self.record_name(self.scheme);
        let Some(mut records) = self.srv(&name).await? else {
            let other_scheme = if self.scheme == Scheme::Https {
                Scheme::Http
            } else {
                Scheme::Https
            };
            let other = self.record_name(other_scheme);
            if self.srv(&other).await?.is_some_and(|r| !r.is_empty()) {
                return Err(DiscoveryError {
                    retryable: false,
                    kind: Kind::Config,
                    message: format!(
                        "{name} has no records but {other} has: the records are for {other_scheme} peers while cluster.peer_scheme is {}",
                        self.scheme
                    ),
                });
            }
            // NXDOMAIN: no members published yet. The core waits for them.
            tracing::debug!("{name}: no such records yet");
            return Ok(Listing::default());
        };
        // Answers come in varying order (servers rotate them); the same target may be listed twice.
        records.sort();
        records.dedup();

        let mut candidates = Vec::with_capacity(records.len());
        let mut self_id = None;
        for (target, port) in records {
            let candidate = self.candidate(&name, &target, port)?;
            let ips = self.resolve(&target).await?;
            if ips.iter().any(|ip| self.local.contains(ip)) {
                self_id = Some(candidate.id.clone());
            }
            self.addresses.set(&candidate.host.to_string(), ips);
            candidates.push(candidate);
        }
        Ok(Listing {
            candidates,
            self_id,
        })
    }
}

impl DnsSrv {
    fn candidate(
        &self,
        record: &str,
        target: &str,
        port: u16,
    ) -> Result<Candidate, DiscoveryError> {
        let malformed = |why: String| DiscoveryError {
            retryable: false,
            kind: Kind::DataErr,
            message: format!("malformed SRV record in {record}: {why}"),
        };
        if target == "." {
            return Err(malformed(
                "target \".\" (service explicitly not available)".into(),
            ));
        }
        if port != self.peer_port {
            return Err(DiscoveryError {
                retryable: false,
                kind: Kind::Config,
                message: format!(
                    "{record} gives port {port} for {target} but cluster.peer_port is {}; make them agree",
                    self.peer_port
                ),
            });
        }
        let host = match Host::parse(target) {
            Ok(h @ Host::Dns(_)) => h,
            Ok(_) | Err(_) => {
                return Err(malformed(format!(
                    "target {} is not a host name",
                    excerpt(target)
                )));
            }
        };
        let fqdn = host.to_string();
        let raw_name = if self.settings.fqdn_names {
            fqdn.as_str()
        } else {
            fqdn.split('.').next().unwrap_or(&fqdn)
        };
        let name = MemberName::parse(raw_name).map_err(malformed)?;
        Ok(Candidate {
            id: fqdn,
            name,
            host,
            created: None,
        })
    }

    async fn resolve(&self, target: &str) -> Result<Vec<IpAddr>, DiscoveryError> {
        crate::outcome::counters::discovery_request();
        match self.resolver.lookup_ip(target).await {
            Ok(ips) => {
                let mut ips: Vec<IpAddr> = ips.iter().collect();
                ips.sort();
                Ok(ips)
            }
            Err(e) if e.is_no_records_found() => Err(retry(format!(
                "SRV target {target} does not resolve (no A or AAAA records)"
            ))),
            Err(e) => Err(retry(format!(
                "DNS lookup of {target} failed: {}",
                one_line(&e)
            ))),
        }
    }
}

fn retry(message: String) -> DiscoveryError {
    DiscoveryError {
        retryable: true,
        kind: Kind::Unavailable,
        message,
    }
}

fn one_line(e: &NetError) -> String {
    e.to_string().replace('\n', " ")
}
