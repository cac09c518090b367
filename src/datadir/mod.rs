//! This machine's etcd data dir: whether it holds a member, and whose (cluster and member id,
//! read from the write-ahead log without etcd running, see `wal.rs`). Nothing here writes but
//! `move_aside`, which renames and never deletes.

pub mod bolt;
pub mod recovery_mark;
pub mod snap;
pub mod wal;

use std::path::{Path, PathBuf};

use crate::error::{Failure, Kind};
pub use wal::{WalInfo, WalMember};

/// Whether this machine's data dir holds an etcd member (`member/` exists).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataDir {
    Empty,
    HasMember,
}

/// What the data dir holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    pub dir: DataDir,
    /// For a member: what its log says. `None` when `member/` exists but no log could be read
    /// (it still counts as data: never bootstrap over it).
    pub wal: Option<WalInfo>,
}

pub fn inspect(data_dir: &Path) -> Result<Inspection, Failure> {
    let member = data_dir.join("member");
    match std::fs::metadata(&member) {
        Ok(m) if m.is_dir() => Ok(Inspection {
            dir: DataDir::HasMember,
            wal: read_member(&member),
        }),
        Ok(_) => Err(Failure::new(
            Kind::IoErr,
            format!("{} exists but is not a directory", member.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Inspection {
            dir: DataDir::Empty,
            wal: None,
        }),
        Err(e) => Err(Failure::new(
            Kind::IoErr,
            format!(
                "cannot inspect {}: {e}; refusing to guess whether it holds data",
                member.display()
            ),
        )),
    }
}

/// A member dir's log, its member list on top of the newest snapshot's, and the version its
/// backend records.
///
/// The member list underneath the log: the newest v2 `.snap` file's, which etcd 3.4 and 3.5
/// start from; without one (etcd's main branch no longer writes them, and 3.7 no longer reads
/// them) the backend's `members` bucket, current up to its consistent index, which is what etcd
/// 3.6 and later start from (`membership.RaftCluster.Recover` reading the v3 backend; checked
/// at v3.6.14). The log's changes above that index are replayed on top, as on a snapshot's.
pub fn read_member(member_dir: &Path) -> Option<WalInfo> {
    let recorded = bolt::read(&member_dir.join("snap/db"));
    let base = snap::read_newest(&member_dir.join("snap")).or_else(|| {
        let r = recorded.as_ref()?;
        Some((r.consistent_index?, r.members.clone()?))
    });
    let mut info = read_log(&member_dir.join("wal"), base)?;
    info.data_version = recorded.and_then(|r| r.version());
    Some(info)
}

/// The raft index of the newest snapshot record in the log's last two segments (a segment cut
/// right after the record leaves it in the one before): cheap enough to ask again while etcd
/// runs, where reading the whole log would not be.
pub fn newest_log_snapshot(wal_dir: &Path) -> Option<u64> {
    let mut segments = segments(wal_dir)?;
    let tail = segments.split_off(segments.len().saturating_sub(2));
    let mut info = WalInfo::default();
    for segment in tail {
        let f = std::fs::File::open(segment).ok()?;
        wal::read_segment(std::io::BufReader::new(f), &mut info);
    }
    Some(info.snapshot_index)
}

/// The log's segments in the log's order.
fn segments(wal_dir: &Path) -> Option<Vec<PathBuf>> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(wal_dir)
        .map_err(|e| tracing::warn!("cannot read {}: {e}", wal_dir.display()))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    // `<seq>-<index>.wal` in fixed-width hex: the name order is the log's order.
    segments.sort();
    Some(segments)
}

/// The log alone (no snapshot underneath): its ids, indexes and the members its changes add.
pub fn read_wal(wal_dir: &Path) -> Option<WalInfo> {
    read_log(wal_dir, None)
}

/// Every segment in order: the first names the member, the last holds the newest entries, and
/// configuration changes may be in any of them. etcd keeps a handful (`--max-wals`, 5), each at
/// most 64 MB and read only up to its preallocated zeros.
fn read_log(wal_dir: &Path, snapshot: Option<(u64, Vec<WalMember>)>) -> Option<WalInfo> {
    let segments = segments(wal_dir)?;
    let from_start = segments.first().is_some_and(|s| {
        s.file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with("-0000000000000000.wal"))
    });
    let mut info = WalInfo::default();
    if let Some((index, members)) = snapshot {
        info.last_index = index;
        info.members_base_index = index;
        info.members = members;
        info.members_complete = true;
    }
    info.members_complete |= from_start;
    let mut found = false;
    for segment in &segments {
        match std::fs::File::open(segment) {
            Ok(f) => found |= wal::read_segment(std::io::BufReader::new(f), &mut info),
            Err(e) => {
                tracing::warn!("cannot read {}: {e}", segment.display());
                info.members_complete = false;
            }
        }
    }
    found.then_some(info)
}

