//! What a snapshot is called in the store and the manifest written beside it (docs/backup.md,
//! "Manifest"). Under the store's prefix, each cluster token has its own folder:
//!
//! ```text
//! TOKEN/snapshot-20261201T180500Z-1735fe321d725815.db     etcd's snapshot file, as etcd sent it
//! TOKEN/snapshot-20261201T180500Z-1735fe321d725815.json   the manifest, written after it
//! ```
//!
//! The time (UTC) makes names sort as time does; the cluster id keeps two clusters that share a
//! token apart. A snapshot counts only once its manifest exists, and the agent reads, keeps and
//! deletes only names of exactly this shape: anything else under the prefix is not its own.

use serde::{Deserialize, Serialize};

use crate::civil;

/// The manifest's `format`; a reader refuses others rather than guess.
pub const FORMAT: u32 = 1;

/// The largest manifest read: a member list of 100 members fits in a few KiB.
pub const MAX_MANIFEST: usize = 256 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// `cluster.token` of the cluster the snapshot is of.
    pub cluster_token: String,
    /// etcd's cluster id, in hex as etcd logs it.
    pub cluster_id: String,
    /// The members when the snapshot was taken.
    pub members: Vec<ManifestMember>,
    /// The key-value store's revision and the raft index of the member that sent it.
    pub revision: u64,
    pub raft_index: u64,
    /// The member's etcd version (`3.5.1`).
    pub etcd_version: String,
    /// The database's size in bytes and its sha256 (hex), as checked against etcd's own. The
    /// snapshot file is the database followed by those 32 bytes of hash, as `etcdctl snapshot
    /// save` writes it and `etcdutl snapshot restore` checks it.
    pub db_size: u64,
    pub sha256: String,
    /// When it was taken, Unix seconds (also in the name).
    pub taken_at: i64,
    /// The member that sent it.
    pub taken_from: String,
    pub agent_version: String,
    /// The database's key, relative to the store's prefix.
    pub snapshot: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestMember {
    /// In hex, as etcd logs it.
    pub id: String,
    pub name: String,
    pub peer_urls: Vec<String>,
}

/// One snapshot's names in the store.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SnapshotName {
    /// Unix seconds, from the name.
    pub taken_at: i64,
    pub cluster_id: u64,
    /// `TOKEN/snapshot-TIME-ID` (add `.db` or `.json`).
    pub stem: String,
}

/// Which of a snapshot's two objects a key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Database,
    Manifest,
}

impl SnapshotName {
    pub fn new(token: &str, taken_at: i64, cluster_id: u64) -> Self {
        SnapshotName {
            taken_at,
            cluster_id,
            stem: format!(
                "{token}/snapshot-{}-{cluster_id:016x}",
                civil::compact(taken_at)
            ),
        }
    }

    pub fn database(&self) -> String {
        format!("{}.db", self.stem)
    }

    pub fn manifest(&self) -> String {
        format!("{}.json", self.stem)
    }

    /// A key under `TOKEN/`, when it has exactly the agent's shape.
    pub fn parse(token: &str, key: &str) -> Option<(SnapshotName, Part)> {
        let rest = key.strip_prefix(token)?.strip_prefix("/snapshot-")?;
        let (stem_rest, part) = if let Some(s) = rest.strip_suffix(".db") {
            (s, Part::Database)
        } else {
            (rest.strip_suffix(".json")?, Part::Manifest)
        };
        let (time, id) = stem_rest.split_once('-')?;
        let taken_at = civil::parse_compact(time)?;
        if id.len() != 16 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let cluster_id = u64::from_str_radix(id, 16).ok()?;
        let name = SnapshotName::new(token, taken_at, cluster_id);
        (name.stem.len() + 1 + if part == Part::Database { 2 } else { 4 } == key.len())
            .then_some((name, part))
    }
}

impl Manifest {
    /// The snapshot as the decision core and a restore see it.
    pub fn snapshot_ref(&self) -> crate::decide::SnapshotRef {
        crate::decide::SnapshotRef {
            key: self.snapshot.clone(),
            sha256: self.sha256.clone(),
            db_size: self.db_size,
            cluster_id: self.cluster_id.clone(),
            revision: self.revision,
            raft_index: self.raft_index,
            taken_at: self.taken_at,
            etcd_version: self.etcd_version.clone(),
        }
    }

