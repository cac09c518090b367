//! `etcd-bootstrap snapshot`: on the leader only, when the newest snapshot in the store is at
//! least `backup.interval` old (or with `--force`), stream etcd's snapshot to the store, write
//! its manifest, and delete what retention no longer keeps. The other members say who leads and
//! exit 0: every member runs the timer, so backups continue whichever member leads.
//!
//! Like `promote`, it works from the env file the boot run wrote (this member's client URL) and
//! needs no cloud API: it runs beside etcd, as etcd's user.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::manifest::{FORMAT, Manifest, ManifestMember, Part, SnapshotName};
use super::record::{self, Attempt, Success};
use super::retention;
use super::store::{Store, Upload};
use super::stream::{Checked, SnapshotStream};
use crate::config::{BackupSettings, Settings};
use crate::decide::ClusterView;
use crate::envfile::read_written;
use crate::error::{Failure, Kind};
use crate::etcd::EtcdClient;
use crate::status::age_words;

/// The longest etcd may stay silent in the middle of a snapshot.
const STALL: Duration = Duration::from_secs(60);
/// Database bytes gathered before they are handed to the store (a file write or a part's buffer).
const BATCH: usize = 1 << 20;

/// What a run did, for the record and the exit code.
enum Done {
    NotLeader(String),
    NotDue(String),
    Uploaded(String, Success),
}

pub async fn snapshot(
    settings: &Settings,
    etcd: &EtcdClient,
    force: bool,
) -> Result<String, Failure> {
    let backup = settings.backup_for("to put snapshots in")?;
    let started = now();
    let done = attempt(settings, backup, etcd, force, started).await;
    let (result, message, success) = match &done {
        Ok(Done::NotLeader(m)) => ("not-leader", m.clone(), None),
        Ok(Done::NotDue(m)) => ("not-due", m.clone(), None),
        Ok(Done::Uploaded(m, s)) => ("uploaded", m.clone(), Some(s.clone())),
        Err(e) => ("failed", e.message.clone(), None),
    };
    record::write(
        settings,
        Attempt {
            at: started as u64,
            result: result.into(),
            exit_code: done.as_ref().map_or_else(|e| e.kind.exit_code(), |_| 0),
            message: message.clone(),
        },
        success,
    );
    done.map(|_| message)
}

