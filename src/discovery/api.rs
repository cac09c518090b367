//! One HTTP client for every cloud API and metadata service, with one retry policy:
//! up to 4 attempts a request, pauses of about 0.5, 1 and 2 s (±20 %), longer when the server
//! says so (`Retry-After` seconds, or `ratelimit-reset` epoch seconds), never more than 30 s.
//! Only failures that can succeed later are retried: connection errors, timeouts, 5xx, 429 and
//! bodies that are not the expected JSON. 401/403 mean the token was rejected and are never
//! retried. Bodies are bounded, so a misbehaving endpoint cannot exhaust memory.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;

use super::DiscoveryError;
use super::secret::Secret;
use crate::backoff::Backoff;
use crate::error::Kind;
use crate::http::{describe, read_limited};
use crate::member::excerpt;

/// A page of 200 droplets is about 1 MiB; four times that is plenty, and nothing to fear.
pub const MAX_BODY: usize = 4 << 20;
const ATTEMPTS: usize = 4;
const MAX_PAUSE: Duration = Duration::from_secs(30);

pub struct ApiClient {
    http: reqwest::Client,
    /// Names the API in messages ("DigitalOcean API").
    what: &'static str,
}

impl ApiClient {
    /// A client that trusts the system's CA store (so `SSL_CERT_FILE` and a site CA work) plus
    /// `ca_file` when given. `timeout` bounds each request, connect included.
    pub fn new(
        what: &'static str,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("etcd-bootstrap/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!(
                    "ca_file {}: not a PEM certificate bundle: {e}",
                    ca.display()
                )
            })? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot set up the {what} client: {e}"))?;
        Ok(ApiClient { http, what })
    }

    /// A POST to `url`, for APIs whose requests are forms (EC2's Query protocol).
    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.http.post(url)
    }

    /// GETs JSON, with the retry policy above (a body that does not parse is retried too: a
    /// proxy's error page or a truncated answer may well be followed by a good one).
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        url: &str,
        token: Option<&Secret>,
    ) -> Result<T, DiscoveryError> {
        retrying(|| async {
            let body = self.once(url, token).await?;
            serde_json::from_slice(&body).map_err(|e| {
                Failed::Again(
                    retry(format!(
                        "{} answered {url} with a body that is not the expected JSON: {e}",
                        self.what
                    )),
                    None,
                )
            })
        })
        .await
    }

    /// One attempt, no retry: for the metadata service, which is local and either answers at
    /// once or is not there.
    pub async fn get_once(&self, url: &str) -> Result<Vec<u8>, DiscoveryError> {
        self.once(url, None).await.map_err(Failed::into_error)
    }

    /// Body-bounded, one attempt, classified for the bearer-token JSON APIs.
    async fn once(&self, url: &str, token: Option<&Secret>) -> Result<Vec<u8>, Failed> {
        let mut req = self.http.get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t.expose());
        }
        let answer = self.exchange(req, url).await?;
        if answer.status.is_success() {
            return Ok(answer.body);
        }
        let what = self.what;
        let detail = error_detail(&answer.body);
        match answer.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(Failed::Final(DiscoveryError {
                    retryable: false,
                    kind: Kind::NoPerm,
                    message: format!(
                        "token rejected by the {what} (HTTP {}){detail}: check the token and its read scopes",
                        answer.status.as_u16()
                    ),
                }))
            }
            s => Err(self.unexpected(s, url, &detail, answer.pause)),
        }
    }

    /// Sends a request and reads its bounded body; transport failures are worth another try.
    /// The caller classifies the status, since each API says "no" in its own way.
    pub async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<Answer, Failed> {
        let what = self.what;
        crate::outcome::counters::discovery_request();
        let resp = req.send().await.map_err(|e| {
            let why = if e.is_timeout() {
                "timed out".to_owned()
            } else {
                describe(&e)
            };
            Failed::Again(
                retry(format!("{what} request to {url} failed: {why}")),
                None,
            )
        })?;
        let status = resp.status();
        let pause = server_pause(resp.headers());
        let body = read_limited(resp, MAX_BODY)
            .await
            .map_err(|e| Failed::Again(retry(format!("{what} at {url}: {e}")), None))?;
        Ok(Answer {
            status,
            pause,
            body,
        })
    }

    /// The statuses every API shares: 429 and 5xx are worth waiting for (as long as the
    /// server asks); any other is a configuration the operator must fix. `detail` is the
    /// API's own error text, already short and on one line.
    pub fn unexpected(
        &self,
        status: StatusCode,
        url: &str,
        detail: &str,
        pause: Option<Duration>,
    ) -> Failed {
        let what = self.what;
        match status {
            StatusCode::TOO_MANY_REQUESTS => Failed::Again(
                retry(format!("{what} rate limit reached (HTTP 429){detail}")),
                pause,
            ),
            s if s.is_server_error() => Failed::Again(
                retry(format!(
                    "{what} answered HTTP {} at {url}{detail}",
                    s.as_u16()
                )),
                pause,
            ),
            s => Failed::Final(DiscoveryError {
                retryable: false,
                kind: Kind::Config,
                message: format!(
                    "{what} answered HTTP {} at {url}{detail}: check the configuration",
                    s.as_u16()
                ),
            }),
        }
    }
}

