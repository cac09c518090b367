//! etcd's environment file: rendered from a typed plan, validated, written atomically.
//!
//! The file must mean the same to systemd's `EnvironmentFile=` and to a POSIX shell's
//! `set -a; . FILE`. Both agree on `KEY=VALUE` lines whose value holds no whitespace, quote,
//! backslash, `$`, backtick, `#`, `~`, `;` or control character; every value is checked against
//! that character set before anything is written (defence in depth: the types that feed the
//! renderer are already validated). The contract is documented in `docs/env-file.md`.

mod read;
mod write;

pub use read::{Written, read_written};
pub use write::write_atomic;

/// The keys that the writer writes and the subcommands (`promote`, `leave`) read back.
pub mod key {
    pub const NAME: &str = "ETCD_NAME";
    pub const INITIAL_CLUSTER: &str = "ETCD_INITIAL_CLUSTER";
    pub const INITIAL_ADVERTISE_PEER_URLS: &str = "ETCD_INITIAL_ADVERTISE_PEER_URLS";
    pub const ADVERTISE_CLIENT_URLS: &str = "ETCD_ADVERTISE_CLIENT_URLS";
}

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use crate::config::{ClusterSpec, EtcdTls};
use crate::etcd::version::EtcdVersion;
use crate::member::{Host, MemberName};

/// `new` or `existing`, etcd's `--initial-cluster-state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterState {
    New,
    Existing,
}

impl ClusterState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::New => "new",
            ClusterState::Existing => "existing",
        }
    }
}

/// Everything the env file says, as typed values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdEnv<'a> {
    pub name: &'a MemberName,
    pub host: &'a Host,
    pub state: ClusterState,
    /// `name=peer-url` pairs, in the order they are written.
    pub initial_cluster: &'a [(MemberName, String)],
    pub spec: &'a ClusterSpec,
    pub tls: &'a EtcdTls,
    /// The addresses a DNS-named host resolved to: etcd binds listen URLs, which must be IPs.
    pub listen: &'a [IpAddr],
    /// The etcd that will read the file, when its version is known and the initial corruption
    /// check is wanted: the key that turns it on is spelled for that version.
    pub corrupt_check: Option<EtcdVersion>,
    /// The etcd that will read the file, when its version is known: `cluster.max_learners` is
    /// written only for an etcd that reads it (3.6 and later).
    pub etcd: Option<EtcdVersion>,
}

/// `--max-learners` for the given etcd, when it differs from etcd's default of one: 3.6 gave
/// the flag its GA name (`server/embed/config.go` at v3.6.14; up to 3.5 there is no such flag,
/// and 3.7 keeps only this name).
pub fn max_learners(etcd: Option<EtcdVersion>, wanted: usize) -> Option<usize> {
    (wanted != 1 && etcd.is_some_and(|v| v.line() >= (3, 6))).then_some(wanted)
}

/// etcd's initial corruption check, as the given etcd reads it: up to 3.5 an `--experimental-`
/// flag; from 3.6 a feature gate (3.6 still reads the old flag, deprecated; 3.7 removed every
/// `--experimental-*` flag). Checked in etcd's source: `server/embed/config.go` and
/// `server/features/etcd_features.go` at v3.6.14 and v3.7.1.
pub fn corrupt_check_key(etcd: EtcdVersion) -> (&'static str, &'static str) {
    if etcd.line() < (3, 6) {
        ("ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", "true")
    } else {
        ("ETCD_FEATURE_GATES", "InitialCorruptCheck=true")
    }
}

/// Where etcd binds (and the agent vouches) for a node reached at `host`. Listen URLs must be
/// IPs: a DNS-named node listens on the addresses its name resolved to, or on every address
/// when they are not known.
pub fn listen_hosts(host: &Host, resolved: &[IpAddr]) -> Vec<Host> {
    match (host, resolved) {
        (Host::Ip(_), _) => vec![host.clone()],
        (Host::Dns(_), []) => vec![Host::Ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED))],
        (Host::Dns(_), ips) => ips.iter().map(|ip| Host::Ip(*ip)).collect(),
    }
}

