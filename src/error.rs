//! Failures and their exit codes (sysexits-style, documented in `docs/exit-codes.md`), and the
//! errno reported to systemd with `ERRNO=`.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The command line is wrong.
    Usage,
    /// Discovery returned data that cannot be used (hostile or duplicate names, bad addresses).
    DataErr,
    /// No decision before the deadline: peers, the cloud API or the cluster did not answer.
    Unavailable,
    /// A bug: this should not happen.
    Software,
    /// The env file could not be written, or the data dir could not be moved aside.
    CantCreate,
    /// The data dir could not be inspected.
    IoErr,
    /// The cloud API rejected the token.
    NoPerm,
    /// The configuration is wrong.
    Config,
    /// Starting would be unsafe (the member was removed, two clusters answer...).
    Unsafe,
    /// A certificate or key etcd would be given cannot work (docs/preflight.md).
    Certificate,
}

impl Kind {
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Usage => 64,
            Kind::DataErr => 65,
            Kind::Unavailable => 69,
            Kind::Software => 70,
            Kind::CantCreate => 73,
            Kind::IoErr => 74,
            Kind::NoPerm => 77,
            Kind::Config => 78,
            Kind::Unsafe => 79,
            Kind::Certificate => 80,
        }
    }

    /// The errno systemd shows for the failed unit.
    pub fn errno(self) -> u32 {
        match self {
            Kind::Usage | Kind::Config => libc::EINVAL as u32,
            Kind::DataErr => libc::EBADMSG as u32,
            Kind::Unavailable => libc::ETIMEDOUT as u32,
            Kind::Software => libc::ENOTRECOVERABLE as u32,
            Kind::CantCreate | Kind::IoErr => libc::EIO as u32,
            Kind::NoPerm => libc::EACCES as u32,
            Kind::Unsafe => libc::EEXIST as u32,
            Kind::Certificate => libc::EKEYREJECTED as u32,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
    /// The decision table's row, when the run failed because a row refused.
    pub row: Option<&'static str>,
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            row: None,
        }
    }

    /// The refusal of a row of the decision table (exit 79), kept in the outcome record.
    pub fn refused(row: &'static str, message: impl Into<String>) -> Self {
        Failure {
            row: Some(row),
            ..Failure::new(Kind::Unsafe, message)
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
