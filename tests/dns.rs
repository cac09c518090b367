//! DNS SRV discovery against a real DNS server: Debian's dnsmasq on a loopback high port, with
//! `local=/DOMAIN/` so missing names answer NXDOMAIN, as an authoritative server would.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A dnsmasq serving `srv-host=` and `host-record=` lines for one test; killed on drop.
struct Dns {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Dns {
    fn start(port: u16, domain: &str, lines: &[String]) -> Self {
        let mut dns = Dns {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        dns.serve(domain, lines);
        dns
    }

    /// (Re)starts the server with these records: dnsmasq rereads `srv-host` only at start.
    fn serve(&mut self, domain: &str, lines: &[String]) {
        self.stop();
        let conf = self.dir.path().join("dnsmasq.conf");
        let mut text = format!(
            "port={}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\nlocal=/{domain}/\nuser=root\n",
            self.port
        );
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        std::fs::write(&conf, text).unwrap();
        let child = Command::new("/usr/sbin/dnsmasq")
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", conf.display()))
            .arg(format!(
                "--pid-file={}",
                self.dir.path().join("pid").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq runs (apt-get install dnsmasq-base)");
        self.child = Some(child);
        // Ready when it answers (any answer) on its port.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            // A minimal query for "." type NS: id 1, RD, one question.
            let q = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1];
            sock.send_to(&q, ("127.0.0.1", self.port)).unwrap();
            if sock.recv(&mut [0u8; 512]).is_ok() {
                return;
            }
        }
        panic!("dnsmasq did not start on port {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn nameserver(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop();
    }
}

fn srv(record: &str, target: &str, port: u16) -> String {
    format!("srv-host={record},{target},{port},0,10")
}

fn host(name: &str, ip: &str) -> String {
    format!("host-record={name},{ip}")
}

fn write_config(
    dir: &Path,
    size: usize,
    dns: &Dns,
    domain: &str,
    extra_dns: &str,
    extra: &str,
) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            r#"[cluster]
size = {size}
# These tests are about the records: one agent alone, so the settle fallback (0 s) stands in for
# the peers' vouches that a first bootstrap needs by default (tests/vouching.rs).
bootstrap_settle = "0s"
data_dir = "{data}"
{extra}
[output]
env_file = "{env}"
[etcd_client]
timeout = "500ms"
[discovery]
provider = "dns"
timeout = "20s"
interval = "200ms"
max_interval = "500ms"
[discovery.dns]
domain = "{domain}"
nameservers = ["{ns}"]
{extra_dns}
"#,
            data = dir.join("data").display(),
            env = dir.join("etcd.env").display(),
            ns = dns.nameserver(),
        ),
    )
    .unwrap();
    path
}

