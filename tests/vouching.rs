//! A first bootstrap on positive evidence only, and whose data is on disk, against real etcd 3.4
//! and 3.5: the agents vouch for their machines on the peer port, silence never counts, and data
//! of another cluster (or the distribution package's default cluster) is named and left alone.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::*;
use etcd_bootstrap::datadir;

on_both_releases! {
    replacements_never_bootstrap_while_the_survivor_reboots => 20,
    data_of_another_cluster_is_refused => 21,
    the_log_names_the_member_and_cluster_etcd_reports => 23,
    the_package_cluster_named_after_the_host_is_refused => 26,
    the_package_cluster_named_default_is_refused => 27,
}

/// The failure this product exists to prevent (issue 12): a formed cluster loses two machines
/// with their disks, two replacements boot while the third machine, which kept the data,
/// reboots. With shipped defaults the replacements wait for it however long it takes; when it is
/// back, its agent finds the quorum lost and (without `cluster.recover_lost_quorum`) decides
/// nothing; everyone fails loudly at its timeout naming it. Never an empty cluster beside the data.
fn replacements_never_bootstrap_while_the_survivor_reboots(etcd: Etcd, block: u8) {
    let mut lab = formed(etcd, block);
    for i in 0..3 {
        lab.stop_etcd(i);
    }
    let survivor_data = dir_snapshot(&lab.nodes[2].data_dir());
    let net = lab.etcd.net;
    let r1 = lab.add_node(&format!("127.{net}.{block}.4"));
    let r2 = lab.add_node(&format!("127.{net}.{block}.5"));
    for i in [2, r1, r2] {
        lab.configure(i, &[2, r1, r2]);
    }
    let started = Instant::now();
    let replacements: Vec<_> = [r1, r2]
        .into_iter()
        .map(|i| lab.agent_spawn(i, &["--timeout", "12s"]))
        .collect();
    // The survivor reboots for a while: silence all along.
    std::thread::sleep(Duration::from_secs(5));
    for i in [r1, r2] {
        assert!(
            !lab.nodes[i].env_file().exists(),
            "{} decided on silence",
            lab.nodes[i].name
        );
    }
    // It is back: its agent finds its two peers gone for good (not listed, silent) and the
    // quorum lost; without cluster.recover_lost_quorum it decides nothing and says so.
    let env_before = lab.nodes[2].env();
    let out = lab.agent(2, &["--timeout", "6s"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(
        err.contains("has lost its quorum: 2 of its 3 voting members are gone"),
        "{err}"
    );
    assert!(
        err.contains("set cluster.recover_lost_quorum = true"),
        "{err}"
    );
    for r in replacements {
        let out = r.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(69), "{err}");
        let last = err
            .lines()
            .rfind(|l| l.contains("ERROR"))
            .unwrap_or_default();
        assert!(
            last.contains("node-3 (127.") && last.contains("holds data of cluster"),
            "the failure names the survivor and its data: {last}"
        );
    }
    assert!(started.elapsed() >= Duration::from_secs(12));
    for i in [r1, r2] {
        assert!(!lab.nodes[i].env_file().exists());
    }
    assert_eq!(
        dir_snapshot(&lab.nodes[2].data_dir()),
        survivor_data,
        "the survivor's data is untouched"
    );
    assert_eq!(lab.nodes[2].env(), env_before, "nor its env file rewritten");
}

/// A data dir whose log belongs to another cluster than the one answering is refused with both
/// ids, whatever the URLs say, and left as it was.
fn data_of_another_cluster_is_refused(etcd: Etcd, block: u8) {
    let mut lab = formed(etcd.clone(), block);
    let ours = lab.member_list(0).unwrap().cluster_id;
    lab.stop_etcd(2);
    // Another cluster's data: a one-member cluster formed elsewhere.
    let mut other = Lab::new(etcd, block + 10, 1, 1);
    other.configure_all();
    other.agent_ok(0);
    other.start_etcd(0);
    let theirs = other.wait_healthy(&[0], 1).cluster_id;
    other.stop_etcd(0);
    let data = lab.nodes[2].data_dir();
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::rename(other.nodes[0].data_dir(), &data).unwrap();
    let before = dir_snapshot(&data);
    let env_before = lab.nodes[2].env();
    // The other two keep a quorum; after a stop they may need a moment to elect a leader.
    lab.wait_until_healthy(&[0, 1]);

    let out = lab.agent(2, &[]);
    assert_eq!(out.status.code(), Some(79), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "holds data of cluster {theirs:x} (member {:x}), but the cluster answering is {ours:x}",
            datadir::read_wal(&data.join("member/wal"))
                .unwrap()
                .member_id
        )),
        "{err}"
    );
    assert_eq!(dir_snapshot(&data), before, "data untouched");
    assert_eq!(
        lab.nodes[2].env(),
        env_before,
        "the previous env file untouched"
    );
}

