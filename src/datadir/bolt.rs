//! Reading etcd's v3 backend (`member/snap/db`, a bbolt file) without etcd: the few keys that
//! say which etcd wrote the data and who its members are. Only lookups in the top-level buckets
//! etcd keeps its metadata in; the key space itself is never read.
//!
//! The format, from bbolt's `internal/common/{page,meta,bucket}.go` and `cursor.go` (format
//! version 2, unchanged in every bbolt etcd 3.4 to 3.7 ships):
//! - The file is pages of `page_size` bytes; page N starts at `N * page_size`. Pages 0 and 1 are
//!   the two meta pages, written alternately: the valid one (magic, version, checksum) with the
//!   higher transaction id is current.
//! - Every page begins with `{ id u64, flags u16, count u16, overflow u32 }` (little-endian, as
//!   everything here); a page spans `1 + overflow` pages. Flags: 0x01 branch, 0x02 leaf, 0x04
//!   meta, 0x10 freelist.
//! - A meta page's body: `{ magic u32 = 0xED0CDAED, version u32 = 2, page_size u32, flags u32,
//!   root { root pgid u64, sequence u64 }, freelist u64, pgid u64, txid u64, checksum u64 }`,
//!   the checksum a 64-bit FNV-1a of the 56 bytes before it.
//! - A branch page holds `count` elements `{ pos u32, ksize u32, pgid u64 }`, a leaf page
//!   `{ flags u32, pos u32, ksize u32, vsize u32 }`; each element's key starts `pos` bytes after
//!   the element itself, a leaf's value right after its key. Keys are sorted; a branch element
//!   leads to the subtree whose keys start at its key.
//! - A leaf element with flag 0x01 is a nested bucket, whose value is `{ root pgid u64,
//!   sequence u64 }`; root 0 means an inline bucket, whose page follows in the value itself.
//!
//! What etcd keeps there (`server/storage/schema/bucket.go` at v3.6.14, `mvcc/backend` and
//! `membership/store.go` in 3.4 and 3.5): bucket `meta` with `storageVersion` ("3.6.0", written
//! from 3.6 on) and `consistent_index` (8 bytes, big-endian), bucket `cluster` with
//! `clusterVersion` ("3.5.0"; etcd's schema says "since v3.5", and Debian's 3.4.23 writes it
//! too, checked on a real data dir), and bucket
//! `members`, one key per member (its id in hex) whose value is the member as JSON
//! (`{"id":..,"peerURLs":[..],"name":..,"clientURLs":[..],"isLearner":..}`).
//!
//! Outside input read from disk like the log: nothing here may panic on any bytes (fuzzed in
//! `fuzz/fuzz_targets/wal.rs`), and a damaged file reads as nothing.

use std::path::Path;

use super::wal::WalMember;
use crate::etcd::version::EtcdVersion;

const MAGIC: u32 = 0xED0C_DAED;
const FORMAT: u32 = 2;
const HEADER: usize = 16;
const META: usize = 64;
const ELEMENT: usize = 16;
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const BUCKET: u32 = 0x01;
/// bbolt uses the OS page size (4 KiB here, 64 KiB on some arm64 kernels); anything outside
/// this is a damaged meta page.
const PAGE_SIZES: std::ops::RangeInclusive<u32> = 512..=(1 << 20);
/// A page with its overflow, as read into memory: etcd's metadata pages are small, and a larger
/// one is damage (or the key space, which is never read).
const MAX_PAGE: u64 = 16 << 20;
/// Pages visited per lookup or listing: a loop in a damaged tree ends here.
const MAX_VISITS: usize = 4096;

/// What the backend records about the data's version and membership.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// `meta/storageVersion`: the storage schema (3.6 on).
    pub storage_version: Option<EtcdVersion>,
    /// `cluster/clusterVersion`: the cluster version when the data was last written.
    pub cluster_version: Option<EtcdVersion>,
    /// `meta/consistent_index`: the raft index the backend has applied, up to which `members`
    /// is current.
    pub consistent_index: Option<u64>,
    /// `members`: the member list etcd keeps in its backend (3.6 reads it at start; 3.4 and 3.5
    /// keep it beside the v2 store's).
    pub members: Option<Vec<WalMember>>,
}

