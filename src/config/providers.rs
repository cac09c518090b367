//! `[discovery]`'s provider sections: their validated types and how they are read.

use std::path::PathBuf;
use std::time::Duration;

use super::dur;
use super::raw::{RawAws, RawDiscovery, RawDns, RawExec};
use crate::member::{Host, MemberName, excerpt};

#[derive(Clone, Debug)]
pub enum Provider {
    Static {
        peers: Vec<(MemberName, Host)>,
    },
    Dns(DnsSettings),
    DigitalOcean {
        cloud: CloudSettings,
        tag: String,
    },
    Aws(AwsSettings),
    Exec(ExecSettings),
    Hetzner {
        cloud: CloudSettings,
        label_selector: String,
        /// Which private network, by id or name, when a server is in several.
        network: Option<String>,
        /// The host part inside the server's public /64 (Hetzner assigns a network, not an address).
        ipv6_host: std::net::Ipv6Addr,
    },
}

impl Provider {
    /// The name `discovery.provider` gives it.
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Static { .. } => "static",
            Provider::Dns(_) => "dns",
            Provider::DigitalOcean { .. } => "digitalocean",
            Provider::Aws(_) => "aws",
            Provider::Exec(_) => "exec",
            Provider::Hetzner { .. } => "hetzner",
        }
    }
}

/// `[discovery.exec]`: a command that prints the members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecSettings {
    /// The program (an absolute path) and its arguments; no shell.
    pub command: Vec<String>,
    pub timeout: Duration,
}

/// `[discovery.aws]`.
#[derive(Clone, Debug)]
pub struct AwsSettings {
    /// `tag:KEY=VALUE` filters, all of which must match.
    pub tags: Vec<(String, String)>,
    pub address: AddressKind,
    pub names_from_id: bool,
    /// The tag whose value names the member (`Name`).
    pub name_tag: String,
    /// `None`: from the instance metadata service.
    pub region: Option<String>,
    /// The EC2 API endpoint; `None`: the SDK's default for the region.
    pub endpoint_url: Option<String>,
    pub metadata_url: String,
}

/// Which of a machine's addresses peers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressKind {
    PrivateV4,
    PublicV4,
    PublicV6,
}

impl AddressKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressKind::PrivateV4 => "private_v4",
            AddressKind::PublicV4 => "public_v4",
            AddressKind::PublicV6 => "public_v6",
        }
    }
}

/// What every cloud provider shares.
#[derive(Clone, Debug)]
pub struct CloudSettings {
    pub address: AddressKind,
    /// Member names from the platform id instead of the machine name.
    pub names_from_id: bool,
    /// Without a trailing slash.
    pub api_url: String,
    pub metadata_url: String,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

/// `[discovery.dns]`: etcd's own SRV convention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSettings {
    /// Without a trailing dot.
    pub domain: String,
    /// etcd's `--discovery-srv-name`: records become `_etcd-server-ssl-NAME._tcp.DOMAIN`.
    pub service_name: Option<String>,
    /// Empty: the system resolver (`/etc/resolv.conf`).
    pub nameservers: Vec<std::net::SocketAddr>,
    /// Member names from the target's first label (`short`) or its whole name (`fqdn`).
    pub fqdn_names: bool,
}

/// The provider named by `discovery.provider`, then the fallbacks named by
/// `discovery.fallback`, each with its section validated.
pub(super) fn providers(d: &RawDiscovery) -> Result<Vec<Provider>, String> {
    let mut names = vec![d.provider.as_deref().unwrap_or("static")];
    for name in d.fallback.iter().flatten() {
        if names.contains(&name.as_str()) {
            return Err(format!(
                "discovery.fallback names {} twice (discovery.provider counts)",
                excerpt(name)
            ));
        }
        names.push(name);
    }
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            provider(name, d).map_err(|e| match i {
                0 => e,
                _ => format!("discovery.fallback: {e}"),
            })
        })
        .collect()
}

