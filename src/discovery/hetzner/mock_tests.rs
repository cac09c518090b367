//! The Hetzner Cloud provider against a mock API and metadata service serving payloads shaped
//! like the API reference's examples (`tests/fixtures/hetzner/`).

use std::time::{Duration, Instant};

use serde_json::Value;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::Hetzner;
use crate::config::{AddressKind, CloudSettings};
use crate::discovery::Discover;
use crate::discovery::fleet::{server, server_page};
use crate::discovery::secret::tests_only_secret;
use crate::error::Kind;

const TOKEN: &str = "hcloud-test-token-0123456789";

fn provider(api: &str, address: AddressKind, network: Option<&str>) -> Hetzner {
    let settings = CloudSettings {
        address,
        names_from_id: false,
        api_url: api.to_owned(),
        metadata_url: api.to_owned(),
        token_file: None,
        ca_file: None,
        timeout: Duration::from_secs(2),
    };
    Hetzner::new(
        settings,
        "role=etcd,cluster=prod".into(),
        network.map(str::to_owned),
        "::1".parse().unwrap(),
        tests_only_secret(TOKEN),
    )
    .unwrap()
}

struct Fleet(Vec<Value>);

impl Respond for Fleet {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let page = req
            .url
            .query_pairs()
            .find(|(k, _)| k == "page")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(1);
        ResponseTemplate::new(200).set_body_json(server_page(&self.0, page, 50))
    }
}

