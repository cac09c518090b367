//! Test fleets built from the fixtures: copies of one real-shaped machine with their own ids,
//! names and addresses, and the pages the APIs list them in. The benchmark suite's mock APIs
//! (`bench/src/fleet.rs`) include this file for the fixtures and the page shapes.

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

/// Page `page` (from 1) of `items`; empty past the end, whatever number a client sends.
fn slice(items: &[Value], page: usize, per_page: usize) -> &[Value] {
    let start = page
        .saturating_sub(1)
        .saturating_mul(per_page)
        .min(items.len());
    &items[start..(start + per_page).min(items.len())]
}

fn last_page(total: usize, per_page: usize) -> usize {
    total.div_ceil(per_page).max(1)
}

/// A `GET /v2/droplets?tag_name=TAG` body, with `links.pages.next` when more pages follow (and no
/// `links` object at all on a small single page, as the API does). `base` is the API's own URL.
pub fn droplet_page(
    droplets: &[Value],
    page: usize,
    per_page: usize,
    base: &str,
    tag: &str,
) -> Value {
    let last = last_page(droplets.len(), per_page);
    let link = |p: usize| format!("{base}/v2/droplets?page={p}&per_page={per_page}&tag_name={tag}");
    let mut pages = serde_json::Map::new();
    if page < last {
        pages.insert("next".into(), json!(link(page + 1)));
        pages.insert("last".into(), json!(link(last)));
    }
    if page > 1 {
        pages.insert("first".into(), json!(link(1)));
        pages.insert("prev".into(), json!(link(page - 1)));
    }
    let mut body = json!({
        "droplets": slice(droplets, page, per_page),
        "meta": { "total": droplets.len() },
    });
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

/// A `GET /v1/servers` body; `meta.pagination` is always there.
pub fn server_page(servers: &[Value], page: usize, per_page: usize) -> Value {
    let last = last_page(servers.len(), per_page);
    json!({
        "servers": slice(servers, page, per_page),
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
