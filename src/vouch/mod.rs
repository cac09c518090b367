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
//!
//! A waiting agent names itself and a digest of its own current vouch when it asks
//! (`ASKER_HEADER`). When a peer's digest is new, the asked agent is told (`Voucher::news`) and
//! asks that peer back at once instead of at its next round: vouches that change (a peer heard
//! at last) cross in a few round trips, not in rounds of 50 ms. The header only decides *when*
//! to ask; what a peer vouched is only ever what this agent read from the peer's own address.
//!
//! The endpoint also remembers which askers it served a vouch that named them among the peers
//! heard (`Voucher::told`): a node that decides to bootstrap waits for those before it goes
//! quiet (`run`'s farewell), so no peer is left asking a starting etcd whether it was heard.

mod port_user;
mod tls;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::config::EtcdTls;
use crate::decide::Vouch;

pub const PATH: &str = "/etcd-bootstrap/v1/vouch";
/// `<name> <digest>`: who asks, and a digest of what it vouches now (`digest`). Agents that do
/// not know it ignore it.
pub const ASKER_HEADER: &str = "etcd-bootstrap-asker";
/// Askers remembered at most (a cluster has at most 9 members; the rest is noise).
const MAX_ASKERS: usize = 64;
/// A request head larger than this is not a peer's agent asking.
const MAX_REQUEST: usize = 4096;
/// A connection that has not sent its request by then is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Voucher {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub addresses: Vec<SocketAddr>,
}

/// What the endpoint tasks share.
struct Shared {
    body: Mutex<Served>,
    /// Told when an asker's vouch has changed since it last asked.
    news: Arc<Notify>,
    /// Each asker's last digest.
    askers: Mutex<HashMap<String, String>>,
    /// Askers served a vouch whose `heard` named them (only names this node heard, so few).
    told: Mutex<HashSet<String>>,
    /// Told when an asker joins `told`.
    told_news: Arc<Notify>,
}

/// The vouch as served, and the peers it says this node heard.
#[derive(Default)]
struct Served {
    body: Vec<u8>,
    heard: Vec<String>,
}

