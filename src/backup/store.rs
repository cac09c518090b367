//! Where snapshots are kept: a directory (`file://`) or an S3-compatible bucket (`s3://`).
//! Keys are relative to the URL's directory or prefix. A database is written as a stream
//! (`Upload`) and becomes visible only once complete: a file is renamed into place, a multipart
//! upload is completed; a failed one leaves nothing behind.

use std::fmt;

use super::file::{FileStore, FileUpload};
#[cfg(feature = "aws")]
use super::s3::{S3Store, S3Upload};
use crate::config::{BackupSettings, StoreUrl};
use crate::error::{Failure, Kind};

/// One object under the prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
}

/// What went wrong with the store, in one line that names it; `denied`: it refused the
/// credentials or their permissions (exit 77), otherwise it could not be used now (exit 69).
#[derive(Debug)]
pub struct StoreError {
    pub denied: bool,
    pub message: String,
}

impl StoreError {
    pub fn new(message: impl Into<String>) -> Self {
        StoreError {
            denied: false,
            message: message.into(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let kind = if e.denied {
            Kind::NoPerm
        } else {
            Kind::Unavailable
        };
        Failure::new(kind, e.message)
    }
}

pub enum Store {
    File(FileStore),
    #[cfg(feature = "aws")]
    S3(Box<S3Store>),
}

pub enum Upload {
    File(FileUpload),
    #[cfg(feature = "aws")]
    S3(Box<S3Upload>),
}

impl Store {
    /// The store `[backup]` names, with its credentials (s3://) loaded.
    pub async fn open(settings: &BackupSettings) -> Result<Store, StoreError> {
        match &settings.store {
            StoreUrl::File(dir) => Ok(Store::File(FileStore::new(dir.clone()))),
            #[cfg(feature = "aws")]
            StoreUrl::S3 { .. } => Ok(Store::S3(Box::new(S3Store::open(settings).await?))),
            #[cfg(not(feature = "aws"))]
            StoreUrl::S3 { .. } => unreachable!("refused when the configuration was read"),
        }
    }

    /// Every object whose key starts with `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Object>, StoreError> {
        match self {
            Store::File(s) => s.list(prefix),
            #[cfg(feature = "aws")]
            Store::S3(s) => s.list(prefix).await,
        }
    }

    /// A small object, whole (at most `limit` bytes).
    pub async fn get(&self, key: &str, limit: usize) -> Result<Vec<u8>, StoreError> {
        match self {
            Store::File(s) => s.get(key, limit),
            #[cfg(feature = "aws")]
            Store::S3(s) => s.get(key, limit).await,
        }
    }

    /// A small object, whole.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let mut upload = self.upload(key).await?;
        upload.write(&bytes).await?;
        upload.finish().await
    }

    /// An object of any size, streamed into the file `dest` (created; removed on failure).
    pub async fn download(&self, key: &str, dest: &std::path::Path) -> Result<u64, StoreError> {
        let done = match self {
            Store::File(s) => s.download(key, dest),
            #[cfg(feature = "aws")]
            Store::S3(s) => s.download(key, dest).await,
        };
        if done.is_err() {
            let _ = std::fs::remove_file(dest);
        }
        done
    }

    pub async fn upload(&self, key: &str) -> Result<Upload, StoreError> {
        match self {
            Store::File(s) => Ok(Upload::File(s.upload(key)?)),
            #[cfg(feature = "aws")]
            Store::S3(s) => Ok(Upload::S3(Box::new(s.upload(key)))),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Store::File(s) => s.delete(key),
            #[cfg(feature = "aws")]
            Store::S3(s) => s.delete(key).await,
        }
    }
}

impl Upload {
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        match self {
            Upload::File(u) => u.write(bytes),
            #[cfg(feature = "aws")]
            Upload::S3(u) => u.write(bytes).await,
        }
    }

    /// Makes the object visible, whole.
    pub async fn finish(self) -> Result<(), StoreError> {
        match self {
            Upload::File(u) => u.finish(),
            #[cfg(feature = "aws")]
            Upload::S3(u) => u.finish().await,
        }
    }

    /// Leaves nothing behind (best effort: what cannot be removed is said in the log).
    pub async fn abort(self) {
        match self {
            Upload::File(u) => u.abort(),
            #[cfg(feature = "aws")]
            Upload::S3(u) => u.abort().await,
        }
    }
}
