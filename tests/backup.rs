//! `etcd-bootstrap snapshot` on real etcd 3.4 and 3.5, to a directory and to an S3 server
//! nobody on this project wrote (moto's, from PyPI, started here on loopback): only the leader
//! uploads, also after a leader change; what lands in the store is etcd's database whole (its
//! sha256 is the manifest's, and etcd 3.5 restored from it serves the keys written before);
//! retention keeps exactly what its rule says and touches nothing it did not write; a store that
//! refuses, answers garbage or hangs is a clear failure that leaves nothing behind; the access
//! key never shows. moto checks every request's SigV4 signature against an access key made
//! through its IAM, so a signing mistake fails these tests.
// S3 needs the default `aws` feature (SigV4), and these tests sign their own reads of moto.
#![cfg(feature = "aws")]

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use etcd_bootstrap::backup::stream::sha256_hex;
use etcd_bootstrap::config::EtcdClientSettings;
use etcd_bootstrap::discovery::api::urlencode;
use etcd_bootstrap::etcd::EtcdClient;

on_both_releases! {
    the_leader_alone_backs_up_to_a_directory_across_a_leader_change => 110,
    the_leader_streams_a_large_snapshot_to_s3_in_parts => 111,
    a_store_that_refuses_answers_garbage_or_hangs_fails_clearly => 112,
    a_cluster_is_restored_by_hand_from_the_newest_snapshot => 113,
    a_fleet_whose_machines_all_went_restores_at_boot_never_empty => 114,
    a_fresh_fleet_waits_on_an_s3_store_it_cannot_read_then_restores_from_it => 115,
}

const SECRET: &str = "moto-secret-key-never-shown";

/// S3's refusal of a key without the permission, shaped as S3 answers it.
const ACCESS_DENIED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>"#;

/// The mock store answers every request with `response` from now on.
fn answer_with(
    rt: &tokio::runtime::Runtime,
    server: &wiremock::MockServer,
    response: wiremock::ResponseTemplate,
) {
    rt.block_on(async {
        server.reset().await;
        wiremock::Mock::given(wiremock::matchers::any())
            .respond_with(response)
            .mount(server)
            .await;
    })
}

/// Runs `snapshot` (with `args`) on every machine at once, as the timers on each do.
fn snapshot_everywhere(lab: &Lab, args: &[&str]) -> Vec<Output> {
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..lab.nodes.len())
            .map(|i| s.spawn(move || lab.agent(i, &[&["snapshot"], args].concat())))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

/// Which machine uploaded: exactly one, the leader; every other one names it and exits 0.
fn the_one_that_uploaded(lab: &Lab, outs: &[Output]) -> usize {
    let leader_id = Kv::new().leader(&lab.nodes[0].client_url());
    let leader_name = &lab
        .members(0)
        .into_iter()
        .find(|m| m.id == leader_id)
        .unwrap()
        .name;
    let mut uploaded = Vec::new();
    for (i, out) in outs.iter().enumerate() {
        let err = stderr(out);
        assert!(out.status.success(), "{err}");
        if err.contains(" written to ") {
            uploaded.push(i);
        } else {
            assert!(
                err.contains(&format!(
                    "{leader_name} ({leader_id:x}) leads the cluster and takes its snapshots"
                )),
                "{err}"
            );
        }
    }
    assert_eq!(uploaded.len(), 1, "exactly one machine uploads");
    assert_eq!(&lab.nodes[uploaded[0]].name, leader_name);
    uploaded[0]
}