/// What the agent reads from the write-ahead log is what etcd itself reports: the member and
/// cluster ids, the member set of the bootstrap, and a raft index that grows.
fn the_log_names_the_member_and_cluster_etcd_reports(etcd: Etcd, block: u8) {
    let mut lab = Lab::new(etcd, block, 1, 1);
    lab.configure_all();
    lab.agent_ok(0);
    lab.start_etcd(0);
    let view = lab.wait_healthy(&[0], 1);
    lab.stop_etcd(0);
    let wal = datadir::read_wal(&lab.nodes[0].data_dir().join("member/wal")).unwrap();
    assert_eq!(wal.cluster_id, view.cluster_id);
    assert_eq!(wal.member_id, view.members[0].id);
    assert_eq!(wal.members.len(), 1);
    assert_eq!(wal.members[0].name, lab.nodes[0].name);
    assert_eq!(wal.members[0].peer_urls, [lab.nodes[0].peer_url()]);
    assert!(wal.last_index >= 2, "{wal:?}");
    assert!(!wal.is_package_cluster(&lab.nodes[0].peer_url()));

    // A cluster of one on a loopback address, bootstrapped by this agent: a reboot restarts it.
    let out = lab.agent_ok(0);
    assert!(stderr(&out).contains("row=\"restart"), "{}", stderr(&out));
    lab.start_etcd(0);
    lab.wait_healthy(&[0], 1);
    lab.stop_etcd(0);

    // `plan` shows it.
    let out = lab.agent(0, &["plan"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "data dir: holds member {:x} of cluster {:x}",
            wal.member_id, wal.cluster_id
        )),
        "{text}"
    );
}

fn the_package_cluster_named_after_the_host_is_refused(etcd: Etcd, block: u8) {
    // Debian's unit: Environment=ETCD_NAME=%H.
    package_cluster_is_refused(etcd, block, "etcd-host-7");
}

fn the_package_cluster_named_default_is_refused(etcd: Etcd, block: u8) {
    // etcd's own default, when nothing names the member.
    package_cluster_is_refused(etcd, block, "default");
}

