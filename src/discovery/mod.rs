//! Finding the machines that should be etcd members. One folder per provider behind one trait;
//! `from_settings` is the one place a configured name becomes a provider. Whatever a provider
//! returns is validated and identified here, the same way for every provider.

pub mod api;
/// Public for the fuzz targets (`ec2::parse_page`).
#[cfg(feature = "aws")]
pub mod aws;
/// Public for the fuzz targets (`Page`).
pub mod digitalocean;
mod dns;
mod exec;
/// Public for the fuzz targets (`Page`).
pub mod hetzner;
mod localhost;
pub mod secret;
mod sources;
mod static_list;

#[cfg(test)]
mod fleet;

pub use crate::decide::SourceUsed;
pub use localhost::LocalMachine;
pub use sources::Sources;

use crate::config::{NodeSettings, Provider as ProviderSettings, Settings};
use crate::http::AddressBook;
use crate::member::Candidate;

/// What one listing returned.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub candidates: Vec<Candidate>,
    /// This machine's platform id (droplet id, server id, instance id) when the platform's
    /// metadata service said it.
    pub self_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveryError {
    /// Worth asking again (5xx, timeouts, 429, inconsistent listings); otherwise fail now.
    pub retryable: bool,
    pub kind: crate::error::Kind,
    pub message: String,
}

/// Every provider lists candidate members and, where the platform can tell, which one is this
/// machine. Providers return members as the platform describes them; validation is shared.
// The agent runs on a current-thread runtime, so the futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Discover {
    async fn list(&self) -> Result<Listing, DiscoveryError>;
}

/// The configured provider. An enum rather than a trait object: async trait methods are not
/// object-safe, and a closed set of providers is what the configuration offers anyway.
pub enum AnyProvider {
    Static(static_list::StaticList),
    Dns(Box<dns::DnsSrv>),
    DigitalOcean(Box<digitalocean::DigitalOcean>),
    Hetzner(Box<hetzner::Hetzner>),
    #[cfg(feature = "aws")]
    Aws(Box<aws::Aws>),
    Exec(exec::Exec),
}

impl AnyProvider {
    /// The one place a configured provider becomes a provider. `addresses` receives the host
    /// names a provider resolves itself; `local` is this machine, for self-identification.
    pub fn new(
        provider: &ProviderSettings,
        settings: &Settings,
        addresses: AddressBook,
        local: &LocalMachine,
    ) -> Result<Self, String> {
        Ok(match provider {
            ProviderSettings::Exec(exec) => AnyProvider::Exec(exec::Exec::new(exec.clone())),
            ProviderSettings::Static { peers } => {
                AnyProvider::Static(static_list::StaticList::new(peers.clone()))
            }
            ProviderSettings::Dns(dns) => {
                let mut mine = local.addresses.clone();
                if let Some(crate::member::Host::Ip(ip)) = &settings.node.address {
                    mine.push(*ip);
                }
                AnyProvider::Dns(Box::new(dns::DnsSrv::new(
                    dns.clone(),
                    settings.cluster.peer_scheme,
                    settings.cluster.peer_port,
                    addresses,
                    mine,
                )?))
            }
            ProviderSettings::DigitalOcean { cloud, tag } => {
                let token = secret::load_token(
                    cloud.token_file.as_deref(),
                    "digitalocean-token",
                    "DIGITALOCEAN_TOKEN",
                    "discovery.digitalocean",
                )?;
                AnyProvider::DigitalOcean(Box::new(digitalocean::DigitalOcean::new(
                    cloud.clone(),
                    tag.clone(),
                    token,
                )?))
            }
            #[cfg(feature = "aws")]
            ProviderSettings::Aws(aws) => AnyProvider::Aws(Box::new(aws::Aws::new(aws.clone())?)),
            #[cfg(not(feature = "aws"))]
            ProviderSettings::Aws(_) => {
                return Err("discovery.provider \"aws\" is not in this build (built without the aws feature)".into());
            }
            ProviderSettings::Hetzner {
                cloud,
                label_selector,
                network,
                ipv6_host,
            } => {
                let token = secret::load_token(
                    cloud.token_file.as_deref(),
                    "hcloud-token",
                    "HCLOUD_TOKEN",
                    "discovery.hetzner",
                )?;
                AnyProvider::Hetzner(Box::new(hetzner::Hetzner::new(
                    cloud.clone(),
                    label_selector.clone(),
                    network.clone(),
                    *ipv6_host,
                    token,
                )?))
            }
        })
    }
}

