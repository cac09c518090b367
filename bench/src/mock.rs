//! Mock DigitalOcean and Hetzner APIs over HTTPS, and their metadata services over HTTP, on
//! loopback. Pages are rendered once and served from memory, so the mock is never what a
//! benchmark measures; every request is counted, so a benchmark can assert what each run asked.
//!
//! Metadata is served per machine under `/node/<id>`: a benchmark points each agent's
//! `metadata_url` at `http://127.0.0.1:PORT/node/<id>`, and one mock plays every machine.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use crate::fleet::{self, Machine};

/// DigitalOcean's limits per token: 5,000 requests an hour, at most 250 of them in any minute
/// (https://docs.digitalocean.com/reference/api/api-reference/#section/Introduction/Rate-Limit).
pub const DO_PER_MINUTE: usize = 250;
pub const DO_PER_HOUR: usize = 5000;

/// What the mock has been asked, since the last `reset`.
#[derive(Default)]
pub struct Counters {
    pub metadata: AtomicU64,
    /// API requests answered with a page.
    pub pages: AtomicU64,
    /// API requests answered 429.
    pub throttled: AtomicU64,
    /// API requests refused for their token (401) or not understood (4xx).
    pub refused: AtomicU64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub metadata: u64,
    pub pages: u64,
    pub throttled: u64,
    pub refused: u64,
}

impl Counts {
    pub fn api(&self) -> u64 {
        self.pages + self.throttled + self.refused
    }
}

#[derive(Default)]
struct Fleets {
    /// DigitalOcean: tag -> droplets.
    droplets: HashMap<String, Vec<Value>>,
    /// Hetzner: `key=value` selector -> servers.
    servers: HashMap<String, Vec<Value>>,
    /// Machine id -> (name, provider path prefix) for the metadata service.
    machines: HashMap<u64, String>,
}

/// A sliding-window limiter with DigitalOcean's semantics: requests over the limit are answered
/// 429 with `Retry-After` (seconds until the oldest counted request leaves the window) and are
/// not counted themselves.
struct Limiter {
    per_minute: usize,
    minute: VecDeque<Instant>,
    hour: VecDeque<Instant>,
}

impl Limiter {
    /// `Ok(remaining)` or `Err(retry_after_secs)`.
    fn admit(&mut self, now: Instant) -> Result<usize, u64> {
        let expire = |q: &mut VecDeque<Instant>, window: Duration| {
            while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
                q.pop_front();
            }
        };
        expire(&mut self.minute, Duration::from_secs(60));
        expire(&mut self.hour, Duration::from_secs(3600));
        if self.minute.len() >= self.per_minute || self.hour.len() >= DO_PER_HOUR {
            let oldest = if self.hour.len() >= DO_PER_HOUR {
                self.hour[0] + Duration::from_secs(3600)
            } else {
                self.minute[0] + Duration::from_secs(60)
            };
            return Err(oldest.duration_since(now).as_secs_f64().ceil().max(1.0) as u64);
        }
        self.minute.push_back(now);
        self.hour.push_back(now);
        Ok(DO_PER_HOUR - self.hour.len())
    }
}

struct State {
    token: String,
    fleets: Mutex<Fleets>,
    /// (api, key, per_page, page) -> rendered body.
    pages: Mutex<HashMap<(char, String, usize, usize), Bytes>>,
    limiter: Mutex<Option<Limiter>>,
    counters: Counters,
    api_url: String,
}

pub struct Mock {
    state: Arc<State>,
    pub api_url: String,
    pub metadata_url: String,
}

