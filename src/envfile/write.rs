//! Atomic replacement: a temporary file in the same directory, fsync, rename over the target,
//! fsync the directory. A reader (etcd.service starting) sees the old file or the new one, never
//! a half-written one, and a crash or a failed write leaves the previous file in place.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub fn write_atomic(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let file_name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "env file path has no file name",
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));

    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        // The umask may have narrowed the mode; etcd.service may run as another user.
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_mode_0644_creating_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/etcd-bootstrap/etcd.env");
        write_atomic(&path, "A=1\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "A=1\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        write_atomic(&path, "A=2\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "A=2\n");
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_failed_write_leaves_the_previous_file_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.env");
        fs::write(&path, "OLD=1\n").unwrap();
        // A stale temporary file with our name makes create_new fail, as a full disk or a
        // read-only directory would: the write must fail without touching the target.
        let tmp = dir
            .path()
            .join(format!(".etcd.env.tmp-{}", std::process::id()));
        fs::create_dir(&tmp).unwrap();
        assert!(write_atomic(&path, "NEW=1\n").is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "OLD=1\n");
    }

    #[test]
    fn a_target_that_cannot_be_replaced_keeps_its_content() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory: rename fails after the temp file was written.
        let path = dir.path().join("etcd.env");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), "x").unwrap();
        assert!(write_atomic(&path, "NEW=1\n").is_err());
        assert_eq!(fs::read_to_string(path.join("keep")).unwrap(), "x");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file removed"
        );
    }
}
