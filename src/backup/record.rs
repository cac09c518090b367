//! What the last `snapshot` runs did, for fleet tooling: `snapshot.json` beside the outcome
//! record, and the same figures as a Prometheus textfile beside the metrics file
//! (`etcd_bootstrap_snapshot.prom`) when one is configured (docs/backup.md, "Monitoring").
//! The last success is carried over from the previous record, so a failure does not hide how
//! old the newest snapshot is.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::envfile;
use crate::outcome::metrics::gauge;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub last_attempt: Option<Attempt>,
    pub last_success: Option<Success>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Unix seconds.
    pub at: u64,
    /// `uploaded`, `not-due`, `not-leader` or `failed`.
    pub result: String,
    pub exit_code: i32,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Success {
    /// Unix seconds.
    pub at: u64,
    /// The database's key in the store.
    pub key: String,
    pub size: u64,
    pub duration_ms: u64,
}

pub fn record_path(settings: &Settings) -> PathBuf {
    settings.outcome_file.with_file_name("snapshot.json")
}

pub fn metrics_path(settings: &Settings) -> Option<PathBuf> {
    settings
        .metrics_file
        .as_ref()
        .map(|p| p.with_file_name("etcd_bootstrap_snapshot.prom"))
}

/// Adds this run to the record (and the metrics file); failures to write are logged only.
pub fn write(settings: &Settings, attempt: Attempt, success: Option<Success>) {
    let path = record_path(settings);
    let previous: SnapshotRecord = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let record = SnapshotRecord {
        last_attempt: Some(attempt),
        last_success: success.or(previous.last_success),
    };
    let json = serde_json::to_string_pretty(&record).expect("a record serializes") + "\n";
    if let Err(e) = envfile::write_atomic(&path, &json) {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
    if let Some(path) = metrics_path(settings) {
        write_metrics(&path, &record);
    }
}

fn write_metrics(path: &Path, record: &SnapshotRecord) {
    let mut text = String::new();
    let mut metric = |name: &str, help: &str, value: String| {
        gauge(
            &mut text,
            &format!("snapshot_{name}"),
            help,
            &[(String::new(), value)],
        )
    };
    if let Some(a) = &record.last_attempt {
        metric(
            "last_attempt_timestamp_seconds",
            "When this machine last ran etcd-bootstrap snapshot.",
            a.at.to_string(),
        );
        metric(
            "last_attempt_ok",
            "1 when that run succeeded (uploaded, not due, or not the leader's turn).",
            u8::from(a.exit_code == 0).to_string(),
        );
    }
    if let Some(s) = &record.last_success {
        metric(
            "last_success_timestamp_seconds",
            "When this machine last uploaded a snapshot.",
            s.at.to_string(),
        );
        metric(
            "last_size_bytes",
            "The size of that snapshot.",
            s.size.to_string(),
        );
        metric(
            "last_duration_seconds",
            "How long that snapshot took, from etcd to the store.",
            format!("{:.3}", s.duration_ms as f64 / 1000.0),
        );
    }
    if let Err(e) = envfile::write_atomic(path, &text) {
        tracing::warn!("cannot write the metrics file {}: {e}", path.display());
    }
}