impl Recorded {
    /// The newest etcd version the data says it was written for: the storage version and the
    /// cluster version, whichever is higher. `None` when it says neither.
    pub fn version(&self) -> Option<EtcdVersion> {
        self.storage_version.max(self.cluster_version)
    }
}

/// Reads `member/snap/db`; `None` when it is missing or not a bbolt file that can be read.
pub fn read(db: &Path) -> Option<Recorded> {
    let file = std::fs::File::open(db).ok()?;
    parse(&file)
}

/// The recorded keys of a backend readable through `src`.
pub fn parse(src: &(impl ReadAt + ?Sized)) -> Option<Recorded> {
    let db = Db::open(src)?;
    let version = |bucket: &[u8], key: &[u8]| {
        EtcdVersion::parse(std::str::from_utf8(&db.value(bucket, key)?).ok()?)
    };
    let members = db.bucket(b"members").and_then(|b| {
        let mut out = Vec::new();
        db.each(b, &mut |key, value| {
            let id = std::str::from_utf8(key)
                .ok()
                .and_then(|k| u64::from_str_radix(k, 16).ok());
            if let (Some(id), Ok(m)) = (id, serde_json::from_slice::<WalMember>(value)) {
                out.push(WalMember { id, ..m });
            }
        })
        .then_some(out)
    });
    let consistent_index = db
        .value(b"meta", b"consistent_index")
        .and_then(|v| Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?)));
    Some(Recorded {
        storage_version: version(b"meta", b"storageVersion"),
        consistent_index,
        cluster_version: version(b"cluster", b"clusterVersion"),
        members,
    })
}

/// Bytes at an offset, all or nothing: a file (`pread`) or a slice (tests, fuzzing).
pub trait ReadAt {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> bool;
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> bool {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset).is_ok()
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> bool {
        let Some(from) = usize::try_from(offset).ok().filter(|&o| o <= self.len()) else {
            return false;
        };
        match self[from..].get(..buf.len()) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

struct Db<'a, R: ReadAt + ?Sized> {
    src: &'a R,
    page_size: u64,
    root: u64,
}

/// A bucket's B+tree: on its own pages, or inline in its parent's leaf.
enum Tree {
    Page(u64),
    Inline(Vec<u8>),
}

/// A value found by `get`: a plain value, or a nested bucket.
enum Found {
    Value(Vec<u8>),
    Bucket(Tree),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// FNV-1a, 64 bits: bbolt's meta checksum.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A meta page's (page size, root pgid, txid), when it is valid.
fn meta(src: &(impl ReadAt + ?Sized), offset: u64) -> Option<(u32, u64, u64)> {
    let mut page = [0u8; HEADER + META];
    if !src.read_exact_at(&mut page, offset) {
        return None;
    }
    let m = &page[HEADER..];
    let valid = u32_at(m, 0)? == MAGIC
        && u32_at(m, 4)? == FORMAT
        && u64_at(m, 56)? == fnv1a(&m[..56])
        && PAGE_SIZES.contains(&u32_at(m, 8)?);
    valid.then_some((u32_at(m, 8)?, u64_at(m, 16)?, u64_at(m, 48)?))
}

impl<'a, R: ReadAt + ?Sized> Db<'a, R> {
    fn open(src: &'a R) -> Option<Self> {
        let first = meta(src, 0);
        // The second meta page is one page in; when the first is damaged its page size is
        // unknown, and bbolt then tries the OS page size.
        let second = meta(src, first.map_or(4096, |(size, _, _)| u64::from(size)));
        let (page_size, root, _) = [first, second].into_iter().flatten().max_by_key(|m| m.2)?;
        Some(Db {
            src,
            page_size: u64::from(page_size),
            root,
        })
    }