impl Mock {
    /// Serves the APIs with `cert`/`key` (PEM) on `127.0.0.1`, ephemeral ports.
    pub async fn start(token: &str, cert: &Path, key: &Path) -> std::io::Result<Mock> {
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(std::io::Error::other)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(std::io::Error::other)?;
        let mut tls = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(std::io::Error::other)?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let api = TcpListener::bind("127.0.0.1:0").await?;
        let metadata = TcpListener::bind("127.0.0.1:0").await?;
        let api_url = format!("https://127.0.0.1:{}", api.local_addr()?.port());
        let metadata_url = format!("http://127.0.0.1:{}", metadata.local_addr()?.port());
        let state = Arc::new(State {
            token: token.to_owned(),
            fleets: Mutex::default(),
            pages: Mutex::default(),
            limiter: Mutex::new(None),
            counters: Counters::default(),
            api_url: api_url.clone(),
        });

        let s = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = api.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let (s, acceptor) = (s.clone(), acceptor.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(TokioIo::new(tls), s).await;
                    }
                });
            }
        });
        let s = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = metadata.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                tokio::spawn(serve(TokioIo::new(tcp), s.clone()));
            }
        });
        Ok(Mock {
            state,
            api_url,
            metadata_url,
        })
    }

    /// Lists `machines` under DigitalOcean tag `tag`.
    pub fn add_droplets(&self, tag: &str, machines: &[Machine]) {
        let mut f = self.state.fleets.lock().unwrap();
        let list = f.droplets.entry(tag.to_owned()).or_default();
        list.extend(machines.iter().map(|m| fleet::droplet(m, tag)));
        for m in machines {
            f.machines.insert(m.id, m.name.clone());
        }
    }

    /// Lists `machines` under Hetzner label `key=value`.
    pub fn add_servers(&self, key: &str, value: &str, machines: &[Machine]) {
        let mut f = self.state.fleets.lock().unwrap();
        let list = f.servers.entry(format!("{key}={value}")).or_default();
        list.extend(machines.iter().map(|m| fleet::server(m, (key, value))));
        for m in machines {
            f.machines.insert(m.id, m.name.clone());
        }
    }

    /// Enforces DigitalOcean's rate limit from now on (`per_minute` below 250 only for tests).
    pub fn limit(&self, per_minute: usize) {
        *self.state.limiter.lock().unwrap() = Some(Limiter {
            per_minute,
            minute: VecDeque::new(),
            hour: VecDeque::new(),
        });
    }

    pub fn unlimit(&self) {
        *self.state.limiter.lock().unwrap() = None;
    }

    /// The metadata base URL of machine `id`, as an agent's `metadata_url`.
    pub fn metadata_of(&self, id: u64) -> String {
        format!("{}/node/{id}", self.metadata_url)
    }

    /// What was asked since the last call, and start counting again.
    pub fn take(&self) -> Counts {
        let c = &self.state.counters;
        Counts {
            metadata: c.metadata.swap(0, Ordering::SeqCst),
            pages: c.pages.swap(0, Ordering::SeqCst),
            throttled: c.throttled.swap(0, Ordering::SeqCst),
            refused: c.refused.swap(0, Ordering::SeqCst),
        }
    }
}

async fn serve<I>(io: I, state: Arc<State>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(&state, &req)) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

fn respond(
    status: StatusCode,
    body: impl Into<Bytes>,
    headers: &[(&str, String)],
) -> Response<Full<Bytes>> {
    let mut r = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(Full::new(body.into())).expect("valid response")
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), decode(v)))
        .collect()
}

