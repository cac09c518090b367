//! The machines a mock API lists, and the pages it serves them in, shaped field for field like the
//! providers' documented payloads: every machine is the test suite's fixture with its own id, name,
//! addresses and tags or labels.
//!
//! DigitalOcean: `GET /v2/droplets` (https://docs.digitalocean.com/reference/api/api-reference/#operation/droplets_list):
//! `per_page` defaults to 20, at most 200; `links.pages` holds only the links that make sense.
//! Hetzner: `GET /v1/servers` (https://docs.hetzner.cloud/#servers-get-all-servers): `per_page`
//! defaults to 25, at most 50; `meta.pagination` always present.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

const DROPLET: &str = include_str!("../../tests/fixtures/digitalocean/droplet.json");
const SERVER: &str = include_str!("../../tests/fixtures/hetzner/server.json");

/// One machine of a fleet.
#[derive(Clone, Debug)]
pub struct Machine {
    pub id: u64,
    pub name: String,
    pub ip: Ipv4Addr,
}

/// `count` machines named `<prefix>-<n>` with ids from `first_id`, on loopback addresses
/// `127.<net>.x.y` (nothing listens there unless a benchmark starts etcd on it).
pub fn machines(prefix: &str, first_id: u64, net: u8, count: usize) -> Vec<Machine> {
    (0..count)
        .map(|i| Machine {
            id: first_id + i as u64,
            name: format!("{prefix}-{i}"),
            ip: Ipv4Addr::new(127, net, (i / 250) as u8, (i % 250 + 1) as u8),
        })
        .collect()
}

pub fn droplet(m: &Machine, tag: &str) -> Value {
    let mut d: Value = serde_json::from_str(DROPLET).expect("droplet fixture");
    d["id"] = json!(m.id);
    d["name"] = json!(m.name);
    d["networks"]["v4"][0]["ip_address"] = json!(m.ip.to_string());
    d["networks"]["v4"][1]["ip_address"] = json!(format!("203.0.113.{}", m.id % 250 + 1));
    d["tags"] = json!([tag]);
    d
}

pub fn server(m: &Machine, label: (&str, &str)) -> Value {
    let mut s: Value = serde_json::from_str(SERVER).expect("server fixture");
    s["id"] = json!(m.id);
    s["name"] = json!(m.name);
    s["public_net"]["ipv4"]["ip"] = json!(m.ip.to_string());
    s["labels"] = json!({ label.0: label.1 });
    s
}

/// Page `page` (from 1) of `items`; empty past the end.
fn slice(items: &[Value], page: usize, per_page: usize) -> &[Value] {
    let start = (page - 1).saturating_mul(per_page).min(items.len());
    &items[start..(start + per_page).min(items.len())]
}

fn last_page(total: usize, per_page: usize) -> usize {
    total.div_ceil(per_page).max(1)
}

/// A `GET /v2/droplets` body. `base` is the API's own URL, used in the `links`.
pub fn droplets_page(
    droplets: &[Value],
    tag: &str,
    page: usize,
    per_page: usize,
    base: &str,
) -> Value {
    let last = last_page(droplets.len(), per_page);
    let link = |p: usize| format!("{base}/v2/droplets?page={p}&per_page={per_page}&tag_name={tag}");
    let mut pages = serde_json::Map::new();
    if page > 1 {
        pages.insert("first".into(), json!(link(1)));
        pages.insert("prev".into(), json!(link(page - 1)));
    }
    if page < last {
        pages.insert("next".into(), json!(link(page + 1)));
        pages.insert("last".into(), json!(link(last)));
    }
    json!({
        "droplets": slice(droplets, page, per_page),
        "links": { "pages": pages },
        "meta": { "total": droplets.len() },
    })
}

/// A `GET /v1/servers` body.
pub fn servers_page(servers: &[Value], page: usize, per_page: usize) -> Value {
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
        }},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_the_fleet_once_and_link_only_what_exists() {
        let ms = machines("etcd", 1, 9, 450);
        let ds: Vec<Value> = ms.iter().map(|m| droplet(m, "t")).collect();
        let mut seen = 0;
        for page in 1..=3 {
            let body = droplets_page(&ds, "t", page, 200, "https://x");
            seen += body["droplets"].as_array().unwrap().len();
            assert_eq!(body["links"]["pages"].get("next").is_some(), page < 3);
            assert_eq!(body["links"]["pages"].get("prev").is_some(), page > 1);
            assert_eq!(body["meta"]["total"], 450);
        }
        assert_eq!(seen, 450);
        let ss: Vec<Value> = ms.iter().map(|m| server(m, ("role", "etcd"))).collect();
        let last = servers_page(&ss, 9, 50);
        assert_eq!(last["servers"].as_array().unwrap().len(), 50);
        assert_eq!(last["meta"]["pagination"]["next_page"], Value::Null);
        assert_eq!(
            servers_page(&ss, 8, 50)["meta"]["pagination"]["next_page"],
            9
        );
        assert_eq!(ms[449].ip, Ipv4Addr::new(127, 9, 1, 200));
    }
}
