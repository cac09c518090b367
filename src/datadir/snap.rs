//! The member list of etcd's newest snapshot file, read without etcd. A log whose first
//! segments were purged no longer holds the configuration changes that added the members; the
//! snapshot it continues from does.
//!
//! The format, from etcd's `server/etcdserver/api/snap` (`snapshotter.go`), `snappb/snap.proto`
//! and `raftpb/raft.proto` (the same in 3.4 and 3.5):
//! - `member/snap/<term>-<index>.snap`, 16 hex digits each: the name order is the log's order.
//! - The file is `snappb.Snapshot { uint32 crc = 1; bytes data = 2; }`, whose data is
//!   `raftpb.Snapshot { bytes data = 1; SnapshotMetadata metadata = 2; }` with
//!   `SnapshotMetadata { ConfState conf_state = 1; uint64 index = 2; uint64 term = 3; }`.
//! - The inner data is the v2 store as JSON, where membership lives under `/0/members/<id hex>`:
//!   `raftAttributes` holds `{"peerURLs": [..], "isLearner": ..}` and `attributes`
//!   `{"name": .., "clientURLs": [..]}`, each as a JSON string in the node's `Value`.
//!
//! Outside input read from disk like the log: nothing here may panic on any bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::wal::{Fields, Value, WalMember};

/// The members of the newest readable snapshot, and the raft index it was taken at.
pub fn read_newest(snap_dir: &Path) -> Option<(u64, Vec<WalMember>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(snap_dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    files.sort();
    // etcd itself falls back to an older snapshot when the newest is damaged.
    files.iter().rev().find_map(|f| match std::fs::read(f) {
        Ok(bytes) => parse(&bytes),
        Err(e) => {
            tracing::warn!("cannot read {}: {e}", f.display());
            None
        }
    })
}

/// Parses one `.snap` file's bytes.
pub fn parse(file: &[u8]) -> Option<(u64, Vec<WalMember>)> {
    let outer = Fields::new(file).find_map(|(n, v)| match (n, v) {
        (2, Value::Bytes(b)) => Some(b),
        _ => None,
    })?;
    let (mut store, mut index) = (None, None);
    for (n, v) in Fields::new(outer) {
        match (n, v) {
            (1, Value::Bytes(b)) => store = Some(b),
            (2, Value::Bytes(meta)) => {
                index = Fields::new(meta).find_map(|(n, v)| match (n, v) {
                    (2, Value::Varint(i)) => Some(i),
                    _ => None,
                })
            }
            _ => {}
        }
    }
    Some((index?, members(store?)?))
}

#[derive(serde::Deserialize)]
struct Store {
    #[serde(rename = "Root")]
    root: Node,
}

#[derive(serde::Deserialize)]
struct Node {
    #[serde(rename = "Value", default)]
    value: String,
    #[serde(rename = "Children", default)]
    children: Option<BTreeMap<String, Node>>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.as_ref()?.get(name)
    }
}

#[derive(serde::Deserialize)]
struct Attributes {
    #[serde(default)]
    name: String,
}

