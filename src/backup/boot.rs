//! The backup store at boot: what it holds for the decision core (`newest`), and the `restore`
//! row carried out (`restore_at_boot`): this member's data dir made from the snapshot every
//! member named, before etcd starts on it as a new cluster of this fleet's members.

use std::path::Path;

use super::restore::{Target, fetch_manifest, give_to_owner, restore_into, restore_tool};
use super::snapshot::Found;
use super::store::Store;
use crate::config::BackupSettings;
use crate::decide::{SnapshotRef, StoreLook};
use crate::error::{Failure, Kind};
use crate::member::MemberName;

/// The newest complete snapshot of `token`, read from its manifest. Anything short of a clear
/// answer (the store refused, timed out, or a manifest is not one) is `Unreadable`: never "no
/// snapshot", since a first bootstrap would take that for an empty store.
pub async fn newest(store: &Store, token: &str) -> StoreLook {
    let unreadable = |reason: String| StoreLook::Unreadable { reason };
    let found = match Found::list(store, token).await {
        Ok(found) => found,
        Err(e) => return unreadable(e.message),
    };
    let Some(name) = found.complete.iter().max() else {
        return StoreLook::Nothing;
    };
    match fetch_manifest(store, token, name).await {
        Ok(m) => StoreLook::Newest(m.snapshot_ref()),
        Err(e) => unreadable(e.message),
    }
}

/// Restores `snapshot` into `data_dir` as the member `me` of `initial_cluster`. Works inside the
/// data dir (the same file system even when it is a mount point) and moves `member/` into place
/// only when the restore is complete and checked: a run stopped half-way leaves no `member/`, and
/// the next run restores again. Returns what was done, for the journal.
#[allow(clippy::too_many_arguments)]
pub async fn restore_at_boot(
    store: &Store,
    backup: &BackupSettings,
    etcd_binary: &Path,
    snapshot: &SnapshotRef,
    data_dir: &Path,
    me: &MemberName,
    initial_cluster: &[(MemberName, String)],
    token: &str,
) -> Result<String, Failure> {
    let tool = restore_tool(backup, etcd_binary)?;
    let peer_url = &initial_cluster
        .iter()
        .find(|(n, _)| n == me)
        .ok_or_else(|| Failure::new(Kind::Software, "this node is not in the set it restores"))?
        .1;
    let io = |what: &str, path: &Path, e: std::io::Error| {
        Failure::new(
            Kind::CantCreate,
            format!(
                "cannot {what} {}: {e}; nothing was restored",
                path.display()
            ),
        )
    };
    if !data_dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|e| io("create", data_dir, e))?;
    }
    let work = data_dir.join(".etcd-bootstrap-restore");
    if work.exists() {
        // A restore of ours that stopped half-way; nothing in it is anyone's data yet.
        std::fs::remove_dir_all(&work).map_err(|e| io("remove", &work, e))?;
    }
    std::fs::create_dir(&work).map_err(|e| io("create", &work, e))?;
    let target = Target {
        name: me.as_str(),
        initial_cluster,
        peer_url,
        token,
    };
    let restored = restore_into(store, snapshot, &work, &target, &tool).await;
    let moved = restored.and_then(|data| {
        let member = data_dir.join("member");
        std::fs::rename(data.join("member"), &member)
            .map_err(|e| io("move the restored member into", data_dir, e))?;
        give_to_owner(&member)
    });
    let _ = std::fs::remove_dir_all(&work);
    moved?;
    Ok(format!(
        "restored snapshot {} (cluster {}, revision {}) into {} with {}",
        snapshot.key,
        snapshot.cluster_id,
        snapshot.revision,
        data_dir.display(),
        tool.display()
    ))
}
