//! Reading back the env file a run wrote: what `promote` and `leave` need, so that they work
//! from etcd's own settings on this machine, with no discovery and no cloud token.

use std::path::Path;

use super::key;
use crate::config::ClusterSpec;
use crate::error::{Failure, Kind};
use crate::member::Scheme;

/// This node's peer URL, and client endpoints: this node's first, then every peer's.
pub struct Written {
    pub my_peer: String,
    pub endpoints: Vec<String>,
    /// `ETCD_INITIAL_CLUSTER` as written: each member's name and peer URL, this node's included.
    pub peers: Vec<(String, String)>,
}

pub fn read_written(path: &Path, spec: &ClusterSpec) -> Result<Written, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            Kind::Unavailable,
            format!(
                "cannot read {}: {e}; run etcd-bootstrap first",
                path.display()
            ),
        )
    })?;
    parse(&text, spec.client_scheme, spec.client_port).map_err(|key| {
        Failure::new(
            Kind::DataErr,
            format!(
                "{} has no {key}; run etcd-bootstrap to write it again",
                path.display()
            ),
        )
    })
}

/// `Err(key)`: the key that is missing.
fn parse(text: &str, client_scheme: Scheme, client_port: u16) -> Result<Written, &'static str> {
    let get = |key: &'static str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .ok_or(key)
    };
    let my_peer = get(key::INITIAL_ADVERTISE_PEER_URLS)?.to_owned();
    // This node's etcd first (it has just started), then every peer's client URL.
    let mut endpoints: Vec<String> = get(key::ADVERTISE_CLIENT_URLS)?
        .split(',')
        .map(str::to_owned)
        .collect();
    let mut peers = Vec::new();
    for pair in get(key::INITIAL_CLUSTER)?.split(',') {
        let (name, peer_url) = pair.split_once('=').unwrap_or(("", pair));
        if let Some(host) = crate::member::host_of(peer_url)
            && peer_url != my_peer
        {
            endpoints.push(format!("{client_scheme}://{host}:{client_port}"));
        }
        peers.push((name.to_owned(), peer_url.to_owned()));
    }
    Ok(Written {
        my_peer,
        endpoints,
        peers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_this_node_first_then_each_peer_on_the_client_port() {
        let text = "ETCD_NAME=a\n\
            ETCD_INITIAL_CLUSTER=a=http://10.0.0.1:2380,b=http://10.0.0.2:2380,c=http://[fd00::3]:2380\n\
            ETCD_INITIAL_ADVERTISE_PEER_URLS=http://10.0.0.1:2380\n\
            ETCD_ADVERTISE_CLIENT_URLS=http://10.0.0.1:2379\n";
        let w = parse(text, Scheme::Http, 2379).unwrap();
        assert_eq!(w.my_peer, "http://10.0.0.1:2380");
        assert_eq!(
            w.endpoints,
            [
                "http://10.0.0.1:2379",
                "http://10.0.0.2:2379",
                "http://[fd00::3]:2379"
            ]
        );
        assert_eq!(w.peers[2], ("c".into(), "http://[fd00::3]:2380".into()));
        assert_eq!(
            parse("ETCD_NAME=a\n", Scheme::Http, 2379).err(),
            Some(key::INITIAL_ADVERTISE_PEER_URLS)
        );
    }
}
