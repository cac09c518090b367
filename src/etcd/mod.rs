//! A small etcd v3 client over the JSON gateway (`/v3/cluster/member/*`, `/v3/maintenance/status`,
//! `/health`) and the peer port (`/version`, `/members`), which is all the agent needs. Every call
//! has a short timeout and a bounded body; errors keep "nothing listens" apart from "unknown",
//! because only the first may ever lead to bootstrapping a new cluster.
//!
//! Gateway reference: https://etcd.io/docs/v3.5/dev-guide/api_grpc_gateway/

mod probe;
pub mod version;
/// etcd's JSON shapes; public for the fuzz targets.
pub mod wire;

pub use probe::probe;

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::EtcdClientSettings;
use crate::decide::{ClusterView, EtcdMember, Vouch};
use crate::http::{AddressBook, ReadError, read_limited};

/// Member lists of even large clusters are a few KiB; anything near this is not etcd.
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Connection refused: nothing listens on that port.
    Refused(String),
    /// etcd answered with an error (`{"error", "message", "code"}`).
    Etcd {
        status: u16,
        code: i64,
        message: String,
    },
    /// No connection could be made at all (no route, connect timeout): nothing answered.
    Unreachable(String),
    /// A TLS handshake failed: something answers there, with a certificate this agent does not
    /// trust, or refusing this agent's. The message says which and what to check.
    Tls(String),
    /// Timeouts, resets, bodies that are not etcd's: we cannot tell.
    Unknown(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Refused(m)
            | CallError::Unreachable(m)
            | CallError::Tls(m)
            | CallError::Unknown(m) => f.write_str(m),
            CallError::Etcd {
                status,
                code,
                message,
            } => write!(f, "etcd answered {status} (code {code}): {message}"),
        }
    }
}

impl CallError {
    pub fn is_refused(&self) -> bool {
        matches!(self, CallError::Refused(_))
    }

    /// Nothing answered at that address: refused, or no connection could be made. (A TLS
    /// failure or a hung server is something answering, and does not count.)
    pub fn is_silence(&self) -> bool {
        matches!(self, CallError::Refused(_) | CallError::Unreachable(_))
    }

    /// How much the error tells an operator about the address, for choosing which of several
    /// to show: a TLS failure names a certificate to fix, etcd's own words come next, then
    /// anything that answered oddly, and silence (which only says that nothing is there) last.
    pub fn telling(&self) -> u8 {
        match self {
            CallError::Tls(_) => 4,
            CallError::Etcd { .. } => 3,
            CallError::Unknown(_) => 2,
            CallError::Unreachable(_) => 1,
            CallError::Refused(_) => 0,
        }
    }

    /// Answers that mean "try again later" rather than "this will never work".
    pub fn etcd_message(&self) -> Option<&str> {
        match self {
            CallError::Etcd { message, .. } => Some(message),
            _ => None,
        }
    }
}

pub struct Status {
    pub member_id: u64,
    pub leader: u64,
    pub is_learner: bool,
    pub raft_index: u64,
    /// The key-value store's revision.
    pub revision: u64,
    /// The member's server version (`3.5.1`).
    pub version: String,
    /// The backend database's size on disk, and how much of it holds live data.
    pub db_size: u64,
    pub db_size_in_use: u64,
}

#[derive(Clone)]
pub struct EtcdClient {
    http: reqwest::Client,
}

