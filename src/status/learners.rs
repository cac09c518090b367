//! How long each learner has been one. etcd keeps no such time, so `status` remembers when it
//! first saw each learner, in a small file beside the outcome record (`learners.json`, learner
//! id in hex → Unix seconds), and forgets a member once it is no longer a learner. On the
//! learner's own machine the agent's last run knows better: it is when that run joined it.
//!
//! Remembering is best-effort: a `status` that cannot write the file (run as a user without
//! write access to the runtime dir) counts each learner from now, which never calls a learner
//! late that is not; docs/status.md says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct Memory {
    path: PathBuf,
    seen: BTreeMap<String, u64>,
}

impl Memory {
    pub fn load(outcome_file: &Path) -> Memory {
        let path = outcome_file.with_file_name("learners.json");
        let seen = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Memory { path, seen }
    }

    /// When learner `id` was first seen, now if never; `joined` (this machine's own join time,
    /// when the learner is this machine) wins when it is earlier.
    pub fn since(&mut self, id: &str, now: u64, joined: Option<u64>) -> u64 {
        let first = self.seen.entry(id.to_owned()).or_insert(now);
        if let Some(j) = joined {
            *first = (*first).min(j);
        }
        *first
    }

    /// Forgets every member that is not in `learners` and writes the file (temporary file, then
    /// rename: a `status` running at the same moment reads the old file or the new one).
    pub fn keep_only(mut self, learners: &[&str]) {
        self.seen.retain(|id, _| learners.contains(&id.as_str()));
        let Ok(body) = serde_json::to_vec(&self.seen) else {
            return;
        };
        let tmp = self
            .path
            .with_extension(format!("json.{}", std::process::id()));
        if std::fs::write(&tmp, body).is_ok() && std::fs::rename(&tmp, &self.path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_learner_is_counted_from_when_it_was_first_seen_and_forgotten_once_promoted() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = dir.path().join("outcome.json");
        let mut m = Memory::load(&outcome);
        assert_eq!(m.since("a1", 100, None), 100);
        assert_eq!(m.since("b2", 100, Some(40)), 40);
        m.keep_only(&["a1", "b2"]);

        let mut m = Memory::load(&outcome);
        assert_eq!(m.since("a1", 700, None), 100);
        m.keep_only(&["a1"]);
        let mut m = Memory::load(&outcome);
        assert_eq!(
            m.since("b2", 900, None),
            900,
            "b2 was promoted, then forgotten"
        );
    }
}
