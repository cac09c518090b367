//! `provider = "digitalocean"`: droplets carrying a tag.
//!
//! API: `GET /v2/droplets?tag_name=TAG&per_page=200`, following `links.pages.next`
//! (https://docs.digitalocean.com/reference/api/api-reference/#operation/droplets_list).
//! Self: the droplet metadata service, `GET /metadata/v1/id`
//! (https://docs.digitalocean.com/reference/api/metadata/).

#[cfg(test)]
mod mock_tests;

use serde::Deserialize;

use super::api::{ApiClient, urlencode};
use super::secret::Secret;
use super::{CloudMachine, Discover, DiscoveryError, Listing, metadata_id};
use crate::config::{AddressKind, CloudSettings};

/// The largest page the API serves; a fleet of 10,000 droplets is 50 requests.
const PER_PAGE: usize = 200;

pub struct DigitalOcean {
    settings: CloudSettings,
    tag: String,
    token: Secret,
    api: ApiClient,
}

/// One page of `GET /v2/droplets`.
#[derive(Deserialize)]
pub struct Page {
    droplets: Vec<Droplet>,
    #[serde(default)]
    links: Option<Links>,
}

#[derive(Deserialize)]
struct Links {
    #[serde(default)]
    pages: Option<Pages>,
}

#[derive(Deserialize)]
struct Pages {
    next: Option<String>,
}

#[derive(Deserialize)]
struct Droplet {
    id: u64,
    name: String,
    status: String,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    networks: Networks,
}

#[derive(Deserialize, Default)]
struct Networks {
    #[serde(default)]
    v4: Vec<Network>,
    #[serde(default)]
    v6: Vec<Network>,
}

#[derive(Deserialize)]
struct Network {
    ip_address: String,
    #[serde(rename = "type")]
    kind: String,
}

impl DigitalOcean {
    pub fn new(settings: CloudSettings, tag: String, token: Secret) -> Result<Self, String> {
        let api = ApiClient::new(
            "DigitalOcean API",
            settings.ca_file.as_deref(),
            settings.timeout,
        )?;
        Ok(DigitalOcean {
            settings,
            tag,
            token,
            api,
        })
    }

    fn address(&self, d: &Droplet) -> Option<String> {
        let (list, kind) = match self.settings.address {
            AddressKind::PrivateV4 => (&d.networks.v4, "private"),
            AddressKind::PublicV4 => (&d.networks.v4, "public"),
            AddressKind::PublicV6 => (&d.networks.v6, "public"),
        };
        list.iter()
            .find(|n| n.kind == kind)
            .map(|n| n.ip_address.clone())
    }
}

impl Discover for DigitalOcean {
    async fn list(&self) -> Result<Listing, DiscoveryError> {
        let self_id = metadata_id(
            &self.api,
            &format!("{}/metadata/v1/id", self.settings.metadata_url),
        )
        .await;
        let mut candidates = Vec::new();
        let mut page = 1;
        loop {
            // The next page is built from our own base URL rather than taken from
            // `links.pages.next`, so the token is only ever sent to the configured API.
            let url = format!(
                "{}/v2/droplets?tag_name={}&per_page={PER_PAGE}&page={page}",
                self.settings.api_url,
                urlencode(&self.tag)
            );
            let body: Page = self.api.get_json(&url, Some(&self.token)).await?;
            for d in body.droplets.iter().filter(|d| d.status == "active") {
                candidates.push(
                    CloudMachine {
                        what: "droplet",
                        id: d.id,
                        name: &d.name,
                        address: self.address(d),
                        created: d.created_at.clone(),
                    }
                    .candidate(&self.settings)?,
                );
            }
            let more = body
                .links
                .and_then(|l| l.pages)
                .and_then(|p| p.next)
                .is_some();
            if !more || body.droplets.is_empty() {
                break;
            }
            page += 1;
        }
        Ok(Listing {
            candidates,
            self_id,
        })
    }
}
