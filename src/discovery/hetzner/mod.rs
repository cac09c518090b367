//! `provider = "hetzner"`: Hetzner Cloud servers matching a label selector.
//!
//! API: `GET /v1/servers?label_selector=...&status=running&per_page=50&page=N`, while
//! `meta.pagination.next_page` is not null (https://docs.hetzner.cloud/#servers-get-all-servers).
//! Self: the server metadata service, `GET /hetzner/v1/metadata/instance-id`
//! (https://docs.hetzner.cloud/#server-metadata).
//!
//! A small serde client rather than the generated `hcloud` crate: it reads only the fields it
//! needs (so a field Hetzner removes cannot break it), sees the rate-limit headers, bounds every
//! body and shares the agent's single HTTP stack.

#[cfg(test)]
mod mock_tests;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

use serde::Deserialize;

use super::api::{ApiClient, urlencode};
use super::secret::Secret;
use super::{CloudMachine, Discover, DiscoveryError, Listing, metadata_id};
use crate::config::{AddressKind, CloudSettings};
use crate::error::Kind;
use crate::member::excerpt;

/// The largest page the API serves.
const PER_PAGE: usize = 50;

pub struct Hetzner {
    settings: CloudSettings,
    label_selector: String,
    network: Option<String>,
    ipv6_host: Ipv6Addr,
    token: Secret,
    api: ApiClient,
}

/// One page of `GET /v1/servers`.
#[derive(Deserialize)]
pub struct Page {
    servers: Vec<Server>,
    meta: Meta,
}

#[derive(Deserialize)]
struct Meta {
    pagination: Pagination,
}

#[derive(Deserialize)]
struct Pagination {
    next_page: Option<u64>,
}

#[derive(Deserialize)]
struct Server {
    id: u64,
    name: String,
    status: String,
    #[serde(default)]
    created: Option<String>,
    public_net: PublicNet,
    #[serde(default)]
    private_net: Vec<PrivateNet>,
}

#[derive(Deserialize)]
struct PublicNet {
    ipv4: Option<IpEntry>,
    ipv6: Option<IpEntry>,
}

#[derive(Deserialize)]
struct IpEntry {
    ip: String,
}

#[derive(Deserialize)]
struct PrivateNet {
    network: u64,
    ip: String,
}

#[derive(Deserialize)]
struct Networks {
    networks: Vec<NetworkEntry>,
}

#[derive(Deserialize)]
struct NetworkEntry {
    id: u64,
}

impl Hetzner {
    pub fn new(
        settings: CloudSettings,
        label_selector: String,
        network: Option<String>,
        ipv6_host: Ipv6Addr,
        token: Secret,
    ) -> Result<Self, String> {
        let api = ApiClient::new(
            "Hetzner Cloud API",
            settings.ca_file.as_deref(),
            settings.timeout,
        )?;
        Ok(Hetzner {
            settings,
            label_selector,
            network,
            ipv6_host,
            token,
            api,
        })
    }

    /// The configured private network as an id: numbers are ids, anything else is a name.
    async fn network_id(&self) -> Result<Option<u64>, DiscoveryError> {
        let Some(net) = &self.network else {
            return Ok(None);
        };
        if let Ok(id) = net.parse() {
            return Ok(Some(id));
        }
        let url = format!(
            "{}/v1/networks?name={}",
            self.settings.api_url,
            urlencode(net)
        );
        let found: Networks = self.api.get_json(&url, Some(&self.token)).await?;
        match found.networks.first() {
            Some(n) => Ok(Some(n.id)),
            None => Err(DiscoveryError {
                retryable: false,
                kind: Kind::Config,
                message: format!(
                    "discovery.hetzner.network: no network is named {}",
                    excerpt(net)
                ),
            }),
        }
    }

