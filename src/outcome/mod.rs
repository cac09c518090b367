//! What each run decided, as data for fleet tooling (docs/outcome.md): a JSON record written
//! atomically after every run (`output.outcome_file`), the same figures as a Prometheus textfile
//! for node_exporter (`output.metrics_file`, off by default), and structured fields on the final
//! journal line.

pub mod counters;
pub mod journal;
pub mod metrics;

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::decide::SourceUsed;
use crate::envfile;

pub use counters::Requests;

/// Where a run's time went, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TimingsMs {
    /// Listing the machines (every look).
    pub discovery: u64,
    /// Asking the peers (every look, and the waits between looks spent asking them).
    pub probes: u64,
    pub total: u64,
}

impl TimingsMs {
    pub fn new(discovery: Duration, probes: Duration, total: Duration) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        TimingsMs {
            discovery: ms(discovery),
            probes: ms(probes),
            total: ms(total),
        }
    }
}

/// One run's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    pub agent_version: &'static str,
    /// When the run ended, in seconds since the Unix epoch.
    pub finished_at: u64,
    /// `ok` (the env file was written) or `failed`.
    pub result: &'static str,
    pub exit_code: i32,
    /// The decision table's row (docs/decisions.md), also of a refusal; absent when the run
    /// failed before deciding.
    pub row: Option<&'static str>,
    /// `new` or `existing`, when the env file was written.
    pub state: Option<&'static str>,
    /// etcd starts as a learner (`etcd-bootstrap promote` promotes it; a voter has nothing to
    /// promote, and `promote` reads this to say so at once).
    pub learner: bool,
    pub this_node: Option<String>,
    /// `name=peer-url`, as `ETCD_INITIAL_CLUSTER` says them.
    pub members: Vec<String>,
    /// Why: the decision's reason, or the failure's message.
    pub reason: String,
    pub source: Option<SourceUsed>,
    pub timings_ms: TimingsMs,
    pub requests: Requests,
}

impl Record {
    pub fn ok(&self) -> bool {
        self.result == "ok"
    }
}

/// The last record written at `outcome_file`, as JSON (for `promote` and `status`); `None` when
/// there is none or it cannot be read.
pub fn read_last(outcome_file: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(outcome_file).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the record, and the metrics file when one is configured. A failure to write either is
/// logged, not fatal: the env file (or the failure being reported) is what matters.
pub fn write(record: &Record, outcome_file: &Path, metrics_file: Option<&Path>) {
    let json = serde_json::to_string_pretty(record).expect("a record always serializes") + "\n";
    if let Err(e) = envfile::write_atomic(outcome_file, &json) {
        tracing::warn!(
            "cannot write the outcome record {}: {e}",
            outcome_file.display()
        );
    }
    if let Some(path) = metrics_file
        && let Err(e) = envfile::write_atomic(path, &metrics::text(record))
    {
        tracing::warn!("cannot write the metrics file {}: {e}", path.display());
    }
}
