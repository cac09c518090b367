//! `provider = "static"`: the members are listed in the configuration as `name=address`.

use super::{Discover, DiscoveryError, Listing};
use crate::member::{Candidate, Host, MemberName};

pub struct StaticList {
    peers: Vec<(MemberName, Host)>,
}

impl StaticList {
    pub fn new(peers: Vec<(MemberName, Host)>) -> Self {
        Self { peers }
    }
}

impl Discover for StaticList {
    async fn list(&self) -> Result<Listing, DiscoveryError> {
        let candidates = self
            .peers
            .iter()
            .map(|(name, host)| Candidate {
                id: name.to_string(),
                name: name.clone(),
                host: host.clone(),
                created: None,
            })
            .collect();
        Ok(Listing {
            candidates,
            self_id: None,
        })
    }
}
