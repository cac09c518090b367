//! Vouching: while the agent waits, it answers its peers on this node's peer address and port
//! (the port etcd will take, so peers can reach it by definition) at `GET /etcd-bootstrap/v1/vouch`
//! with what this machine knows of itself (`decide::Vouch`: name, peer URLs, cluster token, the
//! data dir's cluster and member ids, the member set it would bootstrap). docs/vouching.md.
//!
//! A few lines of HTTP/1.1 by hand rather than a server framework: one read-only path, one
//! answer per connection, bounded reads with a timeout. With `peer_scheme = "https"` it speaks
//! TLS with the peer certificate, and with `tls.peer_client_cert_auth` it requires a client
//! certificate signed by the peer CA, exactly as etcd's peer port will.
//!
//! It stops (`Voucher::stop`, which waits until the sockets are closed) before the env file is
//! written, so etcd can bind the port.

mod port_user;
mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::config::EtcdTls;
use crate::decide::Vouch;

pub const PATH: &str = "/etcd-bootstrap/v1/vouch";
/// A request head larger than this is not a peer's agent asking.
const MAX_REQUEST: usize = 4096;
/// A connection that has not sent its request by then is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Voucher {
    body: Arc<Mutex<Vec<u8>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub addresses: Vec<SocketAddr>,
}

impl Voucher {
    /// Binds every address (all, or none: a partial vouch would answer some peers and not
    /// others). The error says what holds the port, when that can be found.
    pub async fn start(
        addresses: &[SocketAddr],
        peer_https: bool,
        tls: &EtcdTls,
        first: &Vouch,
    ) -> Result<Self, String> {
        let acceptor = if peer_https {
            Some(tls::acceptor(tls)?)
        } else {
            None
        };
        let mut listeners = Vec::new();
        for addr in addresses {
            let l = TcpListener::bind(addr).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    format!(
                        "not vouching: {addr} is already in use{}; etcd will not be able to bind it either",
                        port_user::describe(*addr)
                    )
                } else {
                    format!("not vouching: cannot listen on {addr}: {e}")
                }
            })?;
            listeners.push(l);
        }
        let body = Arc::new(Mutex::new(encode(first)));
        let tasks = listeners
            .into_iter()
            .map(|l| tokio::spawn(serve(l, body.clone(), acceptor.clone())))
            .collect();
        Ok(Voucher {
            body,
            tasks,
            addresses: addresses.to_vec(),
        })
    }

    /// What to answer from now on.
    pub fn update(&self, vouch: &Vouch) {
        *self.body.lock().unwrap_or_else(|e| e.into_inner()) = encode(vouch);
    }

    /// Stops answering and waits until every listening socket is closed.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn encode(v: &Vouch) -> Vec<u8> {
    serde_json::to_vec(v).expect("a vouch serializes")
}

async fn serve(
    listener: TcpListener,
    body: Arc<Mutex<Vec<u8>>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: do not spin on it.
                tracing::debug!("vouch endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let body = body.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let tls = tls.clone();
        // Each connection is its own task, bounded by READ_TIMEOUT (and the TLS handshake by
        // the same), so a peer that connects and says nothing holds up no one.
        tokio::spawn(async move {
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => answer(s, &body).await,
                        Ok(Err(e)) => Err(format!("TLS handshake: {e}")),
                        Err(_) => Err("TLS handshake timed out".into()),
                    }
                }
                None => answer(stream, &body).await,
            };
            if let Err(e) = result {
                tracing::debug!("vouch request from {from}: {e}");
            }
        });
    }
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, body: &[u8]) -> Result<(), String> {
    let head = tokio::time::timeout(READ_TIMEOUT, read_head(&mut s))
        .await
        .map_err(|_| "no request within 2 s".to_owned())??;
    let (status, content_type, payload): (&str, &str, &[u8]) = match route(&head) {
        Route::Vouch => ("200 OK", "application/json", body),
        Route::NotFound => ("404 Not Found", "text/plain", b"404 page not found\n"),
        Route::BadMethod => (
            "405 Method Not Allowed",
            "text/plain",
            b"method not allowed\n",
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    s.write_all(response.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(payload).await.map_err(|e| e.to_string())?;
    s.shutdown().await.map_err(|e| e.to_string())
}

async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Result<Vec<u8>, String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    loop {
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before the request ended".into());
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(head);
        }
        if head.len() > MAX_REQUEST {
            return Err("request head too large".into());
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Vouch,
    NotFound,
    BadMethod,
}

fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if target != PATH.as_bytes() {
        Route::NotFound
    } else if method != b"GET" {
        Route::BadMethod
    } else {
        Route::Vouch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_get_of_the_vouch_path_is_answered() {
        assert_eq!(
            route(b"GET /etcd-bootstrap/v1/vouch HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Vouch
        );
        assert_eq!(
            route(b"POST /etcd-bootstrap/v1/vouch HTTP/1.1\r\n\r\n"),
            Route::BadMethod
        );
        assert_eq!(route(b"GET /version HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route(b"GET /etcd-bootstrap/v1/vouch?x HTTP/1.1\r\n\r\n"),
            Route::NotFound
        );
        assert_eq!(route(b"\xff\xfe garbage"), Route::NotFound);
        assert_eq!(route(b""), Route::NotFound);
    }
}