impl EtcdClient {
    /// `tls`: whether any etcd URL this node talks to is https (`cluster.peer_scheme` or
    /// `client_scheme`).
    ///
    /// Whom it trusts: with `etcd_client.ca_file`, that bundle alone, as `etcdctl --cacert` does
    /// (an etcd cluster has its own CA; a public root has no say over it). Without it, the
    /// system's roots when TLS is in use, and nothing at all when it is not: reading the system
    /// store costs ~2 ms of the boot path (BENCHMARKS.md) for connections that are never made.
    pub fn new(
        settings: &EtcdClientSettings,
        tls: bool,
        addresses: AddressBook,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // etcd peers are on the cluster's own network; a proxy from the environment
            // (HTTPS_PROXY for the cloud API) must not be used to reach them.
            .no_proxy()
            .pool_max_idle_per_host(1)
            .dns_resolver(addresses);
        if let Some(ca) = &settings.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("etcd_client.ca_file {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!(
                    "etcd_client.ca_file {}: not a PEM certificate bundle: {e}",
                    ca.display()
                )
            })?;
            if certs.is_empty() {
                return Err(format!(
                    "etcd_client.ca_file {}: no certificate in it",
                    ca.display()
                ));
            }
            builder = builder.tls_certs_only(certs);
        } else if !tls {
            builder = builder.tls_certs_only([]);
        }
        if let (Some(cert), Some(key)) = (&settings.cert_file, &settings.key_file) {
            let mut pem = std::fs::read(cert)
                .map_err(|e| format!("etcd_client.cert_file {}: {e}", cert.display()))?;
            pem.push(b'\n');
            pem.extend(
                std::fs::read(key)
                    .map_err(|e| format!("etcd_client.key_file {}: {e}", key.display()))?,
            );
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                format!("etcd_client.cert_file/key_file: not a usable PEM certificate and key: {e}")
            })?;
            builder = builder.identity(id);
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot set up the etcd client: {e}"))?;
        Ok(Self { http })
    }

    pub async fn member_list(&self, endpoint: &str) -> Result<ClusterView, CallError> {
        let r: wire::MemberListResponse = self
            .post(
                endpoint,
                "/v3/cluster/member/list",
                &wire::MemberListRequest { linearizable: true },
            )
            .await?;
        Ok(r.into())
    }

    pub async fn member_add(
        &self,
        endpoint: &str,
        peer_url: &str,
        learner: bool,
    ) -> Result<(EtcdMember, ClusterView), CallError> {
        let urls = [peer_url.to_owned()];
        let body = wire::MemberAddRequest {
            peer_urls: &urls,
            is_learner: learner,
        };
        let r: wire::MemberAddResponse =
            self.post(endpoint, "/v3/cluster/member/add", &body).await?;
        // The cluster answered a membership change, so its version is decided.
        let after = ClusterView {
            cluster_id: r.header.cluster_id,
            members: r.members.into_iter().map(Into::into).collect(),
            settled: true,
            cluster_version: None,
            server_version: None,
        };
        Ok((r.member.into(), after))
    }

    pub async fn member_remove(&self, endpoint: &str, id: u64) -> Result<(), CallError> {
        self.member_by_id(endpoint, "/v3/cluster/member/remove", id)
            .await
    }

    pub async fn member_promote(&self, endpoint: &str, id: u64) -> Result<(), CallError> {
        self.member_by_id(endpoint, "/v3/cluster/member/promote", id)
            .await
    }

    /// The member calls that take only an id and whose answer (the new member list) we ignore.
    async fn member_by_id(&self, endpoint: &str, path: &str, id: u64) -> Result<(), CallError> {
        let request = wire::MemberIdRequest { id: id.to_string() };
        let _: serde_json::Value = self.post(endpoint, path, &request).await?;
        Ok(())
    }

    pub async fn status(&self, endpoint: &str) -> Result<Status, CallError> {
        let r: wire::StatusResponse = self
            .post(endpoint, "/v3/maintenance/status", &serde_json::json!({}))
            .await?;
        Ok(Status {
            member_id: r.header.member_id,
            leader: r.leader,
            is_learner: r.is_learner,
            raft_index: r.raft_index,
            revision: r.header.revision,
            version: r.version,
            db_size: r.db_size,
            db_size_in_use: r.db_size_in_use,
        })
    }

    /// The cluster's raised alarms: `(member id, "NOSPACE" | "CORRUPT")`.
    pub async fn alarms(&self, endpoint: &str) -> Result<Vec<(u64, String)>, CallError> {
        let r: wire::AlarmResponse = self
            .post(
                endpoint,
                "/v3/maintenance/alarm",
                &serde_json::json!({ "action": "GET" }),
            )
            .await?;
        Ok(r.alarms
            .into_iter()
            .filter(|a| !a.alarm.is_empty() && a.alarm != "NONE")
            .map(|a| (a.member_id, a.alarm))
            .collect())
    }

    /// Hands leadership to `target` (`etcdctl move-leader`); `endpoint` must be the leader's.
    pub async fn move_leader(&self, endpoint: &str, target: u64) -> Result<(), CallError> {
        let body = serde_json::json!({ "targetID": target.to_string() });
        let _: serde_json::Value = self
            .post(endpoint, "/v3/maintenance/transfer-leadership", &body)
            .await?;
        Ok(())
    }

    /// `GET /health`: true when the member sees a leader (503 and `"false"` otherwise).
    pub async fn healthy(&self, endpoint: &str) -> Result<bool, CallError> {
        #[derive(serde::Deserialize)]
        struct Health {
            health: String,
        }
        let url = format!("{endpoint}/health");
        let resp = self.send_get(&url).await?;
        let status = resp.status();
        let body = read_limited(resp, MAX_BODY)
            .await
            .map_err(|e| read_error(&url, e))?;
        let h: Health = serde_json::from_slice(&body)
            .map_err(|_| unknown_body(&url, status.as_u16(), &body))?;
        Ok(status.is_success() && h.health == "true")
    }

    /// The cluster version as a member sees it (`/version` on its client or peer port):
    /// `not_decided` until a leader has settled it.
    pub async fn cluster_version(&self, base_url: &str) -> Result<String, CallError> {
        Ok(self.versions(base_url).await?.etcdcluster)
    }

    /// `/version` whole: the cluster version and the member's own server version.
    pub async fn versions(&self, base_url: &str) -> Result<wire::Version, CallError> {
        self.get(base_url, "/version").await
    }

    /// A waiting agent's vouch on a peer port (`src/vouch/`); `None` when the port answers 404,
    /// as etcd's own peer port does for that path. `asker`: this agent's own
    /// `vouch::ASKER_HEADER`, when it vouches itself.
    pub async fn vouch(
        &self,
        peer_url: &str,
        asker: Option<&str>,
    ) -> Result<Option<Vouch>, CallError> {
        let url = format!("{peer_url}{}", crate::vouch::PATH);
        crate::outcome::counters::etcd_request();
        let mut request = self.http.get(&url);
        if let Some(asker) = asker {
            request = request.header(crate::vouch::ASKER_HEADER, asker);
        }
        let resp = request.send().await.map_err(|e| classify(&url, &e))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        decode(&url, resp).await.map(Some)
    }

    pub async fn peer_members(&self, peer_url: &str) -> Result<Vec<EtcdMember>, CallError> {
        let m: Vec<wire::Member> = self.get(peer_url, "/members").await?;
        Ok(m.into_iter().map(Into::into).collect())
    }

    /// `POST /v3/maintenance/snapshot`: the response, to be read as it streams
    /// (`backup::stream`). No overall deadline (a large database takes minutes); the reader
    /// bounds each wait for the next piece instead.
    pub async fn snapshot(&self, endpoint: &str) -> Result<reqwest::Response, CallError> {
        let url = format!("{endpoint}/v3/maintenance/snapshot");
        crate::outcome::counters::etcd_request();
        let resp = self
            .http
            .post(&url)
            .json(&serde_json::json!({}))
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await
            .map_err(|e| classify(&url, &e))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            decode::<serde_json::Value>(&url, resp).await.and_then(|_| {
                Err(CallError::Unknown(format!(
                    "{url} answered without a snapshot"
                )))
            })
        }
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
        body: &B,
    ) -> Result<T, CallError> {
        let url = format!("{base}{path}");
        crate::outcome::counters::etcd_request();
        let resp = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|e| classify(&url, &e))?;
        decode(&url, resp).await
    }

    async fn get<T: DeserializeOwned>(&self, base: &str, path: &str) -> Result<T, CallError> {
        let url = format!("{base}{path}");
        let resp = self.send_get(&url).await?;
        decode(&url, resp).await
    }

    async fn send_get(&self, url: &str) -> Result<reqwest::Response, CallError> {
        crate::outcome::counters::etcd_request();
        self.http
            .get(url)
            .send()
            .await
            .map_err(|e| classify(url, &e))
    }
}

