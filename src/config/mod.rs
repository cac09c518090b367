//! Configuration in three stages (as zincati does it): `Raw` is what one layer says, every field
//! optional and unknown keys refused; the layers are merged by `load`; `Settings` is the merged
//! result with defaults applied and every value validated, so invalid states go no further.
//!
//! The contract is documented in `docs/configuration.md`.

pub mod backup;
pub mod duration;
pub mod load;
mod providers;
mod raw;

pub use backup::{BackupSettings, Keep, StoreUrl};
pub use providers::{AddressKind, AwsSettings, CloudSettings, DnsSettings, ExecSettings, Provider};
pub use raw::*;

pub use load::{Layers, load};

use std::path::PathBuf;
use std::time::Duration;

use crate::member::{Host, MemberName, Scheme, excerpt};

pub const DEFAULT_CONFIG: &str = "/etc/etcd-bootstrap/config.toml";
pub const ENV_PREFIX: &str = "ETCD_BOOTSTRAP";

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub node: NodeSettings,
    pub cluster: ClusterSpec,
    pub discovery: DiscoverySettings,
    pub env_file: PathBuf,
    /// The outcome record, written after every run (docs/outcome.md); by default beside the env
    /// file.
    pub outcome_file: PathBuf,
    /// The same figures as a Prometheus textfile; `None`: not written.
    pub metrics_file: Option<PathBuf>,
    pub etcd_client: EtcdClientSettings,
    pub tls: EtcdTls,
    pub etcd: EtcdSettings,
    /// `[backup]`; `None`: no backups (docs/backup.md).
    pub backup: Option<BackupSettings>,
}

/// `[etcd]`: how etcd is started here, for the preflight checks.
#[derive(Clone, Debug)]
pub struct EtcdSettings {
    /// The unit that starts etcd with the env file; asked for its `User=`, environment and
    /// command line.
    pub unit: String,
    /// Whose permissions the certificate files need; `None`: the unit's `User=`.
    pub user: Option<String>,
    /// The etcd binary this machine starts, when set: asked for its version, and run by the
    /// agent itself for the one start of a lost-quorum recovery (docs/recovery.md). `None`: the
    /// program `unit`'s `ExecStart=` runs, else /usr/bin/etcd (`preflight::etcd_binary`).
    pub binary: Option<PathBuf>,
    /// Write the key that turns etcd's initial corruption check on, in the spelling the local
    /// etcd reads (docs/env-file.md).
    pub initial_corrupt_check: bool,
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
    /// Opt-in: when a majority of the members is gone for good, the freshest survivor starts
    /// once with `--force-new-cluster` (docs/recovery.md).
    pub recover_lost_quorum: bool,
    /// Opt-in: let this node join or restart beside members below the patch release an upgrade
    /// to the next minor needs (etcd::version::UPGRADE_FLOORS; docs/versions.md).
    pub allow_upgrade_below_floor: bool,
    /// How many learners etcd 3.6 and later may hold at once (`--max-learners`, written into
    /// the env file); 1, etcd's default and the only value before 3.6, unless set.
    pub max_learners: usize,
    /// Off (`None`, the default): a new cluster needs every other member's agent to vouch for an
    /// empty data dir. Set: the old fallback for fleets whose agents cannot reach each other's
    /// peer port, a member that stays silent this long counts as empty, which is wrong for a
    /// member with data that takes longer to reboot (docs/decisions.md).
    pub bootstrap_settle: Option<Duration>,
}

impl ClusterSpec {
    /// A member's peer URL, as every node computes it for that host.
    pub fn peer_url(&self, host: &Host) -> String {
        crate::member::url(self.peer_scheme, host, self.peer_port)
    }

    /// A member's client URL.
    pub fn client_url(&self, host: &Host) -> String {
        crate::member::url(self.client_scheme, host, self.client_port)
    }
}

#[derive(Clone, Debug)]
pub struct DiscoverySettings {
    pub provider: Provider,
    /// Tried in order when the source in use fails (retryably) for `fallback_after`.
    pub fallback: Vec<Provider>,
    pub fallback_after: Duration,
    /// Off (`None`, the default): a wait that only the peers can end lasts as long as it
    /// takes. Set: the run fails (exit 69) when it has not decided by then.
    pub timeout: Option<Duration>,
    pub interval: Duration,
    pub max_interval: Duration,
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
    /// A certificate expiring sooner than this is warned about.
    pub expiry_warning: Duration,
    /// How long a certificate that is not valid yet is waited for, in case the clock is behind.
    pub clock_sync_wait: Duration,
}

/// The largest cluster etcd's maintainers support running; beyond it quorum writes get slow.
const MAX_SIZE: i64 = 9;

