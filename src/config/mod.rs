//! Configuration in three stages (as zincati does it): `Raw` is what one layer says, every field
//! optional and unknown keys refused; the layers are merged by `load`; `Settings` is the merged
//! result with defaults applied and every value validated, so invalid states go no further.
//!
//! The contract is documented in `docs/configuration.md`.

pub mod duration;
pub mod load;

pub use load::{Layers, load};

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::member::{Host, MemberName, Scheme, excerpt};

pub const DEFAULT_CONFIG: &str = "/etc/etcd-bootstrap/config.toml";
pub const ENV_PREFIX: &str = "ETCD_BOOTSTRAP";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    #[serde(default)]
    pub node: RawNode,
    #[serde(default)]
    pub cluster: RawCluster,
    #[serde(default)]
    pub discovery: RawDiscovery,
    #[serde(default)]
    pub output: RawOutput,
    #[serde(default)]
    pub etcd_client: RawEtcdClient,
    #[serde(default)]
    pub tls: RawTls,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub name: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub size: Option<i64>,
    pub token: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub peer_scheme: Option<Scheme>,
    pub client_scheme: Option<Scheme>,
    pub peer_port: Option<i64>,
    pub client_port: Option<i64>,
    pub remove_dead_members: Option<bool>,
    pub join_as_learner: Option<bool>,
    pub replace_stale_data: Option<bool>,
    pub bootstrap_settle: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    pub provider: Option<String>,
    pub timeout: Option<String>,
    pub interval: Option<String>,
    pub max_interval: Option<String>,
    #[serde(rename = "static", default)]
    pub static_list: RawStatic,
    #[serde(default)]
    pub dns: RawDns,
    #[serde(default)]
    pub digitalocean: RawDigitalOcean,
    #[serde(default)]
    pub hetzner: RawHetzner,
    #[serde(default)]
    pub aws: RawAws,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAws {
    pub tags: Option<Vec<String>>,
    pub address: Option<String>,
    pub member_name: Option<String>,
    pub name_tag: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub metadata_url: Option<String>,
}

/// Keys every cloud provider shares.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDigitalOcean {
    pub tag: Option<String>,
    pub address: Option<String>,
    pub member_name: Option<String>,
    pub api_url: Option<String>,
    pub metadata_url: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHetzner {
    pub label_selector: Option<String>,
    pub address: Option<String>,
    pub network: Option<String>,
    pub ipv6_host: Option<String>,
    pub member_name: Option<String>,
    pub api_url: Option<String>,
    pub metadata_url: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatic {
    pub peers: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub domain: Option<String>,
    pub service_name: Option<String>,
    pub nameservers: Option<Vec<String>>,
    pub member_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    pub env_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEtcdClient {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub timeout: Option<String>,
}

/// etcd's own TLS settings, passed through to the env file (`ETCD_CERT_FILE`, ...).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: Option<bool>,
    pub peer_cert_file: Option<PathBuf>,
    pub peer_key_file: Option<PathBuf>,
    pub peer_trusted_ca_file: Option<PathBuf>,
    pub peer_client_cert_auth: Option<bool>,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub node: NodeSettings,
    pub cluster: ClusterSpec,
    pub discovery: DiscoverySettings,
    pub env_file: PathBuf,
    pub etcd_client: EtcdClientSettings,
    pub tls: EtcdTls,
}

#[derive(Clone, Debug, Default)]
pub struct NodeSettings {
    pub name: Option<MemberName>,
    pub address: Option<Host>,
}

/// What every node of one cluster must agree on. The decision core reads only this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSpec {
    pub size: usize,
    pub token: String,
    pub data_dir: PathBuf,
    pub peer_scheme: Scheme,
    pub client_scheme: Scheme,
    pub peer_port: u16,
    pub client_port: u16,
    pub remove_dead_members: bool,
    pub join_as_learner: bool,
    pub replace_stale_data: bool,
    /// How long "every expected member discovered, nothing listens anywhere" must hold before a
    /// new cluster is bootstrapped: longer than a member with data takes to reboot and start etcd.
    pub bootstrap_settle: Duration,
}

