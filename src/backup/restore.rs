//! `etcd-bootstrap restore`: this member's data dir made from a snapshot in the store, for a
//! cluster brought back by hand (docs/backup.md, "Restoring"). Run on every member, with etcd
//! stopped: each restores the same snapshot with the member set of its env file, and the
//! cluster starts on the restored data (the boot run then finds data of its own, and restarts
//! it).
//!
//! Nothing is touched until the snapshot is known good: it is downloaded beside the data dir,
//! checked against its manifest (size and sha256) and etcd's own trailing hash, restored by
//! etcd's own tool (`etcdutl snapshot restore`, or `etcdctl` for 3.4) into a temporary
//! directory, and only then renamed into place. Data already there is moved aside, never
//! deleted, and only with `--replace-data`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use aws_lc_rs::digest::{Context, SHA256};

use super::manifest::{MAX_MANIFEST, Manifest, SnapshotName};
use super::snapshot::Found;
use super::store::Store;
use super::stream::hex;
use crate::config::{BackupSettings, Settings};
use crate::datadir::{self, DataDir};
use crate::decide::SnapshotRef;
use crate::envfile::read_written;
use crate::error::{Failure, Kind};
use crate::etcd::EtcdClient;

pub async fn restore(
    settings: &Settings,
    etcd: &EtcdClient,
    wanted: Option<&str>,
    replace_data: bool,
) -> Result<String, Failure> {
    let backup = settings.backup_for("to restore from")?;
    let written = read_written(&settings.env_file, &settings.cluster)?;
    let me = written
        .peers
        .iter()
        .find(|(_, url)| *url == written.my_peer)
        .map(|(name, _)| name.clone())
        .ok_or_else(|| {
            Failure::new(
                Kind::DataErr,
                format!(
                    "{} names no member with this node's peer URL {}: run etcd-bootstrap to write it again",
                    settings.env_file.display(),
                    written.my_peer
                ),
            )
        })?;
    if etcd.cluster_version(&written.endpoints[0]).await.is_ok() {
        return Err(Failure::new(
            Kind::Unsafe,
            format!(
                "etcd answers at {}: stop it on every member first (systemctl stop etcd); nothing was changed",
                written.endpoints[0]
            ),
        ));
    }
    let data_dir = &settings.cluster.data_dir;
    // Anything in the data dir (etcd's member or not) is kept: renamed aside, never deleted.
    let occupied = std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some());
    if occupied && !replace_data {
        let what = if datadir::inspect(data_dir)?.dir == DataDir::HasMember {
            "holds etcd data"
        } else {
            "is not empty"
        };
        return Err(Failure::new(
            Kind::Unsafe,
            format!(
                "{} {what}: restore with --replace-data to move it aside (it is kept, renamed) and restore in its place; nothing was changed",
                data_dir.display()
            ),
        ));
    }

    let store = Store::open(backup).await?;
    let token = &settings.cluster.token;
    let found = Found::list(&store, token).await?;
    let name = match wanted {
        Some(key) => found
            .complete
            .iter()
            .find(|n| n.database() == key || n.stem == key),
        None => found.complete.iter().max(),
    }
    .ok_or_else(|| {
        Failure::new(
            Kind::Unavailable,
            match wanted {
                Some(key) => format!(
                    "no complete snapshot {key} of cluster token {token} in {}",
                    backup.store
                ),
                None => format!("no snapshot of cluster token {token} in {}", backup.store),
            },
        )
    })?;
    let manifest = fetch_manifest(&store, token, name).await?;

    // The etcd that etcd.service starts, found as a boot run finds it (its tools beside it).
    let (etcd_binary, why) = crate::preflight::etcd_binary_of(settings).await;
    if let Some(why) = why {
        tracing::warn!("{why}");
    }
    let tool = restore_tool(backup, &etcd_binary)?;
    // The rule of a restore at boot: never onto an older etcd than the one that took it. An etcd
    // that cannot be asked is not judged here (etcd checks its data when it starts).
    if let Ok(local) = crate::run::local_etcd::ask(&etcd_binary).await
        && let Some(why) = crate::decide::too_new_to_restore(&local, &manifest.snapshot_ref())
    {
        return Err(Failure::new(Kind::Unsafe, why));
    }

    // Beside the data dir (the same file system, so the last step is a rename).
    let work = PathBuf::from(format!("{}.restoring", data_dir.display()));
    let io = |what: &str, path: &Path, e: std::io::Error| {
        Failure::new(
            Kind::CantCreate,
            format!("cannot {what} {}: {e}", path.display()),
        )
    };
    if work.exists() {
        // A restore of ours that stopped half-way; nothing in it is anyone's data.
        std::fs::remove_dir_all(&work).map_err(|e| io("remove", &work, e))?;
    }
    std::fs::create_dir_all(&work).map_err(|e| io("create", &work, e))?;
    let target = Target {
        name: &me,
        initial_cluster: &written.peers,
        peer_url: &written.my_peer,
        token,
    };
    let result = restore_into(&store, &manifest.snapshot_ref(), &work, &target, &tool).await;
    let restored = match result {
        Ok(dir) => dir,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work);
            return Err(e);
        }
    };
    let aside = if occupied {
        Some(datadir::move_aside(data_dir, "before-restore")?)
    } else {
        if data_dir.exists() {
            // Empty (remove_dir removes nothing else).
            std::fs::remove_dir(data_dir).map_err(|e| io("remove the empty", data_dir, e))?;
        }
        None
    };
    std::fs::rename(&restored, data_dir)
        .map_err(|e| io("move the restored data to", data_dir, e))?;
    let _ = std::fs::remove_dir_all(&work);
    give_to_owner(data_dir)?;
    Ok(format!(
        "restored {} (cluster {}, revision {}, taken {}) into {} as {me}, one of {} members ({}){}; start etcd on every member",
        name.database(),
        manifest.cluster_id,
        manifest.revision,
        crate::civil::date(manifest.taken_at),
        data_dir.display(),
        written.peers.len(),
        written
            .peers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        aside
            .map(|a| format!("; the data that was there is in {}", a.display()))
            .unwrap_or_default()
    ))
}