/// Percent-decoding of query values (the agent encodes `=` in a label selector as `%3D`).
fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn route(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/node/") {
        return metadata(state, rest);
    }
    let api = match path {
        "/v2/droplets" => 'd',
        "/v1/servers" => 'h',
        _ => {
            state.counters.refused.fetch_add(1, Ordering::SeqCst);
            return respond(
                StatusCode::NOT_FOUND,
                r#"{"id":"not_found","message":"The resource you were accessing could not be found."}"#,
                &[],
            );
        }
    };
    let bearer = format!("Bearer {}", state.token);
    if req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        != Some(bearer.as_str())
    {
        state.counters.refused.fetch_add(1, Ordering::SeqCst);
        return respond(
            StatusCode::UNAUTHORIZED,
            r#"{"id":"unauthorized","message":"Unable to authenticate you."}"#,
            &[],
        );
    }
    let mut headers = Vec::new();
    if api == 'd'
        && let Some(limiter) = state.limiter.lock().unwrap().as_mut()
    {
        let reset = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60;
        match limiter.admit(Instant::now()) {
            Ok(remaining) => {
                headers.push(("ratelimit-limit", DO_PER_HOUR.to_string()));
                headers.push(("ratelimit-remaining", remaining.to_string()));
                headers.push(("ratelimit-reset", reset.to_string()));
            }
            Err(retry_after) => {
                state.counters.throttled.fetch_add(1, Ordering::SeqCst);
                return respond(
                    StatusCode::TOO_MANY_REQUESTS,
                    r#"{"id":"too_many_requests","message":"API rate limit exceeded."}"#,
                    &[
                        ("retry-after", retry_after.to_string()),
                        ("ratelimit-limit", DO_PER_HOUR.to_string()),
                        ("ratelimit-remaining", "0".into()),
                        ("ratelimit-reset", reset.to_string()),
                    ],
                );
            }
        }
    }
    let q = query(req);
    let num = |k: &str, default: usize, max: usize| {
        q.get(k)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(default)
            .clamp(1, max)
    };
    let (key, per_page) = match api {
        'd' => (
            q.get("tag_name").cloned().unwrap_or_default(),
            num("per_page", 20, 200),
        ),
        _ => (
            q.get("label_selector").cloned().unwrap_or_default(),
            num("per_page", 25, 50),
        ),
    };
    let page = num("page", 1, usize::MAX);
    let cache_key = (api, key.clone(), per_page, page);
    let cached = state.pages.lock().unwrap().get(&cache_key).cloned();
    let body = match cached {
        Some(b) => b,
        None => {
            let fleets = state.fleets.lock().unwrap();
            let empty = Vec::new();
            let value = match api {
                'd' => {
                    let list = fleets.droplets.get(&key).unwrap_or(&empty);
                    fleet::droplet_page(list, page, per_page, &state.api_url, &key)
                }
                _ => fleet::server_page(fleets.servers.get(&key).unwrap_or(&empty), page, per_page),
            };
            let b = Bytes::from(serde_json::to_vec(&value).expect("serializable"));
            state.pages.lock().unwrap().insert(cache_key, b.clone());
            b
        }
    };
    state.counters.pages.fetch_add(1, Ordering::SeqCst);
    respond(StatusCode::OK, body, &headers)
}

/// `/node/<id>/metadata/v1/{id,hostname}` (DigitalOcean) and
/// `/node/<id>/hetzner/v1/metadata/{instance-id,hostname}` (Hetzner): plain text.
fn metadata(state: &State, rest: &str) -> Response<Full<Bytes>> {
    state.counters.metadata.fetch_add(1, Ordering::SeqCst);
    let (id, what) = rest.split_once('/').unwrap_or((rest, ""));
    let name = id
        .parse::<u64>()
        .ok()
        .and_then(|id| state.fleets.lock().unwrap().machines.get(&id).cloned());
    let text = match (what, name) {
        ("metadata/v1/id" | "hetzner/v1/metadata/instance-id", Some(_)) => id.to_owned(),
        ("metadata/v1/hostname" | "hetzner/v1/metadata/hostname", Some(name)) => name,
        _ => return respond(StatusCode::NOT_FOUND, "not found", &[]),
    };
    Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text)))
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_admits_the_burst_then_names_when_to_come_back() {
        let mut l = Limiter {
            per_minute: 3,
            minute: VecDeque::new(),
            hour: VecDeque::new(),
        };
        let t0 = Instant::now();
        assert_eq!(l.admit(t0), Ok(DO_PER_HOUR - 1));
        assert!(l.admit(t0).is_ok());
        assert!(l.admit(t0 + Duration::from_secs(10)).is_ok());
        assert_eq!(l.admit(t0 + Duration::from_secs(15)), Err(45));
        assert!(l.admit(t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn decodes_query_values() {
        assert_eq!(decode("role%3Detcd"), "role=etcd");
        assert_eq!(decode("a+b%2"), "a b%2");
    }
}
