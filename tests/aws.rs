//! The EC2 provider end to end: the agent binary against a mock EC2 Query API (XML, as the API
//! reference shows it) and IMDSv2 on loopback, with credentials from the SDK's environment chain.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::AGENT;

const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzSECRETKEY";
const IMDS_TOKEN: &str = "AQAEAImdsTokenForTests==";

fn instance(id: &str, name: &str, ip: Option<&str>, state: &str) -> String {
    let code = if state == "running" { "16" } else { "48" };
    include_str!("fixtures/aws/instance.xml")
        .replace("@ID@", id)
        .replace("@NAME@", name)
        .replace("@STATE@", state)
        .replace("@STATE_CODE@", code)
        .replace(
            "@PRIVATE_IP@",
            &ip.map(|ip| format!("                    <privateIpAddress>{ip}</privateIpAddress>"))
                .unwrap_or_default(),
        )
}

fn page(instances: &[String], next: Option<&str>) -> String {
    include_str!("fixtures/aws/describe_instances.xml")
        .replace("@INSTANCES@", &instances.join("\n"))
        .replace(
            "@NEXT_TOKEN@",
            &next
                .map(|t| format!("    <nextToken>{t}</nextToken>"))
                .unwrap_or_default(),
        )
}

fn xml(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/xml;charset=UTF-8")
        .set_body_string(body)
}

struct Aws {
    rt: tokio::runtime::Runtime,
    api: MockServer,
    imds: MockServer,
    dir: tempfile::TempDir,
}

