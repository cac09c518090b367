//! Requests made in this run, counted where they are sent (one place for each kind), for the
//! outcome record. Process-wide: the agent is one run of one process.

use std::sync::atomic::{AtomicU64, Ordering};

static DISCOVERY: AtomicU64 = AtomicU64::new(0);
static ETCD: AtomicU64 = AtomicU64::new(0);

/// A request to a discovery source: a cloud API or metadata call, a DNS lookup, a command run.
pub fn discovery_request() {
    DISCOVERY.fetch_add(1, Ordering::Relaxed);
}

/// A request to an etcd member's client or peer port (or an agent's vouch endpoint).
pub fn etcd_request() {
    ETCD.fetch_add(1, Ordering::Relaxed);
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Requests {
    pub discovery: u64,
    pub etcd: u64,
}

pub fn requests() -> Requests {
    Requests {
        discovery: DISCOVERY.load(Ordering::Relaxed),
        etcd: ETCD.load(Ordering::Relaxed),
    }
}
