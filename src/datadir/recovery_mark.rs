//! What a lost-quorum recovery leaves while it is under way: `<data_dir>.recovery-started`,
//! written once the data dir is copied aside (it names the copy) and removed once the one etcd
//! start with `--force-new-cluster` has served. Found at the start of a later run, it says that
//! start never finished: it may have written its forced membership changes into the log and
//! then failed (an etcd that cannot open the data does exactly that: issue #22), and the data
//! dir must not be started as it is. Every look reads it (`decide::UnfinishedRecovery`), and the
//! decision core puts the copy back before anything else (`decide::recovery::unfinished`), so
//! `plan` shows that step too.

use std::path::{Path, PathBuf};

use crate::error::{Failure, Kind};

fn marker(data_dir: &Path) -> PathBuf {
    PathBuf::from(format!("{}.recovery-started", data_dir.display()))
}

/// The copy `copy` of the data dir is about to be recovered from.
pub fn begin(data_dir: &Path, copy: &Path) -> Result<(), Failure> {
    let path = marker(data_dir);
    std::fs::write(&path, copy.as_os_str().as_encoded_bytes()).map_err(|e| {
        Failure::new(
            Kind::CantCreate,
            format!(
                "cannot write {}: {e}; the recovery did not start",
                path.display()
            ),
        )
    })
}

/// The recovery start served: its data dir is the cluster's now.
pub fn finish(data_dir: &Path) {
    let path = marker(data_dir);
    if let Err(e) = std::fs::remove_file(&path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(
            "cannot remove {}: {e}; remove it by hand, or the next run puts the copy from before the recovery back",
            path.display()
        );
    }
}

/// What an earlier run's unfinished recovery left, when it left anything: the copy it made.
pub fn unfinished(data_dir: &Path) -> Option<PathBuf> {
    let bytes = std::fs::read(marker(data_dir)).ok()?;
    Some(PathBuf::from(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Puts the copy named by an unfinished recovery back in place of the data dir (which is
/// renamed `<data_dir>.failed-recovery-<time>`, never deleted; the copy is copied, not moved,
/// so it stays as it was), then forgets the recovery. `Ok(None)`: nothing was unfinished.
pub fn undo_unfinished(data_dir: &Path) -> Result<Option<String>, Failure> {
    let Some(copy) = unfinished(data_dir) else {
        return Ok(None);
    };
    let marker = marker(data_dir);
    if !copy.join("member").is_dir() {
        return Err(Failure::new(
            Kind::Unsafe,
            format!(
                "an earlier run's recovery start with --force-new-cluster did not finish, and the copy it made ({}) is not there: {} may hold the membership changes it forced; refusing to start it. Put the data dir as it was before back by hand (docs/recovery.md), then remove {}",
                copy.display(),
                data_dir.display(),
                marker.display()
            ),
        ));
    }
    let failed = if data_dir.exists() {
        Some(super::move_aside(data_dir, "failed-recovery")?)
    } else {
        None
    };
    let restoring = super::copy_aside(&copy, "restoring")?;
    std::fs::rename(&restoring, data_dir).map_err(|e| {
        Failure::new(
            Kind::CantCreate,
            format!(
                "cannot rename {} to {}: {e}; the copy from before the recovery is {}",
                restoring.display(),
                data_dir.display(),
                copy.display()
            ),
        )
    })?;
    finish(data_dir);
    Ok(Some(format!(
        "an earlier run's recovery start with --force-new-cluster did not finish: put the data dir back as it was before it (from {}){}",
        copy.display(),
        failed
            .map(|f| format!("; what that start left is kept as {}", f.display()))
            .unwrap_or_default()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfinished_recovery_is_undone_from_its_copy_and_a_finished_one_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(data.join("member/wal")).unwrap();
        std::fs::write(data.join("member/wal/0.wal"), "before").unwrap();
        let copy = super::super::copy_aside(&data, "before-recovery").unwrap();

        // Finished: nothing to undo.
        begin(&data, &copy).unwrap();
        finish(&data);
        assert_eq!(undo_unfinished(&data).unwrap(), None);

        // Unfinished: the forced start changed the log; the copy goes back, the change is kept.
        begin(&data, &copy).unwrap();
        std::fs::write(data.join("member/wal/0.wal"), "forced").unwrap();
        let said = undo_unfinished(&data).unwrap().unwrap();
        assert!(
            said.contains("put the data dir back as it was before it"),
            "{said}"
        );
        assert_eq!(
            std::fs::read_to_string(data.join("member/wal/0.wal")).unwrap(),
            "before"
        );
        assert_eq!(
            std::fs::read_to_string(copy.join("member/wal/0.wal")).unwrap(),
            "before",
            "the copy stays"
        );
        let kept = std::fs::read_dir(root.path())
            .unwrap()
            .flatten()
            .find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("data.failed-recovery-")
            })
            .expect("what the failed start left is kept");
        assert_eq!(
            std::fs::read_to_string(kept.path().join("member/wal/0.wal")).unwrap(),
            "forced"
        );
        assert_eq!(undo_unfinished(&data).unwrap(), None, "done once");

        // Unfinished, and the copy is gone: refused, nothing touched.
        begin(&data, &root.path().join("gone")).unwrap();
        let err = undo_unfinished(&data).unwrap_err();
        assert_eq!(err.kind, Kind::Unsafe);
        assert!(
            err.message.contains("refusing to start it"),
            "{}",
            err.message
        );
        assert!(data.join("member/wal/0.wal").exists());
    }
}