impl Aws {
    fn new(instance_id: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (api, imds) = rt.block_on(async {
            let imds = MockServer::start().await;
            Mock::given(method("PUT"))
                .and(path("/latest/api/token"))
                .and(header("x-aws-ec2-metadata-token-ttl-seconds", "21600"))
                .respond_with(
                    ResponseTemplate::new(200)
                        .insert_header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
                        .set_body_string(IMDS_TOKEN),
                )
                .mount(&imds)
                .await;
            // IMDSv2 only: without the session token the service answers 401.
            Mock::given(method("GET"))
                .and(path("/latest/meta-data/instance-id"))
                .and(header("x-aws-ec2-metadata-token", IMDS_TOKEN))
                .respond_with(ResponseTemplate::new(200).set_body_string(instance_id.to_owned()))
                .mount(&imds)
                .await;
            (MockServer::start().await, imds)
        });
        Aws {
            rt,
            api,
            imds,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn mount(&self, mock: Mock) {
        self.rt.block_on(mock.mount(&self.api));
    }

    fn config(&self, size: usize) -> std::path::PathBuf {
        let p = self.dir.path().join("config.toml");
        std::fs::write(
            &p,
            format!(
                r#"[cluster]
size = {size}
data_dir = "{data}"
[output]
env_file = "{env}"
[etcd_client]
timeout = "500ms"
[discovery]
provider = "aws"
timeout = "3s"
interval = "200ms"
[discovery.aws]
tags = ["etcd-cluster=prod", "role=etcd"]
region = "eu-central-1"
endpoint_url = "{api}"
metadata_url = "{imds}"
"#,
                data = self.dir.path().join("data").display(),
                env = self.dir.path().join("etcd.env").display(),
                api = self.api.uri(),
                imds = self.imds.uri(),
            ),
        )
        .unwrap();
        p
    }

    fn run(&self, config: &Path, args: &[&str]) -> Output {
        let home = self.dir.path();
        let out = Command::new(AGENT)
            .arg("--config")
            .arg(config)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("HOME", home)
            .env("AWS_CONFIG_FILE", home.join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                home.join("no-aws-credentials"),
            )
            // Whatever in the SDK might look for instance metadata finds the mock, never a real one.
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", self.imds.uri())
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_REGION")
            .env_remove("AWS_ENDPOINT_URL")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("agent {args:?}: {}\n{err}", out.status);
        for secret in [SECRET_KEY, IMDS_TOKEN] {
            assert!(
                !err.contains(secret) && !String::from_utf8_lossy(&out.stdout).contains(secret),
                "{secret} leaked"
            );
        }
        out
    }

    fn api_requests(&self) -> Vec<String> {
        let reqs = self.rt.block_on(self.api.received_requests()).unwrap();
        reqs.iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect()
    }
}

#[test]
fn pages_through_next_token_and_identifies_itself_through_imdsv2() {
    let aws = Aws::new("i-0000000000000000b");
    aws.mount(
        Mock::given(method("POST"))
            .and(body_string_contains("Action=DescribeInstances"))
            .and(body_string_contains("NextToken=page-2-token"))
            .respond_with(xml(page(
                &[instance(
                    "i-0000000000000000c",
                    "etcd-c",
                    Some("127.60.0.3"),
                    "running",
                )],
                None,
            ))),
    );
    aws.mount(
        Mock::given(method("POST"))
            .and(body_string_contains("Action=DescribeInstances"))
            .respond_with(xml(page(
                &[
                    instance(
                        "i-0000000000000000a",
                        "etcd-a",
                        Some("127.60.0.1"),
                        "running",
                    ),
                    instance(
                        "i-0000000000000000b",
                        "etcd-b",
                        Some("127.60.0.2"),
                        "running",
                    ),
                    instance(
                        "i-00000000000000dead",
                        "etcd-old",
                        Some("127.60.0.9"),
                        "terminated",
                    ),
                ],
                Some("page-2-token"),
            ))),
    );
    let out = aws.run(&aws.config(3), &["plan", "--format", "json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["this_node"], "etcd-b",
        "found itself by instance id from IMDSv2"
    );
    let names: Vec<&str> = v["discovered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["etcd-a", "etcd-b", "etcd-c"],
        "terminated instances are left out"
    );
    // The other two machines' agents are not running: a first bootstrap waits for their vouch.
    assert_eq!(v["outcome"]["row"], "wait");
    assert!(
        v["outcome"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("waiting for etcd-a (127.60.0.1) to vouch"),
        "{}",
        v["outcome"]["reason"]
    );

    let bodies = aws.api_requests();
    assert_eq!(bodies.len(), 2, "exactly one request per page: {bodies:?}");
    for b in &bodies {
        assert!(
            b.contains("Filter.1.Name=tag%3Aetcd-cluster") && b.contains("Filter.1.Value.1=prod"),
            "{b}"
        );
        assert!(
            b.contains("Filter.2.Name=tag%3Arole") && b.contains("Filter.2.Value.1=etcd"),
            "{b}"
        );
        assert!(
            b.contains("Filter.3.Name=instance-state-name")
                && b.contains("Filter.3.Value.1=running"),
            "{b}"
        );
        assert!(b.contains("MaxResults=1000"), "{b}");
    }
    assert!(!bodies[0].contains("NextToken") && bodies[1].contains("NextToken=page-2-token"));
    let auth = aws.rt.block_on(aws.api.received_requests()).unwrap()[0].headers["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/")
            && auth.contains("/eu-central-1/ec2/"),
        "{auth}"
    );
}

#[test]
fn rejected_credentials_exit_77_without_showing_the_secret() {
    let aws = Aws::new("i-0000000000000000a");
    aws.mount(Mock::given(method("POST")).respond_with(
        ResponseTemplate::new(401).set_body_string(include_str!("fixtures/aws/auth_failure.xml")),
    ));
    let out = aws.run(&aws.config(3), &[]);
    assert_eq!(out.status.code(), Some(77));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("credentials rejected by the EC2 API (AuthFailure)"),
        "{err}"
    );
}

#[test]
fn server_errors_are_retried_then_succeed() {
    let aws = Aws::new("i-0000000000000000a");
    aws.mount(
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1),
    );
    aws.mount(Mock::given(method("POST")).respond_with(xml(page(
        &[instance(
            "i-0000000000000000a",
            "etcd-a",
            Some("127.60.1.1"),
            "running",
        )],
        None,
    ))));
    let out = aws.run(&aws.config(1), &["--dry-run"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ETCD_NAME=etcd-a\n"));
}

#[test]
fn an_instance_without_a_private_address_is_waited_on_and_named() {
    let aws = Aws::new("i-0000000000000000a");
    aws.mount(Mock::given(method("POST")).respond_with(xml(page(
        &[
            instance(
                "i-0000000000000000a",
                "etcd-a",
                Some("127.60.2.1"),
                "running",
            ),
            instance("i-0000000000000000b", "etcd-b", None, "running"),
        ],
        None,
    ))));
    let out = aws.run(&aws.config(2), &[]);
    assert_eq!(
        out.status.code(),
        Some(65),
        "a data problem, after waiting for it to resolve"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("instance \"i-0000000000000000b\" has no private_v4 address yet")
    );
    assert!(!aws.dir.path().join("etcd.env").exists());
}

#[test]
fn an_unreachable_api_and_a_malformed_body_are_retried_until_the_deadline() {
    let aws = Aws::new("i-0000000000000000a");
    let cfg = aws.config(1);
    let unreachable = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&aws.api.uri(), "http://127.0.0.1:9");
    std::fs::write(&cfg, unreachable).unwrap();
    let out = aws.run(&cfg, &[]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("EC2 API request to http://127.0.0.1:9/ failed"),
        "the unreachable endpoint is named"
    );

    // A cut-off document (complete as far as HTTP is concerned) is an answer to ask again for,
    // never a listing of fewer machines.
    aws.mount(Mock::given(method("POST")).respond_with(xml(
        "<DescribeInstancesResponse><reservationSet><item>".into(),
    )));
    let out = aws.run(&aws.config(1), &[]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("not a complete DescribeInstancesResponse document"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!aws.dir.path().join("etcd.env").exists());
}