impl Sources {
    /// The configured provider and its fallbacks, built from the settings.
    pub fn from_settings(
        settings: &Settings,
        addresses: AddressBook,
        local: &LocalMachine,
    ) -> Result<Self, String> {
        let d = &settings.discovery;
        let sources = std::iter::once(&d.provider)
            .chain(&d.fallback)
            .map(|p| AnyProvider::new(p, settings, addresses.clone(), local).map(|a| (p.name(), a)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sources::new(sources, d.fallback_after))
    }
}

impl Discover for AnyProvider {
    async fn list(&self) -> Result<Listing, DiscoveryError> {
        match self {
            AnyProvider::Static(p) => p.list().await,
            AnyProvider::Dns(p) => p.list().await,
            AnyProvider::DigitalOcean(p) => p.list().await,
            AnyProvider::Hetzner(p) => p.list().await,
            #[cfg(feature = "aws")]
            AnyProvider::Aws(p) => p.list().await,
            AnyProvider::Exec(p) => p.list().await,
        }
    }
}

/// This machine's id from a metadata service, or `None` (logged) when the service does not
/// answer: identification then falls back to `node.name`, the host name and the addresses.
async fn metadata_id(api: &api::ApiClient, url: &str) -> Option<String> {
    match api.get_once(url).await {
        Ok(body) => {
            let id = String::from_utf8_lossy(&body).trim().to_owned();
            let plausible = !id.is_empty()
                && id.len() <= 64
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if plausible {
                Some(id)
            } else {
                tracing::warn!(
                    "the metadata service at {url} answered something that is not an id"
                );
                None
            }
        }
        Err(e) => {
            tracing::warn!(
                "metadata service: {}; identifying this machine by name and address instead",
                e.message
            );
            None
        }
    }
}

/// A cloud machine (a droplet, a server) as a candidate: its address, or a retryable error
/// while it has none yet (clouds assign them after boot); its member name from its `name` or,
/// with `member_name = "id"`, its id, or an error that says how to fix a name etcd refuses.
pub(crate) struct CloudMachine<'a> {
    /// "droplet", "server": the cloud's own word, for messages.
    pub what: &'a str,
    pub id: u64,
    pub name: &'a str,
    pub address: Option<String>,
    pub created: Option<String>,
}

impl CloudMachine<'_> {
    pub(crate) fn candidate(
        self,
        settings: &crate::config::CloudSettings,
    ) -> Result<Candidate, DiscoveryError> {
        let CloudMachine {
            what,
            id,
            name,
            address,
            created,
        } = self;
        let address = address.ok_or_else(|| DiscoveryError {
            retryable: true,
            kind: crate::error::Kind::DataErr,
            message: format!(
                "{what} {} ({id}) has no {} address yet",
                crate::member::excerpt(name),
                settings.address.as_str()
            ),
        })?;
        let host = crate::member::Host::parse(&address).map_err(|e| DiscoveryError {
            retryable: false,
            kind: crate::error::Kind::DataErr,
            message: format!("{what} {id}: {e}"),
        })?;
        let id = id.to_string();
        let raw = if settings.names_from_id { &id } else { name };
        let name = crate::member::MemberName::parse(raw).map_err(|e| DiscoveryError {
            retryable: false,
            kind: crate::error::Kind::DataErr,
            message: format!("{what} {id}: {e}; rename it or set member_name = \"id\""),
        })?;
        Ok(Candidate {
            id,
            name,
            host,
            created,
        })
    }
}

/// Candidates sorted by name; two machines with one name are an error that names both.
pub fn validate(mut candidates: Vec<Candidate>) -> Result<Vec<Candidate>, DiscoveryError> {
    candidates.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    for pair in candidates.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(DiscoveryError {
                retryable: true,
                kind: crate::error::Kind::DataErr,
                message: format!(
                    "two machines are named {}: {} ({}) and {} ({}); member names must be unique",
                    pair[0].name, pair[0].id, pair[0].host, pair[1].id, pair[1].host
                ),
            });
        }
    }
    // Sorted by address: pairwise would be 50 million comparisons for a tag on 10,000 machines.
    let mut by_host: Vec<&Candidate> = candidates.iter().collect();
    by_host.sort_by(|a, b| a.host.cmp(&b.host).then_with(|| a.name.cmp(&b.name)));
    if let Some(pair) = by_host.windows(2).find(|p| p[0].host == p[1].host) {
        return Err(DiscoveryError {
            retryable: true,
            kind: crate::error::Kind::DataErr,
            message: format!(
                "machines {} and {} have the same address {}; each member needs its own",
                pair[0].name, pair[1].name, pair[0].host
            ),
        });
    }
    Ok(candidates)
}

