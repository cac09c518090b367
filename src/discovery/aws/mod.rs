//! `provider = "aws"`: EC2 instances carrying tags.
//!
//! API: `DescribeInstances` with filters `tag:KEY=VALUE` (several are AND-ed) and
//! `instance-state-name=running`, following `nextToken`
//! (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstances.html).
//! The request itself is in `ec2.rs`. Credentials: the SDK's standard chain (environment, profiles, web identity, ECS, then the
//! instance profile through IMDSv2). Self and region: IMDSv2 (`PUT /latest/api/token`, then
//! `instance-id` and `placement/region`).
//!
//! Tested end to end in `tests/aws.rs`, against a mock EC2 Query API and IMDSv2 on loopback
//! (credentials come from the SDK's environment chain there, as they would on a build host).

pub mod ec2;

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::imds;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;

use super::api::ApiClient;
use super::{Discover, DiscoveryError, Listing};
use crate::config::AwsSettings;
use crate::error::Kind;
use crate::member::{Candidate, Host, MemberName, excerpt};
use ec2::{Ec2, Instance};

/// Each EC2 request, connect included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Temporary credentials are fetched again this long before they expire.
const CREDENTIALS_MARGIN: Duration = Duration::from_secs(300);

pub struct Aws {
    settings: AwsSettings,
    imds: imds::Client,
    api: ApiClient,
    /// Reused across looks until they near their expiry, so the credential chain (and the
    /// instance metadata service behind it) is asked once, not at every look.
    credentials: Mutex<Option<Credentials>>,
}

impl Aws {
    pub fn new(settings: AwsSettings) -> Result<Self, String> {
        let imds = imds::Client::builder()
            .endpoint(&settings.metadata_url)
            .map_err(|e| format!("discovery.aws.metadata_url: {e}"))?
            .connect_timeout(Duration::from_secs(1))
            .read_timeout(Duration::from_secs(2))
            .build();
        let api = ApiClient::new("EC2 API", None, REQUEST_TIMEOUT)?;
        Ok(Aws {
            settings,
            imds,
            api,
            credentials: Mutex::new(None),
        })
    }

    async fn metadata(&self, path: &str) -> Option<String> {
        match self.imds.get(path).await {
            Ok(v) => Some(String::from(v).trim().to_owned()),
            Err(e) => {
                // Only the top-level message: the error's sources carry the raw response, whose
                // body can be the IMDS session token.
                tracing::warn!("instance metadata {path}: {e}");
                None
            }
        }
    }

    async fn region(&self) -> Result<String, DiscoveryError> {
        match &self.settings.region {
            Some(r) => Ok(r.clone()),
            None => self.metadata("/latest/meta-data/placement/region").await.ok_or_else(|| DiscoveryError {
                retryable: true,
                kind: Kind::Unavailable,
                message: "no AWS region: discovery.aws.region is unset and the instance metadata service did not say".into(),
            }),
        }
    }

    /// The SDK's standard chain: environment, profiles, web identity, ECS, then the instance
    /// profile through this provider's IMDSv2 client.
    async fn credentials(&self, region: &str) -> Result<Credentials, DiscoveryError> {
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|t| t > SystemTime::now() + CREDENTIALS_MARGIN)
        };
        if let Some(c) = self.cached().filter(fresh) {
            return Ok(c);
        }
        let chain = DefaultCredentialsChain::builder()
            .region(aws_config::Region::new(region.to_owned()))
            .imds_client(self.imds.clone())
            .build()
            .await;
        // The chain's errors name the sources it tried; none carries a secret.
        let c = chain.provide_credentials().await.map_err(|e| DiscoveryError {
            retryable: true,
            kind: Kind::Unavailable,
            message: format!(
                "no AWS credentials: {}; give the instance a profile (role) or set AWS_* in the unit's environment",
                excerpt(&e.to_string())
            ),
        })?;
        *self.credentials.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
        Ok(c)
    }

    fn cached(&self) -> Option<Credentials> {
        self.credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn candidate(&self, i: &Instance) -> Result<Candidate, DiscoveryError> {
        let id = &i.id;
        let address = match self.settings.address {
            crate::config::AddressKind::PrivateV4 => &i.private_ip,
            crate::config::AddressKind::PublicV4 => &i.public_ip,
            crate::config::AddressKind::PublicV6 => &i.ipv6,
        };
        let address = address.as_deref().ok_or_else(|| DiscoveryError {
            retryable: true,
            kind: Kind::DataErr,
            message: format!(
                "instance {} has no {} address yet",
                excerpt(id),
                self.settings.address.as_str()
            ),
        })?;
        let host = Host::parse(address).map_err(|e| DiscoveryError {
            retryable: false,
            kind: Kind::DataErr,
            message: format!("instance {}: {e}", excerpt(id)),
        })?;
        let raw_name = if self.settings.names_from_id {
            id.clone()
        } else {
            let tag = i.tags.iter().find(|(k, _)| *k == self.settings.name_tag);
            tag.map(|(_, v)| v.clone()).ok_or_else(|| DiscoveryError {
                retryable: false,
                kind: Kind::DataErr,
                message: format!(
                    "instance {} has no {} tag to name its member; tag it or set member_name = \"id\"",
                    excerpt(id),
                    excerpt(&self.settings.name_tag)
                ),
            })?
        };
        let name = MemberName::parse(&raw_name).map_err(|e| DiscoveryError {
            retryable: false,
            kind: Kind::DataErr,
            message: format!(
                "instance {}: {e}; rename it or set member_name = \"id\"",
                excerpt(id)
            ),
        })?;
        Ok(Candidate {
            id: id.clone(),
            name,
            host,
            created: i.launch_time.clone(),
        })
    }
}

impl Discover for Aws {
    async fn list(&self) -> Result<Listing, DiscoveryError> {
        let self_id = self.metadata("/latest/meta-data/instance-id").await;
        let region = self.region().await?;
        let credentials = self.credentials(&region).await?;
        let ec2 = Ec2::new(&self.api, region, self.settings.endpoint_url.as_deref());
        let mut filters: Vec<(String, String)> = self
            .settings
            .tags
            .iter()
            .map(|(k, v)| (format!("tag:{k}"), v.clone()))
            .collect();
        filters.push(("instance-state-name".into(), "running".into()));
        let mut candidates = Vec::new();
        let mut next_token = None;
        loop {
            let page = ec2
                .describe_instances(&credentials, &filters, next_token.as_deref())
                .await?;
            for instance in &page.instances {
                // The filter asks for running instances; recently terminated ones may still be
                // listed (the API reference warns so), so check again.
                if instance.state == "running" && !instance.id.is_empty() {
                    candidates.push(self.candidate(instance)?);
                }
            }
            match page.next_token {
                Some(t) => next_token = Some(t),
                None => break,
            }
        }
        Ok(Listing {
            candidates,
            self_id,
        })
    }
}