#[derive(Clone, Debug)]
pub struct DiscoverySettings {
    pub provider: Provider,
    pub timeout: Duration,
    pub interval: Duration,
    pub max_interval: Duration,
}

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
    Hetzner {
        cloud: CloudSettings,
        label_selector: String,
        /// Which private network, by id or name, when a server is in several.
        network: Option<String>,
        /// The host part inside the server's public /64 (Hetzner assigns a network, not an address).
        ipv6_host: std::net::Ipv6Addr,
    },
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

#[derive(Clone, Debug)]
pub struct EtcdClientSettings {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EtcdTls {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub peer_cert_file: Option<PathBuf>,
    pub peer_key_file: Option<PathBuf>,
    pub peer_trusted_ca_file: Option<PathBuf>,
    pub peer_client_cert_auth: bool,
}

/// The largest cluster etcd's maintainers support running; beyond it quorum writes get slow.
const MAX_SIZE: i64 = 9;

impl Settings {
    pub fn from_raw(raw: Raw) -> Result<Self, String> {
        let node = NodeSettings {
            name: raw
                .node
                .name
                .as_deref()
                .map(MemberName::parse)
                .transpose()
                .map_err(|e| format!("node.name: {e}"))?,
            address: raw
                .node
                .address
                .as_deref()
                .map(Host::parse)
                .transpose()
                .map_err(|e| format!("node.address: {e}"))?,
        };

        let c = raw.cluster;
        let size = c.size.unwrap_or(3);
        if !(1..=MAX_SIZE).contains(&size) {
            return Err(format!(
                "cluster.size is {size}; it must be between 1 and {MAX_SIZE}"
            ));
        }
        let token = c.token.unwrap_or_else(|| "etcd-cluster".into());
        check_token(&token)?;
        let data_dir = c.data_dir.unwrap_or_else(|| "/var/lib/etcd/default".into());
        check_path("cluster.data_dir", &data_dir)?;
        let cluster = ClusterSpec {
            size: size as usize,
            token,
            data_dir,
            peer_scheme: c.peer_scheme.unwrap_or(Scheme::Http),
            client_scheme: c.client_scheme.unwrap_or(Scheme::Http),
            peer_port: port("cluster.peer_port", c.peer_port.unwrap_or(2380))?,
            client_port: port("cluster.client_port", c.client_port.unwrap_or(2379))?,
            remove_dead_members: c.remove_dead_members.unwrap_or(true),
            join_as_learner: c.join_as_learner.unwrap_or(false),
            replace_stale_data: c.replace_stale_data.unwrap_or(false),
            bootstrap_settle: dur(
                "cluster.bootstrap_settle",
                c.bootstrap_settle.as_deref(),
                "30s",
            )?,
        };
        if cluster.peer_port == cluster.client_port {
            return Err(format!(
                "cluster.peer_port and cluster.client_port are both {}; they must differ",
                cluster.peer_port
            ));
        }

        let d = raw.discovery;
        let provider = match d.provider.as_deref().unwrap_or("static") {
            "static" => {
                let peers = d.static_list.peers.unwrap_or_default();
                if peers.is_empty() {
                    return Err(
                        "discovery.static.peers is empty; list the members as \"name=address\""
                            .into(),
                    );
                }
                let peers = peers
                    .iter()
                    .map(|p| parse_static_peer(p))
                    .collect::<Result<Vec<_>, _>>()?;
                Provider::Static { peers }
            }
            "dns" => Provider::Dns(dns_settings(d.dns)?),
            "digitalocean" => {
                let r = d.digitalocean;
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
                    "https://api.digitalocean.com",
                    "http://169.254.169.254",
                )?;
                Provider::DigitalOcean { cloud, tag }
            }
            "hetzner" => {
                let r = d.hetzner;
                let key = "discovery.hetzner";
                let label_selector = r.label_selector.filter(|t| !t.is_empty()).ok_or(format!(
                    "{key}.label_selector is required (e.g. \"role=etcd,cluster=prod\")"
                ))?;
                let ipv6_host = r
                    .ipv6_host
                    .as_deref()
                    .unwrap_or("::1")
                    .parse()
                    .map_err(|_| {
                        format!("{key}.ipv6_host must be an IPv6 address such as \"::1\"")
                    })?;
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
                    "https://api.hetzner.cloud",
                    "http://169.254.169.254",
                )?;
                Provider::Hetzner {
                    cloud,
                    label_selector,
                    network,
                    ipv6_host,
                }
            }
            "aws" => Provider::Aws(aws_settings(d.aws)?),
            other => {
                return Err(format!(
                    "discovery.provider {} is unknown; expected static, digitalocean, hetzner, aws or dns",
                    excerpt(other)
                ));
            }
        };
        let discovery = DiscoverySettings {
            provider,
            timeout: dur("discovery.timeout", d.timeout.as_deref(), "10m")?,
            interval: dur("discovery.interval", d.interval.as_deref(), "1s")?,
            max_interval: dur("discovery.max_interval", d.max_interval.as_deref(), "15s")?,
        };
        if discovery.interval.is_zero() || discovery.max_interval < discovery.interval {
            return Err(
                "discovery.interval must be above zero and at most discovery.max_interval".into(),
            );
        }

