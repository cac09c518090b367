//! This machine's etcd data dir: whether it holds a member, and whose (cluster and member id,
//! read from the write-ahead log without etcd running, see `wal.rs`). Nothing here writes but
//! `move_aside`, which renames and never deletes.

pub mod wal;

use std::path::{Path, PathBuf};

use crate::decide::DataDir;
use crate::error::{Failure, Kind};
pub use wal::{WalInfo, WalMember};

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
            wal: read_wal(&member.join("wal")),
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

/// The first segment names the member and holds the bootstrap's configuration changes; the
/// last holds the newest entries. etcd keeps a handful of segments (`--max-wals`, 5), so the
/// ones between are skipped.
pub fn read_wal(wal_dir: &Path) -> Option<WalInfo> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(wal_dir)
        .map_err(|e| tracing::warn!("cannot read {}: {e}", wal_dir.display()))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    // `<seq>-<index>.wal` in fixed-width hex: the name order is the log's order.
    segments.sort();
    let mut info = WalInfo::default();
    let mut found = false;
    let first_and_last = match segments.as_slice() {
        [] => return None,
        [only] => vec![only],
        [first, .., last] => vec![first, last],
    };
    for segment in first_and_last {
        match std::fs::File::open(segment) {
            Ok(f) => found |= wal::read_segment(std::io::BufReader::new(f), &mut info),
            Err(e) => tracing::warn!("cannot read {}: {e}", segment.display()),
        }
    }
    found.then_some(info)
}

impl WalInfo {
    /// The single-member cluster Debian's `etcd-server` package starts on install: etcd's
    /// defaults, member `default` with its peer URL on localhost.
    pub fn is_distribution_default(&self) -> bool {
        matches!(self.members.as_slice(), [m] if m.name == "default"
            && !m.peer_urls.is_empty()
            && m.peer_urls.iter().all(|u| u.contains("://localhost:") || u.contains("://127.0.0.1:")))
    }
}

/// Renames the data dir to `<data_dir>.<why>-<unix time>`; never deletes anything.
pub fn move_aside(data_dir: &Path, why: &str) -> Result<PathBuf, Failure> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut to = PathBuf::from(format!("{}.{why}-{secs}", data_dir.display()));
    let mut n = 1;
    while to.exists() {
        to = PathBuf::from(format!("{}.{why}-{secs}-{n}", data_dir.display()));
        n += 1;
    }
    std::fs::rename(data_dir, &to).map(|()| to).map_err(|e| {
        Failure::new(
            Kind::CantCreate,
            format!("cannot move {} aside: {e}", data_dir.display()),
        )
    })
}
