//! The DigitalOcean provider against a mock API and metadata service serving payloads shaped
//! like the API reference's examples (`tests/fixtures/digitalocean/`).

use std::time::{Duration, Instant};

use serde_json::Value;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::DigitalOcean;
use crate::config::{AddressKind, CloudSettings};
use crate::discovery::fleet::{droplet, droplet_page};
use crate::discovery::{Discover, validate};
use crate::error::Kind;

const TOKEN: &str = "dop_v1_0123456789abcdef";

fn provider(api: &str, metadata: &str, address: AddressKind) -> DigitalOcean {
    provider_with_timeout(api, metadata, address, Duration::from_secs(2))
}

fn provider_with_timeout(
    api: &str,
    metadata: &str,
    address: AddressKind,
    timeout: Duration,
) -> DigitalOcean {
    let settings = CloudSettings {
        address,
        names_from_id: false,
        api_url: api.to_owned(),
        metadata_url: metadata.to_owned(),
        token_file: None,
        ca_file: None,
        timeout,
    };
    let token = crate::discovery::secret::tests_only_secret(TOKEN);
    DigitalOcean::new(settings, "etcd".into(), token).unwrap()
}

/// Serves the fleet page by page, as the API does.
struct Fleet(Vec<Value>, String);

impl Fleet {
    fn delayed(self, by: Duration) -> Delayed {
        Delayed(self, by)
    }
}

struct Delayed(Fleet, Duration);

impl Respond for Delayed {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.0.respond(req).set_delay(self.1)
    }
}

impl Respond for Fleet {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let page = req
            .url
            .query_pairs()
            .find(|(k, _)| k == "page")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(1);
        ResponseTemplate::new(200).set_body_json(droplet_page(&self.0, page, 200, &self.1, "etcd"))
    }
}