/// Which candidate is this machine: the platform's own word first, then `node.name`, then
/// `node.address`, then this machine's host name and interface addresses.
pub fn identify<'c>(
    candidates: &'c [Candidate],
    self_id: Option<&str>,
    node: &NodeSettings,
    local: &LocalMachine,
) -> Result<Option<&'c Candidate>, String> {
    if let Some(id) = self_id
        && let Some(c) = candidates.iter().find(|c| c.id == id)
    {
        return Ok(Some(c));
    }
    let by_name = node
        .name
        .as_ref()
        .map(|n| candidates.iter().find(|c| c.name == *n));
    let by_addr = node
        .address
        .as_ref()
        .map(|a| candidates.iter().find(|c| c.host == *a));
    match (by_name, by_addr) {
        (Some(Some(a)), Some(Some(b))) if a != b => {
            return Err(format!(
                "node.name {} and node.address {} point at different members ({} and {})",
                a.name, b.host, a.name, b.name
            ));
        }
        (Some(found), _) => return Ok(found),
        (None, Some(found)) => return Ok(found),
        (None, None) => {}
    }
    let short = local.hostname.split('.').next().unwrap_or_default();
    if let Some(c) = candidates.iter().find(|c| {
        !local.hostname.is_empty()
            && (c.name.as_str() == local.hostname || c.name.as_str() == short)
    }) {
        return Ok(Some(c));
    }
    Ok(candidates.iter().find(|c| match &c.host {
        crate::member::Host::Ip(ip) => local.addresses.contains(ip),
        crate::member::Host::Dns(name) => *name == local.hostname,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::{Host, MemberName};

    fn c(name: &str, ip: &str) -> Candidate {
        Candidate {
            id: format!("id-{name}"),
            name: MemberName::parse(name).unwrap(),
            host: Host::parse(ip).unwrap(),
            created: None,
        }
    }

    #[test]
    fn duplicate_names_and_addresses_are_errors_that_name_both() {
        let err = validate(vec![
            c("a", "10.0.0.1"),
            c("b", "10.0.0.2"),
            c("a", "10.0.0.3"),
        ])
        .unwrap_err();
        assert!(
            err.message.contains("id-a (10.0.0.1)") && err.message.contains("10.0.0.3"),
            "{}",
            err.message
        );
        let err = validate(vec![c("a", "10.0.0.1"), c("b", "10.0.0.1")]).unwrap_err();
        assert!(
            err.message.contains("same address 10.0.0.1"),
            "{}",
            err.message
        );
        let ok = validate(vec![c("b", "10.0.0.2"), c("a", "10.0.0.1")]).unwrap();
        assert_eq!(ok[0].name.as_str(), "a");
    }

    #[test]
    fn identifies_by_platform_id_then_settings_then_hostname_then_address() {
        let list = vec![
            c("etcd-0", "10.0.0.1"),
            c("etcd-1", "10.0.0.2"),
            c("etcd-2", "10.0.0.3"),
        ];
        let none = NodeSettings::default();
        let local = LocalMachine {
            hostname: "etcd-1.example.com".into(),
            addresses: vec!["10.0.0.3".parse().unwrap()],
        };
        let me = |id, node: &NodeSettings| {
            identify(&list, id, node, &local)
                .unwrap()
                .map(|c| c.name.as_str().to_owned())
        };
        assert_eq!(me(Some("id-etcd-0"), &none).as_deref(), Some("etcd-0"));
        let named = NodeSettings {
            name: Some(MemberName::parse("etcd-2").unwrap()),
            address: None,
        };
        assert_eq!(me(None, &named).as_deref(), Some("etcd-2"));
        assert_eq!(
            me(None, &none).as_deref(),
            Some("etcd-1"),
            "short host name"
        );
        let by_ip = LocalMachine {
            hostname: "other".into(),
            addresses: vec!["10.0.0.3".parse().unwrap()],
        };
        assert_eq!(
            identify(&list, None, &none, &by_ip)
                .unwrap()
                .unwrap()
                .name
                .as_str(),
            "etcd-2"
        );
        let nobody = LocalMachine {
            hostname: "other".into(),
            addresses: vec![],
        };
        assert!(identify(&list, None, &none, &nobody).unwrap().is_none());
        let clash = NodeSettings {
            name: Some(MemberName::parse("etcd-0").unwrap()),
            address: Some(Host::parse("10.0.0.2").unwrap()),
        };
        assert!(identify(&list, None, &clash, &nobody).is_err());
    }
}