fn members(store: &[u8]) -> Option<Vec<WalMember>> {
    let store: Store = serde_json::from_slice(store).ok()?;
    let members = store.root.child("0")?.child("members")?;
    let mut out = Vec::new();
    for (id, node) in members.children.iter().flatten() {
        let raft = node.child("raftAttributes")?;
        let mut member: WalMember = serde_json::from_str(&raft.value).ok()?;
        member.id = u64::from_str_radix(id, 16).ok()?;
        if let Some(a) = node.child("attributes")
            && let Ok(a) = serde_json::from_str::<Attributes>(&a.value)
        {
            member.name = a.name;
        }
        out.push(member);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::datadir::wal::encode::{field_bytes as bytes_field, field_varint};

    /// A `.snap` file as etcd 3.4 writes it, around a v2 store shaped like the one a real
    /// single-member cluster with a second member added wrote (fields etcd writes and this
    /// reader skips, such as `WatcherHub`, kept short).
    fn snap_file(index: u64, store: &str) -> Vec<u8> {
        let mut meta = Vec::new();
        bytes_field(1, &[0x08, 0x84, 0x01], &mut meta); // conf_state { voters: 132 }
        field_varint(2, index, &mut meta);
        field_varint(3, 2, &mut meta);
        let mut raft = Vec::new();
        bytes_field(1, store.as_bytes(), &mut raft);
        bytes_field(2, &meta, &mut raft);
        let mut file = Vec::new();
        field_varint(1, 0x9dde_e483, &mut file);
        bytes_field(2, &raft, &mut file);
        file
    }

    const STORE: &str = r#"{"Root":{"Path":"/","CreatedIndex":0,"ModifiedIndex":0,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{"0":{"Path":"/0","CreatedIndex":0,"ModifiedIndex":0,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{"members":{"Path":"/0/members","CreatedIndex":1,"ModifiedIndex":1,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{"1a2dece3cbcad184":{"Path":"/0/members/1a2dece3cbcad184","CreatedIndex":1,"ModifiedIndex":1,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{"attributes":{"Path":"/0/members/1a2dece3cbcad184/attributes","CreatedIndex":2,"ModifiedIndex":2,"ExpireTime":"0001-01-01T00:00:00Z","Value":"{\"name\":\"n1\",\"clientURLs\":[\"http://127.0.0.9:2379\"]}","Children":null},"raftAttributes":{"Path":"/0/members/1a2dece3cbcad184/raftAttributes","CreatedIndex":1,"ModifiedIndex":1,"ExpireTime":"0001-01-01T00:00:00Z","Value":"{\"peerURLs\":[\"http://127.0.0.9:2380\"]}","Children":null}}},"6ea6a0a8e1a4a468":{"Path":"/0/members/6ea6a0a8e1a4a468","CreatedIndex":16,"ModifiedIndex":16,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{"raftAttributes":{"Path":"/0/members/6ea6a0a8e1a4a468/raftAttributes","CreatedIndex":16,"ModifiedIndex":16,"ExpireTime":"0001-01-01T00:00:00Z","Value":"{\"peerURLs\":[\"http://127.0.0.10:2380\"],\"isLearner\":true}","Children":null}}}}},"version":{"Path":"/0/version","CreatedIndex":3,"ModifiedIndex":3,"ExpireTime":"0001-01-01T00:00:00Z","Value":"3.4.0","Children":null}}},"1":{"Path":"/1","CreatedIndex":0,"ModifiedIndex":0,"ExpireTime":"0001-01-01T00:00:00Z","Value":"","Children":{}}}},"WatcherHub":{"EventHistory":{"Queue":{"Events":[null],"Size":1,"Front":0,"Back":0},"LastIndex":16,"StartIndex":0,"Capacity":1000}},"CurrentIndex":16,"Stats":{"setsSuccess":3},"CurrentVersion":2}"#;

    #[test]
    fn reads_the_members_and_index_of_a_snapshot() {
        let (index, members) = parse(&snap_file(0x12, STORE)).unwrap();
        assert_eq!(index, 0x12);
        assert_eq!(
            members,
            [
                WalMember {
                    id: 0x1a2d_ece3_cbca_d184,
                    name: "n1".into(),
                    peer_urls: vec!["http://127.0.0.9:2380".into()],
                    is_learner: false,
                    is_promote: false,
                },
                WalMember {
                    id: 0x6ea6_a0a8_e1a4_a468,
                    name: String::new(),
                    peer_urls: vec!["http://127.0.0.10:2380".into()],
                    is_learner: true,
                    is_promote: false,
                },
            ]
        );
    }

    #[test]
    fn damaged_snapshots_give_nothing_and_never_panic() {
        let file = snap_file(7, STORE);
        for cut in (0..file.len()).step_by(7) {
            assert!(parse(&file[..cut]).is_none(), "cut at {cut}");
        }
        assert!(parse(&snap_file(7, r#"{"Root":{"Children":{}}}"#)).is_none());
        assert!(parse(b"\xff\xff\xff").is_none());
    }
}