impl Settings {
    /// `[backup]`, for a command that cannot do without it (`for_what`: what the store is for).
    pub fn backup_for(&self, for_what: &str) -> Result<&BackupSettings, crate::error::Failure> {
        self.backup.as_ref().ok_or_else(|| {
            crate::error::Failure::new(
                crate::error::Kind::Config,
                format!(
                    "no backup.url in the configuration: there is no store {for_what} (docs/backup.md)"
                ),
            )
        })
    }

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
            join_as_learner: c.join_as_learner.unwrap_or(true),
            replace_stale_data: c.replace_stale_data.unwrap_or(false),
            recover_lost_quorum: c.recover_lost_quorum.unwrap_or(false),
            allow_upgrade_below_floor: c.allow_upgrade_below_floor.unwrap_or(false),
            max_learners: match c.max_learners.unwrap_or(1) {
                n @ 1..=MAX_SIZE => n as usize,
                n => {
                    return Err(format!(
                        "cluster.max_learners is {n}; it must be between 1 and {MAX_SIZE}"
                    ));
                }
            },
            bootstrap_settle: match c.bootstrap_settle.as_deref() {
                None | Some("off") => None,
                Some(v) => Some(dur("cluster.bootstrap_settle", Some(v), "")?),
            },
        };
        if cluster.peer_port == cluster.client_port {
            return Err(format!(
                "cluster.peer_port and cluster.client_port are both {}; they must differ",
                cluster.peer_port
            ));
        }

        let d = raw.discovery;
        let (timeout, interval, max_interval) = (
            d.timeout.clone(),
            d.interval.clone(),
            d.max_interval.clone(),
        );
        let mut sources = providers::providers(&d)?;
        let provider = sources.remove(0);
        let discovery = DiscoverySettings {
            provider,
            fallback: sources,
            fallback_after: dur(
                "discovery.fallback_after",
                d.fallback_after.as_deref(),
                "1m",
            )?,
            timeout: match timeout.as_deref() {
                None | Some("off") => None,
                Some(v) => Some(dur("discovery.timeout", Some(v), "")?),
            },
            interval: dur("discovery.interval", interval.as_deref(), "1s")?,
            max_interval: dur("discovery.max_interval", max_interval.as_deref(), "15s")?,
        };
        if discovery.interval.is_zero() || discovery.max_interval < discovery.interval {
            return Err(
                "discovery.interval must be above zero and at most discovery.max_interval".into(),
            );
        }

        let output = raw.output;
        let file = |key: &str, path: PathBuf| -> Result<PathBuf, String> {
            if path.file_name().is_none() || !path.is_absolute() {
                return Err(format!(
                    "output.{key} {} must be an absolute path to a file",
                    path.display()
                ));
            }
            Ok(path)
        };
        let env_file = file(
            "env_file",
            output
                .env_file
                .unwrap_or_else(|| "/run/etcd-bootstrap/etcd.env".into()),
        )?;
        // Beside the env file unless said otherwise: /run/etcd-bootstrap/outcome.json.
        let outcome_file = file(
            "outcome_file",
            output
                .outcome_file
                .unwrap_or_else(|| env_file.with_file_name("outcome.json")),
        )?;
        let metrics_file = output
            .metrics_file
            .map(|p| file("metrics_file", p))
            .transpose()?;
        if outcome_file == env_file || metrics_file.as_ref() == Some(&env_file) {
            return Err(
                "output.outcome_file and output.metrics_file must not be output.env_file".into(),
            );
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
            expiry_warning: dur("tls.expiry_warning", t.expiry_warning.as_deref(), "30d")?,
            clock_sync_wait: dur("tls.clock_sync_wait", t.clock_sync_wait.as_deref(), "2m")?,
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

        let etcd = EtcdSettings {
            unit: raw.etcd.unit.unwrap_or_else(|| "etcd.service".into()),
            user: raw.etcd.user,
            binary: raw.etcd.binary,
            initial_corrupt_check: raw.etcd.initial_corrupt_check.unwrap_or(true),
        };
        let unit_ok = |u: &str| {
            !u.is_empty()
                && u.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':' | '\\')
                })
        };
        if !unit_ok(&etcd.unit) {
            return Err(format!(
                "etcd.unit {} is not a systemd unit name",
                excerpt(&etcd.unit)
            ));
        }

        let backup = BackupSettings::from_raw(raw.backup)?;

        Ok(Settings {
            node,
            cluster,
            discovery,
            env_file,
            outcome_file,
            metrics_file,
            etcd_client,
            tls,
            etcd,
            backup,
        })
    }
}

fn port(key: &str, value: i64) -> Result<u16, String> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{key} is {value}; it must be a port between 1 and 65535"))
}

pub(super) fn dur(key: &str, value: Option<&str>, default: &str) -> Result<Duration, String> {
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