    /// The top-level bucket `name`.
    fn bucket(&self, name: &[u8]) -> Option<Tree> {
        match self.get(&Tree::Page(self.root), name)? {
            Found::Bucket(tree) => Some(tree),
            Found::Value(_) => None,
        }
    }

    /// The plain value of `key` in the top-level bucket `bucket`.
    fn value(&self, bucket: &[u8], key: &[u8]) -> Option<Vec<u8>> {
        match self.get(&self.bucket(bucket)?, key)? {
            Found::Value(v) => Some(v),
            Found::Bucket(_) => None,
        }
    }

    /// Page `id` with its overflow pages.
    fn page(&self, id: u64) -> Option<Vec<u8>> {
        let offset = id.checked_mul(self.page_size)?;
        let mut header = [0u8; HEADER];
        if !self.src.read_exact_at(&mut header, offset) || u64_at(&header, 0)? != id {
            return None;
        }
        let len = (u64::from(u32_at(&header, 12)?) + 1).checked_mul(self.page_size)?;
        if len > MAX_PAGE {
            return None;
        }
        let mut page = vec![0u8; usize::try_from(len).ok()?];
        self.src.read_exact_at(&mut page, offset).then_some(page)
    }

    fn load(&self, tree: &Tree) -> Option<Vec<u8>> {
        match tree {
            Tree::Page(id) => self.page(*id),
            Tree::Inline(page) => Some(page.clone()),
        }
    }

    /// `key` in the bucket `tree`.
    fn get(&self, tree: &Tree, key: &[u8]) -> Option<Found> {
        let mut page = self.load(tree)?;
        for _ in 0..MAX_VISITS {
            match u16_at(&page, 8)? {
                BRANCH => {
                    // The last element whose key is not above `key` (the first when all are).
                    let mut child = None;
                    for e in elements(&page)? {
                        let (k, pgid) = branch(&page, e)?;
                        if child.is_some() && k > key {
                            break;
                        }
                        child = Some(pgid);
                    }
                    page = self.page(child?)?;
                }
                LEAF => {
                    for e in elements(&page)? {
                        let (flags, k, v) = leaf(&page, e)?;
                        if k == key {
                            return Some(if flags & BUCKET != 0 {
                                Found::Bucket(nested(v)?)
                            } else {
                                Found::Value(v.to_vec())
                            });
                        }
                    }
                    return None;
                }
                _ => return None,
            }
        }
        None
    }