/// The ordered `KEY=VALUE` pairs of the file.
pub fn entries(env: &EtcdEnv<'_>) -> Vec<(&'static str, String)> {
    let spec = env.spec;
    let peer_url = spec.peer_url(env.host);
    let client_url = spec.client_url(env.host);
    let listen = listen_hosts(env.host, env.listen);
    let listen_peer: Vec<String> = listen.iter().map(|h| spec.peer_url(h)).collect();
    let mut listen_client: Vec<String> = listen.iter().map(|h| spec.client_url(h)).collect();
    // Local clients (etcdctl, health checks) reach etcd on loopback too, unless an address
    // already is loopback or a wildcard that covers it.
    if !listen
        .iter()
        .any(|h| matches!(h, Host::Ip(ip) if ip.is_loopback() || ip.is_unspecified()))
    {
        let lo = Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        listen_client.push(spec.client_url(&lo));
    }
    let initial_cluster = env
        .initial_cluster
        .iter()
        .map(|(name, url)| format!("{name}={url}"))
        .collect::<Vec<_>>()
        .join(",");

    let mut out = vec![
        (key::NAME, env.name.to_string()),
        ("ETCD_DATA_DIR", path(&spec.data_dir)),
        (key::INITIAL_CLUSTER, initial_cluster),
        ("ETCD_INITIAL_CLUSTER_STATE", env.state.as_str().to_owned()),
        ("ETCD_INITIAL_CLUSTER_TOKEN", spec.token.clone()),
        (key::INITIAL_ADVERTISE_PEER_URLS, peer_url),
        ("ETCD_LISTEN_PEER_URLS", listen_peer.join(",")),
        (key::ADVERTISE_CLIENT_URLS, client_url),
        ("ETCD_LISTEN_CLIENT_URLS", listen_client.join(",")),
    ];
    let tls = env.tls;
    let files = [
        ("ETCD_CERT_FILE", &tls.cert_file),
        ("ETCD_KEY_FILE", &tls.key_file),
        ("ETCD_TRUSTED_CA_FILE", &tls.trusted_ca_file),
        ("ETCD_PEER_CERT_FILE", &tls.peer_cert_file),
        ("ETCD_PEER_KEY_FILE", &tls.peer_key_file),
        ("ETCD_PEER_TRUSTED_CA_FILE", &tls.peer_trusted_ca_file),
    ];
    out.extend(
        files
            .into_iter()
            .filter_map(|(k, p)| p.as_deref().map(|p| (k, path(p)))),
    );
    if tls.client_cert_auth {
        out.push(("ETCD_CLIENT_CERT_AUTH", "true".into()));
    }
    if tls.peer_client_cert_auth {
        out.push(("ETCD_PEER_CLIENT_CERT_AUTH", "true".into()));
    }
    if let Some(etcd) = env.corrupt_check {
        let (key, value) = corrupt_check_key(etcd);
        out.push((key, value.into()));
    }
    if let Some(n) = max_learners(env.etcd, env.spec.max_learners) {
        out.push(("ETCD_MAX_LEARNERS", n.to_string()));
    }
    out
}

/// Renders the file, refusing any value outside the safe character set.
pub fn render(env: &EtcdEnv<'_>) -> Result<String, String> {
    let mut text = String::from(
        "# Written by etcd-bootstrap; rewritten at every boot, do not edit.\n\
         # Read by etcd.service through EnvironmentFile=; see docs/env-file.md.\n",
    );
    for (key, value) in entries(env) {
        check_value(&value).map_err(|e| format!("{key}: {e}"))?;
        text.push_str(key);
        text.push('=');
        text.push_str(&value);
        text.push('\n');
    }
    Ok(text)
}

/// A value is safe when systemd and a POSIX shell read it the same way, unquoted.
pub fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("value is empty".into());
    }
    match value.chars().find(|c| !is_safe(*c)) {
        None => Ok(()),
        Some(c) => Err(format!(
            "value {} contains {c:?}, which the env file cannot carry safely",
            crate::member::excerpt(value)
        )),
    }
}

