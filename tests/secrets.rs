//! Tokens never reach stdout, stderr (at debug level), the env file or `plan --format json`,
//! on success and on error paths, for every provider that takes one. (AWS credentials and IMDS
//! session tokens are checked the same way in tests/aws.rs.)

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::json;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::AGENT;

const TOKEN: &str = "SECRET-7d1e4c9a-canary-token-5b2f";

struct Case {
    provider: &'static str,
    block: String,
}

fn run(
    dir: &std::path::Path,
    case: &Case,
    args: &[&str],
    token_file: &std::path::Path,
) -> (Option<i32>, String) {
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[cluster]\nsize = 1\ndata_dir = \"{}\"\n[output]\nenv_file = \"{}\"\n\
             [discovery]\nprovider = \"{}\"\ntimeout = \"2s\"\ninterval = \"500ms\"\n{}\ntoken_file = \"{}\"\n",
            dir.join("data").display(),
            dir.join("etcd.env").display(),
            case.provider,
            case.block,
            token_file.display()
        ),
    )
    .unwrap();
    let out = Command::new(AGENT)
        .arg("--config")
        .arg(&cfg)
        .arg("-v")
        .args(args)
        .output()
        .unwrap();
    let mut everything = String::from_utf8_lossy(&out.stdout).into_owned();
    everything.push_str(&String::from_utf8_lossy(&out.stderr));
    everything.push_str(&std::fs::read_to_string(dir.join("etcd.env")).unwrap_or_default());
    (out.status.code(), everything)
}

#[test]
fn tokens_appear_nowhere_whatever_happens() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let mut droplet: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/digitalocean/droplet.json")).unwrap();
    droplet["networks"]["v4"][0]["ip_address"] = json!("127.70.0.1");
    let mut server: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/hetzner/server.json")).unwrap();
    server["private_net"][0]["ip"] = json!("127.70.0.2");
    let pagination = json!({"page": 1, "per_page": 50, "previous_page": null, "next_page": null, "last_page": 1, "total_entries": 1});

    for status in [200, 401, 500] {
        let (api, meta) = rt.block_on(async {
            let api = MockServer::start().await;
            let meta = MockServer::start().await;
            let ok = status == 200;
            Mock::given(path("/v2/droplets"))
                .respond_with(if ok {
                    ResponseTemplate::new(200).set_body_json(json!({"droplets": [droplet.clone()], "meta": {"total": 1}}))
                } else {
                    ResponseTemplate::new(status).set_body_json(json!({"id": "x", "message": "nope"}))
                })
                .mount(&api)
                .await;
            Mock::given(path("/v1/servers"))
                .respond_with(if ok {
                    ResponseTemplate::new(200).set_body_json(json!({"servers": [server.clone()], "meta": {"pagination": pagination.clone()}}))
                } else {
                    ResponseTemplate::new(status).set_body_json(json!({"error": {"code": "x", "message": "nope"}}))
                })
                .mount(&api)
                .await;
            Mock::given(path("/metadata/v1/id")).respond_with(ResponseTemplate::new(200).set_body_string("401001")).mount(&meta).await;
            Mock::given(path("/hetzner/v1/metadata/instance-id"))
                .respond_with(ResponseTemplate::new(200).set_body_string("4711001"))
                .mount(&meta)
                .await;
            (api, meta)
        });
        let cases = [
            Case {
                provider: "digitalocean",
                block: format!(
                    "[discovery.digitalocean]\ntag = \"etcd\"\napi_url = \"{}\"\nmetadata_url = \"{}\"",
                    api.uri(),
                    meta.uri()
                ),
            },
            Case {
                provider: "hetzner",
                block: format!(
                    "[discovery.hetzner]\nlabel_selector = \"role=etcd\"\napi_url = \"{}\"\nmetadata_url = \"{}\"",
                    api.uri(),
                    meta.uri()
                ),
            },
        ];
        for case in &cases {
            for args in [
                &[][..],
                &["--dry-run"][..],
                &["plan", "--format", "json"][..],
            ] {
                let (code, everything) = run(dir.path(), case, args, &token_file);
                assert!(
                    !everything.contains(TOKEN),
                    "{} {args:?} with HTTP {status} leaked the token:\n{everything}",
                    case.provider
                );
                assert!(
                    everything.contains("DEBUG") || args.len() > 1,
                    "debug logging was on"
                );
                match status {
                    200 => assert_eq!(code, Some(0), "{}: {everything}", case.provider),
                    401 => assert_eq!(code, Some(77), "{}: {everything}", case.provider),
                    _ => assert_ne!(code, Some(0), "{}: {everything}", case.provider),
                }
                let _ = std::fs::remove_file(dir.path().join("etcd.env"));
            }
        }
        // The requests did carry the token: the check above is not vacuous.
        let reqs = rt.block_on(api.received_requests()).unwrap();
        assert!(
            reqs.iter()
                .all(|r| r.headers["authorization"] == format!("Bearer {TOKEN}").as_str())
        );
    }
}

#[test]
fn a_token_file_readable_by_others_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let case = Case {
        provider: "digitalocean",
        block: "[discovery.digitalocean]\ntag = \"etcd\"\napi_url = \"http://127.0.0.1:9\"\nmetadata_url = \"http://127.0.0.1:9\"".into(),
    };
    let (_, everything) = run(dir.path(), &case, &["plan"], &token_file);
    assert!(
        everything.contains("readable by group or others (mode 644); chmod 600 it"),
        "{everything}"
    );
    assert!(!everything.contains(TOKEN));
}
