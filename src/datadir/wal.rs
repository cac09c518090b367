//! Reading etcd's write-ahead log without etcd: whose member this data dir is, and how far its
//! log got.
//!
//! The format, from etcd's `server/storage/wal` (`encoder.go`, `decoder.go`, `doc.go`) and
//! `walpb/record.proto` (the same in 3.4 and 3.5):
//! - `member/wal/<seq>-<index>.wal`, 16 hex digits each; segments are preallocated (64 MB), so a
//!   segment's tail is zeros, and a zero length field ends its records.
//! - A frame: an 8-byte little-endian length field, the record, then padding to 8 bytes. The
//!   low 56 bits are the record's length; when the top bit is set, the low 3 bits of the top byte
//!   are the padding's length.
//! - A record is protobuf `Record { int64 type = 1; uint32 crc = 2; bytes data = 3; }`; types:
//!   1 metadata (`etcdserverpb.Metadata { uint64 NodeID = 1; uint64 ClusterID = 2; }`), 2 raft
//!   entry (`raftpb.Entry { Type = 1; Term = 2; Index = 3; Data = 4 }`), 3 hard state
//!   (`raftpb.HardState { Term = 1; Vote = 2; Commit = 3 }`), 4 crc, 5 snapshot
//!   (`walpb.Snapshot { Index = 1; Term = 2 }`).
//! - Every segment begins with a crc record and a metadata record. A bootstrap writes one
//!   `ConfChange` entry (`{ ID = 1; Type = 2; NodeID = 3; Context = 4 }`) per initial member,
//!   whose context is the member as JSON (`{"id":..,"peerURLs":[..],"name":".."}`).
//!
//! Everything here is outside input read from disk: nothing may panic on any bytes (fuzzed in
//! `fuzz/fuzz_targets/parsers.rs`), and a torn tail simply ends the log.

/// What the log says about its member.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WalInfo {
    #[serde(serialize_with = "hex")]
    pub member_id: u64,
    #[serde(serialize_with = "hex")]
    pub cluster_id: u64,
    /// The highest raft index among the entries and snapshots read.
    pub last_index: u64,
    /// The highest commit index the hard state records reported.
    pub commit: u64,
    /// The cluster's members as the configuration changes read so far leave them (on top of the
    /// snapshot's, when one was read first), in the order they were added.
    pub members: Vec<WalMember>,
    /// `members` covers the whole history: the log was read from its first entry, or from a
    /// snapshot's member list on. Otherwise it holds only the changes the log still has.
    pub members_complete: bool,
    /// The raft index of the snapshot whose members `members` started from: configuration
    /// changes at or below it are already in that list (the log keeps entries from before its
    /// last snapshot), and replaying them again would undo what came after (a promoted learner
    /// turned back into a learner by its own `AddLearner` entry).
    #[serde(skip)]
    pub members_base_index: u64,
    /// The raft index of the newest snapshot record in the log (type 5): every etcd version
    /// writes one when it takes a snapshot, with or without a v2 `.snap` file beside it.
    #[serde(skip)]
    pub snapshot_index: u64,
    /// The newest etcd version the data says it was written for (`bolt::Recorded::version`):
    /// read from the backend beside the log, not from the log.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "display_version"
    )]
    pub data_version: Option<crate::etcd::version::EtcdVersion>,
}

/// A member as a configuration change (or a snapshot) records it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WalMember {
    #[serde(default, serialize_with = "hex")]
    pub id: u64,
    /// Set only for a bootstrap's initial members (a member added through the API gets its name
    /// later, in an entry not read here).
    #[serde(default)]
    pub name: String,
    /// etcd writes `null` here for a promotion (its context names the member by id only).
    #[serde(rename = "peerURLs", default, deserialize_with = "null_as_empty")]
    pub peer_urls: Vec<String>,
    #[serde(
        rename = "isLearner",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub is_learner: bool,
    /// Set only in a promotion's context: `{"id":N,"peerURLs":null,"isPromote":true}` (etcd's
    /// `server.go`, `PromoteMember`, 3.4 to 3.6), logged as an `AddNode` change.
    #[serde(rename = "isPromote", default, skip_serializing)]
    pub is_promote: bool,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    use serde::Deserialize;
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

