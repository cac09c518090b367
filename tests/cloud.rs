//! The whole agent against mock cloud APIs (the providers' payload shapes, served on loopback),
//! then real etcd started from the files it wrote.

mod common;

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::*;

const DO_TOKEN: &str = "dop_v1_cloudtest_7f3a9c";

fn droplet(id: u64, name: &str, private_ip: &str) -> Value {
    let mut d: Value =
        serde_json::from_str(include_str!("fixtures/digitalocean/droplet.json")).unwrap();
    d["id"] = json!(id);
    d["name"] = json!(name);
    d["networks"]["v4"][0]["ip_address"] = json!(private_ip);
    d
}

#[test]
fn three_droplets_found_by_tag_bootstrap_a_real_cluster() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut lab = Lab::new(etcd34(), 51, 3, 3);
    lab.name_in_config = false; // each agent must find itself through the metadata service
    let droplets: Vec<Value> = (0..3)
        .map(|i| droplet(900 + i as u64, &lab.nodes[i].name, &lab.nodes[i].ip))
        .collect();
    let (api, metadata) = rt.block_on(async {
        let api = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v2/droplets"))
            .and(query_param("tag_name", "etcd:prod"))
            .and(header(
                "authorization",
                format!("Bearer {DO_TOKEN}").as_str(),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "droplets": droplets, "links": {}, "meta": {"total": 3}
            })))
            .mount(&api)
            .await;
        let mut metadata = Vec::new();
        for i in 0..3 {
            let m = MockServer::start().await;
            Mock::given(path("/metadata/v1/id"))
                .respond_with(ResponseTemplate::new(200).set_body_string(format!("{}", 900 + i)))
                .mount(&m)
                .await;
            metadata.push(m);
        }
        (api, metadata)
    });
    for (i, m) in metadata.iter().enumerate() {
        let block = format!(
            "[discovery.digitalocean]\ntag = \"etcd:prod\"\napi_url = \"{}\"\nmetadata_url = \"{}\"",
            api.uri(),
            m.uri()
        );
        lab.configure_with(i, "digitalocean", &block);
    }
    let outs: Vec<_> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..3)
            .map(|i| {
                let config = lab.nodes[i].config();
                s.spawn(move || {
                    std::process::Command::new(AGENT)
                        .arg("--config")
                        .arg(config)
                        .env("DIGITALOCEAN_TOKEN", DO_TOKEN)
                        .env_remove("NOTIFY_SOCKET")
                        .output()
                        .unwrap()
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for (i, out) in outs.iter().enumerate() {
        let log = stderr(out);
        assert!(out.status.success(), "{log}");
        assert!(
            !log.contains(DO_TOKEN) && !lab.nodes[i].env().contains(DO_TOKEN),
            "the token leaked"
        );
        assert_eq!(
            lab.nodes[i].env_value("ETCD_NAME"),
            lab.nodes[i].name,
            "found itself by droplet id"
        );
    }
    for i in 0..3 {
        lab.start_etcd(i);
    }
    lab.wait_healthy(&[0, 1, 2], 3);
    let list_calls = rt.block_on(api.received_requests()).unwrap().len();
    // Waiting for the peers' vouches costs no listings: an agent asks its peers again, not the
    // API. One listing each, and another only if an agent's backoff step came first.
    assert!(
        (3..=6).contains(&list_calls),
        "each agent listed once or twice: {list_calls} listings"
    );
}