/// What `apt-get install etcd-server` leaves behind (a cluster of one whose member is named
/// `member`, peer URL on localhost) is recognised and named, with the command that clears it,
/// on a machine that is one of three; nothing is touched. With `replace_stale_data` it is moved
/// aside, and the machine then joins the bootstrap like any empty one.
fn package_cluster_is_refused(etcd: Etcd, block: u8, member: &str) {
    let lab = Lab::new(etcd, block, 3, 3);
    lab.configure_all();
    let data = lab.nodes[0].data_dir();
    // etcd as the package starts it, on ports of its own so no other test is disturbed.
    // Two ports (peer, client) per release and block, apart from every other test's.
    let port = 23000 + u16::from(block) * 10 + (u16::from(lab.etcd.net) - 10) * 4;
    let peer = format!("http://localhost:{port}");
    let mut etcd = std::process::Command::new(&lab.etcd.bin)
        .args([
            "--name",
            member,
            "--data-dir",
            data.to_str().unwrap(),
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{port}"),
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("{member}={peer}"),
            "--listen-client-urls",
            &format!("http://127.0.0.1:{}", port + 1),
            "--advertise-client-urls",
            &format!("http://localhost:{}", port + 1),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while datadir::read_wal(&data.join("member/wal")).is_none_or(|w| w.members.is_empty()) {
        assert!(Instant::now() < deadline, "etcd wrote no log");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    etcd.kill().unwrap();
    etcd.wait().unwrap();
    let before = dir_snapshot(&data);

    let out = lab.agent(0, &[]);
    assert_eq!(out.status.code(), Some(79), "{}", stderr(&out));
    let err = stderr(&out);
    let line = err.lines().rfind(|l| l.contains("ERROR")).unwrap();
    assert!(
        line.contains(&format!(
            "the distribution's etcd package started on install (member \"{member}\", peer URL {peer})"
        )) && line.contains(&format!(
            "Clear it with: systemctl stop etcd && mv {d} {d}.distribution-default",
            d = data.display()
        )),
        "{line}"
    );
    assert_eq!(dir_snapshot(&data), before, "data untouched");
    assert!(!lab.nodes[0].env_file().exists());

    // Moved aside only when asked; then the three bootstrap together.
    let mut lab = lab;
    lab.cluster_extra = "replace_stale_data = true\n".into();
    lab.configure_all();
    lab.agents_ok_together(&[0, 1, 2]);
    let aside = std::fs::read_dir(data.parent().unwrap())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("data.removed-"))
        .expect("the package's data moved aside");
    assert_eq!(
        dir_snapshot(&aside.path()).len(),
        before.len(),
        "every file kept"
    );
    for i in 0..3 {
        lab.start_etcd(i);
    }
    lab.wait_healthy(&[0, 1, 2], 3);
}

/// A member set that differs between two agents (their listings disagree) is named, and nothing
/// is bootstrapped. The waiting agent's vouch is what its peers see, on its peer port.
#[test]
fn a_member_set_that_differs_is_named_and_the_vouch_is_readable() {
    let lab = Lab::new(etcd34(), 25, 3, 2);
    // node-1 lists itself with node-2; node-2 lists itself with node-3 (not running).
    lab.configure(0, &[0, 1]);
    lab.configure(1, &[1, 2]);
    let lab = &lab;
    let peer = lab.nodes[1].peer_url();
    std::thread::scope(|s| {
        let other = s.spawn(|| lab.agent(1, &["--timeout", "4s"]));
        // The second agent's vouch, as its peers read it.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let vouch: serde_json::Value = rt.block_on(async {
            let url = format!("{peer}/etcd-bootstrap/v1/vouch");
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                if let Ok(r) = reqwest::get(&url).await
                    && let Ok(v) = r.json().await
                {
                    break v;
                }
                assert!(Instant::now() < deadline, "no vouch at {url}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        assert_eq!(vouch["name"], "node-2");
        assert_eq!(vouch["cluster_token"], lab.token.as_str());
        assert_eq!(vouch["data"]["state"], "empty");
        assert_eq!(vouch["peer_urls"][0], peer.as_str());
        assert_eq!(vouch["bootstrap"][1]["name"], "node-3");
        assert!(
            vouch["agent"]
                .as_str()
                .unwrap()
                .starts_with("etcd-bootstrap/")
        );

        let out = lab.agent(0, &["--timeout", "3s"]);
        assert_eq!(out.status.code(), Some(69));
        let err = stderr(&out);
        let line = err.lines().rfind(|l| l.contains("ERROR")).unwrap();
        assert!(
            line.contains(&format!(
                "node-2 (127.10.25.2) would bootstrap a different member set (node-2={peer},node-3="
            )),
            "{line}"
        );
        assert_eq!(other.join().unwrap().status.code(), Some(69));
    });
    assert!(!lab.nodes[0].env_file().exists() && !lab.nodes[1].env_file().exists());
}

/// A peer port that something else holds (an etcd already running, a distribution's default
/// etcd on all addresses): the agent says what holds it and does not vouch.
#[test]
fn a_taken_peer_port_is_named() {
    let lab = Lab::new(etcd34(), 26, 2, 2);
    lab.configure_all();
    let holder = std::net::TcpListener::bind(format!("{}:2380", lab.nodes[0].ip)).unwrap();
    let out = lab.agent(0, &["--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(69));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "not vouching: {}:2380 is already in use by ",
            lab.nodes[0].ip
        )) && err.contains(&format!("(pid {})", std::process::id())),
        "{err}"
    );
    drop(holder);
}

/// A waiting agent names itself when it asks (`Etcd-Bootstrap-Asker`), and a peer's question
/// that says its vouch changed makes it ask that peer back at once, not at its next round (every
/// 500 ms once it has waited 5 s). Here the test plays
/// node-2's agent: its peer port records the questions and answers 503, so node-1 keeps waiting.
#[test]
fn news_in_a_question_is_asked_back_at_once() {
    use std::io::{Read, Write};
    let lab = Lab::new(etcd34(), 33, 2, 2);
    lab.configure_all();
    let peer2 = std::net::TcpListener::bind(format!("{}:2380", lab.nodes[1].ip)).unwrap();
    let (tx, asked) = std::sync::mpsc::channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for mut s in peer2.incoming().flatten() {
            let head = request_head(&mut s);
            let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if head.starts_with("GET /etcd-bootstrap/v1/vouch ") {
                let _ = tx.send((Instant::now(), head));
            }
        }
    });
    let mut agent = lab.agent_spawn(0, &["--timeout", "12s"]);
    // Past the first 5 s of the wait, node-1 asks every 500 ms.
    let first = asked
        .recv_timeout(Duration::from_secs(5))
        .expect("node-1 never asked node-2");
    while asked.recv_timeout(Duration::from_secs(2)).unwrap().0
        < first.0 + Duration::from_millis(5600)
    {}
    let header = |head: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix("etcd-bootstrap-asker: ").map(str::to_owned))
            .unwrap_or_else(|| panic!("no asker header in {head}"))
    };
    let (_, head) = asked.recv_timeout(Duration::from_secs(2)).unwrap();
    let (name, digest) = header(&head)
        .split_once(' ')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .unwrap();
    assert_eq!(name, "node-1");
    assert!(
        digest.len() == 16 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "{digest}"
    );
    let ask = |digest: &str| {
        let mut s = std::net::TcpStream::connect(format!("{}:2380", lab.nodes[0].ip)).unwrap();
        write!(s, "GET /etcd-bootstrap/v1/vouch HTTP/1.1\r\nHost: x\r\nEtcd-Bootstrap-Asker: node-2 {digest}\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        Instant::now()
    };
    // Right after one of its rounds: the next is ~500 ms away.
    let asked_at = ask("00000000000000aa");
    let (back, _) = asked.recv_timeout(Duration::from_secs(2)).unwrap();
    let took = back.saturating_duration_since(asked_at);
    assert!(
        took < Duration::from_millis(300),
        "asked back after {took:?}"
    );
    // That the same vouch again is no news is src/vouch's unit test: between listings (every
    // second here) the agent's questions are not spaced evenly enough to time it from outside.
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(!lab.nodes[0].env_file().exists());
}