fn display_version<S: serde::Serializer>(
    v: &Option<crate::etcd::version::EtcdVersion>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

fn hex<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:x}"))
}

const METADATA: u64 = 1;
const ENTRY: u64 = 2;
const STATE: u64 = 3;
const SNAPSHOT: u64 = 5;
const ENTRY_CONF_CHANGE: u64 = 1;
const CONF_CHANGE_ADD_NODE: u64 = 0;
const CONF_CHANGE_REMOVE_NODE: u64 = 1;
const CONF_CHANGE_UPDATE_NODE: u64 = 2;
const CONF_CHANGE_ADD_LEARNER: u64 = 3;

/// The largest record read; etcd's own limit on a request is 1.5 MiB by default, a snapshot
/// record is small, and anything larger is a corrupt length field.
const MAX_RECORD: u64 = 64 << 20;

/// Reads one segment's records into `info`, streaming (segments are 64 MB, mostly zeros).
/// Returns whether a metadata record was found. A torn or corrupt tail ends the segment.
pub fn read_segment(mut r: impl std::io::Read, info: &mut WalInfo) -> bool {
    let mut found = false;
    let mut field = [0u8; 8];
    let mut record = Vec::new();
    while r.read_exact(&mut field).is_ok() {
        let field = u64::from_le_bytes(field);
        if field == 0 {
            break;
        }
        let len = field & 0x00ff_ffff_ffff_ffff;
        let pad = if field >> 63 == 1 {
            (field >> 56) & 0x7
        } else {
            0
        };
        if len > MAX_RECORD {
            break;
        }
        record.resize((len + pad) as usize, 0);
        if r.read_exact(&mut record).is_err() {
            break;
        }
        found |= read_record(&record[..len as usize], info);
    }
    found
}

fn read_record(record: &[u8], info: &mut WalInfo) -> bool {
    let (mut kind, mut data) = (0, &[][..]);
    for (field, value) in Fields::new(record) {
        match (field, value) {
            (1, Value::Varint(v)) => kind = v,
            (3, Value::Bytes(b)) => data = b,
            _ => {}
        }
    }
    match kind {
        METADATA => {
            for (field, value) in Fields::new(data) {
                match (field, value) {
                    (1, Value::Varint(v)) => info.member_id = v,
                    (2, Value::Varint(v)) => info.cluster_id = v,
                    _ => {}
                }
            }
            return info.member_id != 0;
        }
        ENTRY => read_entry(data, info),
        STATE => {
            for (field, value) in Fields::new(data) {
                if let (3, Value::Varint(v)) = (field, value) {
                    info.commit = info.commit.max(v);
                }
            }
        }
        SNAPSHOT => {
            for (field, value) in Fields::new(data) {
                if let (1, Value::Varint(v)) = (field, value) {
                    info.last_index = info.last_index.max(v);
                    info.snapshot_index = info.snapshot_index.max(v);
                }
            }
        }
        _ => {}
    }
    false
}