fn agent(config: &Path, args: &[&str]) -> Output {
    let out = Command::new(AGENT)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    eprintln!(
        "agent {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn plan(config: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["plan", "--format", "json"];
    a.extend_from_slice(args);
    let out = agent(config, &a);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn three(record: &str, domain: &str, net: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for i in 0..3 {
        let target = format!("infra{i}.{domain}");
        lines.push(srv(record, &target, 2380));
        lines.push(host(&target, &format!("{net}.{}", i + 1)));
    }
    lines
}

#[test]
fn https_records_give_https_peer_urls_named_by_the_first_label() {
    let d = "example.test";
    let dns = Dns::start(
        15401,
        d,
        &three(&format!("_etcd-server-ssl._tcp.{d}"), d, "127.30.1"),
    );
    let dir = tempfile::tempdir().unwrap();
    // The preflight reads the files the env file names: a peer certificate for the SRV
    // targets' names, made here.
    let names: Vec<String> = (0..3).map(|i| format!("infra{i}.{d}")).collect();
    let cert = rcgen::generate_simple_self_signed(names).unwrap();
    let (crt, key) = (dir.path().join("peer.crt"), dir.path().join("peer.key"));
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    let tls = format!(
        "peer_scheme = \"https\"\n[tls]\npeer_cert_file = \"{}\"\npeer_key_file = \"{}\"",
        crt.display(),
        key.display()
    );
    let cfg = write_config(dir.path(), 3, &dns, d, "", &tls);
    let v = plan(&cfg, &["--name", "infra1"]);
    assert_eq!(v["outcome"]["row"], "bootstrap", "{v:#}");
    assert_eq!(
        v["env"]["ETCD_INITIAL_CLUSTER"],
        "infra0=https://infra0.example.test:2380,infra1=https://infra1.example.test:2380,infra2=https://infra2.example.test:2380"
    );
    assert_eq!(
        v["env"]["ETCD_INITIAL_ADVERTISE_PEER_URLS"],
        "https://infra1.example.test:2380"
    );
    assert_eq!(
        v["env"]["ETCD_LISTEN_PEER_URLS"], "https://127.30.1.2:2380",
        "listens on the resolved address"
    );
}

#[test]
fn http_records_and_the_fqdn_naming() {
    let d = "example.test";
    let dns = Dns::start(
        15402,
        d,
        &three(&format!("_etcd-server._tcp.{d}"), d, "127.30.2"),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), 3, &dns, d, "member_name = \"fqdn\"", "");
    let v = plan(&cfg, &["--name", "infra0.example.test"]);
    assert_eq!(
        v["env"]["ETCD_INITIAL_CLUSTER"],
        "infra0.example.test=http://infra0.example.test:2380,infra1.example.test=http://infra1.example.test:2380,infra2.example.test=http://infra2.example.test:2380"
    );
}

#[test]
fn records_of_the_other_scheme_are_a_clear_config_error() {
    let d = "example.test";
    let dns = Dns::start(
        15403,
        d,
        &three(&format!("_etcd-server-ssl._tcp.{d}"), d, "127.30.3"),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), 3, &dns, d, "", "");
    let out = agent(&cfg, &["--name", "infra0"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster.peer_scheme is http"));
}

#[test]
fn service_name_selects_its_own_records() {
    let d = "example.test";
    let dns = Dns::start(
        15404,
        d,
        &three(&format!("_etcd-server-blue._tcp.{d}"), d, "127.30.4"),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), 3, &dns, d, "service_name = \"blue\"", "");
    let v = plan(&cfg, &["--name", "infra2"]);
    assert_eq!(v["discovered"].as_array().unwrap().len(), 3);
    let cfg = write_config(dir.path(), 3, &dns, d, "", "");
    let v = plan(&cfg, &["--name", "infra2"]);
    assert_eq!(
        v["discovered"].as_array().unwrap().len(),
        0,
        "without the name: NXDOMAIN, none yet"
    );
    assert_eq!(v["outcome"]["decision"], "wait");
}

#[test]
fn an_ipv6_target_is_bracketed_and_identifies_this_machine_by_address() {
    let d = "v6.test";
    let lines = vec![
        srv(
            &format!("_etcd-server._tcp.{d}"),
            &format!("solo.{d}"),
            2380,
        ),
        host(&format!("solo.{d}"), "::1"),
    ];
    let dns = Dns::start(15405, d, &lines);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), 1, &dns, d, "", "");
    // No --name: this machine is found because solo.v6.test resolves to ::1, one of its addresses.
    let v = plan(&cfg, &[]);
    assert_eq!(v["this_node"], "solo", "{v:#}");
    assert_eq!(v["env"]["ETCD_LISTEN_PEER_URLS"], "http://[::1]:2380");
    assert_eq!(v["env"]["ETCD_LISTEN_CLIENT_URLS"], "http://[::1]:2379");
    assert_eq!(
        v["env"]["ETCD_INITIAL_CLUSTER"],
        "solo=http://solo.v6.test:2380"
    );
}