impl Served {
    fn of(v: &Vouch) -> Self {
        Served {
            body: encode(v),
            heard: v.heard.clone(),
        }
    }
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
        let shared = Arc::new(Shared::new(Served::of(first)));
        let tasks = listeners
            .into_iter()
            .map(|l| tokio::spawn(serve(l, shared.clone(), acceptor.clone())))
            .collect();
        Ok(Voucher {
            shared,
            tasks,
            addresses: addresses.to_vec(),
        })
    }

    /// What to answer from now on; whether that differs from what it answered so far.
    pub fn update(&self, vouch: &Vouch) -> bool {
        let new = Served::of(vouch);
        let mut served = self.shared.served();
        let changed = served.body != new.body;
        *served = new;
        changed
    }

    /// The `ASKER_HEADER` value for this agent's own questions: `name` and what it vouches now.
    pub fn asker(&self, name: &str) -> String {
        format!("{name} {}", digest(&self.shared.served().body))
    }

    /// Told (once per news, kept until awaited) when a peer asked with a vouch it had not
    /// asked with before.
    pub fn news(&self) -> Arc<Notify> {
        self.shared.news.clone()
    }

    /// Whether `name` has asked and been answered with a vouch that named it among the peers
    /// this node heard.
    pub fn told(&self, name: &str) -> bool {
        self.shared
            .told
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }

    /// Told (kept until awaited) when one more asker has been told it was heard.
    pub fn told_news(&self) -> Arc<Notify> {
        self.shared.told_news.clone()
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

/// FNV-1a of a vouch as served, in hex: tells one vouch from the next (a collision would only
/// cost one round of 50 ms).
fn digest(body: &[u8]) -> String {
    let h = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

impl Shared {
    fn new(served: Served) -> Self {
        Shared {
            body: Mutex::new(served),
            news: Arc::new(Notify::new()),
            askers: Mutex::default(),
            told: Mutex::default(),
            told_news: Arc::new(Notify::new()),
        }
    }

    fn served(&self) -> std::sync::MutexGuard<'_, Served> {
        self.body.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in who asked, from the request head: news when its vouch is not the one it asked
    /// with last time.
    fn asked_by(&self, head: &[u8]) {
        let Some((name, digest)) = asker(head) else {
            return;
        };
        let mut askers = self.askers.lock().unwrap_or_else(|e| e.into_inner());
        if askers.get(name).is_some_and(|d| d == digest) {
            return;
        }
        if askers.len() >= MAX_ASKERS && !askers.contains_key(name) {
            askers.clear();
        }
        askers.insert(name.to_owned(), digest.to_owned());
        self.news.notify_one();
    }
}

/// `ASKER_HEADER`'s name and digest, when the head has a well-formed one.
fn asker(head: &[u8]) -> Option<(&str, &str)> {
    let head = std::str::from_utf8(head).ok()?;
    let value = head.split("\r\n").skip(1).find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field
            .trim()
            .eq_ignore_ascii_case(ASKER_HEADER)
            .then_some(value.trim())
    })?;
    let (name, digest) = value.split_once(' ')?;
    let plain = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
    };
    (plain(name, 253) && plain(digest, 16)).then_some((name, digest))
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, tls: Option<tokio_rustls::TlsAcceptor>) {
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
        let shared = shared.clone();
        let tls = tls.clone();
        // Each connection is its own task, bounded by READ_TIMEOUT (and the TLS handshake by
        // the same), so a peer that connects and says nothing holds up no one.
        tokio::spawn(async move {
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => answer(s, &shared).await,
                        Ok(Err(e)) => Err(format!("TLS handshake: {e}")),
                        Err(_) => Err("TLS handshake timed out".into()),
                    }
                }
                None => answer(stream, &shared).await,
            };
            if let Err(e) = result {
                tracing::debug!("vouch request from {from}: {e}");
            }
        });
    }
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    shared: &Shared,
) -> Result<(), String> {
    let head = tokio::time::timeout(READ_TIMEOUT, read_head(&mut s))
        .await
        .map_err(|_| "no request within 2 s".to_owned())??;
    let route = route(&head);
    // The body as of the question, not of the connection: a vouch updated while the asker's
    // request was on its way is the one it gets.
    let (body, heard_asker) = {
        let served = shared.served();
        let heard = asker(&head)
            .map(|(name, _)| name)
            .filter(|name| served.heard.iter().any(|h| h == name));
        (served.body.clone(), heard)
    };
    let (status, content_type, payload): (&str, &str, &[u8]) = match route {
        Route::Vouch => ("200 OK", "application/json", &body),
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
    s.shutdown().await.map_err(|e| e.to_string())?;
    // After the answer: the asker has this node's vouch before this node asks back.
    if route == Route::Vouch {
        shared.asked_by(&head);
        if let Some(name) = heard_asker {
            shared
                .told
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_owned());
            shared.told_news.notify_one();
        }
    }
    Ok(())
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

    #[test]
    fn the_asker_is_read_from_its_header_and_nothing_else() {
        let head = |h: &str| format!("GET {PATH} HTTP/1.1\r\nHost: x\r\n{h}\r\n\r\n");
        assert_eq!(
            asker(head("Etcd-Bootstrap-Asker: etcd-1 00ff00ff00ff00ff").as_bytes()),
            Some(("etcd-1", "00ff00ff00ff00ff"))
        );
        assert_eq!(
            asker(head("etcd-bootstrap-asker:etcd-1 ab").as_bytes()),
            Some(("etcd-1", "ab"))
        );
        for bad in [
            "Etcd-Bootstrap-Asker: etcd-1",
            "Etcd-Bootstrap-Asker: etcd-1 0123456789abcdef0",
            "Etcd-Bootstrap-Asker:  ab",
            "X-Etcd-Bootstrap-Asker: etcd-1 ab",
            "Etcd-Bootstrap-Asker: etcd\u{7f}1 ab",
        ] {
            assert_eq!(asker(head(bad).as_bytes()), None, "{bad}");
        }
        // On the request line it is no header.
        assert_eq!(asker(b"etcd-bootstrap-asker: a b\r\n\r\n"), None);
    }

    #[test]
    fn only_an_asker_whose_vouch_changed_is_news() {
        let shared = Shared::new(Served::default());
        let news = |shared: &Shared| {
            let waiting = shared.news.notified();
            tokio::pin!(waiting);
            // A permit stored by notify_one makes the future ready at its first poll.
            let waker = std::task::Waker::noop();
            waiting
                .as_mut()
                .poll(&mut std::task::Context::from_waker(waker))
                .is_ready()
        };
        let ask = |d: &str| format!("GET {PATH} HTTP/1.1\r\n{ASKER_HEADER}: etcd-1 {d}\r\n\r\n");
        shared.asked_by(ask("aa").as_bytes());
        assert!(news(&shared), "a first question is news");
        shared.asked_by(ask("aa").as_bytes());
        assert!(!news(&shared), "the same vouch again is not");
        shared.asked_by(ask("bb").as_bytes());
        assert!(news(&shared), "a changed vouch is");
        shared.asked_by(format!("GET {PATH} HTTP/1.1\r\n\r\n").as_bytes());
        assert!(
            !news(&shared),
            "an agent that does not say who asks is never news"
        );
    }

    #[test]
    fn only_an_asker_answered_with_a_vouch_that_names_it_is_told() {
        let shared = Shared::new(Served {
            body: br#"{"heard":["etcd-2"]}"#.to_vec(),
            heard: vec!["etcd-2".into()],
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let ask = |request: String| {
            rt.block_on(async {
                let (mut ours, theirs) = tokio::io::duplex(4096);
                ours.write_all(request.as_bytes()).await.unwrap();
                answer(theirs, &shared).await.unwrap();
                let mut got = String::new();
                ours.read_to_string(&mut got).await.unwrap();
                got
            })
        };
        let from = |name: &str| format!("GET {PATH} HTTP/1.1\r\n{ASKER_HEADER}: {name} aa\r\n\r\n");
        let told = |name: &str| shared.told.lock().unwrap().contains(name);
        assert!(ask(from("etcd-3")).ends_with(r#"{"heard":["etcd-2"]}"#));
        assert!(
            !told("etcd-3"),
            "a peer this node did not hear is not told it was"
        );
        ask(format!(
            "GET /version HTTP/1.1\r\n{ASKER_HEADER}: etcd-2 aa\r\n\r\n"
        ));
        assert!(!told("etcd-2"), "a question for another path tells nothing");
        ask(from("etcd-2"));
        assert!(told("etcd-2"));
    }

    #[test]
    fn the_digest_tells_vouches_apart() {
        assert_eq!(digest(b"{}"), digest(b"{}"));
        assert_ne!(digest(br#"{"heard":[]}"#), digest(br#"{"heard":["a"]}"#));
        assert_eq!(digest(b"").len(), 16);
    }
}