async fn attempt(
    settings: &Settings,
    backup: &BackupSettings,
    etcd: &EtcdClient,
    force: bool,
    now: i64,
) -> Result<Done, Failure> {
    let written = read_written(&settings.env_file, &settings.cluster)?;
    let mine = &written.endpoints[0];
    let unavailable = |what: &str, e: &dyn std::fmt::Display| {
        Failure::new(
            Kind::Unavailable,
            format!("{what} at {mine}: {e}; no snapshot this round"),
        )
    };
    let status = etcd
        .status(mine)
        .await
        .map_err(|e| unavailable("this member's etcd does not answer", &e))?;
    if status.leader == 0 {
        return Err(unavailable(
            "this member's etcd sees no leader",
            &"an election is under way, or the quorum is lost",
        ));
    }
    let view = etcd
        .member_list(mine)
        .await
        .map_err(|e| unavailable("this member's etcd does not list the members", &e))?;
    if status.leader != status.member_id {
        let leader = view
            .members
            .iter()
            .find(|m| m.id == status.leader)
            .map_or_else(|| "the leader".to_owned(), |m| m.name.clone());
        return Ok(Done::NotLeader(format!(
            "{leader} ({:x}) leads the cluster and takes its snapshots; nothing to do on this member",
            status.leader
        )));
    }

    let store = Store::open(backup).await?;
    let token = &settings.cluster.token;
    let found = Found::list(&store, token).await?;
    if !force && let Some(newest) = found.complete.iter().max() {
        // A member whose clock runs ahead may have named one in the future: not older than 0.
        let age = (now - newest.taken_at).max(0);
        let interval = backup.interval.as_secs() as i64;
        if age < interval {
            return Ok(Done::NotDue(format!(
                "the newest snapshot, {}, is {} old; the next is due in {} (backup.interval)",
                newest.database(),
                age_words(age as u64),
                age_words((interval - age) as u64)
            )));
        }
    }

    let name = SnapshotName::new(token, now, view.cluster_id);
    let clock = Instant::now();
    let checked = stream_to(etcd, mine, &store, &name.database()).await?;
    let manifest = Manifest {
        format: FORMAT,
        cluster_token: token.clone(),
        cluster_id: format!("{:x}", view.cluster_id),
        members: members(&view),
        revision: status.revision,
        raft_index: status.raft_index,
        etcd_version: status.version.clone(),
        db_size: checked.size,
        sha256: checked.sha256.clone(),
        taken_at: now,
        taken_from: view
            .members
            .iter()
            .find(|m| m.id == status.member_id)
            .map_or_else(|| format!("{:x}", status.member_id), |m| m.name.clone()),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        snapshot: name.database(),
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    if let Err(e) = store.put(&name.manifest(), json).await {
        // Without its manifest the database is a leftover: remove it now rather than in a day.
        let _ = store.delete(&name.database()).await;
        return Err(e.into());
    }
    let duration = clock.elapsed();

    let mut complete = found.complete.clone();
    complete.push(name.clone());
    let deleted = prune(&store, &complete, &found.leftovers, backup, now).await;
    let message = format!(
        "snapshot {} of cluster {:x} (revision {}, {} bytes, sha256 {}) written to {} in {:.1}s{deleted}",
        name.database(),
        view.cluster_id,
        status.revision,
        checked.size,
        &checked.sha256[..12],
        backup.store,
        duration.as_secs_f64()
    );
    let success = Success {
        at: now as u64,
        key: name.database(),
        size: checked.size,
        duration_ms: duration.as_millis() as u64,
    };
    Ok(Done::Uploaded(message, success))
}

/// This token's snapshots in the store: complete ones (database and manifest) and leftovers.
pub struct Found {
    pub complete: Vec<SnapshotName>,
    pub leftovers: Vec<SnapshotName>,
}

impl Found {
    pub async fn list(store: &Store, token: &str) -> Result<Found, Failure> {
        let objects = store.list(&format!("{token}/")).await?;
        let mut parts: std::collections::BTreeMap<SnapshotName, (bool, bool)> = Default::default();
        for o in &objects {
            if let Some((name, part)) = SnapshotName::parse(token, &o.key) {
                let entry = parts.entry(name).or_default();
                match part {
                    Part::Database => entry.0 = true,
                    Part::Manifest => entry.1 = true,
                }
            }
        }
        let (complete, leftovers) = parts.into_iter().partition(|(_, (db, m))| *db && *m);
        let names = |v: Vec<(SnapshotName, (bool, bool))>| v.into_iter().map(|(n, _)| n).collect();
        Ok(Found {
            complete: names(complete),
            leftovers: names(leftovers),
        })
    }
}

/// Streams etcd's snapshot into the store at `key`: complete and checked, or nothing.
async fn stream_to(
    etcd: &EtcdClient,
    mine: &str,
    store: &Store,
    key: &str,
) -> Result<Checked, Failure> {
    let mut response = etcd.snapshot(mine).await.map_err(|e| {
        Failure::new(
            Kind::Unavailable,
            format!("etcd at {mine} did not start the snapshot: {e}"),
        )
    })?;
    let mut upload = store.upload(key).await?;
    let copied = copy(&mut response, &mut upload, mine).await;
    match copied {
        Ok(checked) => {
            upload.finish().await?;
            Ok(checked)
        }
        Err(e) => {
            upload.abort().await;
            Err(e)
        }
    }
}

async fn copy(
    response: &mut reqwest::Response,
    upload: &mut Upload,
    mine: &str,
) -> Result<Checked, Failure> {
    let mut decoder = SnapshotStream::default();
    let mut batch = Vec::with_capacity(BATCH + 64 * 1024);
    let corrupt = |e: String| {
        Failure::new(
            Kind::DataErr,
            format!("snapshot from {mine}: {e}; nothing was kept"),
        )
    };
    loop {
        let piece = tokio::time::timeout(STALL, response.chunk())
            .await
            .map_err(|_| {
                Failure::new(
                    Kind::Unavailable,
                    format!(
                        "snapshot from {mine}: etcd sent nothing for {}s; nothing was kept",
                        STALL.as_secs()
                    ),
                )
            })?
            .map_err(|e| {
                Failure::new(
                    Kind::Unavailable,
                    format!(
                        "snapshot from {mine}: {}; nothing was kept",
                        e.without_url()
                    ),
                )
            })?;
        let Some(piece) = piece else { break };
        decoder.feed(&piece, &mut batch).map_err(corrupt)?;
        if batch.len() >= BATCH {
            upload.write(&batch).await?;
            batch.clear();
        }
    }
    let checked = decoder.finish(&mut batch).map_err(corrupt)?;
    upload.write(&batch).await?;
    Ok(checked)
}

fn members(view: &ClusterView) -> Vec<ManifestMember> {
    view.members
        .iter()
        .map(|m| ManifestMember {
            id: format!("{:x}", m.id),
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
        })
        .collect()
}

/// Deletes what retention no longer keeps, manifest first (a snapshot without its manifest no
/// longer counts). A failure is logged and said, not fatal: the new snapshot is in the store.
async fn prune(
    store: &Store,
    complete: &[SnapshotName],
    leftovers: &[SnapshotName],
    backup: &BackupSettings,
    now: i64,
) -> String {
    let doomed = retention::to_delete(complete, leftovers, backup.keep, now);
    let mut deleted = 0;
    for name in &doomed {
        let gone = async {
            store.delete(&name.manifest()).await?;
            store.delete(&name.database()).await
        };
        match gone.await {
            Ok(()) => deleted += 1,
            Err(e) => {
                tracing::warn!("retention: {e}");
                return format!("; retention could not delete {}: {e}", name.database());
            }
        }
    }
    match deleted {
        0 => String::new(),
        1 => "; deleted 1 older snapshot (retention)".into(),
        n => format!("; deleted {n} older snapshots (retention)"),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