#[test]
fn the_agent_waits_while_the_record_set_grows_from_two_to_three() {
    let d = "example.test";
    let all = three(&format!("_etcd-server._tcp.{d}"), d, "127.30.6");
    let mut dns = Dns::start(15406, d, &all[..4]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), 3, &dns, d, "", "");
    let agent = Command::new(AGENT)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--name",
            "infra0",
            "--dry-run",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    dns.serve(d, &all);
    let out = agent.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("waiting for 3 members, found 2: infra0, infra1"),
        "{log}"
    );
    let env = String::from_utf8(out.stdout).unwrap();
    assert!(
        env.contains("infra2=http://infra2.example.test:2380"),
        "{env}"
    );
}

#[test]
fn nxdomain_is_no_members_yet_until_records_appear() {
    let d = "example.test";
    let mut dns = Dns::start(15407, d, &[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), 3, &dns, d, "", "");
    let agent = Command::new(AGENT)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--name",
            "infra0",
            "--dry-run",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    dns.serve(d, &three(&format!("_etcd-server._tcp.{d}"), d, "127.30.7"));
    let out = agent.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("not among the 0 discovered members (none); expecting 3"),
        "{log}"
    );
}

#[test]
fn a_target_that_does_not_resolve_is_waited_on_then_named_in_the_failure() {
    let d = "example.test";
    let mut lines = three(&format!("_etcd-server._tcp.{d}"), d, "127.30.8");
    lines.retain(|l| !l.contains("host-record=infra2"));
    let dns = Dns::start(15408, d, &lines);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), 3, &dns, d, "", "");
    let out = agent(&cfg, &["--name", "infra0", "--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).contains("infra2.example.test. does not resolve"));
    assert!(!dir.path().join("etcd.env").exists());
}

#[test]
fn a_dns_server_that_does_not_answer_is_retried_until_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let dns = Dns {
        port: 15409,
        dir: tempfile::tempdir().unwrap(),
        child: None,
    }; // nothing listens
    let cfg = write_config(dir.path(), 3, &dns, "example.test", "", "");
    let out = agent(&cfg, &["--name", "infra0", "--timeout", "3s"]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("DNS lookup of _etcd-server._tcp.example.test. failed")
    );
}

/// SRV and address records naming the lab's machines `infra0.DOMAIN`...; the machines take those
/// names, and etcd resolves them itself, through /etc/hosts in its own namespace.
fn records_of(lab: &mut Lab, domain: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut hosts = String::new();
    for (i, node) in lab.nodes.iter_mut().enumerate() {
        let target = format!("infra{i}.{domain}");
        lines.push(srv(&format!("_etcd-server._tcp.{domain}"), &target, 2380));
        lines.push(host(&target, &node.ip));
        hosts.push_str(&format!("{} {target}\n", node.ip));
        node.name = format!("infra{i}");
    }
    let hosts_file = lab.root.path().join("hosts");
    std::fs::write(&hosts_file, hosts).unwrap();
    lab.hosts_file = Some(hosts_file);
    lines
}

#[test]
fn three_real_etcd_members_bootstrap_from_srv_records() {
    let d = "example.test";
    let mut lab = Lab::new(etcd34(), 40, 3, 3);
    let dns = Dns::start(15410, d, &records_of(&mut lab, d));
    for i in 0..3 {
        let block = format!(
            "[discovery.dns]\ndomain = \"{d}\"\nnameservers = [\"{}\"]",
            dns.nameserver()
        );
        lab.configure_with(i, "dns", &block);
    }
    lab.agents_ok_together(&[0, 1, 2]);
    for i in 0..3 {
        assert_eq!(lab.nodes[i].env_value("ETCD_INITIAL_CLUSTER_STATE"), "new");
    }
    for i in 0..3 {
        lab.start_etcd(i);
    }
    let view = lab.wait_healthy(&[0, 1, 2], 3);
    let mut urls: Vec<_> = view
        .members
        .iter()
        .flat_map(|m| m.peer_urls.clone())
        .collect();
    urls.sort();
    assert_eq!(
        urls,
        [
            "http://infra0.example.test:2380",
            "http://infra1.example.test:2380",
            "http://infra2.example.test:2380"
        ]
    );
}