    /// Every plain key and value of the bucket, in order; false when the tree could not be read
    /// whole (then what was seen is not the whole list).
    fn each(&self, tree: Tree, f: &mut impl FnMut(&[u8], &[u8])) -> bool {
        // Children are read when their turn comes: one page in memory at a time besides the
        // stack of their ids (a damaged branch may name thousands of large pages).
        let mut stack = vec![tree];
        let mut visits = 0;
        while let Some(tree) = stack.pop() {
            visits += 1;
            if visits > MAX_VISITS {
                return false;
            }
            let Some(page) = self.load(&tree) else {
                return false;
            };
            let Some(elements) = elements(&page) else {
                return false;
            };
            match u16_at(&page, 8) {
                Some(BRANCH) => {
                    let mut children = Vec::new();
                    for e in elements {
                        match branch(&page, e) {
                            Some((_, pgid)) => children.push(Tree::Page(pgid)),
                            None => return false,
                        }
                    }
                    stack.extend(children.into_iter().rev());
                }
                Some(LEAF) => {
                    for e in elements {
                        match leaf(&page, e) {
                            Some((flags, k, v)) if flags & BUCKET == 0 => f(k, v),
                            Some(_) => {}
                            None => return false,
                        }
                    }
                }
                _ => return false,
            }
        }
        true
    }
}

/// The offsets of a page's elements.
fn elements(page: &[u8]) -> Option<impl Iterator<Item = usize>> {
    let count = usize::from(u16_at(page, 10)?);
    (HEADER + count * ELEMENT <= page.len()).then(|| (0..count).map(|i| HEADER + i * ELEMENT))
}

/// The bytes `pos` after the element at `at`, `len` long.
fn after(page: &[u8], at: usize, pos: u32, len: u32) -> Option<&[u8]> {
    let from = at.checked_add(usize::try_from(pos).ok()?)?;
    page.get(from..from.checked_add(usize::try_from(len).ok()?)?)
}

fn branch(page: &[u8], at: usize) -> Option<(&[u8], u64)> {
    let key = after(page, at, u32_at(page, at)?, u32_at(page, at + 4)?)?;
    Some((key, u64_at(page, at + 8)?))
}

fn leaf(page: &[u8], at: usize) -> Option<(u32, &[u8], &[u8])> {
    let (pos, ksize, vsize) = (
        u32_at(page, at + 4)?,
        u32_at(page, at + 8)?,
        u32_at(page, at + 12)?,
    );
    let key = after(page, at, pos, ksize)?;
    let value = after(page, at, pos.checked_add(ksize)?, vsize)?;
    Some((u32_at(page, at)?, key, value))
}

/// A nested bucket's tree from its header `{ root, sequence }` and, for root 0, the inline page.
fn nested(value: &[u8]) -> Option<Tree> {
    match u64_at(value, 0)? {
        0 => Some(Tree::Inline(value.get(16..)?.to_vec())),
        root => Some(Tree::Page(root)),
    }
}

/// Building bbolt files the way bbolt lays them out, for tests.
#[cfg(test)]
mod encode {
    use super::*;

    /// One entry of a leaf: a plain value, or a nested bucket (inline, as bbolt keeps a small
    /// bucket, or on a page of its own).
    pub enum Entry<'a> {
        Value(&'a [u8], &'a [u8]),
        Inline(&'a [u8], Vec<u8>),
        Bucket(&'a [u8], u64),
    }

    fn header(id: u64, flags: u16, count: usize, overflow: u32) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend(id.to_le_bytes());
        p.extend(flags.to_le_bytes());
        p.extend(u16::try_from(count).unwrap().to_le_bytes());
        p.extend(overflow.to_le_bytes());
        p
    }