fn read_entry(data: &[u8], info: &mut WalInfo) {
    let (mut kind, mut index, mut payload) = (0, 0, &[][..]);
    for (field, value) in Fields::new(data) {
        match (field, value) {
            (1, Value::Varint(v)) => kind = v,
            (3, Value::Varint(v)) => index = v,
            (4, Value::Bytes(b)) => payload = b,
            _ => {}
        }
    }
    info.last_index = info.last_index.max(index);
    if kind != ENTRY_CONF_CHANGE || index <= info.members_base_index {
        return;
    }
    let (mut change, mut node, mut context) = (u64::MAX, 0, &[][..]);
    for (field, value) in Fields::new(payload) {
        match (field, value) {
            (2, Value::Varint(v)) => change = v,
            (3, Value::Varint(v)) => node = v,
            (4, Value::Bytes(b)) => context = b,
            _ => {}
        }
    }
    // Replayed in log order on top of what came before (a snapshot's members, from the entry
    // after its index on; earlier segments).
    let position = info.members.iter().position(|m| m.id == node);
    match change {
        CONF_CHANGE_ADD_NODE | CONF_CHANGE_ADD_LEARNER | CONF_CHANGE_UPDATE_NODE => {
            let Ok(mut member) = serde_json::from_slice::<WalMember>(context) else {
                return;
            };
            member.id = node;
            match position {
                // An update carries the new peer URLs only.
                Some(i) if change == CONF_CHANGE_UPDATE_NODE => {
                    info.members[i].peer_urls = member.peer_urls
                }
                // A promotion names the learner by id only: it becomes a voter, as it was.
                Some(i) if member.is_promote => info.members[i].is_learner = false,
                // A promotion of a member whose addition the log no longer holds (then
                // `members_complete` is false): a voter whose URLs this log does not say.
                None if member.is_promote => info.members.push(WalMember {
                    is_promote: false,
                    ..member
                }),
                Some(i) => {
                    let name = std::mem::take(&mut info.members[i].name);
                    info.members[i] = WalMember {
                        name: if member.name.is_empty() {
                            name
                        } else {
                            member.name
                        },
                        ..member
                    };
                }
                None if change == CONF_CHANGE_UPDATE_NODE => {}
                None => info.members.push(member),
            }
        }
        CONF_CHANGE_REMOVE_NODE => {
            if let Some(i) = position {
                info.members.remove(i);
            }
        }
        _ => {}
    }
}

pub(super) enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The fields of a protobuf message, in order; stops at the first malformed one.
pub(super) struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Fields { rest: bytes }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.rest.split_first()?;
            self.rest = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u64, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                let (_, rest) = self.rest.split_at_checked(8)?;
                self.rest = rest;
                Value::Varint(0)
            }
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                let (bytes, rest) = self.rest.split_at_checked(len)?;
                self.rest = rest;
                Value::Bytes(bytes)
            }
            5 => {
                let (_, rest) = self.rest.split_at_checked(4)?;
                self.rest = rest;
                Value::Varint(0)
            }
            _ => {
                self.rest = &[];
                return None;
            }
        };
        Some((key >> 3, value))
    }
}