/// What an API answered: the status, how long it asked us to wait, and the bounded body.
pub struct Answer {
    pub status: StatusCode,
    pub pause: Option<Duration>,
    pub body: Vec<u8>,
}

/// Runs `attempt` under the retry policy in this module's header: up to 4 attempts, pausing as
/// the server asks or by the jittered backoff, and returns the last error when none succeeds.
pub async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, DiscoveryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failed>>,
{
    let mut backoff = Backoff::from_entropy(Duration::from_millis(500), Duration::from_secs(4));
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (err, server_pause) = match attempt().await {
            Ok(value) => return Ok(value),
            Err(Failed::Final(e)) => return Err(e),
            Err(Failed::Again(e, pause)) => (e, pause),
        };
        if attempts >= ATTEMPTS {
            return Err(err);
        }
        let pause = server_pause
            .unwrap_or_else(|| backoff.next_delay())
            .min(MAX_PAUSE);
        tracing::debug!("{}; retrying in {pause:?}", err.message);
        tokio::time::sleep(pause).await;
    }
}

/// How one attempt failed: for good, or worth another try (after the server's pause, if it
/// named one).
pub enum Failed {
    Final(DiscoveryError),
    Again(DiscoveryError, Option<Duration>),
}

impl Failed {
    pub fn into_error(self) -> DiscoveryError {
        match self {
            Failed::Final(e) | Failed::Again(e, _) => e,
        }
    }
}

pub fn retry(message: String) -> DiscoveryError {
    DiscoveryError {
        retryable: true,
        kind: Kind::Unavailable,
        message,
    }
}

/// How long the server asks us to wait: `Retry-After` (seconds) first, else
/// `ratelimit-reset` (Unix seconds; DigitalOcean and Hetzner both send it). Header names are
/// case-insensitive.
pub fn server_pause(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    if let Some(secs) = number("retry-after") {
        return Some(Duration::from_secs(secs));
    }
    let reset = number("ratelimit-reset")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now).max(1)))
}

/// The API's own error text (`{"message": ...}` or `{"error": {"message": ...}}`), short and
/// on one line. APIs do not echo the token, and nothing else secret is in these bodies.
fn error_detail(body: &[u8]) -> String {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return String::new(),
    };
    let msg = v["message"]
        .as_str()
        .or_else(|| v["error"]["message"].as_str())
        .unwrap_or_default();
    if msg.is_empty() {
        String::new()
    } else {
        format!(": {}", excerpt(msg))
    }
}

/// Percent-encodes a query value (tags and label selectors hold `:`, `=`, `,`, spaces...).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
