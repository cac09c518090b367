//! etcd with TLS on both ports and client certificates required on both (real etcd 3.4, a
//! throwaway CA made with `openssl`): the agents vouch for each other over mutual TLS on the peer
//! port and bootstrap with shipped defaults; they write the TLS settings into the env file, and
//! their probes verify etcd against `etcd_client.ca_file` (showing `cert_file`), so a restart
//! sees the cluster answer. Without that CA the same probe cannot verify etcd and must not count
//! it as an answer.

#[path = "../bench/src/tls.rs"]
mod certs;
mod common;

use std::time::{Duration, Instant};

use common::*;

/// Every node's config with https on both ports, etcd's certificates from `certs`, and the
/// cluster's CA as `etcd_client.ca_file` when `trust_ca`.
fn configure_tls(lab: &Lab, certs: &certs::Certs, trust_ca: bool) {
    lab.configure_all();
    let (ca, cert, key) = (
        certs.ca.display(),
        certs.cert.display(),
        certs.key.display(),
    );
    let cluster = "[cluster]\npeer_scheme = \"https\"\nclient_scheme = \"https\"\n";
    // etcd 3.4 asks clients for a certificate signed by its trusted_ca_file: the agent shows
    // its node's.
    let mut client = format!("[etcd_client]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n");
    if trust_ca {
        client += &format!("ca_file = \"{ca}\"\n");
    }
    let tls = format!(
        "[tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\ntrusted_ca_file = \"{ca}\"\n\
         peer_cert_file = \"{cert}\"\npeer_key_file = \"{key}\"\npeer_trusted_ca_file = \"{ca}\"\n\
         peer_client_cert_auth = true\n"
    );
    for n in &lab.nodes {
        let path = n.config();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("[cluster]\n", cluster)
            .replace("[etcd_client]\n", &client)
            + &tls;
        std::fs::write(path, text).unwrap();
    }
}

/// `status --format json` on node 0: its exit code and the report.
fn status_json(lab: &Lab) -> (Option<i32>, serde_json::Value) {
    let out = lab.agent(0, &["status", "--format", "json"]);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), report)
}

