//! etcd-bootstrap: a boot-time agent that finds an etcd node's peers, decides whether the node
//! bootstraps a new cluster, joins an existing one or restarts on its data, writes etcd's
//! environment file and tells systemd how it went.

#[cfg(feature = "aws")]
pub mod awsapi;
pub mod backoff;
pub mod backup;
pub mod civil;
pub mod cli;
pub mod config;
pub mod datadir;
pub mod decide;
pub mod discovery;
pub mod envfile;
pub mod error;
pub mod etcd;
pub mod http;
pub mod leave;
pub mod member;
pub mod notify;
pub mod outcome;
pub mod pem;
pub mod preflight;
pub mod promote;
pub mod prune;
pub mod report;
pub mod retry;
pub mod run;
pub mod status;
pub mod vouch;