/// One provider, with its section validated.
fn provider(name: &str, d: &RawDiscovery) -> Result<Provider, String> {
    Ok(match name {
        "static" => {
            let peers = d.static_list.peers.clone().unwrap_or_default();
            if peers.is_empty() {
                return Err(
                    "discovery.static.peers is empty; list the members as \"name=address\"".into(),
                );
            }
            let peers = peers
                .iter()
                .map(|p| parse_static_peer(p))
                .collect::<Result<Vec<_>, _>>()?;
            Provider::Static { peers }
        }
        "dns" => Provider::Dns(dns_settings(d.dns.clone())?),
        "digitalocean" => {
            let r = d.digitalocean.clone();
            let key = "discovery.digitalocean";
            let tag = r
                .tag
                .filter(|t| !t.is_empty())
                .ok_or(format!("{key}.tag is required"))?;
            let cloud = cloud_settings(
                key,
                RawCloud {
                    address: r.address,
                    member_name: r.member_name,
                    api_url: r.api_url,
                    metadata_url: r.metadata_url,
                    token_file: r.token_file,
                    ca_file: r.ca_file,
                    timeout: r.timeout,
                },
                ("https://api.digitalocean.com", "/v2"),
                "http://169.254.169.254",
            )?;
            Provider::DigitalOcean { cloud, tag }
        }
        "hetzner" => {
            let r = d.hetzner.clone();
            let key = "discovery.hetzner";
            let label_selector = r.label_selector.filter(|t| !t.is_empty()).ok_or(format!(
                "{key}.label_selector is required (e.g. \"role=etcd,cluster=prod\")"
            ))?;
            let ipv6_host = r
                .ipv6_host
                .as_deref()
                .unwrap_or("::1")
                .parse()
                .map_err(|_| format!("{key}.ipv6_host must be an IPv6 address such as \"::1\""))?;
            let network = r.network;
            let cloud = cloud_settings(
                key,
                RawCloud {
                    address: r.address,
                    member_name: r.member_name,
                    api_url: r.api_url,
                    metadata_url: r.metadata_url,
                    token_file: r.token_file,
                    ca_file: r.ca_file,
                    timeout: r.timeout,
                },
                ("https://api.hetzner.cloud", "/v1"),
                "http://169.254.169.254",
            )?;
            Provider::Hetzner {
                cloud,
                label_selector,
                network,
                ipv6_host,
            }
        }
        "aws" => Provider::Aws(aws_settings(d.aws.clone())?),
        "exec" => Provider::Exec(exec_settings(&d.exec)?),
        other => {
            return Err(format!(
                "discovery.provider {} is unknown; expected static, digitalocean, hetzner, aws, dns or exec",
                excerpt(other)
            ));
        }
    })
}

fn exec_settings(r: &RawExec) -> Result<ExecSettings, String> {
    let command = r.command.clone().unwrap_or_default();
    match command.first() {
        None => {
            return Err(
                "discovery.exec.command is required with provider = \"exec\" (e.g. [\"/usr/local/bin/etcd-peers\"])"
                    .into(),
            );
        }
        Some(program) if !program.starts_with('/') => {
            return Err(format!(
                "discovery.exec.command's program {} must be an absolute path (it is run without a shell or PATH)",
                excerpt(program)
            ));
        }
        Some(_) => {}
    }
    Ok(ExecSettings {
        command,
        timeout: dur("discovery.exec.timeout", r.timeout.as_deref(), "30s")?,
    })
}