/// Runs the agent on node 0 until it names `row`, or panics at the deadline with its last words.
fn agent_until_row(lab: &Lab, row: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let err = stderr(&lab.agent_ok(0));
        if err.contains(&format!("row=\"{row}\"")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never row {row}: {err}\netcd on node 0: {}\netcd on node 1: {}",
            lab.etcd_log(0),
            lab.etcd_log(1)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_tls_cluster_is_verified_with_its_own_ca() {
    let mut lab = Lab::new(etcd34(), 60, 3, 3);
    let dir = lab.root.path().join("certs");
    std::fs::create_dir(&dir).unwrap();
    // 127.0.0.1 too: connections between loopback addresses leave from it, and etcd checks a
    // peer's client certificate against the address the connection comes from.
    let ips: Vec<&str> = lab.nodes.iter().map(|n| n.ip.as_str()).collect();
    let certs = certs::make(&dir, &[&ips[..], &["127.0.0.1"]].concat()).unwrap();
    configure_tls(&lab, &certs, true);

    // The preflight passes every check on this set and says so in the plan; the certificates
    // are made for two days, which it warns about.
    let plan = lab.agent(0, &["plan"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    let cert = certs.cert.display();
    for line in [
        format!("  ok: tls.cert_file {cert}: key matches, valid until "),
        format!("  ok: tls.peer_cert_file {cert}: key matches, valid until "),
        format!(
            "  ok: tls.peer_cert_file {cert} names {}\n",
            lab.nodes[0].ip
        ),
        format!("  warning: tls.peer_cert_file {cert} expires on "),
    ] {
        assert!(text.contains(&line), "no {line:?} in the plan:\n{text}");
    }
    assert!(text.contains(", signed by the trusted CA\n"), "{text}");

    // Shipped defaults: the agents vouch for each other over mutual TLS on the peer port.
    for out in lab.agents_ok_together(&[0, 1, 2]) {
        let err = stderr(&out);
        assert!(err.contains("row=\"bootstrap\""), "{err}");
        assert!(err.contains("vouching for this machine on"), "{err}");
    }
    let (n, ip) = (&lab.nodes[0], &lab.nodes[0].ip);
    assert_eq!(
        n.env_value("ETCD_ADVERTISE_CLIENT_URLS"),
        format!("https://{ip}:2379")
    );
    assert_eq!(
        n.env_value("ETCD_INITIAL_ADVERTISE_PEER_URLS"),
        format!("https://{ip}:2380")
    );
    assert_eq!(
        n.env_value("ETCD_TRUSTED_CA_FILE"),
        certs.ca.display().to_string()
    );
    assert_eq!(
        n.env_value("ETCD_PEER_CERT_FILE"),
        certs.cert.display().to_string()
    );
    for i in 0..3 {
        lab.start_etcd(i);
    }
    lab.wait_listening(0);

    // The data dir now has a member: `restart` needs the peers to answer over verified TLS;
    // `restart-unreachable` is what a probe that cannot verify etcd would give.
    agent_until_row(&lab, "restart");
    assert_eq!(
        lab.nodes[0].env_value("ETCD_INITIAL_CLUSTER_STATE"),
        "existing"
    );

    // `status` over the same verified TLS: every member healthy, on https.
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        let (code, s) = status_json(&lab);
        if code == Some(0) {
            break s;
        }
        assert!(Instant::now() < deadline, "never healthy: {s:#}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let members = s["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{s:#}");
    for m in members {
        assert_eq!(m["healthy"], true, "{m:#}");
        assert!(
            m["client_urls"][0]
                .as_str()
                .unwrap()
                .starts_with("https://")
        );
    }

    // Without the cluster's CA the system roots do not vouch for etcd: no answer.
    configure_tls(&lab, &certs, false);
    let err = stderr(&lab.agent_ok(0));
    assert!(err.contains("row=\"restart-unreachable\""), "{err}");
    // And status says no member answered, naming the certificate it could not verify.
    let (code, s) = status_json(&lab);
    assert_eq!(code, Some(2), "{s:#}");
    let answer = s["unreachable"][0]["answer"].as_str().unwrap();
    assert!(answer.contains("etcd_client.ca_file"), "{s:#}");
    assert!(
        lab.etcd_log(1).contains("ready to serve client requests"),
        "etcd was up all along"
    );
}

/// With `tls.peer_client_cert_auth`, only a member can read a member's vouch: a client with the
/// peer CA's certificate gets it, one without a certificate is turned away in the handshake.
#[test]
fn the_vouch_over_mutual_tls_needs_a_member_certificate() {
    let lab = Lab::new(etcd34(), 61, 2, 2);
    let dir = lab.root.path().join("certs");
    std::fs::create_dir(&dir).unwrap();
    let ips: Vec<&str> = lab.nodes.iter().map(|n| n.ip.as_str()).collect();
    let certs = certs::make(&dir, &[&ips[..], &["127.0.0.1"]].concat()).unwrap();
    configure_tls(&lab, &certs, true);
    let waiting = lab.agent_spawn(0, &["--timeout", "4s"]);
    let url = format!("https://{}:2380/etcd-bootstrap/v1/vouch", lab.nodes[0].ip);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&certs.ca).unwrap()).unwrap();
    let mut pem = std::fs::read(&certs.cert).unwrap();
    pem.extend(std::fs::read(&certs.key).unwrap());
    let member = reqwest::Client::builder()
        .tls_certs_only([ca.clone()])
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let stranger = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(3);
        let vouch: serde_json::Value = loop {
            if let Ok(r) = member.get(&url).send().await {
                break r.json().await.unwrap();
            }
            assert!(Instant::now() < deadline, "no vouch at {url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(vouch["name"], lab.nodes[0].name.as_str());
        assert_eq!(vouch["data"]["state"], "empty");
        let refused = stranger.get(&url).send().await;
        assert!(
            refused.is_err(),
            "answered a client without a certificate: {refused:?}"
        );
    });
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
}

/// Three machines with mutual TLS, one of them provisioned from another CA (a mis-issued
/// certificate): nobody bootstraps, and the good agents name what is wrong, the TLS failure on
/// node-2's peer port, not the refused client port of an etcd that is not started yet. `plan`
/// says the same.
#[test]
fn a_peer_with_a_certificate_from_another_ca_is_named_for_it() {
    let lab = Lab::new(etcd34(), 62, 3, 3);
    let ips: Vec<&str> = lab.nodes.iter().map(|n| n.ip.as_str()).collect();
    let ips = [&ips[..], &["127.0.0.1"]].concat();
    let (good, other) = (lab.root.path().join("certs"), lab.root.path().join("other"));
    std::fs::create_dir(&good).unwrap();
    std::fs::create_dir(&other).unwrap();
    let certs = certs::make(&good, &ips).unwrap();
    certs::make(&other, &ips).unwrap();
    configure_tls(&lab, &certs, true);
    // node-2's whole TLS set (its CA included) is the other CA's: its own preflight passes.
    let path = lab.nodes[1].config();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(&good.display().to_string(), &other.display().to_string()),
    )
    .unwrap();

    // node-2's agent waits (and vouches) until the end of the test, which ends it.
    let mut waiting = lab.agent_spawn(1, &["--timeout", "60s"]);
    let peer = format!("https://{}:2380", lab.nodes[1].ip);
    let told = |text: &str| {
        text.contains("TLS handshake failed")
            && text.contains(&peer)
            && text.contains(&format!(
                "the certificate {} shows is not one this agent trusts: check that it is issued by the CA in etcd_client.ca_file and names {}",
                lab.nodes[1].ip, lab.nodes[1].ip
            ))
            && !text.contains("connection refused")
    };
    // Once node-2's agent listens (a moment after it starts), `plan` names its certificate.
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let plan = lab.agent(0, &["plan"]);
        let text = String::from_utf8_lossy(&plan.stdout).into_owned();
        if told(&text) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(told(&text), "{text}");
    // node-1 and node-3 wait together, each for node-2 only.
    let good: Vec<_> = [0, 2]
        .into_iter()
        .map(|i| (i, lab.agent_spawn(i, &["--timeout", "3s"])))
        .collect();
    for (i, agent) in good {
        let out = agent.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(69), "{err}");
        let last = err.lines().rfind(|l| l.contains("ERROR")).unwrap();
        assert!(last.contains("waiting for node-2 ("), "{last}");
        assert!(told(last), "{last}");
        assert!(!lab.nodes[i].env_file().exists());
    }
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "node-2's agent still waits: nobody bootstrapped"
    );
    waiting.kill().unwrap();
    waiting.wait().unwrap();
}