        let env_file = raw
            .output
            .env_file
            .unwrap_or_else(|| "/run/etcd-bootstrap/etcd.env".into());
        if env_file.file_name().is_none() || !env_file.is_absolute() {
            return Err(format!(
                "output.env_file {} must be an absolute path to a file",
                env_file.display()
            ));
        }

        let e = raw.etcd_client;
        let etcd_client = EtcdClientSettings {
            ca_file: e.ca_file,
            cert_file: e.cert_file,
            key_file: e.key_file,
            timeout: dur("etcd_client.timeout", e.timeout.as_deref(), "2s")?,
        };
        if etcd_client.cert_file.is_some() != etcd_client.key_file.is_some() {
            return Err(
                "etcd_client.cert_file and etcd_client.key_file go together; set both or neither"
                    .into(),
            );
        }

        let t = raw.tls;
        let tls = EtcdTls {
            cert_file: t.cert_file,
            key_file: t.key_file,
            trusted_ca_file: t.trusted_ca_file,
            client_cert_auth: t.client_cert_auth.unwrap_or(false),
            peer_cert_file: t.peer_cert_file,
            peer_key_file: t.peer_key_file,
            peer_trusted_ca_file: t.peer_trusted_ca_file,
            peer_client_cert_auth: t.peer_client_cert_auth.unwrap_or(false),
        };
        for (key, path) in [
            ("tls.cert_file", &tls.cert_file),
            ("tls.key_file", &tls.key_file),
            ("tls.trusted_ca_file", &tls.trusted_ca_file),
            ("tls.peer_cert_file", &tls.peer_cert_file),
            ("tls.peer_key_file", &tls.peer_key_file),
            ("tls.peer_trusted_ca_file", &tls.peer_trusted_ca_file),
        ] {
            if let Some(p) = path {
                check_path(key, p)?;
            }
        }
        if cluster.client_scheme == Scheme::Https
            && (tls.cert_file.is_none() || tls.key_file.is_none())
        {
            return Err("cluster.client_scheme is https but tls.cert_file and tls.key_file are not both set".into());
        }
        if cluster.peer_scheme == Scheme::Https
            && (tls.peer_cert_file.is_none() || tls.peer_key_file.is_none())
        {
            return Err(
                "cluster.peer_scheme is https but tls.peer_cert_file and tls.peer_key_file are not both set"
                    .into(),
            );
        }

