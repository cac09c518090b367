//! `provider = "aws"`: EC2 instances carrying tags.
//!
//! API: `DescribeInstances` with filters `tag:KEY=VALUE` (several are AND-ed) and
//! `instance-state-name=running`, through the SDK's paginator
//! (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstances.html).
//! Credentials: the SDK's standard chain (environment, profiles, web identity, ECS, then the
//! instance profile through IMDSv2). Self and region: IMDSv2 (`PUT /latest/api/token`, then
//! `instance-id` and `placement/region`).
//!
//! Tested end to end in `tests/aws.rs`, against a mock EC2 Query API and IMDSv2 on loopback
//! (credentials come from the SDK's environment chain there, as they would on a build host).

use aws_config::BehaviorVersion;
use aws_config::imds;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, Instance};

use super::{Discover, DiscoveryError, Listing};
use crate::config::AwsSettings;
use crate::error::Kind;
use crate::member::{Candidate, Host, MemberName, excerpt};

/// The largest page DescribeInstances serves.
const PAGE_SIZE: i32 = 1000;

pub struct Aws {
    settings: AwsSettings,
    imds: imds::Client,
}

impl Aws {
    pub fn new(settings: AwsSettings) -> Result<Self, String> {
        let imds = imds::Client::builder()
            .endpoint(&settings.metadata_url)
            .map_err(|e| format!("discovery.aws.metadata_url: {e}"))?
            .connect_timeout(std::time::Duration::from_secs(1))
            .read_timeout(std::time::Duration::from_secs(2))
            .build();
        Ok(Aws { settings, imds })
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

    async fn client(&self) -> Result<aws_sdk_ec2::Client, DiscoveryError> {
        let region = match &self.settings.region {
            Some(r) => r.clone(),
            None => self.metadata("/latest/meta-data/placement/region").await.ok_or_else(|| DiscoveryError {
                retryable: true,
                kind: Kind::Unavailable,
                message: "no AWS region: discovery.aws.region is unset and the instance metadata service did not say".into(),
            })?,
        };
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).region(aws_config::Region::new(region));
        if let Some(url) = &self.settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        Ok(aws_sdk_ec2::Client::new(&loader.load().await))
    }

    fn candidate(&self, i: &Instance) -> Result<Option<Candidate>, DiscoveryError> {
        let Some(id) = i.instance_id() else {
            return Ok(None);
        };
        let address = match self.settings.address {
            crate::config::AddressKind::PrivateV4 => i.private_ip_address(),
            crate::config::AddressKind::PublicV4 => i.public_ip_address(),
            crate::config::AddressKind::PublicV6 => i.ipv6_address(),
        };
        let address = address.ok_or_else(|| DiscoveryError {
            retryable: true,
            kind: Kind::DataErr,
            message: format!(
                "instance {id} has no {} address yet",
                self.settings.address.as_str()
            ),
        })?;
        let host = Host::parse(address).map_err(|e| DiscoveryError {
            retryable: false,
            kind: Kind::DataErr,
            message: format!("instance {id}: {e}"),
        })?;
        let raw_name = if self.settings.names_from_id {
            id.to_owned()
        } else {
            let tag = i
                .tags()
                .iter()
                .find(|t| t.key() == Some(self.settings.name_tag.as_str()));
            tag.and_then(|t| t.value()).map(str::to_owned).ok_or_else(|| DiscoveryError {
                retryable: false,
                kind: Kind::DataErr,
                message: format!(
                    "instance {id} has no {} tag to name its member; tag it or set member_name = \"id\"",
                    excerpt(&self.settings.name_tag)
                ),
            })?
        };
        let name = MemberName::parse(&raw_name).map_err(|e| DiscoveryError {
            retryable: false,
            kind: Kind::DataErr,
            message: format!("instance {id}: {e}; rename it or set member_name = \"id\""),
        })?;
        let created = i.launch_time().map(|t| t.to_string());
        Ok(Some(Candidate {
            id: id.to_owned(),
            name,
            host,
            created,
        }))
    }
}

impl Discover for Aws {
    async fn list(&self) -> Result<Listing, DiscoveryError> {
        let self_id = self.metadata("/latest/meta-data/instance-id").await;
        let ec2 = self.client().await?;
        let mut request = ec2.describe_instances();
        for (key, value) in &self.settings.tags {
            request = request.filters(
                Filter::builder()
                    .name(format!("tag:{key}"))
                    .values(value)
                    .build(),
            );
        }
        request = request.filters(
            Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        );
        let mut pages = request.into_paginator().page_size(PAGE_SIZE).send();
        let mut candidates = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(classify)?;
            for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                // The filter asks for running instances; recently terminated ones may still be
                // listed (the API reference warns so), so check again.
                let running = instance
                    .state()
                    .and_then(|s| s.name())
                    .is_some_and(|n| *n == aws_sdk_ec2::types::InstanceStateName::Running);
                if running && let Some(c) = self.candidate(instance)? {
                    candidates.push(c);
                }
            }
        }
        Ok(Listing {
            candidates,
            self_id,
        })
    }
}

/// Rejected credentials are final; throttling, 5xx and transport errors are worth retrying.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: SdkError<E, R>,
) -> DiscoveryError {
    let code = e.code().unwrap_or_default().to_owned();
    // The code and message for service errors; otherwise the chain of causes (connect, timeout).
    // Never the raw response, which `DisplayErrorContext` would include.
    let text = match &e {
        SdkError::ServiceError(_) => format!("{code}: {}", e.message().unwrap_or_default()),
        _ => {
            let mut parts = vec![e.to_string()];
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                parts.push(s.to_string());
                source = s.source();
            }
            parts.join(": ")
        }
    }
    .replace('\n', " ");
    match code.as_str() {
        "AuthFailure"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "OptInRequired" => DiscoveryError {
            retryable: false,
            kind: Kind::NoPerm,
            message: format!(
                "credentials rejected by the EC2 API ({code}): the role needs ec2:DescribeInstances; {}",
                e.message().map(excerpt).unwrap_or_default()
            ),
        },
        "InvalidParameterValue" | "InvalidParameterCombination" => DiscoveryError {
            retryable: false,
            kind: Kind::Config,
            message: format!("the EC2 API refused the request ({code}): {text}"),
        },
        _ => DiscoveryError {
            retryable: true,
            kind: Kind::Unavailable,
            message: format!("EC2 DescribeInstances failed: {text}"),
        },
    }
}