async fn api_with(fleet: Vec<Value>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/droplets"))
        .and(query_param("tag_name", "etcd"))
        .and(query_param("per_page", "200"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(Fleet(fleet, server.uri()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/metadata/v1/id"))
        .respond_with(ResponseTemplate::new(200).set_body_string("401001"))
        .mount(&server)
        .await;
    server
}

async fn droplet_requests(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v2/droplets")
        .count()
}

#[tokio::test]
async fn lists_active_droplets_with_their_private_address_and_finds_itself() {
    let mut fleet: Vec<Value> = (0..3).map(droplet).collect();
    let mut off = droplet(3);
    off["status"] = "off".into();
    let mut new = droplet(4);
    new["status"] = "new".into();
    fleet.extend([off, new]);
    let server = api_with(fleet).await;
    let listing = provider(&server.uri(), &server.uri(), AddressKind::PrivateV4)
        .list()
        .await
        .unwrap();
    let got: Vec<(String, String, String)> = listing
        .candidates
        .iter()
        .map(|c| (c.id.clone(), c.name.to_string(), c.host.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            ("401000".into(), "etcd-0".into(), "10.114.0.1".into()),
            ("401001".into(), "etcd-1".into(), "10.114.0.2".into()),
            ("401002".into(), "etcd-2".into(), "10.114.0.3".into()),
        ]
    );
    assert_eq!(listing.self_id.as_deref(), Some("401001"));
    assert_eq!(
        listing.candidates[0].created.as_deref(),
        Some("2026-03-02T09:14:05Z")
    );
    assert_eq!(droplet_requests(&server).await, 1);
}

#[tokio::test]
async fn public_addresses_on_request() {
    let server = api_with((0..2).map(droplet).collect()).await;
    let v4 = provider(&server.uri(), &server.uri(), AddressKind::PublicV4)
        .list()
        .await
        .unwrap();
    assert_eq!(v4.candidates[1].host.to_string(), "203.0.0.2");
    let v6 = provider(&server.uri(), &server.uri(), AddressKind::PublicV6)
        .list()
        .await
        .unwrap();
    assert_eq!(v6.candidates[1].host.to_string(), "2001:db8:4:d0::2");
}

#[tokio::test]
async fn pages_through_450_droplets_in_exactly_3_requests() {
    let server = api_with((0..450).map(droplet).collect()).await;
    let listing = provider(&server.uri(), &server.uri(), AddressKind::PrivateV4)
        .list()
        .await
        .unwrap();
    assert_eq!(listing.candidates.len(), 450);
    assert_eq!(droplet_requests(&server).await, 3);
    let names: std::collections::BTreeSet<_> = listing
        .candidates
        .iter()
        .map(|c| c.name.to_string())
        .collect();
    assert_eq!(names.len(), 450, "no droplet lost or repeated across pages");
}

#[tokio::test]
async fn a_droplet_without_the_chosen_address_is_named_and_retried() {
    let mut d = droplet(1);
    d["networks"]["v4"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "private");
    let server = api_with(vec![droplet(0), d]).await;
    let err = provider(&server.uri(), &server.uri(), AddressKind::PrivateV4)
        .list()
        .await
        .unwrap_err();
    assert!(err.retryable);
    assert_eq!(
        err.message,
        "droplet \"etcd-1\" (401001) has no private_v4 address yet"
    );
}

#[tokio::test]
async fn duplicate_names_are_an_error_naming_both_droplets() {
    let mut twin = droplet(7);
    twin["name"] = "etcd-0".into();
    let server = api_with(vec![droplet(0), twin]).await;
    let listing = provider(&server.uri(), &server.uri(), AddressKind::PrivateV4)
        .list()
        .await
        .unwrap();
    let err = validate(listing.candidates).unwrap_err();
    assert!(
        err.message.contains("401000") && err.message.contains("401007"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_hostile_name_is_refused_with_advice() {
    let mut d = droplet(0);
    d["name"] = "etcd-0\nETCD_NAME=evil".into();
    let server = api_with(vec![d]).await;
    let err = provider(&server.uri(), &server.uri(), AddressKind::PrivateV4)
        .list()
        .await
        .unwrap_err();
    assert!(!err.retryable);
    assert_eq!(err.kind, Kind::DataErr);
    assert!(
        err.message.contains("newline") && err.message.contains("member_name = \"id\""),
        "{}",
        err.message
    );
}

// ---- the failure ladder: unreachable, 500, 429, malformed, 401, then success ----------------

#[tokio::test]
async fn unreachable_api_is_retryable() {
    let err = provider(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        AddressKind::PrivateV4,
    )
    .list()
    .await
    .unwrap_err();
    assert!(
        err.retryable
            && err
                .message
                .contains("request to http://127.0.0.1:9/v2/droplets"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn server_errors_are_retried_four_times_then_reported() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/droplets"))
        .respond_with(ResponseTemplate::new(500).set_body_string(include_str!(
            "../../../tests/fixtures/digitalocean/server_error.json"
        )))
        .mount(&server)
        .await;
    let err = provider(&server.uri(), &server.uri(), AddressKind::PrivateV4)
        .list()
        .await
        .unwrap_err();
    assert!(err.retryable);
    assert!(
        err.message.contains("HTTP 500") && err.message.contains("Unexpected server-side error"),
        "{}",
        err.message
    );
    assert_eq!(droplet_requests(&server).await, 4);
}

#[tokio::test]
async fn rate_limits_wait_as_retry_after_says_then_succeed() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/droplets"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .insert_header("ratelimit-remaining", "0")
                .set_body_string(include_str!(
                    "../../../tests/fixtures/digitalocean/too_many_requests.json"
                )),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/v2/droplets"))
        .respond_with(Fleet((0..3).map(droplet).collect(), server.uri()))
        .mount(&server)
        .await;
    let t = Instant::now();
    let listing = provider(&server.uri(), &server.uri(), AddressKind::PrivateV4)
        .list()
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    assert_eq!(listing.candidates.len(), 3);
    assert_eq!(droplet_requests(&server).await, 2);
}

#[tokio::test]
async fn malformed_json_is_retryable_and_says_so() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/droplets"))
        .respond_with(
            ResponseTemplate::new(200).set_body_string("{\"droplets\": [{\"id\": 1, \"na"),
        )
        .mount(&server)
        .await;
    let err = provider(&server.uri(), &server.uri(), AddressKind::PrivateV4)
        .list()
        .await
        .unwrap_err();
    assert!(
        err.retryable && err.message.contains("not the expected JSON"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_rejected_token_is_final_after_one_request_and_never_shown() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/droplets"))
        .respond_with(ResponseTemplate::new(401).set_body_string(include_str!(
            "../../../tests/fixtures/digitalocean/unauthorized.json"
        )))
        .mount(&server)
        .await;
    let err = provider(&server.uri(), &server.uri(), AddressKind::PrivateV4)
        .list()
        .await
        .unwrap_err();
    assert!(!err.retryable);
    assert_eq!(err.kind, Kind::NoPerm);
    assert!(
        err.message.contains("token rejected")
            && err.message.contains("Unable to authenticate you.")
    );
    assert!(!err.message.contains(TOKEN));
    assert_eq!(droplet_requests(&server).await, 1);
}

#[tokio::test]
async fn a_missing_metadata_service_leaves_identification_to_names_and_addresses() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/droplets"))
        .respond_with(Fleet((0..3).map(droplet).collect(), server.uri()))
        .mount(&server)
        .await;
    let listing = provider(&server.uri(), "http://127.0.0.1:9", AddressKind::PrivateV4)
        .list()
        .await
        .unwrap();
    assert_eq!(listing.self_id, None);
    assert_eq!(listing.candidates.len(), 3);
}

#[tokio::test]
async fn an_endless_body_is_cut_off() {
    let server = MockServer::start().await;
    let huge = format!(
        "{{\"droplets\": [], \"pad\": \"{}\"}}",
        "x".repeat(crate::discovery::api::MAX_BODY + 10)
    );
    Mock::given(path("/v2/droplets"))
        .respond_with(ResponseTemplate::new(200).set_body_string(huge))
        .mount(&server)
        .await;
    let err = provider(&server.uri(), &server.uri(), AddressKind::PrivateV4)
        .list()
        .await
        .unwrap_err();
    assert!(err.message.contains("larger than"), "{}", err.message);
}

// ---- faults: resets, slowness, endless bodies -------------------------------------------------

/// A server that accepts connections and closes them at once, without a byte.
fn resetting_server() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().take(16) {
            drop(c);
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn connection_resets_are_retried_then_reported() {
    let api = resetting_server();
    let err = provider(&api, "http://127.0.0.1:9", AddressKind::PrivateV4)
        .list()
        .await
        .unwrap_err();
    assert!(err.retryable, "{}", err.message);
    assert!(err.message.contains("request to"), "{}", err.message);
}

#[tokio::test]
async fn a_response_slower_than_the_timeout_is_cut_and_retried() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/droplets"))
        .respond_with(
            Fleet((0..3).map(droplet).collect(), server.uri()).delayed(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let p = provider_with_timeout(
        &server.uri(),
        &server.uri(),
        AddressKind::PrivateV4,
        Duration::from_millis(300),
    );
    let t = Instant::now();
    let err = p.list().await.unwrap_err();
    assert!(
        err.retryable && err.message.contains("timed out"),
        "{}",
        err.message
    );
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "each attempt was cut at the timeout: {:?}",
        t.elapsed()
    );
    assert_eq!(droplet_requests(&server).await, 4);
}

/// A server that answers 200 with a chunked body that never ends (1 GiB and more).
fn endless_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().take(8) {
            let Ok(mut c) = c else { continue };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let _ = c.read(&mut [0u8; 4096]);
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
                let chunk = format!("{:x}\r\n{}\r\n", 65536, "x".repeat(65536));
                for _ in 0..(1 << 14) {
                    // 16,384 chunks of 64 KiB: 1 GiB, unless the client hangs up first.
                    if c.write_all(chunk.as_bytes()).is_err() {
                        return;
                    }
                    counter.fetch_add(65536, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    (format!("http://{addr}"), sent)
}

#[tokio::test]
async fn an_endless_chunked_body_is_cut_at_the_bound() {
    let (api, sent) = endless_server();
    let err = provider(&api, "http://127.0.0.1:9", AddressKind::PrivateV4)
        .list()
        .await
        .unwrap_err();
    assert!(err.message.contains("larger than"), "{}", err.message);
    std::thread::sleep(Duration::from_millis(200));
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        sent < 64 << 20,
        "the client kept reading: {sent} bytes over 4 attempts"
    );
}

// ---- hostile input from the API --------------------------------------------------------------

#[tokio::test]
async fn hostile_names_and_addresses_are_refused_with_a_clear_error() {
    let long = "a".repeat(10_000);
    let names: &[(&str, &str)] = &[
        ("etcd-0\nETCD_NAME=evil", "a newline"),
        ("etcd-0\"", "'\"'"),
        ("etcd-0'", "'''"),
        ("$(reboot)", "'$'"),
        ("`id`", "'`'"),
        ("a=b", "'='"),
        ("a,b", "','"),
        ("a\0b", "NUL"),
        (&long, "10000 characters"),
        ("еtcd-0", "non-ASCII"), // Cyrillic е
        ("etcd‐0", "non-ASCII"), // U+2010 hyphen
    ];
    for (name, why) in names {
        let mut d = droplet(0);
        d["name"] = (*name).into();
        let server = api_with(vec![d]).await;
        let err = provider(&server.uri(), &server.uri(), AddressKind::PrivateV4)
            .list()
            .await
            .unwrap_err();
        assert_eq!(err.kind, Kind::DataErr, "{name:?}");
        assert!(err.message.contains(why), "{name:?}: {}", err.message);
        assert!(
            !err.message.contains('\n') && err.message.len() < 300,
            "one short line: {:?}",
            err.message
        );
    }
    let addresses = [
        ("10.0.0.256", "not a valid IPv4"),
        ("010.0.0.1", "not a valid IPv4"),
        ("fe80::1%eth0", "zone id"),
        ("FD00::1", "canonical"),
        ("0.0.0.0", "cannot be a member's address"),
        ("10.0.0.1; reboot", "neither an IP"),
    ];
    for (ip, why) in addresses {
        let mut d = droplet(0);
        d["networks"]["v4"][0]["ip_address"] = ip.into();
        let server = api_with(vec![d]).await;
        let err = provider(&server.uri(), &server.uri(), AddressKind::PrivateV4)
            .list()
            .await
            .unwrap_err();
        assert_eq!(err.kind, Kind::DataErr, "{ip:?}");
        assert!(err.message.contains(why), "{ip:?}: {}", err.message);
    }
}
