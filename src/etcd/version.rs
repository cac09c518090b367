//! etcd versions, and the upgrade floors etcd's own rules impose. A member's binary may be at
//! most one minor version ahead of the cluster version and never behind it; an upgrade to the
//! next minor starts only from a patch release that carries the fixes the next minor relies on.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct EtcdVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl EtcdVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        EtcdVersion {
            major,
            minor,
            patch,
        }
    }

    /// `3.5.1`, `3.5.0`, or a cluster version's `3.5` (patch 0); anything else (`not_decided`,
    /// an empty string, a suffix such as `-rc.0`) is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('.');
        let mut next = || parts.next().map(str::parse::<u32>);
        let major = next()?.ok()?;
        let minor = next()?.ok()?;
        let patch = match next() {
            None => 0,
            Some(p) => p.ok()?,
        };
        parts
            .next()
            .is_none()
            .then_some(EtcdVersion::new(major, minor, patch))
    }

    /// The version in what `etcd --version` prints: its `etcd Version: 3.5.1` line.
    pub fn from_version_output(out: &str) -> Option<Self> {
        out.lines()
            .find_map(|l| l.trim().strip_prefix("etcd Version:"))
            .and_then(Self::parse)
    }

    /// The minor release line: `3.5` for 3.5.26.
    pub fn line(self) -> (u32, u32) {
        (self.major, self.minor)
    }
}

impl fmt::Display for EtcdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The lowest patch release of each minor line from which the next minor may join: (line,
/// floor, why). From etcd's upgrade guides and issues, checked against etcd's source at v3.6.14
/// and v3.7.1 (../shared/REFERENCE.md §10).
pub const UPGRADE_FLOORS: &[((u32, u32), EtcdVersion, &str)] = &[
    (
        (3, 5),
        EtcdVersion::new(3, 5, 26),
        "3.5 → 3.6 only from 3.5.26: from older 3.5 releases removed members come back as zombies (etcd-io/etcd#20967) and promotions kept only in v2 make 3.6 refuse too many learners (#19557)",
    ),
    (
        (3, 6),
        EtcdVersion::new(3, 6, 11),
        "3.6 → 3.7 only from 3.6.11 (etcd's 3.7 upgrade guide)",
    ),
];

/// The floor a cluster on `line` must be at before a member of the next minor joins it.
pub fn upgrade_floor(line: (u32, u32)) -> Option<(EtcdVersion, &'static str)> {
    UPGRADE_FLOORS
        .iter()
        .find(|(l, _, _)| *l == line)
        .map(|(_, v, why)| (*v, *why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_etcd_prints() {
        assert_eq!(EtcdVersion::parse("3.5.1"), Some(EtcdVersion::new(3, 5, 1)));
        assert_eq!(EtcdVersion::parse("3.4"), Some(EtcdVersion::new(3, 4, 0)));
        assert_eq!(EtcdVersion::parse("not_decided"), None);
        assert_eq!(EtcdVersion::parse("3.6.0-rc.1"), None);
        assert_eq!(EtcdVersion::parse("3.5.1.2"), None);
        let out = "etcd Version: 3.4.23\nGit SHA: Not provided (use ./build instead of go build)\nGo Version: go1.19.8\nGo OS/Arch: linux/amd64\n";
        assert_eq!(
            EtcdVersion::from_version_output(out),
            Some(EtcdVersion::new(3, 4, 23))
        );
        assert_eq!(EtcdVersion::from_version_output("garbage"), None);
    }

    #[test]
    fn floors_are_by_line() {
        assert_eq!(upgrade_floor((3, 5)).unwrap().0, EtcdVersion::new(3, 5, 26));
        assert_eq!(upgrade_floor((3, 6)).unwrap().0, EtcdVersion::new(3, 6, 11));
        assert!(upgrade_floor((3, 4)).is_none());
    }
}