fn is_safe(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '.' | '_' | '-' | ':' | '/' | ',' | '=' | '@' | '%' | '+' | '[' | ']'
        )
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::Scheme;

    fn spec() -> ClusterSpec {
        ClusterSpec {
            size: 3,
            token: "prod".into(),
            data_dir: "/var/lib/etcd".into(),
            peer_scheme: Scheme::Https,
            client_scheme: Scheme::Http,
            peer_port: 2380,
            client_port: 2379,
            remove_dead_members: true,
            join_as_learner: false,
            replace_stale_data: false,
            recover_lost_quorum: false,
            allow_upgrade_below_floor: false,
            max_learners: 1,
            bootstrap_settle: None,
        }
    }

    fn members(list: &[(&str, &str)]) -> Vec<(MemberName, String)> {
        list.iter()
            .map(|(n, u)| (MemberName::parse(n).unwrap(), (*u).to_owned()))
            .collect()
    }

    #[test]
    fn renders_every_key_for_an_ipv6_node() {
        let name = MemberName::parse("etcd-0").unwrap();
        let host = Host::parse("fd00::1").unwrap();
        let ic = members(&[
            ("etcd-0", "https://[fd00::1]:2380"),
            ("etcd-1", "https://[fd00::2]:2380"),
        ]);
        let tls = EtcdTls {
            peer_cert_file: Some("/etc/etcd/peer.crt".into()),
            peer_key_file: Some("/etc/etcd/peer.key".into()),
            peer_client_cert_auth: true,
            ..Default::default()
        };
        let spec = spec();
        let text = render(&EtcdEnv {
            name: &name,
            host: &host,
            state: ClusterState::New,
            initial_cluster: &ic,
            spec: &spec,
            tls: &tls,
            listen: &[],
            corrupt_check: None,
            etcd: None,
        })
        .unwrap();
        let expected = "ETCD_NAME=etcd-0
ETCD_DATA_DIR=/var/lib/etcd
ETCD_INITIAL_CLUSTER=etcd-0=https://[fd00::1]:2380,etcd-1=https://[fd00::2]:2380
ETCD_INITIAL_CLUSTER_STATE=new
ETCD_INITIAL_CLUSTER_TOKEN=prod
ETCD_INITIAL_ADVERTISE_PEER_URLS=https://[fd00::1]:2380
ETCD_LISTEN_PEER_URLS=https://[fd00::1]:2380
ETCD_ADVERTISE_CLIENT_URLS=http://[fd00::1]:2379
ETCD_LISTEN_CLIENT_URLS=http://[fd00::1]:2379,http://127.0.0.1:2379
ETCD_PEER_CERT_FILE=/etc/etcd/peer.crt
ETCD_PEER_KEY_FILE=/etc/etcd/peer.key
ETCD_PEER_CLIENT_CERT_AUTH=true
";
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(body, expected);
    }

    #[test]
    fn dns_named_nodes_listen_on_all_addresses_and_loopback_nodes_add_no_loopback() {
        let name = MemberName::parse("infra0").unwrap();
        let spec = spec();
        let tls = EtcdTls::default();
        let ic = members(&[("infra0", "https://infra0.example.com:2380")]);
        let dns = Host::parse("infra0.example.com").unwrap();
        let env = EtcdEnv {
            name: &name,
            host: &dns,
            state: ClusterState::Existing,
            initial_cluster: &ic,
            spec: &spec,
            tls: &tls,
            listen: &[],
            corrupt_check: None,
            etcd: None,
        };
        let map: std::collections::HashMap<_, _> = entries(&env).into_iter().collect();
        assert_eq!(map["ETCD_LISTEN_PEER_URLS"], "https://0.0.0.0:2380");
        assert_eq!(map["ETCD_LISTEN_CLIENT_URLS"], "http://0.0.0.0:2379");
        assert_eq!(
            map["ETCD_ADVERTISE_CLIENT_URLS"],
            "http://infra0.example.com:2379"
        );

        let resolved = ["10.0.0.5".parse().unwrap()];
        let with_ips = EtcdEnv {
            listen: &resolved,
            corrupt_check: None,
            etcd: None,
            ..env.clone()
        };
        let map: std::collections::HashMap<_, _> = entries(&with_ips).into_iter().collect();
        assert_eq!(map["ETCD_LISTEN_PEER_URLS"], "https://10.0.0.5:2380");
        assert_eq!(
            map["ETCD_LISTEN_CLIENT_URLS"],
            "http://10.0.0.5:2379,http://127.0.0.1:2379"
        );
        assert_eq!(
            map["ETCD_INITIAL_ADVERTISE_PEER_URLS"],
            "https://infra0.example.com:2380"
        );

        let lo = Host::parse("127.0.0.11").unwrap();
        let env = EtcdEnv { host: &lo, ..env };
        let map: std::collections::HashMap<_, _> = entries(&env).into_iter().collect();
        assert_eq!(map["ETCD_LISTEN_CLIENT_URLS"], "http://127.0.0.11:2379");
    }

    #[test]
    fn the_validator_refuses_everything_that_could_break_out() {
        let long = "a".repeat(300);
        for (bad, why) in [
            ("a\nETCD_NAME=evil", "newline"),
            ("it's", "single quote"),
            ("\"x\"", "double quote"),
            ("$(reboot)", "dollar"),
            ("`id`", "backtick"),
            ("a b", "space"),
            ("a\\b", "backslash"),
            ("#x", "comment"),
            ("~root", "tilde"),
            ("a;b", "semicolon"),
            ("a\0b", "NUL"),
            ("", "empty"),
        ] {
            assert!(check_value(bad).is_err(), "{why}: {bad:?} must be refused");
        }
        // '=' and ',' are legitimate inside ETCD_INITIAL_CLUSTER; a name holding them is refused
        // earlier, by MemberName (see member.rs), and so is a 300-character name.
        assert!(check_value("a=http://x:1,b=http://y:1").is_ok());
        assert!(MemberName::parse(&long).is_err());
    }

    #[test]
    fn max_learners_is_written_only_for_an_etcd_that_reads_it_and_only_when_not_the_default() {
        let v = |s: &str| EtcdVersion::parse(s);
        assert_eq!(max_learners(v("3.6.14"), 2), Some(2));
        assert_eq!(max_learners(v("3.7.1"), 3), Some(3));
        assert_eq!(max_learners(v("3.6.14"), 1), None);
        // Up to 3.5 etcd has no such flag (and an unknown `ETCD_*` is only warned about); an
        // etcd that could not be asked gets no key it may not know.
        assert_eq!(max_learners(v("3.5.26"), 2), None);
        assert_eq!(max_learners(None, 2), None);
    }

    #[test]
    fn the_corruption_check_is_spelled_for_the_etcd_that_reads_it() {
        let key = |v: &str| corrupt_check_key(EtcdVersion::parse(v).unwrap());
        for v in ["3.4.23", "3.5.1", "3.5.26"] {
            assert_eq!(key(v), ("ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", "true"));
        }
        for v in ["3.6.0", "3.6.14", "3.7.1"] {
            assert_eq!(key(v), ("ETCD_FEATURE_GATES", "InitialCorruptCheck=true"));
        }
    }

    /// The file must mean the same thing to a POSIX shell as to systemd's simple KEY=VALUE reading.
    #[test]
    fn a_posix_shell_reads_exactly_the_rendered_values() {
        let name = MemberName::parse("etcd-0").unwrap();
        let host = Host::parse("fd00::1").unwrap();
        let ic = members(&[("etcd-0", "https://[fd00::1]:2380")]);
        let mut spec = spec();
        spec.data_dir = "/var/lib/etcd/x+y@z:1".into();
        spec.max_learners = 2;
        let tls = EtcdTls::default();
        let env = EtcdEnv {
            name: &name,
            host: &host,
            state: ClusterState::New,
            initial_cluster: &ic,
            spec: &spec,
            tls: &tls,
            listen: &[],
            // A value with an `=` in it.
            corrupt_check: Some(EtcdVersion::new(3, 6, 14)),
            etcd: Some(EtcdVersion::new(3, 6, 14)),
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("etcd.env");
        std::fs::write(&file, render(&env).unwrap()).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("set -a; . \"$0\"; env")
            .arg(&file)
            .env_clear()
            .output()
            .unwrap();
        let shell_env = String::from_utf8(out.stdout).unwrap();
        for (k, v) in entries(&env) {
            assert!(
                shell_env.lines().any(|l| l == format!("{k}={v}")),
                "{k}={v} not read back by sh"
            );
        }
    }
}
