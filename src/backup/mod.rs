//! Backups: `etcd-bootstrap snapshot`, run by `etcd-bootstrap-snapshot.timer` on every member,
//! streams the leader's snapshot to the store named by `[backup]` with a manifest beside it,
//! and keeps the store to the retention rule (docs/backup.md).

pub mod boot;
pub mod file;
pub mod manifest;
pub mod record;
pub mod restore;
pub mod retention;
#[cfg(feature = "aws")]
pub mod s3;
pub mod snapshot;
pub mod store;
pub mod stream;

pub use restore::restore;
pub use snapshot::snapshot;
