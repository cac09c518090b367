//! Reading and writing keys through etcd's JSON gateway, to show that data survives.

use std::time::Duration;

use etcd_bootstrap::config::EtcdClientSettings;
use etcd_bootstrap::etcd::EtcdClient;

pub struct Kv {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    etcd: EtcdClient,
}

pub fn b64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let n = chunk.iter().fold(0u32, |a, &b| a << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                T[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

impl Kv {
    pub fn new() -> Kv {
        let settings = EtcdClientSettings {
            ca_file: None,
            cert_file: None,
            key_file: None,
            timeout: Duration::from_secs(3),
        };
        Kv {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            // No idle connections kept: an etcd restarted at the same address would otherwise be
            // asked on the dead one's connection.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            etcd: EtcdClient::new(&settings, false, Default::default()).unwrap(),
        }
    }

    pub fn put(&self, endpoint: &str, key: &str, value: &str) {
        if let Err(e) = self.try_put(endpoint, key, value) {
            panic!("put {key} through {endpoint}: {e}");
        }
    }

    /// A put, and etcd's refusal in its own words when it refuses.
    pub fn try_put(&self, endpoint: &str, key: &str, value: &str) -> Result<(), String> {
        let body = serde_json::json!({ "key": b64(key), "value": b64(value) });
        self.rt.block_on(async {
            let r = self
                .http
                .post(format!("{endpoint}/v3/kv/put"))
                .json(&body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r.status().is_success() {
                return Ok(());
            }
            Err(r.text().await.unwrap_or_default())
        })
    }

    /// The value's base64, as the gateway returns it.
    pub fn get(&self, endpoint: &str, key: &str) -> String {
        let body = serde_json::json!({ "key": b64(key) });
        let v: serde_json::Value = self.rt.block_on(async {
            let r = self
                .http
                .post(format!("{endpoint}/v3/kv/range"))
                .json(&body)
                .send()
                .await
                .unwrap();
            r.json().await.unwrap()
        });
        v["kvs"][0]["value"].as_str().unwrap_or_default().to_owned()
    }

    pub fn leader(&self, endpoint: &str) -> u64 {
        self.rt.block_on(self.etcd.status(endpoint)).unwrap().leader
    }
}
