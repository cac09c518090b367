//! Test fleets built from the fixtures: copies of one real-shaped machine with their own ids,
//! names and addresses, as the APIs would list them.

use serde_json::{Value, json};

pub const DROPLET: &str = include_str!("../../tests/fixtures/digitalocean/droplet.json");
pub const SERVER: &str = include_str!("../../tests/fixtures/hetzner/server.json");

/// Droplet `i`: name `etcd-<i>`, private address `10.114.<i/250>.<i%250 + 1>`.
pub fn droplet(i: usize) -> Value {
    let mut d: Value = serde_json::from_str(DROPLET).unwrap();
    d["id"] = json!(401_000 + i);
    d["name"] = json!(format!("etcd-{i}"));
    d["networks"]["v4"][0]["ip_address"] = json!(format!("10.114.{}.{}", i / 250, i % 250 + 1));
    d["networks"]["v4"][1]["ip_address"] = json!(format!("203.0.{}.{}", i / 250, i % 250 + 1));
    d["networks"]["v6"][0]["ip_address"] = json!(format!("2001:db8:4:d0::{:x}", i + 1));
    d
}

/// A page of the droplet list, with `links.pages.next` when more pages follow (and no `links`
/// object at all on a small single page, as the API does).
pub fn droplet_page(droplets: &[Value], page: usize, per_page: usize, base: &str) -> Value {
    let start = (page - 1) * per_page;
    let items: Vec<Value> = droplets
        .iter()
        .skip(start)
        .take(per_page)
        .cloned()
        .collect();
    let last = droplets.len().div_ceil(per_page).max(1);
    let mut pages = serde_json::Map::new();
    if page < last {
        pages.insert(
            "next".into(),
            json!(format!(
                "{base}/v2/droplets?page={}&per_page={per_page}",
                page + 1
            )),
        );
        pages.insert(
            "last".into(),
            json!(format!(
                "{base}/v2/droplets?page={last}&per_page={per_page}"
            )),
        );
    }
    if page > 1 {
        pages.insert(
            "first".into(),
            json!(format!("{base}/v2/droplets?page=1&per_page={per_page}")),
        );
        pages.insert(
            "prev".into(),
            json!(format!(
                "{base}/v2/droplets?page={}&per_page={per_page}",
                page - 1
            )),
        );
    }
    let mut body = json!({ "droplets": items, "meta": { "total": droplets.len() } });
    if droplets.len() > 20 || page > 1 {
        body["links"] = json!({ "pages": pages });
    }
    body
}

/// Server `i`: name `etcd-<i>`, private address `10.0.<i/250>.<i%250 + 1>` in network 4242.
pub fn server(i: usize) -> Value {
    let mut s: Value = serde_json::from_str(SERVER).unwrap();
    s["id"] = json!(4_711_000 + i);
    s["name"] = json!(format!("etcd-{i}"));
    s["private_net"][0]["ip"] = json!(format!("10.0.{}.{}", i / 250, i % 250 + 1));
    s["public_net"]["ipv4"]["ip"] = json!(format!("203.0.{}.{}", i / 250, i % 250 + 1));
    s["public_net"]["ipv6"]["ip"] = json!(format!("2001:db8:c012:{:x}::/64", i + 1));
    s
}

pub fn server_page(servers: &[Value], page: usize, per_page: usize) -> Value {
    let start = (page - 1) * per_page;
    let items: Vec<Value> = servers.iter().skip(start).take(per_page).cloned().collect();
    let last = servers.len().div_ceil(per_page).max(1);
    json!({
        "servers": items,
        "meta": { "pagination": {
            "page": page,
            "per_page": per_page,
            "previous_page": if page > 1 { json!(page - 1) } else { Value::Null },
            "next_page": if page < last { json!(page + 1) } else { Value::Null },
            "last_page": last,
            "total_entries": servers.len(),
        }}
    })
}