impl WalInfo {
    /// The single-member cluster a distribution's etcd package starts on install: one member
    /// whose peer URLs are all on the default loopback host (etcd's default is
    /// `http://localhost:2380`), none of them this node's own. Its name says nothing: Debian's unit names it after the host
    /// (`ETCD_NAME=%H`), etcd's default is `default`. A cluster of one that this agent
    /// bootstrapped on a loopback address (examples/static.toml) has this node's own URL, and is
    /// not one.
    pub fn is_package_cluster(&self, my_peer_url: &str) -> bool {
        matches!(self.members.as_slice(), [m] if !m.peer_urls.is_empty()
            && m.peer_urls.iter().all(|u| is_loopback_url(u))
            && !m.peer_urls.iter().any(|u| u == my_peer_url))
    }
}

/// `scheme://host:port` on the loopback host a package's default configuration names:
/// `localhost`, `127.0.0.1` or `[::1]`. (Not any 127/8 address: clusters of machines on loopback
/// addresses of their own, as in tests and on one host, are not a package's default.)
fn is_loopback_url(url: &str) -> bool {
    let Some(host) = crate::member::host_of(url) else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "::1"
}

/// Renames the data dir to `<data_dir>.<why>-<unix time>`; never deletes anything.
pub fn move_aside(data_dir: &Path, why: &str) -> Result<PathBuf, Failure> {
    let to = aside(data_dir, why);
    std::fs::rename(data_dir, &to).map(|()| to).map_err(|e| {
        Failure::new(
            Kind::CantCreate,
            format!("cannot move {} aside: {e}", data_dir.display()),
        )
    })
}

/// Copies the data dir to `<data_dir>.<why>-<unix time>`, keeping modes, and leaves it in place.
/// The copy is made under a `.partial` name and renamed when complete, so a copy cut short is
/// never taken for a whole one.
pub fn copy_aside(data_dir: &Path, why: &str) -> Result<PathBuf, Failure> {
    let to = aside(data_dir, why);
    let partial = PathBuf::from(format!("{}.partial", to.display()));
    copy_tree(data_dir, &partial)
        .and_then(|()| std::fs::rename(&partial, &to))
        .map(|()| to)
        .map_err(|e| {
            Failure::new(
                Kind::CantCreate,
                format!(
                    "cannot copy {} to {}: {e}; nothing was changed in the data dir",
                    data_dir.display(),
                    partial.display()
                ),
            )
        })
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.is_dir() {
        std::fs::create_dir(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        std::fs::set_permissions(to, meta.permissions())
    } else if meta.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
    } else {
        std::fs::copy(from, to).map(drop)
    }
}

/// A name beside the data dir that is not taken yet.
fn aside(data_dir: &Path, why: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut to = PathBuf::from(format!("{}.{why}-{secs}", data_dir.display()));
    let mut n = 1;
    while to.exists() || PathBuf::from(format!("{}.partial", to.display())).exists() {
        to = PathBuf::from(format!("{}.{why}-{secs}-{n}", data_dir.display()));
        n += 1;
    }
    to
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_cluster_is_a_loopback_member_of_one_whatever_its_name() {
        let one = |name: &str, url: &str| WalInfo {
            members: vec![WalMember {
                name: name.into(),
                peer_urls: vec![url.into()],
                ..WalMember::default()
            }],
            ..WalInfo::default()
        };
        let mine = "http://10.0.0.5:2380";
        for (name, url) in [
            ("default", "http://localhost:2380"),
            ("etcd-host-7", "http://localhost:2380"),
            ("etcd-host-7", "http://127.0.0.1:2380"),
            ("x", "https://[::1]:2380"),
        ] {
            assert!(one(name, url).is_package_cluster(mine), "{name} {url}");
        }
        // A machine on loopback addresses of its own (as the tests run) still sees it.
        assert!(
            one("default", "http://localhost:2380").is_package_cluster("http://127.0.0.1:2380")
        );
        // Bootstrapped by this agent on loopback (examples/static.toml): its own cluster.
        assert!(
            !one("etcd-0", "http://127.0.0.1:2380").is_package_cluster("http://127.0.0.1:2380")
        );
        assert!(!one("etcd-0", "http://10.0.0.5:2380").is_package_cluster(mine));
        let mut two = one("a", "http://localhost:2380");
        two.members.push(two.members[0].clone());
        assert!(!two.is_package_cluster(mine));
        assert!(!is_loopback_url("http://localhost.example.com:2380"));
        // Another cluster of one on a loopback address of its own is another cluster's data.
        assert!(!one("node-1", "http://127.10.31.1:2380").is_package_cluster(mine));
    }

    #[test]
    fn a_copy_aside_keeps_the_original_and_every_file_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("etcd-bootstrap-copy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let data = root.join("default");
        std::fs::create_dir_all(data.join("member/wal")).unwrap();
        std::fs::write(data.join("member/wal/0.wal"), b"log").unwrap();
        std::fs::set_permissions(data.join("member"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        let to = copy_aside(&data, "before-recovery").unwrap();
        assert!(to.to_string_lossy().contains("default.before-recovery-"));
        assert_eq!(std::fs::read(to.join("member/wal/0.wal")).unwrap(), b"log");
        assert_eq!(
            std::fs::read(data.join("member/wal/0.wal")).unwrap(),
            b"log"
        );
        let mode = std::fs::metadata(to.join("member"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        // A second copy in the same second gets its own name.
        let again = copy_aside(&data, "before-recovery").unwrap();
        assert_ne!(again, to);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
