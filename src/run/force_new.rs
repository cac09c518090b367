//! The one start of etcd with `--force-new-cluster` that a lost-quorum recovery needs, run by
//! the agent itself before it writes the env file, so that etcd.service never sees the flag.
//!
//! Why not simply `ETCD_FORCE_NEW_CLUSTER=true` in the env file: etcd keeps the commit index
//! of its newest entries in memory (it persists it with later entries), so the survivor's log
//! says those entries are uncommitted although its database has applied them.
//! `--force-new-cluster` discards them from the log and writes its membership changes at their
//! indexes; a member that joins afterwards replays that log and never gets them, and the
//! cluster serves two different sets of data (etcd-io/etcd#14009; reproduced here with etcd
//! 3.4.23 and 3.5.1: the last key written was missing on every member that joined). A member
//! that joins from a snapshot gets the survivor's database whole instead. So this start also
//! takes a snapshot (`ETCD_SNAPSHOT_COUNT=1`), and etcd is stopped once it has: started again
//! by etcd.service, it begins its log at that snapshot, and every member that joins receives
//! the database. The flag is never in the env file, so no restart of etcd can force again.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Failure, Kind};
use crate::etcd::EtcdClient;

/// How long the recovery start may take to serve and take its snapshot.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long etcd is given to stop on SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs etcd once with `env` (the env file's `KEY=VALUE` lines) plus `--force-new-cluster` and a
/// snapshot, until it serves as a cluster of one and has written the snapshot; then stops it.
pub async fn run_once(
    binary: &Path,
    env: &str,
    data_dir: &Path,
    etcd: &EtcdClient,
) -> Result<(), Failure> {
    let wal_dir = data_dir.join("member/wal");
    let snapshot_before = crate::datadir::newest_log_snapshot(&wal_dir);
    // Clients reach this start on a private loopback port only: a machine waiting to join must
    // not add itself to it (it would replay the forced log, the very thing the snapshot
    // avoids); it joins once etcd.service has started the cluster of one.
    let client_url = private_client_url()?;
    let vars = env
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='));
    let mut child = Command::new(binary)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(vars)
        .env("ETCD_FORCE_NEW_CLUSTER", "true")
        .env("ETCD_SNAPSHOT_COUNT", "1")
        .env("ETCD_LISTEN_CLIENT_URLS", &client_url)
        .env("ETCD_ADVERTISE_CLIENT_URLS", &client_url)
        .stdin(Stdio::null())
        // etcd's own lines go where the agent's go (the journal, under this unit).
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            Failure::new(
                Kind::Unavailable,
                format!(
                    "cannot run {} for the recovery start: {e}; set etcd.binary to etcd's path",
                    binary.display()
                ),
            )
        })?;
    tracing::warn!(
        pid = child.id(),
        "started {} once with --force-new-cluster and a snapshot",
        binary.display()
    );
    let served = wait_served(&mut child, &wal_dir, snapshot_before, &client_url, etcd).await;
    stop(&mut child).await;
    served?;
    tracing::warn!(
        "the recovery start served as a cluster of one and took its snapshot; stopped it for etcd.service to start"
    );
    Ok(())
}

async fn wait_served(
    child: &mut Child,
    wal_dir: &Path,
    snapshot_before: Option<u64>,
    client_url: &str,
    etcd: &EtcdClient,
) -> Result<(), Failure> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut last = String::from("it did not answer yet");
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Failure::new(
                Kind::Unavailable,
                format!(
                    "etcd exited ({status}) during the recovery start with --force-new-cluster; its log is above. The data dir's copy from before is beside it"
                ),
            ));
        }
        match etcd.member_list(client_url).await {
            Ok(view) if view.members.len() == 1 => {
                // The log's own snapshot record, which every etcd version writes (a v2 `.snap`
                // file is written only up to 3.7).
                if crate::datadir::newest_log_snapshot(wal_dir) > snapshot_before {
                    return Ok(());
                }
                last = "it serves, and has not written its snapshot yet".into();
            }
            Ok(view) => {
                last = format!("it lists {} members, not 1", view.members.len());
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(Failure::new(
        Kind::Unavailable,
        format!(
            "the recovery start with --force-new-cluster did not serve as a cluster of one with a snapshot within {START_TIMEOUT:?}: {last}"
        ),
    ))
}

/// `http://127.0.0.1:<a free port>`: plain HTTP, since etcd ignores its certificate files on an
/// `http` listener, and the check below needs no client certificate.
fn private_client_url() -> Result<String, Failure> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| {
            Failure::new(
                Kind::Unavailable,
                format!("cannot find a free loopback port for the recovery start: {e}"),
            )
        })?;
    Ok(format!("http://127.0.0.1:{port}"))
}

/// SIGTERM, then SIGKILL after STOP_TIMEOUT; always reaps the child.
async fn stop(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!("etcd did not stop within {STOP_TIMEOUT:?} of SIGTERM; killing it");
    let _ = child.kill();
    let _ = child.wait();
}