/// A DNS server that answers every query with SERVFAIL (RCODE 2), as a broken upstream does.
fn servfail_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = answered.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            let mut reply = buf[..n].to_vec();
            reply[2] = 0x80 | (buf[2] & 0x01); // QR, keep RD
            reply[3] = 0x80 | 0x02; // RA, RCODE = SERVFAIL
            reply[6..12].fill(0); // no answer, authority or additional records
            if sock.send_to(&reply, from).is_err() {
                return;
            }
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    (port, answered)
}

#[test]
fn servfail_is_retried_until_the_deadline_and_named() {
    let (port, answered) = servfail_server();
    let dir = tempfile::tempdir().unwrap();
    let dns = Dns {
        port,
        dir: tempfile::tempdir().unwrap(),
        child: None,
    };
    let cfg = write_config(dir.path(), 3, &dns, "example.test", "", "");
    let t = Instant::now();
    let out = agent(&cfg, &["--name", "infra0", "--timeout", "3s"]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        t.elapsed() >= Duration::from_secs(3),
        "no decision before the deadline"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("DNS lookup of _etcd-server._tcp.example.test. failed"),
        "{err}"
    );
    assert!(
        answered.load(std::sync::atomic::Ordering::Relaxed) >= 2,
        "it asked again"
    );
    assert!(!dir.path().join("etcd.env").exists());
}

/// `discovery.fallback`: the DigitalOcean API is down (503 on every listing), so after
/// `fallback_after` the agents list through DNS SRV instead, say why, and the cluster forms from
/// the records alone.
#[test]
fn the_api_down_dns_srv_takes_over_and_the_cluster_forms() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let d = "fallback.test";
    let mut lab = Lab::new(etcd34(), 41, 3, 3);
    let dns = Dns::start(15411, d, &records_of(&mut lab, d));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let api = rt.block_on(async {
        let api = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v2/droplets"))
            .respond_with(ResponseTemplate::new(503).set_body_json(serde_json::json!({
                "id": "service_unavailable",
                "message": "Service is currently unavailable."
            })))
            .mount(&api)
            .await;
        api
    });
    let token = lab.root.path().join("do-token");
    std::fs::write(&token, "dop_v1_fallbacktest").unwrap();
    for i in 0..3 {
        let block = format!(
            "fallback = [\"dns\"]\nfallback_after = \"1s\"\n\
             [discovery.digitalocean]\ntag = \"etcd\"\napi_url = \"{api}\"\n\
             metadata_url = \"http://127.0.0.1:9\"\ntoken_file = \"{token}\"\n\
             [discovery.dns]\ndomain = \"{d}\"\nnameservers = [\"{ns}\"]",
            api = api.uri(),
            token = token.display(),
            ns = dns.nameserver()
        );
        lab.configure_with(i, "digitalocean", &block);
    }
    for out in lab.agents_ok_together(&[0, 1, 2]) {
        let log = stderr(&out);
        assert!(
            log.contains("discovery: falling back to dns: digitalocean has failed for ")
                && log.contains("(discovery.fallback_after is 1s)"),
            "{log}"
        );
        assert!(
            log.contains("503"),
            "the API's answer is in the reason: {log}"
        );
        assert!(
            log.contains("source=\"dns\"") && log.contains("(members from dns, a fallback: "),
            "{log}"
        );
    }
    for i in 0..3 {
        assert_eq!(lab.nodes[i].env_value("ETCD_INITIAL_CLUSTER_STATE"), "new");
        lab.start_etcd(i);
    }
    let view = lab.wait_healthy(&[0, 1, 2], 3);
    assert_eq!(view.members.len(), 3);
    assert!(
        rt.block_on(api.received_requests()).unwrap().len() >= 3,
        "each agent tried the API first"
    );
}