/// The manifest of the snapshot `name`, read from the store and checked against its name.
pub(super) async fn fetch_manifest(
    store: &Store,
    token: &str,
    name: &SnapshotName,
) -> Result<Manifest, Failure> {
    let bytes = store.get(&name.manifest(), MAX_MANIFEST).await?;
    Manifest::read(&bytes, token, name).map_err(|e| {
        Failure::new(
            Kind::DataErr,
            format!("backup manifest {}: {e}", name.manifest()),
        )
    })
}

/// The member a restore makes: its name and peer URL in the new cluster, all its members
/// (`name`, peer URL), and the cluster token.
pub struct Target<'a, N: std::fmt::Display> {
    pub name: &'a str,
    pub initial_cluster: &'a [(N, String)],
    pub peer_url: &'a str,
    pub token: &'a str,
}

/// Downloads and checks the snapshot, and restores it into `work/data` (returned).
pub(super) async fn restore_into<N: std::fmt::Display>(
    store: &Store,
    snapshot: &SnapshotRef,
    work: &Path,
    target: &Target<'_, N>,
    tool: &Path,
) -> Result<PathBuf, Failure> {
    let file = work.join("snapshot.db");
    store.download(&snapshot.key, &file).await?;
    check(&file, snapshot)?;
    let data = work.join("data");
    let initial_cluster = target
        .initial_cluster
        .iter()
        .map(|(n, u)| format!("{n}={u}"))
        .collect::<Vec<_>>()
        .join(",");
    let out = Command::new(tool)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        .args(["--name", target.name, "--initial-cluster", &initial_cluster])
        .args(["--initial-cluster-token", target.token])
        .args(["--initial-advertise-peer-urls", target.peer_url])
        .output()
        .map_err(|e| {
            Failure::new(
                Kind::Config,
                format!("cannot run {}: {e} (backup.restore_tool)", tool.display()),
            )
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        return Err(Failure::new(
            Kind::DataErr,
            format!(
                "{} snapshot restore failed: {}; nothing was changed",
                tool.display(),
                crate::member::excerpt(last)
            ),
        ));
    }
    Ok(data)
}

/// The download is the database followed by its sha256, both as the manifest says.
fn check(file: &Path, snapshot: &SnapshotRef) -> Result<(), Failure> {
    let bad = |why: String| {
        Failure::new(
            Kind::DataErr,
            format!("snapshot {}: {why}; nothing was restored", snapshot.key),
        )
    };
    let mut f = std::fs::File::open(file).map_err(|e| bad(e.to_string()))?;
    let size = f.metadata().map_err(|e| bad(e.to_string()))?.len();
    if size != snapshot.db_size + 32 {
        return Err(bad(format!(
            "{size} bytes, where its manifest says {} and etcd's 32 bytes of hash",
            snapshot.db_size
        )));
    }
    let mut hash = Context::new(&SHA256);
    let mut left = snapshot.db_size;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = f
            .read(&mut buf[..left.min(1 << 20) as usize])
            .map_err(|e| bad(e.to_string()))?;
        if n == 0 {
            return Err(bad("cut short while reading".into()));
        }
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    let mut trailer = [0u8; 32];
    f.read_exact(&mut trailer).map_err(|e| bad(e.to_string()))?;
    let sha = hex(hash.finish().as_ref());
    if sha != snapshot.sha256 || hex(&trailer) != snapshot.sha256 {
        return Err(bad(format!(
            "its bytes do not match its manifest (sha256 {sha}, manifest {})",
            snapshot.sha256
        )));
    }
    Ok(())
}

/// `backup.restore_tool`, else etcdutl beside the etcd binary (3.5 and later), else etcdctl
/// there (3.4, whose etcdctl restores).
pub(super) fn restore_tool(
    backup: &BackupSettings,
    etcd_binary: &Path,
) -> Result<PathBuf, Failure> {
    if let Some(tool) = &backup.restore_tool {
        return Ok(tool.clone());
    }
    ["etcdutl", "etcdctl"]
        .iter()
        .map(|t| etcd_binary.with_file_name(t))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Failure::new(
                Kind::Config,
                format!(
                    "neither etcdutl nor etcdctl is beside {}: install etcd's tools (Debian: etcd-client) or set backup.restore_tool; nothing was changed",
                    etcd_binary.display()
                ),
            )
        })
}

/// Run as root, the restored files are given to whoever owns the data dir's parent (etcd's
/// user: /var/lib/etcd): a restore run as root must not leave etcd unable to write its data.
pub(super) fn give_to_owner(data_dir: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::MetadataExt;
    // Run as etcd's user, the files are already its own.
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let Some(parent) = data_dir.parent().filter(|_| root) else {
        return Ok(());
    };
    let meta = std::fs::metadata(parent)
        .map_err(|e| Failure::new(Kind::IoErr, format!("{}: {e}", parent.display())))?;
    let (uid, gid) = (meta.uid(), meta.gid());
    let mut stack = vec![data_dir.to_owned()];
    while let Some(p) = stack.pop() {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).map_err(|e| {
            Failure::new(
                Kind::CantCreate,
                format!("cannot give {} to etcd's user: {e}", p.display()),
            )
        })?;
        if p.is_dir() {
            for entry in std::fs::read_dir(&p)
                .map_err(|e| Failure::new(Kind::IoErr, format!("{}: {e}", p.display())))?
            {
                stack.push(
                    entry
                        .map_err(|e| Failure::new(Kind::IoErr, e.to_string()))?
                        .path(),
                );
            }
        }
    }
    Ok(())
}