    /// A manifest read back from the store: its JSON, and consistent with the name it was found
    /// under (`name`) and the token looked for. Errors say what is wrong in one line.
    pub fn read(bytes: &[u8], token: &str, name: &SnapshotName) -> Result<Manifest, String> {
        if bytes.len() > MAX_MANIFEST {
            return Err(format!("larger than {MAX_MANIFEST} bytes"));
        }
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("not a manifest: {e}"))?;
        if m.format != FORMAT {
            return Err(format!(
                "format {} (this agent reads {FORMAT}): written by a newer etcd-bootstrap?",
                m.format
            ));
        }
        if m.cluster_token != token {
            return Err(format!(
                "it is of cluster token {:?}, found under {token:?}",
                crate::member::excerpt(&m.cluster_token)
            ));
        }
        if m.snapshot != name.database()
            || m.taken_at != name.taken_at
            || u64::from_str_radix(&m.cluster_id, 16).ok() != Some(name.cluster_id)
        {
            return Err(format!(
                "it names another snapshot than {} (its snapshot, time or cluster id differ)",
                name.database()
            ));
        }
        if m.sha256.len() != 64 || !m.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("its sha256 is not 64 hex digits".into());
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &SnapshotName) -> Manifest {
        Manifest {
            format: FORMAT,
            cluster_token: "prod".into(),
            cluster_id: format!("{:x}", name.cluster_id),
            members: vec![ManifestMember {
                id: "f5d08d61ca31ddd8".into(),
                name: "etcd-a".into(),
                peer_urls: vec!["https://10.0.0.11:2380".into()],
            }],
            revision: 4711,
            raft_index: 5120,
            etcd_version: "3.5.1".into(),
            db_size: 20480,
            sha256: "ab".repeat(32),
            taken_at: name.taken_at,
            taken_from: "etcd-a".into(),
            agent_version: "0.1.0".into(),
            snapshot: name.database(),
        }
    }

    #[test]
    fn names_round_trip_and_nothing_else_is_ours() {
        let name = SnapshotName::new("prod", 1_795_254_605, 0x1735fe321d725815);
        assert_eq!(
            name.database(),
            "prod/snapshot-20261121T095005Z-1735fe321d725815.db"
        );
        assert_eq!(
            SnapshotName::parse("prod", &name.database()),
            Some((name.clone(), Part::Database))
        );
        assert_eq!(
            SnapshotName::parse("prod", &name.manifest()),
            Some((name.clone(), Part::Manifest))
        );
        for other in [
            "prod/snapshot-20261121T095005Z-1735fe321d725815.db.partial",
            "prod/snapshot-20261121T095005Z-1735FE321D725815.db",
            "prod/snapshot-20261121T095005Z-1735fe321d72581.db",
            "prod/snapshot-20261121T095005Z-1735fe321d725815",
            "prod/x/snapshot-20261121T095005Z-1735fe321d725815.db",
            "prod2/snapshot-20261121T095005Z-1735fe321d725815.db",
            "prod/snapshot-20261131T095005Z-1735fe321d725815.db",
            "prod/notes.txt",
        ] {
            assert_eq!(SnapshotName::parse("prod", other), None, "{other}");
        }
    }

    #[test]
    fn a_manifest_is_read_back_only_when_it_matches_its_name() {
        let name = SnapshotName::new("prod", 1_795_254_605, 0x1735fe321d725815);
        let good = manifest(&name);
        let json = serde_json::to_vec(&good).unwrap();
        assert_eq!(Manifest::read(&json, "prod", &name).unwrap(), good);
        let other = SnapshotName::new("prod", 1_795_254_606, 0x1735fe321d725815);
        assert!(
            Manifest::read(&json, "prod", &other)
                .unwrap_err()
                .contains("another snapshot")
        );
        assert!(
            Manifest::read(&json, "staging", &name)
                .unwrap_err()
                .contains("cluster token")
        );
        let newer = serde_json::to_vec(&Manifest {
            format: 2,
            ..good.clone()
        })
        .unwrap();
        assert!(
            Manifest::read(&newer, "prod", &name)
                .unwrap_err()
                .contains("format 2")
        );
        let bad_hash = serde_json::to_vec(&Manifest {
            sha256: "xyz".into(),
            ..good
        })
        .unwrap();
        assert!(
            Manifest::read(&bad_hash, "prod", &name)
                .unwrap_err()
                .contains("sha256")
        );
        assert!(
            Manifest::read(b"{\"format\":1", "prod", &name)
                .unwrap_err()
                .starts_with("not a manifest")
        );
    }
}
