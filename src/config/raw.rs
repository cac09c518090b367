//! What one configuration layer says: every field optional, unknown keys refused.

use std::path::PathBuf;

use serde::Deserialize;

use crate::member::Scheme;

#[derive(Clone, Debug, Default, Deserialize)]
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
    #[serde(default)]
    pub etcd: RawEtcd,
    #[serde(default)]
    pub backup: super::backup::RawBackup,
}

/// How etcd is started on this machine, for the preflight checks.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEtcd {
    pub unit: Option<String>,
    pub user: Option<String>,
    pub binary: Option<PathBuf>,
    pub initial_corrupt_check: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub name: Option<String>,
    pub address: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
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
    pub recover_lost_quorum: Option<bool>,
    pub allow_upgrade_below_floor: Option<bool>,
    pub max_learners: Option<i64>,
    pub bootstrap_settle: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
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
    #[serde(default)]
    pub exec: RawExec,
    /// Providers tried in order when the one before fails for `fallback_after`.
    pub fallback: Option<Vec<String>>,
    pub fallback_after: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExec {
    pub command: Option<Vec<String>>,
    pub timeout: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
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
#[derive(Clone, Debug, Default, Deserialize)]
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

#[derive(Clone, Debug, Default, Deserialize)]
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

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatic {
    pub peers: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub domain: Option<String>,
    pub service_name: Option<String>,
    pub nameservers: Option<Vec<String>>,
    pub member_name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    pub env_file: Option<PathBuf>,
    pub outcome_file: Option<PathBuf>,
    pub metrics_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEtcdClient {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub timeout: Option<String>,
}

/// etcd's own TLS settings, passed through to the env file (`ETCD_CERT_FILE`, ...).
#[derive(Clone, Debug, Default, Deserialize)]
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
    pub expiry_warning: Option<String>,
    pub clock_sync_wait: Option<String>,
}
