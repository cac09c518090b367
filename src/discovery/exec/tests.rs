//! Real commands (small shell scripts run by /bin/sh) and what the provider makes of them.

use std::time::Duration;

use super::*;

/// A script in its own directory, run as `/bin/sh SCRIPT` (so no freshly written file is
/// executed: a parallel test forking at that moment would make it "text file busy").
fn exec_of(script: &str, timeout: Duration) -> (tempfile::TempDir, Exec) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.sh");
    std::fs::write(&path, script).unwrap();
    let exec = Exec::new(ExecSettings {
        command: vec!["/bin/sh".into(), path.display().to_string()],
        timeout,
    });
    (dir, exec)
}

async fn listed(script: &str) -> Result<Listing, DiscoveryError> {
    let (_dir, exec) = exec_of(script, Duration::from_secs(10));
    exec.list().await
}

#[tokio::test]
async fn a_good_script_lists_its_members() {
    let listing = listed(
        "echo 'inventory: 3 machines' >&2\n\
         echo '# from the inventory'\n\
         echo 'etcd-0=10.0.0.10'\n\
         echo ''\n\
         echo '  etcd-1=fd00::11  '\n\
         echo 'etcd-2=etcd-2.internal.example'\n",
    )
    .await
    .unwrap();
    let members: Vec<String> = listing
        .candidates
        .iter()
        .map(|c| format!("{}={}", c.name, c.host))
        .collect();
    assert_eq!(
        members,
        [
            "etcd-0=10.0.0.10",
            "etcd-1=fd00::11",
            "etcd-2=etcd-2.internal.example"
        ]
    );
    assert_eq!(listing.self_id, None);
}

#[tokio::test]
async fn a_failing_script_is_retried_and_its_words_kept() {
    let err = listed("echo 'inventory unreachable: connection refused' >&2\nexit 3\n")
        .await
        .unwrap_err();
    assert!(err.retryable);
    assert_eq!(err.kind, Kind::Unavailable);
    assert!(
        err.message
            .ends_with("failed (exit status: 3): inventory unreachable: connection refused"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn garbage_output_names_the_line() {
    let err = listed("echo 'etcd-0=10.0.0.10'\necho 'Welcome to the inventory!'\n")
        .await
        .unwrap_err();
    assert!(!err.retryable);
    assert_eq!(err.kind, Kind::DataErr);
    assert!(
        err.message.contains(
            "printed, on line 2, \"Welcome to the inventory!\" is not \"name=address\"; each line must be name=address"
        ),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_hostile_name_is_refused_and_shown_escaped() {
    let err = listed("printf 'etcd-0;rm -rf /\\033[2J=10.0.0.10\\n'\n")
        .await
        .unwrap_err();
    assert_eq!(err.kind, Kind::DataErr);
    assert!(
        err.message
            .contains("printed, on line 1, \"etcd-0;rm -rf /\\u{1b}[2J=10.0.0.10\": member name"),
        "{}",
        err.message
    );
    assert!(
        !err.message.contains('\u{1b}'),
        "a raw escape reached the message"
    );
}

#[tokio::test]
async fn a_hanging_script_is_killed_at_its_timeout() {
    let (_dir, exec) = exec_of(
        "echo 'etcd-0=10.0.0.10'\nsleep 30\n",
        Duration::from_millis(300),
    );
    let started = std::time::Instant::now();
    let err = exec.list().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.retryable);
    assert!(
        err.message
            .contains("did not finish within discovery.exec.timeout (300ms)"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_program_that_cannot_run_is_a_configuration_error() {
    let exec = Exec::new(ExecSettings {
        command: vec!["/nonexistent/etcd-peers".into()],
        timeout: Duration::from_secs(1),
    });
    let err = exec.list().await.unwrap_err();
    assert!(!err.retryable);
    assert_eq!(err.kind, Kind::Config);
    assert!(
        err.message
            .starts_with("discovery.exec: /nonexistent/etcd-peers cannot be run: No such file"),
        "{}",
        err.message
    );
}