    /// A leaf page (id 0 for an inline bucket's), unpadded.
    pub fn leaf_page(id: u64, entries: &[Entry<'_>]) -> Vec<u8> {
        let kv: Vec<(u32, &[u8], Vec<u8>)> = entries
            .iter()
            .map(|e| match e {
                Entry::Value(k, v) => (0, *k, v.to_vec()),
                Entry::Inline(k, page) => {
                    let mut v = vec![0u8; 16];
                    v.extend(page);
                    (BUCKET, *k, v)
                }
                Entry::Bucket(k, root) => {
                    let mut v = root.to_le_bytes().to_vec();
                    v.extend([0u8; 8]);
                    (BUCKET, *k, v)
                }
            })
            .collect();
        let mut page = header(id, LEAF, kv.len(), 0);
        let mut data: Vec<u8> = Vec::new();
        for (i, (flags, k, v)) in kv.iter().enumerate() {
            let pos = (kv.len() - i) * ELEMENT + data.len();
            page.extend(flags.to_le_bytes());
            page.extend(u32::try_from(pos).unwrap().to_le_bytes());
            page.extend(u32::try_from(k.len()).unwrap().to_le_bytes());
            page.extend(u32::try_from(v.len()).unwrap().to_le_bytes());
            data.extend(*k);
            data.extend(v);
        }
        page.extend(data);
        page
    }

    /// A branch page over `(first key, child pgid)`.
    pub fn branch_page(id: u64, children: &[(&[u8], u64)]) -> Vec<u8> {
        let mut page = header(id, BRANCH, children.len(), 0);
        let mut data: Vec<u8> = Vec::new();
        for (i, (k, pgid)) in children.iter().enumerate() {
            let pos = (children.len() - i) * ELEMENT + data.len();
            page.extend(u32::try_from(pos).unwrap().to_le_bytes());
            page.extend(u32::try_from(k.len()).unwrap().to_le_bytes());
            page.extend(pgid.to_le_bytes());
            data.extend(*k);
        }
        page.extend(data);
        page
    }

    /// A whole file: meta pages 0 and 1 (txids 4 and 5, both naming `root`), then `pages`
    /// (each with its own id), every page padded to `page_size`.
    pub fn file(page_size: u32, root: u64, pages: &[Vec<u8>]) -> Vec<u8> {
        let size = page_size as usize;
        let meta_page = |id: u64, txid: u64| {
            let mut p = header(id, 0x04, 0, 0);
            let mut m = Vec::new();
            m.extend(MAGIC.to_le_bytes());
            m.extend(FORMAT.to_le_bytes());
            m.extend(page_size.to_le_bytes());
            m.extend(0u32.to_le_bytes());
            m.extend(root.to_le_bytes());
            m.extend(0u64.to_le_bytes());
            m.extend(0xffff_ffff_ffff_ffffu64.to_le_bytes());
            m.extend((pages.len() as u64 + 2).to_le_bytes());
            m.extend(txid.to_le_bytes());
            let sum = fnv1a(&m);
            m.extend(sum.to_le_bytes());
            p.extend(m);
            p
        };
        let mut out = Vec::new();
        for page in [meta_page(0, 4), meta_page(1, 5)].iter().chain(pages) {
            let mut page = page.clone();
            page.resize(page.len().div_ceil(size) * size, 0);
            let overflow = u32::try_from(page.len() / size - 1).unwrap();
            page[12..16].copy_from_slice(&overflow.to_le_bytes());
            out.extend(page);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::encode::{Entry, branch_page, file, leaf_page};
    use super::*;

    const M1: &[u8] = br#"{"id":1885563217373831526,"peerURLs":["http://127.0.0.9:2380"],"name":"n1","clientURLs":["http://127.0.0.9:2379"]}"#;
    const M2: &[u8] =
        br#"{"id":7972155342839096424,"peerURLs":["http://127.0.0.10:2380"],"isLearner":true}"#;

    /// A 3.6 backend: `meta` and `cluster` inline, `members` on a page of its own.
    fn backend_36(page_size: u32) -> Vec<u8> {
        let meta = leaf_page(
            0,
            &[
                Entry::Value(b"confState", b"{}"),
                Entry::Value(b"consistent_index", &[0, 0, 0, 0, 0, 0, 1, 9]),
                Entry::Value(b"storageVersion", b"3.6.0"),
                Entry::Value(b"term", &[0, 0, 0, 0, 0, 0, 0, 2]),
            ],
        );
        let cluster = leaf_page(0, &[Entry::Value(b"clusterVersion", b"3.6.0")]);
        let members = leaf_page(
            3,
            &[
                Entry::Value(b"1a2dece3cbcad166", M1),
                Entry::Value(b"6ea2fb5ed3c3bb68", M2),
            ],
        );
        let root = leaf_page(
            2,
            &[
                Entry::Inline(b"cluster", cluster),
                Entry::Value(b"junk", b"not a bucket"),
                Entry::Bucket(b"members", 3),
                Entry::Inline(b"meta", meta),
            ],
        );
        file(page_size, 2, &[root, members])
    }

    #[test]
    fn reads_the_versions_and_members_a_36_backend_records() {
        for size in [4096, 512] {
            let r = parse(&backend_36(size)[..]).unwrap();
            assert_eq!(r.storage_version, Some(EtcdVersion::new(3, 6, 0)));
            assert_eq!(r.cluster_version, Some(EtcdVersion::new(3, 6, 0)));
            assert_eq!(r.version(), Some(EtcdVersion::new(3, 6, 0)));
            assert_eq!(r.consistent_index, Some(0x109));
            let members = r.members.unwrap();
            assert_eq!(members.len(), 2);
            assert_eq!(members[0].id, 0x1a2d_ece3_cbca_d166);
            assert_eq!(members[0].name, "n1");
            assert_eq!(members[0].peer_urls, ["http://127.0.0.9:2380"]);
            assert!(members[1].is_learner);
        }
    }

    #[test]
    fn a_35_backend_has_a_cluster_version_and_no_storage_version() {
        let cluster = leaf_page(0, &[Entry::Value(b"clusterVersion", b"3.5.0")]);
        let meta = leaf_page(0, &[Entry::Value(b"term", &[0; 8])]);
        let root = leaf_page(
            2,
            &[
                Entry::Inline(b"cluster", cluster),
                Entry::Inline(b"meta", meta),
            ],
        );
        let r = parse(&file(4096, 2, &[root])[..]).unwrap();
        assert_eq!(r.version(), Some(EtcdVersion::new(3, 5, 0)));
        assert_eq!(r.storage_version, None);
        assert_eq!(r.members, None);
    }

    #[test]
    fn lookups_descend_branch_pages_and_listings_visit_every_leaf() {
        let members_a = leaf_page(4, &[Entry::Value(b"1a2dece3cbcad166", M1)]);
        let members_b = leaf_page(5, &[Entry::Value(b"6ea2fb5ed3c3bb68", M2)]);
        let members = branch_page(3, &[(b"1a2dece3cbcad166", 4), (b"6ea2fb5ed3c3bb68", 5)]);
        let cluster = leaf_page(0, &[Entry::Value(b"clusterVersion", b"3.5.0")]);
        let left = leaf_page(
            6,
            &[
                Entry::Bucket(b"alarm", 0),
                Entry::Inline(b"cluster", cluster),
            ],
        );
        let right = leaf_page(
            7,
            &[
                Entry::Bucket(b"members", 3),
                Entry::Inline(b"meta", leaf_page(0, &[])),
            ],
        );
        let root = branch_page(2, &[(b"alarm", 6), (b"members", 7)]);
        let bytes = file(4096, 2, &[root, members, members_a, members_b, left, right]);
        let r = parse(&bytes[..]).unwrap();
        assert_eq!(r.cluster_version, Some(EtcdVersion::new(3, 5, 0)));
        let ids: Vec<u64> = r.members.unwrap().iter().map(|m| m.id).collect();
        assert_eq!(ids, [0x1a2d_ece3_cbca_d166, 0x6ea2_fb5e_d3c3_bb68]);
    }

    #[test]
    fn the_newer_valid_meta_page_counts_and_a_damaged_one_is_skipped() {
        let mut bytes = backend_36(4096);
        // Meta page 1 (txid 5) damaged: page 0 (txid 4) names the same root.
        bytes[4096 + HEADER + 20] ^= 0xff;
        assert!(parse(&bytes[..]).unwrap().storage_version.is_some());
        // Both damaged: nothing.
        bytes[HEADER + 20] ^= 0xff;
        assert_eq!(parse(&bytes[..]), None);
    }

    #[test]
    fn damaged_backends_read_as_nothing_and_never_panic() {
        let good = backend_36(512);
        for cut in (0..good.len()).step_by(61) {
            let _ = parse(&good[..cut]);
        }
        for at in (0..good.len()).step_by(13) {
            let mut bad = good.clone();
            bad[at] = bad[at].wrapping_add(0x41);
            let _ = parse(&bad[..]);
        }
        assert_eq!(parse(&b"\0\0\0"[..]), None);
        // A branch page that leads to itself ends at the visit limit.
        let looping = branch_page(2, &[(b"a", 2)]);
        let r = parse(&file(4096, 2, &[looping])[..]).unwrap();
        assert_eq!(r.members, None);
    }
}