/// Protobuf encoding, for tests that build records and snapshots the way etcd's encoder does.
#[cfg(test)]
pub(super) mod encode {
    pub fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    pub fn field_varint(n: u64, v: u64, out: &mut Vec<u8>) {
        varint(n << 3, out);
        varint(v, out);
    }
    pub fn field_bytes(n: u64, b: &[u8], out: &mut Vec<u8>) {
        varint((n << 3) | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::encode::{field_bytes, field_varint};
    fn record(kind: u64, data: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        field_varint(1, kind, &mut r);
        field_varint(2, 0xdead_beef, &mut r);
        if !data.is_empty() {
            field_bytes(3, data, &mut r);
        }
        r
    }
    /// A frame as `encodeFrameSize` writes it: padded to 8 bytes, the padding in the top byte.
    fn frame(record: &[u8], out: &mut Vec<u8>) {
        let pad = (8 - record.len() % 8) % 8;
        let mut field = record.len() as u64;
        if pad != 0 {
            field |= (0x80 | pad as u64) << 56;
        }
        out.extend_from_slice(&field.to_le_bytes());
        out.extend_from_slice(record);
        out.extend(std::iter::repeat_n(0, pad));
    }
    fn segment(member: u64, cluster: u64, entries: &[(u64, u64, Vec<u8>)]) -> Vec<u8> {
        let mut seg = Vec::new();
        frame(&record(4, &[]), &mut seg);
        let mut meta = Vec::new();
        field_varint(1, member, &mut meta);
        field_varint(2, cluster, &mut meta);
        frame(&record(METADATA, &meta), &mut seg);
        frame(&record(SNAPSHOT, &[]), &mut seg);
        for (kind, index, data) in entries {
            let mut e = Vec::new();
            field_varint(1, *kind, &mut e);
            field_varint(2, 1, &mut e);
            field_varint(3, *index, &mut e);
            field_bytes(4, data, &mut e);
            frame(&record(ENTRY, &e), &mut seg);
        }
        let mut hs = Vec::new();
        field_varint(1, 2, &mut hs);
        field_varint(3, entries.len() as u64, &mut hs);
        frame(&record(STATE, &hs), &mut seg);
        seg.extend(std::iter::repeat_n(0, 4096)); // preallocated
        seg
    }
    fn add_node(id: u64, json: &str) -> Vec<u8> {
        let mut cc = Vec::new();
        field_varint(1, 0, &mut cc);
        field_varint(2, CONF_CHANGE_ADD_NODE, &mut cc);
        field_varint(3, id, &mut cc);
        field_bytes(4, json.as_bytes(), &mut cc);
        cc
    }

    #[test]
    fn the_newest_snapshot_record_is_the_logs_own_snapshot_whatever_the_snap_dir_holds() {
        let mut seg = segment(7, 9, &[(0, 5, b"put".to_vec())]);
        seg.truncate(seg.len() - 4096);
        for index in [0x12, 0x10] {
            let mut snap = Vec::new();
            field_varint(1, index, &mut snap);
            field_varint(2, 2, &mut snap);
            frame(&record(SNAPSHOT, &snap), &mut seg);
        }
        let mut info = WalInfo::default();
        assert!(read_segment(&seg[..], &mut info));
        assert_eq!(info.snapshot_index, 0x12);
        assert_eq!(info.last_index, 0x12);
    }

    #[test]
    fn reads_ids_members_and_indexes_as_etcd_frames_them() {
        let seg = segment(
            0x6818_f196_4ee7_d1bb,
            0x3004_cd80_1c14_dd7e,
            &[
                (
                    ENTRY_CONF_CHANGE,
                    1,
                    add_node(
                        7,
                        r#"{"id":7512962591463000507,"peerURLs":["http://localhost:2380"],"name":"default"}"#,
                    ),
                ),
                (0, 2, b"put".to_vec()),
                (0, 3, Vec::new()),
            ],
        );
        let mut info = WalInfo::default();
        assert!(read_segment(&seg[..], &mut info));
        assert_eq!(info.member_id, 0x6818_f196_4ee7_d1bb);
        assert_eq!(info.cluster_id, 0x3004_cd80_1c14_dd7e);
        assert_eq!(info.last_index, 3);
        assert_eq!(info.commit, 3);
        assert_eq!(
            info.members,
            [WalMember {
                id: 7,
                name: "default".into(),
                peer_urls: vec!["http://localhost:2380".into()],
                is_learner: false,
                is_promote: false,
            }]
        );
    }

    fn change(kind: u64, id: u64, json: &str) -> Vec<u8> {
        let mut cc = add_node(id, json);
        cc.clear();
        field_varint(1, 0, &mut cc);
        field_varint(2, kind, &mut cc);
        field_varint(3, id, &mut cc);
        if !json.is_empty() {
            field_bytes(4, json.as_bytes(), &mut cc);
        }
        cc
    }

    #[test]
    fn membership_is_replayed_in_log_order_adds_removals_updates_and_promotions() {
        let e = |i, c| (ENTRY_CONF_CHANGE, i, c);
        let seg = segment(
            1,
            2,
            &[
                e(
                    1,
                    add_node(1, r#"{"id":1,"peerURLs":["http://a:2380"],"name":"a"}"#),
                ),
                e(
                    2,
                    add_node(2, r#"{"id":2,"peerURLs":["http://b:2380"],"name":"b"}"#),
                ),
                e(
                    3,
                    change(
                        CONF_CHANGE_ADD_LEARNER,
                        3,
                        r#"{"id":3,"peerURLs":["http://c:2380"],"isLearner":true}"#,
                    ),
                ),
                e(4, change(CONF_CHANGE_REMOVE_NODE, 2, "")),
                e(
                    5,
                    change(
                        CONF_CHANGE_UPDATE_NODE,
                        1,
                        r#"{"id":1,"peerURLs":["http://a2:2380"]}"#,
                    ),
                ),
                // A promotion as etcd logs it: an AddNode naming the learner by id only.
                e(
                    6,
                    add_node(3, r#"{"id":3,"peerURLs":null,"isPromote":true}"#),
                ),
                // Replaying a removal the member list no longer has changes nothing.
                e(7, change(CONF_CHANGE_REMOVE_NODE, 2, "")),
            ],
        );
        let mut info = WalInfo::default();
        read_segment(&seg[..], &mut info);
        let got: Vec<(u64, &str, &str, bool)> = info
            .members
            .iter()
            .map(|m| (m.id, m.name.as_str(), m.peer_urls[0].as_str(), m.is_learner))
            .collect();
        assert_eq!(
            got,
            [
                (1, "a", "http://a2:2380", false),
                (3, "", "http://c:2380", false)
            ]
        );
    }

    #[test]
    fn changes_a_snapshot_already_holds_are_not_replayed_over_it() {
        // The snapshot at index 4 lists member 3 as a voter (promoted at 4); the log still
        // holds its AddLearner at 3, from before the snapshot, and a later learner at 5.
        let e = |i, c| (ENTRY_CONF_CHANGE, i, c);
        let seg = segment(
            1,
            2,
            &[
                e(
                    3,
                    change(
                        CONF_CHANGE_ADD_LEARNER,
                        3,
                        r#"{"id":3,"peerURLs":["http://c:2380"],"isLearner":true}"#,
                    ),
                ),
                e(
                    4,
                    add_node(3, r#"{"id":3,"peerURLs":null,"isPromote":true}"#),
                ),
                e(
                    5,
                    change(
                        CONF_CHANGE_ADD_LEARNER,
                        4,
                        r#"{"id":4,"peerURLs":["http://d:2380"],"isLearner":true}"#,
                    ),
                ),
            ],
        );
        let voter = |id: u64, url: &str| WalMember {
            id,
            peer_urls: vec![url.into()],
            ..WalMember::default()
        };
        let mut info = WalInfo {
            members: vec![voter(1, "http://a:2380"), voter(3, "http://c:2380")],
            members_base_index: 4,
            last_index: 4,
            ..WalInfo::default()
        };
        read_segment(&seg[..], &mut info);
        let got: Vec<(u64, bool)> = info.members.iter().map(|m| (m.id, m.is_learner)).collect();
        assert_eq!(got, [(1, false), (3, false), (4, true)]);
        assert_eq!(info.last_index, 5);
    }

    #[test]
    fn a_promotion_of_a_member_the_log_does_not_hold_counts_it_as_a_voter() {
        let seg = segment(
            1,
            2,
            &[(
                ENTRY_CONF_CHANGE,
                9,
                add_node(7, r#"{"id":7,"peerURLs":null,"isPromote":true}"#),
            )],
        );
        let mut info = WalInfo::default();
        read_segment(&seg[..], &mut info);
        assert_eq!(info.members.len(), 1);
        assert_eq!((info.members[0].id, info.members[0].is_learner), (7, false));
        assert!(info.members[0].peer_urls.is_empty());
    }

    #[test]
    fn a_torn_tail_ends_the_log_and_garbage_never_panics() {
        let seg = segment(1, 2, &[(0, 5, b"x".to_vec())]);
        for cut in 0..seg.len().min(400) {
            let mut info = WalInfo::default();
            read_segment(&seg[..cut], &mut info);
            assert!(info.last_index <= 5);
        }
        let mut info = WalInfo::default();
        assert!(!read_segment(&[0xff; 64][..], &mut info));
        assert!(!read_segment(
            &b"not a wal at all, just text..."[..],
            &mut info
        ));
        let mut huge = (u64::MAX >> 8).to_le_bytes().to_vec();
        huge.extend_from_slice(&[1, 2, 3]);
        assert!(!read_segment(&huge[..], &mut info));
    }
}