async fn api_with(fleet: Vec<Value>) -> MockServer {
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/servers"))
        .and(query_param("label_selector", "role=etcd,cluster=prod"))
        .and(query_param("status", "running"))
        .and(query_param("per_page", "50"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(Fleet(fleet))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/hetzner/v1/metadata/instance-id"))
        .respond_with(ResponseTemplate::new(200).set_body_string("4711002"))
        .mount(&api)
        .await;
    api
}

async fn server_requests(api: &MockServer) -> usize {
    api.received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/servers")
        .count()
}

#[tokio::test]
async fn lists_running_servers_with_their_private_address_and_finds_itself() {
    let mut fleet: Vec<Value> = (0..3).map(server).collect();
    let mut starting = server(3);
    starting["status"] = "starting".into();
    fleet.push(starting);
    let api = api_with(fleet).await;
    let listing = provider(&api.uri(), AddressKind::PrivateV4, None)
        .list()
        .await
        .unwrap();
    let got: Vec<(String, String)> = listing
        .candidates
        .iter()
        .map(|c| (c.name.to_string(), c.host.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            ("etcd-0".into(), "10.0.0.1".into()),
            ("etcd-1".into(), "10.0.0.2".into()),
            ("etcd-2".into(), "10.0.0.3".into())
        ]
    );
    assert_eq!(listing.self_id.as_deref(), Some("4711002"));
    assert_eq!(server_requests(&api).await, 1);
}

#[tokio::test]
async fn pages_through_120_servers_in_exactly_3_requests() {
    let api = api_with((0..120).map(server).collect()).await;
    let listing = provider(&api.uri(), AddressKind::PrivateV4, None)
        .list()
        .await
        .unwrap();
    assert_eq!(listing.candidates.len(), 120);
    assert_eq!(server_requests(&api).await, 3);
}

#[tokio::test]
async fn public_v6_is_the_configured_host_inside_the_64() {
    let api = api_with((0..2).map(server).collect()).await;
    let listing = provider(&api.uri(), AddressKind::PublicV6, None)
        .list()
        .await
        .unwrap();
    assert_eq!(listing.candidates[1].host.to_string(), "2001:db8:c012:2::1");
    let listing = provider(&api.uri(), AddressKind::PublicV4, None)
        .list()
        .await
        .unwrap();
    assert_eq!(listing.candidates[1].host.to_string(), "203.0.0.2");
}

#[tokio::test]
async fn a_server_in_several_networks_needs_the_network_named() {
    let mut s = server(0);
    s["private_net"].as_array_mut().unwrap().push(serde_json::json!(
        { "network": 4243, "ip": "10.1.1.7", "alias_ips": [], "mac_address": "86:00:00:5a:2b:02" }
    ));
    let api = api_with(vec![s]).await;
    let err = provider(&api.uri(), AddressKind::PrivateV4, None)
        .list()
        .await
        .unwrap_err();
    assert_eq!(err.kind, Kind::Config);
    assert!(
        err.message.contains("4242, 4243") && err.message.contains("discovery.hetzner.network"),
        "{}",
        err.message
    );

    let by_id = provider(&api.uri(), AddressKind::PrivateV4, Some("4243"))
        .list()
        .await
        .unwrap();
    assert_eq!(by_id.candidates[0].host.to_string(), "10.1.1.7");

    Mock::given(path("/v1/networks"))
        .and(query_param("name", "etcd-backend"))
        .respond_with(ResponseTemplate::new(200).set_body_string(include_str!(
            "../../../tests/fixtures/hetzner/networks.json"
        )))
        .mount(&api)
        .await;
    let by_name = provider(&api.uri(), AddressKind::PrivateV4, Some("etcd-backend"))
        .list()
        .await
        .unwrap();
    assert_eq!(by_name.candidates[0].host.to_string(), "10.1.1.7");
}

#[tokio::test]
async fn a_server_without_a_private_network_yet_is_named_and_retried() {
    let mut s = server(1);
    s["private_net"] = serde_json::json!([]);
    let api = api_with(vec![server(0), s]).await;
    let err = provider(&api.uri(), AddressKind::PrivateV4, None)
        .list()
        .await
        .unwrap_err();
    assert!(err.retryable);
    assert_eq!(
        err.message,
        "server \"etcd-1\" (4711001) has no private_v4 address yet"
    );
}

#[tokio::test]
async fn rate_limit_reset_and_retry_after_are_honoured() {
    let api = MockServer::start().await;
    Mock::given(path("/v1/servers"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("RateLimit-Limit", "3600")
                .insert_header("RateLimit-Remaining", "0")
                .insert_header("Retry-After", "1")
                .set_body_string(include_str!(
                    "../../../tests/fixtures/hetzner/rate_limit_exceeded.json"
                )),
        )
        .up_to_n_times(1)
        .mount(&api)
        .await;
    Mock::given(path("/v1/servers"))
        .respond_with(Fleet((0..3).map(server).collect()))
        .mount(&api)
        .await;
    let t = Instant::now();
    let listing = provider(&api.uri(), AddressKind::PrivateV4, None)
        .list()
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert_eq!(listing.candidates.len(), 3);
}

#[tokio::test]
async fn failure_ladder_unreachable_500_malformed_401() {
    let err = provider("http://127.0.0.1:9", AddressKind::PrivateV4, None)
        .list()
        .await
        .unwrap_err();
    assert!(err.retryable);

    let api = MockServer::start().await;
    Mock::given(path("/v1/servers"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(4)
        .mount(&api)
        .await;
    let err = provider(&api.uri(), AddressKind::PrivateV4, None)
        .list()
        .await
        .unwrap_err();
    assert!(
        err.retryable && err.message.contains("HTTP 503"),
        "{}",
        err.message
    );

    Mock::given(path("/v1/servers"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>gateway</html>"))
        .up_to_n_times(4)
        .mount(&api)
        .await;
    let err = provider(&api.uri(), AddressKind::PrivateV4, None)
        .list()
        .await
        .unwrap_err();
    assert!(
        err.retryable && err.message.contains("not the expected JSON"),
        "{}",
        err.message
    );

    Mock::given(path("/v1/servers"))
        .respond_with(ResponseTemplate::new(401).set_body_string(include_str!(
            "../../../tests/fixtures/hetzner/unauthorized.json"
        )))
        .up_to_n_times(1)
        .mount(&api)
        .await;
    let before = server_requests(&api).await;
    let err = provider(&api.uri(), AddressKind::PrivateV4, None)
        .list()
        .await
        .unwrap_err();
    assert_eq!(err.kind, Kind::NoPerm);
    assert!(
        err.message.contains("token rejected") && err.message.contains("unable to authenticate")
    );
    assert!(!err.message.contains(TOKEN));
    assert_eq!(
        server_requests(&api).await,
        before + 1,
        "401 is not retried"
    );

    Mock::given(path("/v1/servers"))
        .respond_with(Fleet((0..3).map(server).collect()))
        .mount(&api)
        .await;
    assert_eq!(
        provider(&api.uri(), AddressKind::PrivateV4, None)
            .list()
            .await
            .unwrap()
            .candidates
            .len(),
        3
    );
}
