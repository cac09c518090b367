//! HTTP helpers shared by every client: bounded bodies and error descriptions.

use std::error::Error as _;

#[derive(Debug)]
pub enum ReadError {
    TooLarge(usize),
    Transport(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge(max) => write!(
                f,
                "response body is larger than {max} bytes; refusing to read it"
            ),
            ReadError::Transport(e) => write!(f, "reading the response failed: {e}"),
        }
    }
}

/// Reads a body, stopping as soon as it passes `max` bytes, so a misbehaving endpoint cannot
/// exhaust memory whatever its Content-Length says.
pub async fn read_limited(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, ReadError> {
    if resp.content_length().is_some_and(|l| l > max as u64) {
        return Err(ReadError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ReadError::Transport(describe(&e)))?
    {
        if body.len() + chunk.len() > max {
            return Err(ReadError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub fn is_connection_refused(e: &reqwest::Error) -> bool {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// No connection could be made: the address did not answer at all (a connect timeout, no route
/// to the host). A TLS handshake that failed did reach something, and is not this.
pub fn is_unreachable(e: &reqwest::Error) -> bool {
    use std::io::ErrorKind::{AddrNotAvailable, HostUnreachable, NetworkUnreachable, TimedOut};
    if !e.is_connect() {
        return false;
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                TimedOut | HostUnreachable | NetworkUnreachable | AddrNotAvailable
            );
        }
        source = s.source();
    }
    // hyper-util reports its own connect timeout without an io::Error underneath.
    e.is_timeout()
}

/// What a failed TLS handshake says, when that is what failed: `Theirs` when the certificate the
/// other side showed did not verify, `Ours` when the other side refused this agent's.
#[derive(Debug, PartialEq, Eq)]
pub enum TlsFailure {
    Theirs,
    Ours,
    Other,
}

pub fn tls_failure(e: &reqwest::Error) -> Option<TlsFailure> {
    let mut source = e.source();
    while let Some(s) = source {
        // rustls' error travels inside io::Errors (nested: hyper's inside tokio-rustls'), whose
        // own `source()` skips what they carry.
        let mut inner: &(dyn std::error::Error + 'static) = s;
        while let Some(carried) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            inner = carried;
        }
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Some(match tls {
                rustls::Error::InvalidCertificate(_) => TlsFailure::Theirs,
                rustls::Error::AlertReceived(_) => TlsFailure::Ours,
                _ => TlsFailure::Other,
            });
        }
        source = s.source();
    }
    None
}

/// The innermost cause, which is the one an operator can act on ("certificate has expired",
/// "connection reset"), on one line. URLs never carry secrets here: tokens travel in headers.
pub fn describe(e: &reqwest::Error) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        // Some causes print nothing; the last one that says something is the one to show.
        let text = s.to_string();
        if !text.trim().is_empty() {
            last = text;
        }
        source = s.source();
    }
    last.replace('\n', " ")
}

/// Host names a provider has already resolved (DNS SRV targets, through the configured name
/// servers), consulted before the system resolver when the agent connects to a peer. The URL
/// keeps the host name, so TLS still checks the certificate against it.
#[derive(Clone, Default)]
pub struct AddressBook(
    std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, Vec<std::net::IpAddr>>>>,
);

impl AddressBook {
    pub fn set(&self, host: &str, addresses: Vec<std::net::IpAddr>) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.insert(host.to_ascii_lowercase(), addresses);
    }

    pub fn get(&self, host: &str) -> Vec<std::net::IpAddr> {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.get(&host.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }
}

impl reqwest::dns::Resolve for AddressBook {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let known = self.get(name.as_str());
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = if known.is_empty() {
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect()
            } else {
                known
                    .into_iter()
                    .map(|ip| std::net::SocketAddr::new(ip, 0))
                    .collect()
            };
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
