//! Any name and address that the validators accept renders into an env file that a POSIX shell
//! and systemd read the same way: every line `KEY=VALUE` with only safe characters, and the
//! values read back exactly as rendered. And the value validator never accepts an unsafe byte.
#![no_main]

use etcd_bootstrap::config::{ClusterSpec, EtcdTls};
use etcd_bootstrap::envfile::{ClusterState, EtcdEnv, check_value, entries, render};
use etcd_bootstrap::member::{Host, MemberName, Scheme, url};
use libfuzzer_sys::fuzz_target;

fn safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._-:/,=@%+[]".contains(c)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if check_value(&text).is_ok() {
        assert!(text.chars().all(safe), "validator accepted {text:?}");
    }
    let mut parts = text.splitn(3, '\u{1}');
    let (Some(name), Some(host)) = (parts.next(), parts.next()) else {
        return;
    };
    let (Ok(name), Ok(host)) = (MemberName::parse(name), Host::parse(host)) else {
        return;
    };
    let spec = ClusterSpec {
        size: 1,
        token: "fuzz".into(),
        data_dir: "/var/lib/etcd/default".into(),
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
    };
    let ic = vec![(name.clone(), url(Scheme::Https, &host, 2380))];
    let tls = EtcdTls::default();
    let env = EtcdEnv {
        name: &name,
        host: &host,
        state: ClusterState::New,
        initial_cluster: &ic,
        spec: &spec,
        tls: &tls,
        listen: &[],
        corrupt_check: None,
        etcd: None,
    };
    let file = render(&env).expect("validated inputs always render");
    let mut read_back = Vec::new();
    for line in file.lines().filter(|l| !l.starts_with('#')) {
        let (k, v) = line.split_once('=').expect("KEY=VALUE");
        assert!(
            k.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
            "{line:?}"
        );
        assert!(v.chars().all(safe) && !v.is_empty(), "{line:?}");
        read_back.push((k.to_owned(), v.to_owned()));
    }
    let rendered: Vec<(String, String)> = entries(&env)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(read_back, rendered);
});