    fn address(&self, s: &Server, network: Option<u64>) -> Result<Option<String>, DiscoveryError> {
        Ok(match self.settings.address {
            AddressKind::PublicV4 => s.public_net.ipv4.as_ref().map(|e| e.ip.clone()),
            AddressKind::PublicV6 => match &s.public_net.ipv6 {
                None => None,
                Some(e) => Some(
                    host_in(&e.ip, self.ipv6_host).map_err(|why| DiscoveryError {
                        retryable: false,
                        kind: Kind::DataErr,
                        message: format!(
                            "server {} ({}): public IPv6 {}: {why}",
                            excerpt(&s.name),
                            s.id,
                            excerpt(&e.ip)
                        ),
                    })?,
                ),
            },
            AddressKind::PrivateV4 => match (network, s.private_net.as_slice()) {
                (Some(id), nets) => nets.iter().find(|n| n.network == id).map(|n| n.ip.clone()),
                (None, []) => None,
                (None, [only]) => Some(only.ip.clone()),
                (None, nets) => {
                    return Err(DiscoveryError {
                        retryable: false,
                        kind: Kind::Config,
                        message: format!(
                            "server {} ({}) is in several private networks ({}); set discovery.hetzner.network",
                            excerpt(&s.name),
                            s.id,
                            nets.iter()
                                .map(|n| n.network.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
            },
        })
    }
}

/// Hetzner gives a server's IPv6 as its /64 network (`2001:db8:1:2::/64`); the server's address
/// is that prefix with the configured host part (`::1` by convention).
fn host_in(network: &str, host: Ipv6Addr) -> Result<String, String> {
    let (prefix, len) = network.split_once('/').unwrap_or((network, "64"));
    let prefix: Ipv6Addr = prefix
        .parse()
        .map_err(|_| "not an IPv6 network".to_owned())?;
    let len: u32 = len
        .parse()
        .ok()
        .filter(|l| *l <= 128)
        .ok_or("bad prefix length")?;
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    let addr = (u128::from(prefix) & mask) | (u128::from(host) & !mask);
    Ok(IpAddr::V6(Ipv6Addr::from(addr)).to_string())
}

impl Discover for Hetzner {
    async fn list(&self) -> Result<Listing, DiscoveryError> {
        let self_id = metadata_id(
            &self.api,
            &format!(
                "{}/hetzner/v1/metadata/instance-id",
                self.settings.metadata_url
            ),
        )
        .await;
        let network = self.network_id().await?;
        let mut candidates = Vec::new();
        let mut seen: HashMap<u64, ()> = HashMap::new();
        let mut page = 1;
        loop {
            let url = format!(
                "{}/v1/servers?label_selector={}&status=running&per_page={PER_PAGE}&page={page}",
                self.settings.api_url,
                urlencode(&self.label_selector)
            );
            let body: Page = self.api.get_json(&url, Some(&self.token)).await?;
            for s in body.servers.iter().filter(|s| s.status == "running") {
                // Pages can shift while we read them; a server seen twice is listed once.
                if seen.insert(s.id, ()).is_some() {
                    continue;
                }
                candidates.push(
                    CloudMachine {
                        what: "server",
                        id: s.id,
                        name: &s.name,
                        address: self.address(s, network)?,
                        created: s.created.clone(),
                    }
                    .candidate(&self.settings)?,
                );
            }
            match body.meta.pagination.next_page {
                Some(next) if next > page && !body.servers.is_empty() => page = next,
                _ => break,
            }
        }
        Ok(Listing {
            candidates,
            self_id,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_part_goes_inside_the_64() {
        let h = "::1".parse().unwrap();
        assert_eq!(
            super::host_in("2001:db8:1:2::/64", h).unwrap(),
            "2001:db8:1:2::1"
        );
        assert_eq!(
            super::host_in("2001:db8:1:2::/64", "::a:b".parse().unwrap()).unwrap(),
            "2001:db8:1:2::a:b"
        );
        assert!(super::host_in("not-an-ip/64", h).is_err());
    }
}