/// A node that decides to bootstrap tells the peers it heard before it goes quiet: its last
/// vouch names them among the peers heard, and a question carrying that vouch's new digest makes
/// them read it while it is still served. Without it, a peer that had not yet read that it was
/// heard asks the starting etcd that took the port, and waits out its silence. Here the test
/// plays node-2's agent, answering node-1 with a vouch for the same two members that says it
/// heard node-1, and reading node-1's vouch back whenever node-1's question says it changed.
#[test]
fn a_node_that_bootstraps_tells_the_peers_it_heard_before_it_goes_quiet() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let lab = Lab::new(etcd34(), 32, 2, 2);
    lab.configure_all();
    let (ip1, ip2) = (lab.nodes[0].ip.clone(), lab.nodes[1].ip.clone());
    // A vouch GET on node-1's peer port, as node-2's agent asks: status line and body.
    let read_node1 = {
        let ip1 = ip1.clone();
        move |digest: &str| -> Option<String> {
            let mut s = std::net::TcpStream::connect(format!("{ip1}:2380")).ok()?;
            write!(s, "GET /etcd-bootstrap/v1/vouch HTTP/1.1\r\nHost: x\r\nEtcd-Bootstrap-Asker: node-2 {digest}\r\n\r\n").ok()?;
            let mut answer = String::new();
            s.read_to_string(&mut answer).ok()?;
            answer
                .starts_with("HTTP/1.1 200 OK")
                .then(|| answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()))?
        }
    };
    let node2_vouch: Arc<Mutex<Option<String>>> = Arc::default();
    let peer2 = std::net::TcpListener::bind(format!("{ip2}:2380")).unwrap();
    let (tx, told) = std::sync::mpsc::channel::<Option<String>>();
    let (served, read_back) = (node2_vouch.clone(), read_node1.clone());
    std::thread::spawn(move || {
        let mut first_digest: Option<String> = None;
        for mut s in peer2.incoming().flatten() {
            let head = request_head(&mut s);
            let body = served.lock().unwrap().clone();
            let _ = match &body {
                Some(b) => write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    b.len()
                ),
                None => write!(
                    s,
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            };
            drop(s);
            let Some(digest) = head.lines().find_map(|l| {
                l.strip_prefix("etcd-bootstrap-asker: node-1 ")
                    .map(str::to_owned)
            }) else {
                continue;
            };
            // Node-1's vouch changed since it first asked: read it, as node-2's agent would.
            if first_digest.get_or_insert_with(|| digest.clone()) != &digest {
                let _ = tx.send(read_back("00000000000000bb"));
            }
        }
    });
    let agent = lab.agent_spawn(0, &["--timeout", "20s"]);
    // Node-1 vouches; its vouch is the template of node-2's (same member set, same token).
    let deadline = Instant::now() + Duration::from_secs(10);
    let template = loop {
        if let Some(b) = read_node1("00000000000000aa") {
            break b;
        }
        assert!(Instant::now() < deadline, "node-1 never vouched");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut v: serde_json::Value = serde_json::from_str(&template).unwrap();
    assert_eq!(v["heard"], serde_json::json!(null), "{template}");
    v["name"] = "node-2".into();
    v["peer_urls"] = serde_json::json!([format!("http://{ip2}:2380")]);
    v["heard"] = serde_json::json!(["node-1"]);
    *node2_vouch.lock().unwrap() = Some(v.to_string());
    // A changed digest: news for node-1, which reads node-2's vouch at once and bootstraps.
    let _ = read_node1("00000000000000bb");
    let out = agent.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = std::fs::read_to_string(lab.nodes[0].env_file()).unwrap();
    assert!(env.contains("ETCD_INITIAL_CLUSTER_STATE=new"), "{env}");
    let last = told
        .recv_timeout(Duration::from_secs(1))
        .expect("node-1 bootstrapped without a question to node-2 after its vouch changed")
        .expect("node-1 no longer answered when node-2 read its changed vouch");
    let last: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(last["heard"], serde_json::json!(["node-2"]), "{last}");
}

/// The request head a test peer received (what it got of it, if the asker hung up).
fn request_head(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}