async fn decode<T: DeserializeOwned>(url: &str, resp: reqwest::Response) -> Result<T, CallError> {
    let status = resp.status();
    let body = read_limited(resp, MAX_BODY)
        .await
        .map_err(|e| read_error(url, e))?;
    if status.is_success() {
        return serde_json::from_slice(&body)
            .map_err(|_| unknown_body(url, status.as_u16(), &body));
    }
    match serde_json::from_slice::<wire::GatewayError>(&body) {
        Ok(e) if !(e.message.is_empty() && e.error.is_empty()) => Err(CallError::Etcd {
            status: status.as_u16(),
            code: e.code,
            message: if e.message.is_empty() {
                e.error
            } else {
                e.message
            },
        }),
        _ => Err(unknown_body(url, status.as_u16(), &body)),
    }
}

fn unknown_body(url: &str, status: u16, body: &[u8]) -> CallError {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]);
    CallError::Unknown(format!(
        "{url} answered {status} with a body that is not etcd's: {}",
        crate::member::excerpt(&text)
    ))
}

fn read_error(url: &str, e: ReadError) -> CallError {
    CallError::Unknown(format!("{url}: {e}"))
}

/// Connection refused is the only error that proves nothing listens; everything else is unknown.
fn classify(url: &str, e: &reqwest::Error) -> CallError {
    if crate::http::is_connection_refused(e) {
        return CallError::Refused(format!("{url}: connection refused"));
    }
    if crate::http::is_unreachable(e) {
        return CallError::Unreachable(format!("{url}: {}", crate::http::describe(e)));
    }
    if let Some(failure) = crate::http::tls_failure(e) {
        let host = crate::member::host_of(url).unwrap_or(url);
        let check = match failure {
            crate::http::TlsFailure::Theirs => format!(
                "the certificate {host} shows is not one this agent trusts: check that it is issued by the CA in etcd_client.ca_file and names {host}"
            ),
            crate::http::TlsFailure::Ours => format!(
                "{host} refused this agent's certificate: check that etcd_client.cert_file is issued by the CA {host} trusts"
            ),
            crate::http::TlsFailure::Other => {
                format!("check the TLS settings of this agent and of {host}")
            }
        };
        return CallError::Tls(format!(
            "{url}: TLS handshake failed ({}); {check}",
            crate::http::describe(e)
        ));
    }
    let what = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        crate::http::describe(e)
    };
    CallError::Unknown(format!("{url}: {what}"))
}

/// Retry pause for membership calls etcd refuses for now ("too many learners", "not enough
/// started members", "unhealthy cluster"): the caller observes again after it.
pub const BUSY_RETRY: Duration = Duration::from_secs(1);