        Ok(Settings {
            node,
            cluster,
            discovery,
            env_file,
            etcd_client,
            tls,
        })
    }
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
    let address = match r.address.as_deref().unwrap_or("private_v4") {
        "private_v4" => AddressKind::PrivateV4,
        "public_v4" => AddressKind::PublicV4,
        "ipv6" => AddressKind::PublicV6,
        other => {
            return Err(format!(
                "{key}.address {} must be private_v4, public_v4 or ipv6",
                excerpt(other)
            ));
        }
    };
    let names_from_id = match r.member_name.as_deref().unwrap_or("name") {
        "name" => false,
        "id" => true,
        other => {
            return Err(format!(
                "{key}.member_name {} must be \"name\" or \"id\"",
                excerpt(other)
            ));
        }
    };
    let url_ok = |u: &str| u.starts_with("http://") || u.starts_with("https://");
    if let Some(u) = r.endpoint_url.as_deref().filter(|u| !url_ok(u)) {
        return Err(format!(
            "{key}.endpoint_url {} must be an http:// or https:// URL",
            excerpt(u)
        ));
    }
    let metadata_url = r
        .metadata_url
        .unwrap_or_else(|| "http://169.254.169.254".into());
    if !url_ok(&metadata_url) {
        return Err(format!(
            "{key}.metadata_url {} must be an http:// or https:// URL",
            excerpt(&metadata_url)
        ));
    }
    Ok(AwsSettings {
        tags,
        address,
        names_from_id,
        name_tag: r.name_tag.unwrap_or_else(|| "Name".into()),
        region: r.region,
        endpoint_url: r.endpoint_url.map(|u| u.trim_end_matches('/').to_owned()),
        metadata_url: metadata_url.trim_end_matches('/').to_owned(),
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

fn cloud_settings(
    key: &str,
    r: RawCloud,
    api: &str,
    metadata: &str,
) -> Result<CloudSettings, String> {
    let address = match r.address.as_deref().unwrap_or("private_v4") {
        "private_v4" => AddressKind::PrivateV4,
        "public_v4" => AddressKind::PublicV4,
        "public_v6" => AddressKind::PublicV6,
        other => {
            return Err(format!(
                "{key}.address {} must be private_v4, public_v4 or public_v6",
                excerpt(other)
            ));
        }
    };
    let names_from_id = match r.member_name.as_deref().unwrap_or("name") {
        "name" => false,
        "id" => true,
        other => {
            return Err(format!(
                "{key}.member_name {} must be \"name\" or \"id\"",
                excerpt(other)
            ));
        }
    };
    let url = |field: &str, value: Option<String>, default: &str| -> Result<String, String> {
        let v = value.unwrap_or_else(|| default.to_owned());
        let v = v.trim_end_matches('/').to_owned();
        if v.starts_with("http://") || v.starts_with("https://") {
            Ok(v)
        } else {
            Err(format!(
                "{key}.{field} {} must be an http:// or https:// URL",
                excerpt(&v)
            ))
        }
    };
    Ok(CloudSettings {
        address,
        names_from_id,
        api_url: url("api_url", r.api_url, api)?,
        metadata_url: url("metadata_url", r.metadata_url, metadata)?,
        token_file: r.token_file,
        ca_file: r.ca_file,
        timeout: dur(&format!("{key}.timeout"), r.timeout.as_deref(), "10s")?,
    })
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
    let (name, addr) = entry.split_once('=').ok_or_else(|| {
        format!(
            "discovery.static.peers entry {} is not \"name=address\"",
            excerpt(entry)
        )
    })?;
    let name = MemberName::parse(name).map_err(|e| format!("discovery.static.peers: {e}"))?;
    let host = Host::parse(addr).map_err(|e| format!("discovery.static.peers: {e}"))?;
    Ok((name, host))
}

fn port(key: &str, value: i64) -> Result<u16, String> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{key} is {value}; it must be a port between 1 and 65535"))
}

fn dur(key: &str, value: Option<&str>, default: &str) -> Result<Duration, String> {
    duration::parse(value.unwrap_or(default)).map_err(|e| format!("{key}: {e}"))
}

/// The token lands in the env file unquoted, so it gets the member-name character set.
fn check_token(token: &str) -> Result<(), String> {
    let ok = !token.is_empty()
        && token.len() <= 128
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "cluster.token {} must be 1 to 128 letters, digits, '.', '_' or '-'",
            excerpt(token)
        ))
    }
}

/// Paths land in the env file unquoted: absolute, and no character a shell or systemd would read.
pub fn check_path(key: &str, path: &std::path::Path) -> Result<(), String> {
    let s = path.to_string_lossy();
    let ok = path.is_absolute()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | '@' | ':')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{key} {} must be an absolute path of letters, digits and / . _ - + @ :",
            excerpt(&s)
        ))
    }
}
