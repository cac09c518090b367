//! A `file://` store: a directory, usually a mounted volume (NFS, a block volume). A database is
//! written to a `.partial` file beside its final name, flushed to disk, then renamed into place.

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::path::PathBuf;

use super::store::{Object, StoreError};

pub struct FileStore {
    dir: PathBuf,
}

pub struct FileUpload {
    file: File,
    partial: PathBuf,
    path: PathBuf,
}

impl FileStore {
    pub fn new(dir: PathBuf) -> Self {
        FileStore { dir }
    }

    fn error(&self, what: &str, path: &std::path::Path, e: &std::io::Error) -> StoreError {
        StoreError {
            denied: e.kind() == ErrorKind::PermissionDenied,
            message: format!(
                "backup store {}: cannot {what} {}: {e}",
                self.dir.display(),
                path.display()
            ),
        }
    }

    /// Keys starting with `prefix`, which ends at a folder (`TOKEN/`): that folder's files.
    pub fn list(&self, prefix: &str) -> Result<Vec<Object>, StoreError> {
        if !self.dir.is_dir() {
            return Err(StoreError::new(format!(
                "backup store {} is not a directory: mount the volume or create it (backup.url)",
                self.dir.display()
            )));
        }
        let folder = self.dir.join(prefix);
        let entries = match fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error("list", &folder, &e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.error("list", &folder, &e))?;
            let meta = entry
                .metadata()
                .map_err(|e| self.error("read", &entry.path(), &e))?;
            if let (true, Some(name)) = (meta.is_file(), entry.file_name().to_str()) {
                out.push(Object {
                    key: format!("{prefix}{name}"),
                    size: meta.len(),
                });
            }
        }
        Ok(out)
    }

    pub fn get(&self, key: &str, limit: usize) -> Result<Vec<u8>, StoreError> {
        let path = self.dir.join(key);
        let file = File::open(&path).map_err(|e| self.error("read", &path, &e))?;
        let mut bytes = Vec::new();
        file.take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.error("read", &path, &e))?;
        if bytes.len() > limit {
            return Err(StoreError::new(format!(
                "backup store: {} is larger than {limit} bytes",
                path.display()
            )));
        }
        Ok(bytes)
    }

    pub fn download(&self, key: &str, dest: &std::path::Path) -> Result<u64, StoreError> {
        let path = self.dir.join(key);
        fs::copy(&path, dest).map_err(|e| self.error("copy", &path, &e))
    }

    pub fn upload(&self, key: &str) -> Result<FileUpload, StoreError> {
        let path = self.dir.join(key);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| self.error("create", parent, &e))?;
        }
        let partial = path.with_extension(format!("partial-{}", std::process::id()));
        let file = File::create(&partial).map_err(|e| self.error("create", &partial, &e))?;
        Ok(FileUpload {
            file,
            partial,
            path,
        })
    }

    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.dir.join(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error("delete", &path, &e)),
        }
    }
}

impl FileUpload {
    fn error(&self, e: &std::io::Error) -> StoreError {
        StoreError {
            denied: e.kind() == ErrorKind::PermissionDenied,
            message: format!("backup store: cannot write {}: {e}", self.partial.display()),
        }
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.file.write_all(bytes).map_err(|e| self.error(&e))
    }

    pub fn finish(self) -> Result<(), StoreError> {
        let done = self
            .file
            .sync_all()
            .and_then(|()| fs::rename(&self.partial, &self.path))
            .and_then(|()| match self.path.parent() {
                Some(dir) => File::open(dir)?.sync_all(),
                None => Ok(()),
            });
        if let Err(e) = done {
            let error = self.error(&e);
            self.abort();
            return Err(error);
        }
        Ok(())
    }

    pub fn abort(self) {
        if let Err(e) = fs::remove_file(&self.partial)
            && e.kind() != ErrorKind::NotFound
        {
            tracing::warn!(
                "cannot remove the unfinished {}: {e}",
                self.partial.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_appears_only_when_finished_and_an_abort_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().to_owned());
        assert_eq!(store.list("prod/").unwrap(), vec![]);
        let mut up = store.upload("prod/a.db").unwrap();
        up.write(b"hello ").unwrap();
        up.write(b"world").unwrap();
        assert!(
            store
                .list("prod/")
                .unwrap()
                .iter()
                .all(|o| o.key != "prod/a.db")
        );
        up.finish().unwrap();
        assert_eq!(
            store.list("prod/").unwrap(),
            vec![Object {
                key: "prod/a.db".into(),
                size: 11
            }]
        );
        assert_eq!(store.get("prod/a.db", 100).unwrap(), b"hello world");
        assert!(
            store
                .get("prod/a.db", 5)
                .unwrap_err()
                .message
                .contains("larger than 5")
        );
        let mut up = store.upload("prod/b.db").unwrap();
        up.write(b"half").unwrap();
        up.abort();
        assert_eq!(store.list("prod/").unwrap().len(), 1);
        store.delete("prod/a.db").unwrap();
        store.delete("prod/a.db").unwrap();
        assert_eq!(store.list("prod/").unwrap(), vec![]);
        let missing = FileStore::new(dir.path().join("not-mounted"));
        assert!(
            missing
                .list("prod/")
                .unwrap_err()
                .message
                .contains("not a directory")
        );
    }
}