fn client() -> (tokio::runtime::Runtime, EtcdClient) {
    let settings = EtcdClientSettings {
        ca_file: None,
        cert_file: None,
        key_file: None,
        timeout: Duration::from_secs(3),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (
        rt,
        EtcdClient::new(&settings, false, Default::default()).unwrap(),
    )
}

/// Hands leadership from the current leader to another member.
fn move_leader(lab: &Lab) {
    let kv = Kv::new();
    let leader = kv.leader(&lab.nodes[0].client_url());
    let members = lab.members(0);
    let from = lab
        .nodes
        .iter()
        .position(|n| members.iter().any(|m| m.id == leader && m.name == n.name))
        .unwrap();
    let to = members.iter().find(|m| m.id != leader).unwrap().id;
    let (rt, etcd) = client();
    rt.block_on(etcd.move_leader(&lab.nodes[from].client_url(), to))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while kv.leader(&lab.nodes[0].client_url()) != to {
        assert!(Instant::now() < deadline, "leadership never moved");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The manifest of a snapshot, checked against the database it names and the cluster.
fn check_manifest(lab: &Lab, manifest: &[u8], db: &[u8]) -> serde_json::Value {
    let m: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    let view = lab.member_list(0).unwrap();
    assert_eq!(m["format"], 1);
    assert_eq!(m["cluster_token"], lab.token.as_str());
    assert_eq!(m["cluster_id"], format!("{:x}", view.cluster_id));
    // etcd's snapshot file: the database, then its sha256.
    let (database, hash) = db.split_at(db.len() - 32);
    assert_eq!(m["db_size"], database.len() as u64);
    assert_eq!(
        m["sha256"],
        sha256_hex(database),
        "the database is not the one the manifest describes"
    );
    let hash: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        m["sha256"], hash,
        "etcd's own hash does not follow the database"
    );
    let mut names: Vec<&str> = m["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    names.sort();
    let mut expected: Vec<&str> = lab.nodes.iter().map(|n| n.name.as_str()).collect();
    expected.sort();
    assert_eq!(names, expected);
    assert!(m["revision"].as_u64().unwrap() > 1);
    assert!(m["etcd_version"].as_str().unwrap().starts_with("3."));
    m
}

/// etcd 3.5's etcdutl restores `db` into a fresh single-member cluster on `ip`, whose etcd then
/// serves `key` with `value`: the snapshot is usable, not just well-formed.
fn restores_with(db: &Path, ip: &str, key: &str, value: &str) {
    let bin_dir = etcd35().bin.parent().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("restored");
    let peer = format!("http://{ip}:2380");
    let out = Command::new(bin_dir.join("etcdutl"))
        .args(["snapshot", "restore"])
        .arg(db)
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--name",
            "restored",
            "--initial-cluster",
            &format!("restored={peer}"),
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcdutl snapshot restore: {}",
        stderr(&out)
    );
    let client_url = format!("http://{ip}:2379");
    let mut etcd = Command::new(bin_dir.join("etcd"))
        .args(["--name", "restored", "--data-dir"])
        .arg(&data)
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args(["--initial-cluster", &format!("restored={peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let kv = Kv::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        if let Ok(()) = kv.try_put(&client_url, "restore-check", "1") {
            break kv.get(&client_url, key);
        }
        assert!(Instant::now() < deadline, "the restored etcd never served");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = etcd.kill();
    let _ = etcd.wait();
    assert_eq!(got, b64(value));
}

/// Access key files as an operator keeps them: readable by their owner only.
fn private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for f in ["id", "secret"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

fn files_under(dir: &Path) -> Vec<String> {
    dir_snapshot(dir)
        .into_iter()
        .map(|(p, _)| p.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .collect()
}

fn the_leader_alone_backs_up_to_a_directory_across_a_leader_change(etcd: Etcd, block: u8) {
    let mut lab = formed(etcd, block);
    let kv = Kv::new();
    kv.put(&lab.nodes[0].client_url(), "first", "before any snapshot");
    let store = lab.root.path().join("store");
    // Someone else's files, and another cluster's snapshots: never touched.
    let other_token = store.join("another-cluster");
    std::fs::create_dir_all(&other_token).unwrap();
    std::fs::write(
        other_token.join("snapshot-20200101T000000Z-0000000000000001.db"),
        "x",
    )
    .unwrap();
    std::fs::create_dir_all(store.join(&lab.token)).unwrap();
    std::fs::write(store.join(&lab.token).join("notes.txt"), "the operator's").unwrap();
    lab.sections = format!(
        "[backup]\nurl = \"file://{}\"\nkeep_newest = 2\nkeep_daily = 0\n",
        store.display()
    );
    lab.configure_all();

    let outs = snapshot_everywhere(&lab, &[]);
    let first = the_one_that_uploaded(&lab, &outs);
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lab.nodes[first].env_file().with_file_name("snapshot.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["last_attempt"]["result"], "uploaded");
    let ours = |store: &Path| -> Vec<String> {
        let mut v: Vec<String> = files_under(&store.join(&lab.token))
            .into_iter()
            .filter(|f| f.starts_with("snapshot-"))
            .collect();
        v.sort();
        v
    };
    let listed = ours(&store);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let db = std::fs::read(store.join(&lab.token).join(&listed[0])).unwrap();
    let manifest = std::fs::read(store.join(&lab.token).join(&listed[1])).unwrap();
    check_manifest(&lab, &manifest, &db);

    // Not due again within backup.interval (1h): nothing new, and it says when.
    let again = lab.agent(first, &["snapshot"]);
    assert!(again.status.success());
    assert!(
        stderr(&again).contains("the next is due in"),
        "{}",
        stderr(&again)
    );
    assert_eq!(ours(&store).len(), 2);

    // Leadership moves: the new leader takes the next snapshot (--force: not waiting an hour).
    two_more_rounds_after_a_leader_change(&lab, &kv, first);

    // Retention kept the newest two, and nothing else was touched.
    let kept = ours(&store);
    assert_eq!(kept.len(), 4, "{kept:?}");
    assert!(!kept.contains(&listed[0]), "the oldest was kept: {kept:?}");
    assert!(store.join(&lab.token).join("notes.txt").exists());
    assert!(
        other_token
            .join("snapshot-20200101T000000Z-0000000000000001.db")
            .exists()
    );
    assert!(files_under(&store).iter().all(|f| !f.contains("partial")));

    // The newest restores, with the key written after the leader changed.
    let newest = store.join(&lab.token).join(&kept[2]);
    restores_with(
        &newest,
        &format!("127.{}.{block}.50", lab.etcd.net),
        "second",
        "after the leader changed",
    );

    // status, on any member, names the newest snapshot and its age.
    let out = lab.agent(first, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let newest_key = format!("{}/{}", lab.token, kept[2]);
    assert!(
        text.contains(&format!("backups: newest snapshot {newest_key}, ")),
        "{text}"
    );
    let out = lab.agent(first, &["status", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["backup"]["newest"], newest_key.as_str());
    assert!(json["backup"]["age_seconds"].as_u64().unwrap() < 60);
    for i in 0..3 {
        lab.stop_etcd(i);
    }
}

/// moto's S3 server on `ip:5000`, with one bucket.
struct Moto {
    child: Child,
    endpoint: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    /// An access key made through moto's IAM: moto checks every request's SigV4 signature
    /// against it once the setup calls are done.
    id: String,
    secret: String,
}

impl Moto {
    /// moto on `ip:5000` with `bucket`, checking signatures: its first four requests go
    /// unchecked (INITIAL_NO_AUTH_ACTION_COUNT): the bucket, an IAM user, its access key and a
    /// policy letting it use S3. Every request after them must be signed with that key.
    fn start(ip: &str, bucket: &str) -> Moto {
        let path = std::env::var("MOTO_PYTHONPATH").expect(
            "MOTO_PYTHONPATH is not set: run the tests with scripts/test, which installs moto's S3 server",
        );
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", ip, "-p", "5000"])
            .env("PYTHONPATH", path)
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "4")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut moto = Moto {
            child,
            endpoint: format!("http://{ip}:5000"),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: reqwest::Client::new(),
            id: String::new(),
            secret: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        // Until it listens (a refused connection is not a request).
        while std::net::TcpStream::connect(format!("{ip}:5000")).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto's S3 server never listened on {ip}:5000"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let made = moto
            .rt
            .block_on(moto.http.put(format!("{}/{bucket}", moto.endpoint)).send())
            .unwrap();
        assert!(
            made.status().is_success(),
            "creating the bucket: {}",
            made.status()
        );
        // IAM's query API; moto routes a request by the service its credential scope names.
        let iam = |form: &[(&str, &str)]| -> String {
            moto.rt.block_on(async {
                let r = moto
                    .http
                    .post(&moto.endpoint)
                    .header(
                        "authorization",
                        "AWS4-HMAC-SHA256 Credential=AKIASETUP/20261201/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
                    )
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(
                        form.iter()
                            .map(|(k, v)| format!("{k}={}", urlencode(v)))
                            .collect::<Vec<_>>()
                            .join("&"),
                    )
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "IAM {form:?}: {}", r.status());
                r.text().await.unwrap()
            })
        };
        iam(&[
            ("Action", "CreateUser"),
            ("UserName", "backup"),
            ("Version", "2010-05-08"),
        ]);
        let key = iam(&[
            ("Action", "CreateAccessKey"),
            ("UserName", "backup"),
            ("Version", "2010-05-08"),
        ]);
        let field = |tag: &str| {
            key.split(&format!("<{tag}>"))
                .nth(1)
                .unwrap()
                .split('<')
                .next()
                .unwrap()
                .to_owned()
        };
        moto.id = field("AccessKeyId");
        moto.secret = field("SecretAccessKey");
        iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", "backup"),
            ("PolicyName", "backups"),
            (
                "PolicyDocument",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
            ),
            ("Version", "2010-05-08"),
        ]);
        moto
    }

    /// The access key, in files as an operator keeps them.
    fn write_keys(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("id"), format!("{}\n", self.id)).unwrap();
        std::fs::write(dir.join("secret"), format!("{}\n", self.secret)).unwrap();
        private(dir);
    }

    /// A signed GET of `path` (`BUCKET/KEY`, or `BUCKET?query` with the query encoded).
    fn get(&self, path: &str) -> Vec<u8> {
        self.signed("GET", path, b"")
    }

    /// A signed PUT of `body` at `BUCKET/KEY`, as another writer of the bucket would.
    fn put(&self, path: &str, body: &[u8]) {
        self.signed("PUT", path, body);
    }

    fn signed(&self, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
        use etcd_bootstrap::awsapi::Signer;
        let url = format!("{}/{path}", self.endpoint);
        let credentials =
            aws_credential_types::Credentials::new(&self.id, &self.secret, None, None, "test");
        let mut settings = aws_sigv4::http_request::SigningSettings::default();
        settings.percent_encoding_mode = aws_sigv4::http_request::PercentEncodingMode::Single;
        settings.payload_checksum_kind = aws_sigv4::http_request::PayloadChecksumKind::XAmzSha256;
        let signer = Signer {
            credentials: &credentials,
            region: "us-east-1",
            service: "s3",
            settings,
        };
        let headers = signer.headers(method, &url, &[], body).unwrap();
        self.rt.block_on(async {
            let mut request = self
                .http
                .request(method.parse().unwrap(), &url)
                .body(body.to_vec());
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let r = request.send().await.unwrap();
            assert!(r.status().is_success(), "{method} {path}: {}", r.status());
            r.bytes().await.unwrap().to_vec()
        })
    }

    /// The keys under `prefix`, from ListObjectsV2's XML.
    fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let prefix = prefix.replace('/', "%2F");
        let xml =
            String::from_utf8(self.get(&format!("{bucket}?list-type=2&prefix={prefix}"))).unwrap();
        let mut keys: Vec<String> = xml
            .split("<Key>")
            .skip(1)
            .map(|s| s.split("</Key>").next().unwrap().to_owned())
            .collect();
        keys.sort();
        keys
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// S3 (moto, every request signed): the leader alone streams a snapshot larger than a part,
/// which restores; not due again within the interval; the key never shown, a wrong one refused;
/// after a leader change the new leader uploads, retention deletes the oldest and nothing it did
/// not write; `restore` brings the newest back from the bucket.
fn the_leader_streams_a_large_snapshot_to_s3_in_parts(etcd: Etcd, block: u8) {
    let mut lab = formed(etcd, block);
    let moto = Moto::start(&format!("127.{}.{block}.100", lab.etcd.net), "etcd-backups");
    let kv = Kv::new();
    // More than one 8 MiB part.
    let value = "v".repeat(1 << 20);
    for i in 0..12 {
        kv.put(&lab.nodes[0].client_url(), &format!("bulk-{i}"), &value);
    }
    kv.put(&lab.nodes[0].client_url(), "marker", "in the s3 snapshot");
    // moto's own access key: every request the agent makes is checked against its signature.
    let keys = lab.root.path().join("keys");
    moto.write_keys(&keys);
    lab.sections = format!(
        "[backup]\nurl = \"s3://etcd-backups/prod/main\"\nendpoint = \"{}\"\naccess_key_id_file = \"{}\"\nsecret_access_key_file = \"{}\"\nkeep_newest = 2\nkeep_daily = 0\n",
        moto.endpoint,
        keys.join("id").display(),
        keys.join("secret").display()
    );
    lab.configure_all();

    let outs = snapshot_everywhere(&lab, &[]);
    let leader = the_one_that_uploaded(&lab, &outs);
    let listed = moto.keys("etcd-backups", &format!("prod/main/{}/", lab.token));
    assert_eq!(listed.len(), 2, "{listed:?}");
    let db = moto.get(&format!("etcd-backups/{}", listed[0]));
    assert!(
        db.len() > 8 << 20,
        "the database ({} bytes) should span parts",
        db.len()
    );
    let manifest = moto.get(&format!("etcd-backups/{}", listed[1]));
    let m = check_manifest(&lab, &manifest, &db);
    assert_eq!(m["snapshot"], listed[0].trim_start_matches("prod/main/"));
    let saved = lab.root.path().join("from-s3.db");
    std::fs::write(&saved, &db).unwrap();
    restores_with(
        &saved,
        &format!("127.{}.{block}.50", lab.etcd.net),
        "marker",
        "in the s3 snapshot",
    );

    // Not due: the store's newest snapshot counts, whoever wrote it.
    let again = lab.agent(leader, &["snapshot"]);
    assert!(
        stderr(&again).contains("the next is due in"),
        "{}",
        stderr(&again)
    );

    // The access key is never shown: not in any output, nor in the record.
    for out in outs.iter().chain([&again]) {
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(out));
        assert!(!all.contains(&moto.secret));
    }
    let record =
        std::fs::read_to_string(lab.nodes[leader].env_file().with_file_name("snapshot.json"))
            .unwrap();
    assert!(!record.contains(&moto.secret));

    // A wrong secret: the store refuses the signature (exit 77), and it is not shown.
    std::fs::write(keys.join("secret"), format!("{SECRET}\n")).unwrap();
    let out = lab.agent(leader, &["snapshot", "--force"]);
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("SignatureDoesNotMatch"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(SECRET));
    assert_eq!(
        moto.keys("etcd-backups", &format!("prod/main/{}/", lab.token))
            .len(),
        2,
        "a refused run wrote nothing"
    );
    // The record keeps the last upload beside the last attempt, which was not due.
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["last_attempt"]["result"], "not-due");
    assert_eq!(
        record["last_success"]["key"],
        listed[0].trim_start_matches("prod/main/")
    );

    // Leadership moves: the new leader uploads the next snapshot; retention (keep_newest = 2)
    // then deletes the oldest from the bucket, and nothing it did not write.
    moto.write_keys(&keys);
    let prefix = format!("prod/main/{}/", lab.token);
    let foreign = format!("{prefix}notes.txt");
    moto.put(&format!("etcd-backups/{foreign}"), b"the operator's");
    two_more_rounds_after_a_leader_change(&lab, &kv, leader);
    let kept = moto.keys("etcd-backups", &prefix);
    assert_eq!(
        kept.len(),
        5,
        "two snapshots and the operator's file: {kept:?}"
    );
    assert!(!kept.contains(&listed[0]), "the oldest was kept: {kept:?}");
    assert!(kept.contains(&foreign), "{kept:?}");
    let newest = kept.iter().filter(|k| k.ends_with(".db")).max().unwrap();

    // restore streams the newest back from S3 (signed, checked against its manifest) into a
    // data dir.
    for i in 0..3 {
        lab.stop_etcd(i);
    }
    let out = lab.agent(leader, &["restore", "--replace-data"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "restored {}",
            newest.trim_start_matches("prod/main/")
        )),
        "{}",
        stderr(&out)
    );
    assert!(lab.nodes[leader].data_dir().join("member/snap/db").exists());
}

/// Leadership moves away from `first` (the last uploader) and a key is written; then two forced
/// rounds a second apart: the new leader uploads the first, and with `keep_newest = 2` the
/// second round's upload deletes the oldest snapshot.
fn two_more_rounds_after_a_leader_change(lab: &Lab, kv: &Kv, first: usize) {
    move_leader(lab);
    kv.put(
        &lab.nodes[0].client_url(),
        "second",
        "after the leader changed",
    );
    std::thread::sleep(Duration::from_millis(1100)); // names are by the second
    let second = the_one_that_uploaded(lab, &snapshot_everywhere(lab, &["--force"]));
    assert_ne!(second, first);
    std::thread::sleep(Duration::from_millis(1100));
    let outs = snapshot_everywhere(lab, &["--force"]);
    let third = the_one_that_uploaded(lab, &outs);
    assert!(
        stderr(&outs[third]).contains("deleted 1 older snapshot (retention)"),
        "{}",
        stderr(&outs[third])
    );
}

/// One machine backing up to `endpoint`: its result, and how long it took.
fn snapshot_to(
    lab: &mut Lab,
    leader: usize,
    url: &str,
    endpoint: &str,
    timeout: &str,
) -> (Output, Duration) {
    lab.sections = format!(
        "[backup]\nurl = \"{url}\"\nendpoint = \"{endpoint}\"\ntimeout = \"{timeout}\"\naccess_key_id_file = \"{0}/id\"\nsecret_access_key_file = \"{0}/secret\"\n",
        lab.root.path().join("keys").display()
    );
    lab.configure(leader, &[0, 1, 2]);
    let started = Instant::now();
    let out = lab.agent(leader, &["snapshot", "--force"]);
    (out, started.elapsed())
}

fn a_store_that_refuses_answers_garbage_or_hangs_fails_clearly(etcd: Etcd, block: u8) {
    use wiremock::{MockServer, ResponseTemplate};

    let mut lab = formed(etcd, block);
    let keys = lab.root.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("id"), "AKIAEXAMPLEBACKUP\n").unwrap();
    std::fs::write(keys.join("secret"), format!("{SECRET}\n")).unwrap();
    private(&keys);
    let leader_id = Kv::new().leader(&lab.nodes[0].client_url());
    let members = lab.members(0);
    let leader = lab
        .nodes
        .iter()
        .position(|n| {
            members
                .iter()
                .any(|m| m.id == leader_id && m.name == n.name)
        })
        .unwrap();
    let env_before = std::fs::read(lab.nodes[leader].env_file()).unwrap();
    let data_before = dir_snapshot(&lab.nodes[leader].data_dir()).len();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(MockServer::start());
    // Cases run one after another against the same mock, which answers S3's error shape.
    let cases: [(ResponseTemplate, Option<i32>, &str); 3] = [
        (
            ResponseTemplate::new(403).set_body_string(ACCESS_DENIED),
            Some(77),
            "AccessDenied: \"Access Denied\"; check the access key",
        ),
        (
            ResponseTemplate::new(200).set_body_string("<html>captive portal</html>"),
            Some(69),
            "not a complete ListBucketResult document",
        ),
        (
            ResponseTemplate::new(200).set_delay(Duration::from_secs(30)),
            Some(69),
            "no answer within 2s (backup.timeout)",
        ),
    ];
    for (response, code, says) in cases {
        answer_with(&rt, &server, response);
        let (out, took) = snapshot_to(
            &mut lab,
            leader,
            "s3://etcd-backups/prod",
            &server.uri(),
            "2s",
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), code, "{err}");
        assert!(err.contains(says), "{err}");
        assert!(!err.contains(SECRET));
        assert!(took < Duration::from_secs(15), "took {took:?}");
        let record =
            std::fs::read_to_string(lab.nodes[leader].env_file().with_file_name("snapshot.json"))
                .unwrap();
        assert!(record.contains("\"failed\""), "{record}");
        // status shows why the store cannot be read, without judging the cluster by it.
        let out = lab.agent(leader, &["status"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(
            text.contains("backups: backup store s3://etcd-backups/prod/: "),
            "{text}"
        );
        assert!(!text.contains(SECRET));
    }

    // A bucket that does not exist, on a real S3 server: named, with what to do.
    let moto = Moto::start(
        &format!("127.{}.{block}.100", lab.etcd.net),
        "some-other-bucket",
    );
    moto.write_keys(&keys);
    let (out, _) = snapshot_to(
        &mut lab,
        leader,
        "s3://etcd-backups/prod",
        &moto.endpoint,
        "5s",
    );
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(stderr(&out).contains("NoSuchBucket"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("create the bucket"),
        "{}",
        stderr(&out)
    );
    assert_eq!(moto.keys("some-other-bucket", ""), Vec::<String>::new());

    // A directory that is not there (an unmounted volume): nothing is created in its place.
    let missing: PathBuf = lab.root.path().join("not-mounted");
    lab.sections = format!("[backup]\nurl = \"file://{}\"\n", missing.display());
    lab.configure(leader, &[0, 1, 2]);
    let out = lab.agent(leader, &["snapshot"]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        stderr(&out).contains("is not a directory: mount the volume or create it"),
        "{}",
        stderr(&out)
    );
    assert!(!missing.exists());

    // Nothing of the machine's was touched by any of it.
    assert_eq!(
        std::fs::read(lab.nodes[leader].env_file()).unwrap(),
        env_before
    );
    assert!(dir_snapshot(&lab.nodes[leader].data_dir()).len() >= data_before);
    for i in 0..3 {
        lab.stop_etcd(i);
    }
}

fn a_cluster_is_restored_by_hand_from_the_newest_snapshot(etcd: Etcd, block: u8) {
    let mut lab = formed(etcd, block);
    let kv = Kv::new();
    kv.put(&lab.nodes[0].client_url(), "kept", "in the snapshot");
    let store = lab.root.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    lab.sections = format!("[backup]\nurl = \"file://{}\"\n", store.display());
    lab.configure_all();
    the_one_that_uploaded(&lab, &snapshot_everywhere(&lab, &[]));
    kv.put(&lab.nodes[0].client_url(), "later", "after the snapshot");

    // While etcd runs, and over data without --replace-data: refused, nothing changed.
    let out = lab.agent(0, &["restore"]);
    assert_eq!(out.status.code(), Some(79), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stop it on every member first"),
        "{}",
        stderr(&out)
    );
    for i in 0..3 {
        lab.stop_etcd(i);
    }
    let before: Vec<_> = (0..3)
        .map(|i| dir_snapshot(&lab.nodes[i].data_dir()))
        .collect();
    let out = lab.agent(0, &["restore"]);
    assert_eq!(out.status.code(), Some(79), "{}", stderr(&out));
    assert!(stderr(&out).contains("--replace-data"), "{}", stderr(&out));

    // A snapshot whose bytes are not its manifest's: refused before anything changes.
    let db = dir_snapshot(&store)
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| p.extension().is_some_and(|e| e == "db"))
        .unwrap();
    let good = std::fs::read(&db).unwrap();
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 0xff;
    std::fs::write(&db, &bad).unwrap();
    let out = lab.agent(0, &["restore", "--replace-data"]);
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("do not match its manifest"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        dir_snapshot(&lab.nodes[0].data_dir()),
        before[0],
        "the data dir changed"
    );
    std::fs::write(&db, &good).unwrap();

    // A snapshot taken by etcd 3.5 is not restored for an etcd 3.4 (etcd.binary pointed at
    // Debian's): refused, naming both versions, nothing changed.
    if lab.etcd.bin == etcd35().bin {
        lab.nodes[0].bin = Some(etcd34().bin);
        lab.configure(0, &[0, 1, 2]);
        let out = lab.agent(0, &["restore", "--replace-data"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(79), "{err}");
        assert!(
            err.contains("was taken by etcd 3.5.") && err.contains("is 3.4."),
            "{err}"
        );
        assert_eq!(dir_snapshot(&lab.nodes[0].data_dir()), before[0]);
        lab.nodes[0].bin = None;
        lab.configure(0, &[0, 1, 2]);
    }

    // Every member restores the same snapshot; the old data is kept beside.
    for (i, before) in before.iter().enumerate() {
        let out = lab.agent(i, &["restore", "--replace-data"]);
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains(&format!("as {}, one of 3 members", lab.nodes[i].name)),
            "{err}"
        );
        assert!(err.contains("the data that was there is in "), "{err}");
        assert_ne!(&dir_snapshot(&lab.nodes[i].data_dir()), before);
    }
    let kept_aside = std::fs::read_dir(lab.nodes[0].data_dir().parent().unwrap())
        .unwrap()
        .flatten()
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("data.before-restore-")
        });
    assert!(kept_aside);

    // The boot run finds data of its own on each and restarts it; the cluster serves what the
    // snapshot held, and not what came after it.
    lab.agents_ok_together(&[0, 1, 2]);
    for i in 0..3 {
        assert_eq!(
            lab.nodes[i].env_value("ETCD_INITIAL_CLUSTER_STATE"),
            "existing"
        );
        lab.start_etcd(i);
    }
    lab.wait_healthy(&[0, 1, 2], 3);
    assert_eq!(
        kv.get(&lab.nodes[1].client_url(), "kept"),
        b64("in the snapshot")
    );
    assert_eq!(kv.get(&lab.nodes[2].client_url(), "later"), "");
    for i in 0..3 {
        lab.stop_etcd(i);
    }
}

/// Runs the agents of `machines` together for `secs` seconds (they wait: no decision is due) and
/// returns what each said.
fn agents_waiting(lab: &Lab, machines: &[usize], secs: u64) -> Vec<String> {
    let children: Vec<Child> = machines.iter().map(|&i| lab.agent_spawn(i, &[])).collect();
    std::thread::sleep(Duration::from_secs(secs));
    children
        .into_iter()
        .map(|mut c| {
            assert!(c.try_wait().unwrap().is_none(), "an agent stopped waiting");
            c.kill().unwrap();
            stderr(&c.wait_with_output().unwrap())
        })
        .collect()
}

/// Total loss: every machine of a cluster terminated, three fresh ones (new names, new
/// addresses, empty disks) start with the same token. They never bootstrap empty while the store
/// holds a snapshot of it: with `backup.restore = false` they wait and name it, with a store that
/// cannot be read they wait and say why, and by default every one restores the same snapshot and
/// the new cluster serves its keys.
fn a_fleet_whose_machines_all_went_restores_at_boot_never_empty(etcd: Etcd, block: u8) {
    let mut lab = formed(etcd, block);
    let kv = Kv::new();
    kv.put(&lab.nodes[0].client_url(), "kept", "in the snapshot");
    let store = lab.root.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let backup = format!("[backup]\nurl = \"file://{}\"\n", store.display());
    lab.sections = backup.clone();
    lab.configure_all();
    the_one_that_uploaded(&lab, &snapshot_everywhere(&lab, &[]));
    kv.put(&lab.nodes[0].client_url(), "later", "after the snapshot");
    for i in 0..3 {
        lab.stop_etcd(i);
    }
    let key = files_under(&store)
        .into_iter()
        .find(|k| k.ends_with(".db"))
        .unwrap();
    let key = key.trim_start_matches('/');

    let net = lab.etcd.net;
    let fresh: Vec<usize> = (11..14)
        .map(|k| lab.add_node(&format!("127.{net}.{block}.{k}")))
        .collect();
    let configure = |lab: &mut Lab, sections: String| {
        lab.sections = sections;
        for &i in &fresh {
            lab.configure(i, &fresh);
        }
    };

    // Restoring switched off: they wait, naming the snapshot and the setting.
    configure(&mut lab, format!("{backup}restore = false\n"));
    for err in agents_waiting(&lab, &fresh, 4) {
        assert!(
            err.contains("backup.restore = false") && err.contains(key),
            "{err}"
        );
    }
    // A store that cannot be read (an unmounted volume) is no empty store: they wait.
    configure(
        &mut lab,
        format!("[backup]\nurl = \"file://{}/unmounted\"\n", store.display()),
    );
    for err in agents_waiting(&lab, &fresh, 4) {
        assert!(
            err.contains("cannot be read") && err.contains("not a directory"),
            "{err}"
        );
    }
    for &i in &fresh {
        assert!(!lab.nodes[i].data_dir().join("member").exists());
        assert!(!lab.nodes[i].env_file().exists());
    }

    // By default: every one restores the same snapshot into a new cluster of the three.
    configure(&mut lab, backup);
    for out in lab.agents_ok_together(&fresh) {
        let err = stderr(&out);
        assert!(err.contains(&format!("restored snapshot {key}")), "{err}");
    }
    for &i in &fresh {
        assert_eq!(lab.nodes[i].env_value("ETCD_INITIAL_CLUSTER_STATE"), "new");
        // The members start on identical, checked copies: no initial corruption check, which
        // would make them wait on each other (docs/backup.md).
        assert!(
            !lab.nodes[i].env().contains("CORRUPT_CHECK"),
            "{}",
            lab.nodes[i].env()
        );
        assert!(
            !lab.nodes[i]
                .data_dir()
                .join(".etcd-bootstrap-restore")
                .exists()
        );
        lab.start_etcd(i);
    }
    let view = lab.wait_healthy(&fresh, 3);
    let mut names: Vec<_> = view.members.iter().map(|m| m.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["node-11", "node-12", "node-13"]);
    for &i in &fresh {
        assert_eq!(
            kv.get(&lab.nodes[i].client_url(), "kept"),
            b64("in the snapshot")
        );
        assert_eq!(kv.get(&lab.nodes[i].client_url(), "later"), "");
    }
    for &i in &fresh {
        lab.stop_etcd(i);
    }
}

/// Total loss with the snapshot in S3 (moto, every request signed): three fresh machines whose
/// store answers 403, 500, garbage or nothing wait, saying why, and touch nothing; once it
/// answers, they wait with `backup.restore = false` naming the snapshot, refuse a database whose
/// bytes are not its manifest's, and then every one restores the snapshot from S3 and the new
/// cluster serves its keys.
fn a_fresh_fleet_waits_on_an_s3_store_it_cannot_read_then_restores_from_it(etcd: Etcd, block: u8) {
    use wiremock::{MockServer, ResponseTemplate};

    let mut lab = formed(etcd, block);
    let net = lab.etcd.net;
    let moto = Moto::start(&format!("127.{net}.{block}.100"), "etcd-backups");
    let keys = lab.root.path().join("keys");
    moto.write_keys(&keys);
    let s3 = |endpoint: &str| {
        format!(
            "[backup]\nurl = \"s3://etcd-backups/prod\"\nendpoint = \"{endpoint}\"\ntimeout = \"2s\"\naccess_key_id_file = \"{0}/id\"\nsecret_access_key_file = \"{0}/secret\"\n",
            keys.display()
        )
    };
    let kv = Kv::new();
    kv.put(&lab.nodes[0].client_url(), "kept", "in the s3 snapshot");
    lab.sections = s3(&moto.endpoint);
    lab.configure_all();
    the_one_that_uploaded(&lab, &snapshot_everywhere(&lab, &[]));
    for i in 0..3 {
        lab.stop_etcd(i);
    }
    let fresh: Vec<usize> = (11..14)
        .map(|k| lab.add_node(&format!("127.{net}.{block}.{k}")))
        .collect();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(MockServer::start());
    let internal = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message><RequestId>4442587FB7D0A2FA</RequestId></Error>"#;
    let cases = [
        (
            ResponseTemplate::new(403).set_body_string(ACCESS_DENIED),
            "AccessDenied",
        ),
        (
            ResponseTemplate::new(500).set_body_string(internal),
            "InternalError",
        ),
        (
            ResponseTemplate::new(200).set_body_string("<html>captive portal</html>"),
            "not a complete ListBucketResult document",
        ),
        (
            ResponseTemplate::new(200).set_delay(Duration::from_secs(30)),
            "no answer within 2s (backup.timeout)",
        ),
    ];
    lab.sections = s3(&server.uri());
    for &i in &fresh {
        lab.configure(i, &fresh);
    }
    for (response, says) in cases {
        answer_with(&rt, &server, response);
        for err in agents_waiting(&lab, &fresh, 5) {
            assert!(
                err.contains("cannot be read") && err.contains(says),
                "{err}"
            );
            assert!(!err.contains(&moto.secret), "{err}");
        }
        for &i in &fresh {
            assert!(!lab.nodes[i].data_dir().join("member").exists());
            assert!(!lab.nodes[i].env_file().exists());
        }
    }

    // S3 answers; backup.restore = false: they wait, naming the snapshot and the setting.
    let listed = moto.keys("etcd-backups", &format!("prod/{}/", lab.token));
    let key = listed[0].trim_start_matches("prod/");
    lab.sections = format!("{}restore = false\n", s3(&moto.endpoint));
    for &i in &fresh {
        lab.configure(i, &fresh);
    }
    for err in agents_waiting(&lab, &fresh, 4) {
        assert!(
            err.contains("backup.restore = false") && err.contains(key),
            "{err}"
        );
    }
    // A database whose bytes are not its manifest's (another writer, a bad copy): every
    // agent refuses it with the reason, and nothing is restored or written.
    let db_path = format!("etcd-backups/{}", listed[0]);
    let good = moto.get(&db_path);
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 0xff;
    moto.put(&db_path, &bad);
    lab.sections = s3(&moto.endpoint);
    for &i in &fresh {
        lab.configure(i, &fresh);
    }
    let lab_ref = &lab;
    let outs: Vec<Output> = std::thread::scope(|s| {
        let runs: Vec<_> = fresh
            .iter()
            .map(|&i| s.spawn(move || lab_ref.agent(i, &[])))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for (out, &i) in outs.iter().zip(&fresh) {
        assert!(!out.status.success(), "{}", stderr(out));
        assert!(!lab.nodes[i].data_dir().join("member").exists());
        assert!(!lab.nodes[i].env_file().exists());
    }
    // Each agent that decided downloads and refuses it (one that had not decided yet when its
    // peers stopped may give up waiting for them instead).
    assert!(
        outs.iter()
            .any(|o| stderr(o).contains("do not match its manifest")),
        "{:?}",
        outs.iter().map(stderr).collect::<Vec<_>>()
    );
    moto.put(&db_path, &good);

    for out in lab.agents_ok_together(&fresh) {
        let err = stderr(&out);
        assert!(err.contains(&format!("restored snapshot {key}")), "{err}");
        assert!(!err.contains(&moto.secret), "{err}");
    }
    for &i in &fresh {
        lab.start_etcd(i);
    }
    lab.wait_healthy(&fresh, 3);
    for &i in &fresh {
        assert_eq!(
            kv.get(&lab.nodes[i].client_url(), "kept"),
            b64("in the s3 snapshot")
        );
    }
    for &i in &fresh {
        lab.stop_etcd(i);
    }
}
