//! The `version` row: etcd's version rules, checked before anything changes. etcd checks them
//! itself only when the new member starts, after `member add` succeeded: a member older than the
//! cluster version is refused then ("incompatible with current running cluster") and the agent
//! would leave an unstarted member behind that every later boot reuses. So, whenever a cluster
//! answers, this machine's etcd must be able to run in it:
//! - never older than the cluster version (minor line);
//! - at most one minor line newer than any answering member's etcd (upgrades go one minor at a
//!   time; the members' own versions, not the cluster version, which a new cluster reports as
//!   3.0 until its leader has heard every member);
//! - one minor newer only beside members at or above their line's upgrade floor
//!   (`etcd::version::UPGRADE_FLOORS`), unless `cluster.allow_upgrade_below_floor`.
//!
//! Members on two adjacent lines are an upgrade in progress: normal, and allowed.
//!
//! A start on this machine's own data (`opens_own_data`: a restart, or the lost-quorum
//! recovery's forced start) needs an etcd that can open it, whether a cluster answers or not:
//! never of an older minor line than the version the data records, and at most one line newer.
//!
//! A restore (`restorable`) starts this machine's etcd on the snapshot's data: never an etcd of
//! an older minor line than the one that took it.

use super::*;
use crate::etcd::version::upgrade_floor;

pub(super) fn guard(f: &Facts<'_>, view: &ClusterView) -> Option<Outcome> {
    let local = f.local_etcd?;
    let mine = local.version;
    let answered: Vec<(&MemberName, &ClusterView)> = f
        .probes
        .iter()
        .filter_map(|p| match &p.answer {
            PeerAnswer::Answered(v) if v.cluster_id == view.cluster_id => Some((&p.peer, v)),
            _ => None,
        })
        .collect();
    let refuse = |what: String| {
        Some(outcome(
            Row::Version,
            Decision::Refuse,
            format!(
                "cluster {:x}: {what}; nothing was changed (docs/versions.md)",
                view.cluster_id
            ),
        ))
    };
    // The cluster version only ever rises, and never above its lowest member: an etcd older
    // than it cannot run in this cluster. (A new cluster reports 3.0 until its leader has heard
    // every member, which says nothing against anyone.)
    if let Some(cluster) = answered.iter().filter_map(|(_, v)| v.cluster_version).max()
        && mine.line() < cluster.line()
    {
        return refuse(format!(
            "it is at cluster version {}.{} and this machine's etcd ({}) is {mine}: etcd refuses a member older than its cluster, and only after the member is added; install etcd {}.{} or later here (or point etcd.binary at it)",
            cluster.major, cluster.minor, local.binary, cluster.major, cluster.minor
        ));
    }
    // What the members run: this machine's etcd may be at most one minor version ahead of each.
    let servers: Vec<(&MemberName, EtcdVersion)> = answered
        .iter()
        .filter_map(|(peer, v)| Some((*peer, v.server_version?)))
        .collect();
    if let Some((peer, lowest)) = servers.iter().min_by_key(|(_, v)| *v)
        && skips_a_minor(mine, *lowest)
    {
        return refuse(format!(
            "{peer} runs etcd {lowest} and this machine's etcd ({}) is {mine}: etcd upgrades one minor version at a time; upgrade the members to {}.{} first, or install etcd {}.{} here",
            local.binary,
            mine.major,
            mine.minor.saturating_sub(1),
            lowest.major,
            lowest.minor
        ));
    }
    if f.spec.allow_upgrade_below_floor {
        return None;
    }
    let below: Vec<String> = servers
        .iter()
        .filter(|(_, v)| v.line() < mine.line())
        .filter_map(|(peer, v)| {
            let (floor, _) = upgrade_floor(v.line())?;
            (*v < floor).then(|| format!("{peer} runs {v}"))
        })
        .collect();
    let (floor, why) = servers
        .iter()
        .find(|(_, v)| v.line() < mine.line())
        .and_then(|(_, v)| upgrade_floor(v.line()))?;
    if below.is_empty() {
        return None;
    }
    refuse(format!(
        "{} and this machine's etcd ({}) is {mine}: an upgrade to {}.{} starts only from {floor} ({why}); upgrade them to {floor} or later in place first, or set cluster.allow_upgrade_below_floor = true",
        below.join(", "),
        local.binary,
        mine.major,
        mine.minor
    ))
}

/// This machine's etcd starting on its own data: refused when it is of an older minor line than
/// the version the data records (etcd refuses a newer data dir, "cluster cannot be downgraded",
/// after it wrote to its log; seen with a 3.4 binary on 3.5 data, issue #22), or more than one
/// line newer (etcd upgrades one minor version at a time, and 3.6 refuses data 3.5 never
/// touched). Data that records no version, or an etcd that could not be asked, is not judged:
/// etcd checks it itself when it starts.
pub(super) fn opens_own_data(f: &Facts<'_>) -> Option<Outcome> {
    let local = f.local_etcd?;
    let data = f
        .wal
        .filter(|_| f.data == DataDir::HasMember)?
        .data_version?;
    let mine = local.version;
    let dir = f.spec.data_dir.display();
    let why = if mine.line() < data.line() {
        format!(
            "{dir} was last written at cluster version {}.{} and this machine's etcd ({}) is {mine}: an older etcd refuses a newer data dir, after writing to it; install etcd {}.{} or later here (or point etcd.binary at it), or downgrade the cluster first (`etcdctl downgrade enable`, etcd 3.6 and later)",
            data.major, data.minor, local.binary, data.major, data.minor
        )
    } else if skips_a_minor(mine, data) {
        format!(
            "{dir} was last written at cluster version {}.{} and this machine's etcd ({}) is {mine}: etcd upgrades one minor version at a time; start this data with etcd {}.{} first",
            data.major,
            data.minor,
            local.binary,
            data.major,
            data.minor + 1
        )
    } else {
        return None;
    };
    Some(outcome(
        Row::Version,
        Decision::Refuse,
        format!("{why}; nothing was changed (docs/versions.md)"),
    ))
}

/// `newer` is more than one minor version past `older` (or of another major): etcd upgrades
/// one minor version at a time, members and data alike.
fn skips_a_minor(newer: EtcdVersion, older: EtcdVersion) -> bool {
    newer.major != older.major || newer.minor > older.minor + 1
}

/// A restore of `snapshot` starts this machine's etcd on its data: refused when that etcd is of
/// an older minor line than the etcd that took it (an older etcd cannot run on a newer one's
/// data; etcd's own downgrade needs a running cluster and `etcdctl downgrade enable` first).
/// Unknown versions are not judged: etcd checks them itself when it starts.
pub(super) fn restorable(f: &Facts<'_>, snapshot: &SnapshotRef) -> Option<Outcome> {
    let why = too_new_to_restore(f.local_etcd?, snapshot)?;
    Some(outcome(Row::Version, Decision::Refuse, why))
}

/// Why `local` must not restore `snapshot` (taken by a newer minor line), for a restore at boot
/// and by hand alike.
pub fn too_new_to_restore(local: &LocalEtcd, snapshot: &SnapshotRef) -> Option<String> {
    let taken_by = EtcdVersion::parse(&snapshot.etcd_version)?;
    (local.version.line() < taken_by.line()).then(|| {
        format!(
            "snapshot {} was taken by etcd {taken_by}, and this machine's etcd ({}) is {}: an older etcd cannot run on a newer one's data, so it is not restored; install etcd {}.{} or later here (or point etcd.binary at it); nothing was changed (docs/versions.md)",
            snapshot.key, local.binary, local.version, taken_by.major, taken_by.minor
        )
    })
}
