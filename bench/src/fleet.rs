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

// The agent's test fleets: the fixtures, and the page shapes (`droplet_page`, `server_page`).
#[path = "../../src/discovery/fleet.rs"]
#[allow(dead_code)] // its numbered machines are the agent's tests' own
mod shared;
use shared::{DROPLET, SERVER};
pub use shared::{droplet_page, server_page};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_the_fleet_once_and_link_only_what_exists() {
        let ms = machines("etcd", 1, 9, 450);
        let ds: Vec<Value> = ms.iter().map(|m| droplet(m, "t")).collect();
        let mut seen = 0;
        for page in 1..=3 {
            let body = droplet_page(&ds, page, 200, "https://x", "t");
            seen += body["droplets"].as_array().unwrap().len();
            assert_eq!(body["links"]["pages"].get("next").is_some(), page < 3);
            assert_eq!(body["links"]["pages"].get("prev").is_some(), page > 1);
            assert_eq!(body["meta"]["total"], 450);
        }
        assert_eq!(seen, 450);
        let ss: Vec<Value> = ms.iter().map(|m| server(m, ("role", "etcd"))).collect();
        let last = server_page(&ss, 9, 50);
        assert_eq!(last["servers"].as_array().unwrap().len(), 50);
        assert_eq!(last["meta"]["pagination"]["next_page"], Value::Null);
        assert_eq!(
            server_page(&ss, 8, 50)["meta"]["pagination"]["next_page"],
            9
        );
        assert_eq!(ms[449].ip, Ipv4Addr::new(127, 9, 1, 200));
    }
}