fn aws_settings(r: RawAws) -> Result<AwsSettings, String> {
    let key = "discovery.aws";
    let tags = r
        .tags
        .unwrap_or_default()
        .iter()
        .map(|t| match t.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!(
                "{key}.tags entry {} is not \"KEY=VALUE\"",
                excerpt(t)
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if tags.is_empty() {
        return Err(format!(
            "{key}.tags is required (e.g. [\"etcd-cluster=prod\"])"
        ));
    }
    let address = address_kind(key, r.address.as_deref())?;
    let names_from_id = names_from_id(key, r.member_name.as_deref())?;
    let endpoint_url = r
        .endpoint_url
        .map(|u| http_url(key, "endpoint_url", u))
        .transpose()?;
    let metadata_url = http_url(
        key,
        "metadata_url",
        r.metadata_url
            .unwrap_or_else(|| "http://169.254.169.254".into()),
    )?;
    Ok(AwsSettings {
        tags,
        address,
        names_from_id,
        name_tag: r.name_tag.unwrap_or_else(|| "Name".into()),
        region: r.region,
        endpoint_url,
        metadata_url,
    })
}

struct RawCloud {
    address: Option<String>,
    member_name: Option<String>,
    api_url: Option<String>,
    metadata_url: Option<String>,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    timeout: Option<String>,
}

/// `api`: the default base URL and the API version the client puts in front of every path. The
/// base is accepted with or without that version, the way the platform's own tools write it
/// (`HCLOUD_ENDPOINT=https://api.hetzner.cloud/v1`, DigitalOcean's `https://api.digitalocean.com/v2`).
fn cloud_settings(
    key: &str,
    r: RawCloud,
    (api, version): (&str, &str),
    metadata: &str,
) -> Result<CloudSettings, String> {
    let address = address_kind(key, r.address.as_deref())?;
    let names_from_id = names_from_id(key, r.member_name.as_deref())?;
    let url = |field: &str, value: Option<String>, default: &str| {
        http_url(key, field, value.unwrap_or_else(|| default.to_owned()))
    };
    Ok(CloudSettings {
        address,
        names_from_id,
        api_url: url("api_url", r.api_url, api).map(|u| match u.strip_suffix(version) {
            Some(base) if !base.ends_with(':') && !base.ends_with('/') => base.to_owned(),
            _ => u,
        })?,
        metadata_url: url("metadata_url", r.metadata_url, metadata)?,
        token_file: r.token_file,
        ca_file: r.ca_file,
        timeout: dur(&format!("{key}.timeout"), r.timeout.as_deref(), "10s")?,
    })
}

/// `<key>.address`, the same words for every cloud: `private_v4` (the default), `public_v4`,
/// `public_v6` (`ipv6` is accepted as well: AWS's own word, and what the AWS provider took first).
fn address_kind(key: &str, value: Option<&str>) -> Result<AddressKind, String> {
    match value.unwrap_or("private_v4") {
        "private_v4" => Ok(AddressKind::PrivateV4),
        "public_v4" => Ok(AddressKind::PublicV4),
        "public_v6" | "ipv6" => Ok(AddressKind::PublicV6),
        other => Err(format!(
            "{key}.address {} must be private_v4, public_v4 or public_v6",
            excerpt(other)
        )),
    }
}

/// `<key>.member_name`: members named after the machine's `name` (the default) or its `id`.
fn names_from_id(key: &str, value: Option<&str>) -> Result<bool, String> {
    match value.unwrap_or("name") {
        "name" => Ok(false),
        "id" => Ok(true),
        other => Err(format!(
            "{key}.member_name {} must be \"name\" or \"id\"",
            excerpt(other)
        )),
    }
}

/// An http:// or https:// URL setting, without a trailing slash.
fn http_url(key: &str, field: &str, value: String) -> Result<String, String> {
    let v = value.trim_end_matches('/').to_owned();
    if v.starts_with("http://") || v.starts_with("https://") {
        Ok(v)
    } else {
        Err(format!(
            "{key}.{field} {} must be an http:// or https:// URL",
            excerpt(&v)
        ))
    }
}

fn dns_settings(raw: RawDns) -> Result<DnsSettings, String> {
    let domain = raw
        .domain
        .ok_or("discovery.dns.domain is required with provider = \"dns\"")?;
    let domain = domain
        .strip_suffix('.')
        .unwrap_or(&domain)
        .to_ascii_lowercase();
    match Host::parse(&domain) {
        Ok(Host::Dns(_)) => {}
        _ => {
            return Err(format!(
                "discovery.dns.domain {} is not a DNS name",
                excerpt(&domain)
            ));
        }
    }
    if let Some(name) = &raw.service_name {
        let ok = !name.is_empty()
            && name.len() <= 40
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(format!(
                "discovery.dns.service_name {} must be letters, digits and '-'",
                excerpt(name)
            ));
        }
    }
    let nameservers = raw
        .nameservers
        .unwrap_or_default()
        .iter()
        .map(|ns| {
            ns.parse::<std::net::SocketAddr>()
                .or_else(|_| ns.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
                .map_err(|_| {
                    format!(
                        "discovery.dns.nameservers entry {} is not IP or IP:PORT ([v6]:PORT)",
                        excerpt(ns)
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let fqdn_names = match raw.member_name.as_deref().unwrap_or("short") {
        "short" => false,
        "fqdn" => true,
        other => {
            return Err(format!(
                "discovery.dns.member_name {} must be \"short\" or \"fqdn\"",
                excerpt(other)
            ));
        }
    };
    Ok(DnsSettings {
        domain,
        service_name: raw.service_name,
        nameservers,
        fqdn_names,
    })
}

fn parse_static_peer(entry: &str) -> Result<(MemberName, Host), String> {
    crate::member::parse_entry(entry).map_err(|e| format!("discovery.static.peers entry {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::{RawDigitalOcean, RawHetzner};

    fn api_of(provider: Provider) -> String {
        match provider {
            Provider::DigitalOcean { cloud, .. } | Provider::Hetzner { cloud, .. } => cloud.api_url,
            other => panic!("not a cloud provider: {other:?}"),
        }
    }

    fn hetzner(api_url: &str) -> String {
        api_of(
            provider(
                "hetzner",
                &RawDiscovery {
                    hetzner: RawHetzner {
                        label_selector: Some("role=etcd".into()),
                        api_url: Some(api_url.into()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .unwrap(),
        )
    }

    fn digitalocean(api_url: &str) -> String {
        api_of(
            provider(
                "digitalocean",
                &RawDiscovery {
                    digitalocean: RawDigitalOcean {
                        tag: Some("etcd".into()),
                        api_url: Some(api_url.into()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .unwrap(),
        )
    }

    #[test]
    fn every_cloud_spells_its_addresses_alike() {
        for (word, kind) in [
            (None, AddressKind::PrivateV4),
            (Some("public_v4"), AddressKind::PublicV4),
            (Some("public_v6"), AddressKind::PublicV6),
            (Some("ipv6"), AddressKind::PublicV6),
        ] {
            assert_eq!(address_kind("discovery.aws", word).unwrap(), kind);
        }
        assert_eq!(
            address_kind("discovery.hetzner", Some("v6")).unwrap_err(),
            "discovery.hetzner.address \"v6\" must be private_v4, public_v4 or public_v6"
        );
        assert_eq!(
            http_url("discovery.aws", "endpoint_url", "ftp://x".into()).unwrap_err(),
            "discovery.aws.endpoint_url \"ftp://x\" must be an http:// or https:// URL"
        );
    }

    #[test]
    fn api_bases_are_accepted_with_or_without_the_version_the_tools_write() {
        for written in [
            "https://api.hetzner.cloud",
            "https://api.hetzner.cloud/",
            "https://api.hetzner.cloud/v1",
            "https://api.hetzner.cloud/v1/",
        ] {
            assert_eq!(hetzner(written), "https://api.hetzner.cloud", "{written}");
        }
        for written in [
            "https://api.digitalocean.com",
            "https://api.digitalocean.com/v2",
            "https://api.digitalocean.com/v2/",
        ] {
            assert_eq!(
                digitalocean(written),
                "https://api.digitalocean.com",
                "{written}"
            );
        }
        // A proxy path is kept; only the version the client adds itself is taken off.
        assert_eq!(
            hetzner("http://127.0.0.1:8080/hcloud/v1"),
            "http://127.0.0.1:8080/hcloud"
        );
        assert_eq!(
            hetzner("http://127.0.0.1:8080/v12"),
            "http://127.0.0.1:8080/v12"
        );
        assert_eq!(
            digitalocean("http://127.0.0.1:8080/v1"),
            "http://127.0.0.1:8080/v1"
        );
    }

    #[test]
    fn fallbacks_are_providers_with_their_own_sections_each_once() {
        let d = |provider: &str, fallback: &[&str]| RawDiscovery {
            provider: Some(provider.into()),
            fallback: Some(fallback.iter().map(|s| s.to_string()).collect()),
            static_list: crate::config::raw::RawStatic {
                peers: Some(vec!["etcd-0=10.0.0.10".into()]),
            },
            exec: RawExec {
                command: Some(vec!["/usr/local/bin/etcd-peers".into()]),
                timeout: None,
            },
            ..Default::default()
        };
        let names: Vec<_> = providers(&d("exec", &["static"]))
            .unwrap()
            .iter()
            .map(Provider::name)
            .collect();
        assert_eq!(names, ["exec", "static"]);
        let twice = providers(&d("static", &["exec", "static"])).unwrap_err();
        assert!(twice.contains("names \"static\" twice"), "{twice}");
        let unknown = providers(&d("static", &["gcp"])).unwrap_err();
        assert!(
            unknown.starts_with("discovery.fallback: discovery.provider \"gcp\" is unknown"),
            "{unknown}"
        );
        let no_section = providers(&d("static", &["dns"])).unwrap_err();
        assert!(
            no_section.contains("discovery.dns.domain is required"),
            "{no_section}"
        );
        let mut relative = d("exec", &[]);
        relative.exec.command = Some(vec!["etcd-peers".into()]);
        let relative = providers(&relative).unwrap_err();
        assert!(relative.contains("must be an absolute path"), "{relative}");
    }
}
