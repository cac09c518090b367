//! The agent's sd_notify datagrams, received on a socket this test binds, as systemd would.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use common::AGENT;

fn config(dir: &std::path::Path, size: usize, peers: &[&str], timeout: &str) -> std::path::PathBuf {
    let peers: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[node]\nname = \"etcd-0\"\n[cluster]\nsize = {size}\ndata_dir = \"{data}\"\n\
             [discovery]\ntimeout = \"{timeout}\"\ninterval = \"200ms\"\n\
             [discovery.static]\npeers = [{peers}]\n[output]\nenv_file = \"{env}\"\n",
            data = dir.join("data").display(),
            env = dir.join("etcd.env").display(),
            peers = peers.join(","),
        ),
    )
    .unwrap();
    path
}

/// Runs the agent with NOTIFY_SOCKET set and returns its exit code and every datagram it sent.
fn run_with_socket(config: &std::path::Path) -> (Option<i32>, Vec<String>) {
    let dir = config.parent().unwrap();
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let status = Command::new(AGENT)
        .arg("--config")
        .arg(config)
        .env("NOTIFY_SOCKET", &sock_path)
        .status()
        .unwrap();
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    (status.code(), messages)
}

#[test]
fn success_sends_status_lines_then_ready() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1, &["etcd-0=127.20.0.1"], "10s");
    let (code, msgs) = run_with_socket(&cfg);
    assert_eq!(code, Some(0), "{msgs:?}");
    assert_eq!(
        msgs.first().map(String::as_str),
        Some("STATUS=discovering peers\n")
    );
    let last = msgs.last().unwrap();
    assert!(
        last.starts_with("STATUS=new (bootstrap): wrote "),
        "{last:?}"
    );
    assert!(last.ends_with("\nREADY=1\n"), "{last:?}");
    assert!(!msgs.iter().any(|m| m.contains("ERRNO=")), "{msgs:?}");
}

#[test]
fn waiting_is_reported_with_who_was_found_and_failure_with_errno() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("etcd.env"), "PREVIOUS=1\n").unwrap();
    let cfg = config(
        dir.path(),
        3,
        &["etcd-0=127.20.1.1", "etcd-1=127.20.1.2"],
        "1s",
    );
    let (code, msgs) = run_with_socket(&cfg);
    assert_eq!(code, Some(69), "{msgs:?}");
    let waiting = msgs
        .iter()
        .find(|m| m.contains("waiting for 3 members, found 2: etcd-0, etcd-1"))
        .unwrap_or_else(|| panic!("no waiting status in {msgs:?}"));
    assert!(waiting.contains("\nEXTEND_TIMEOUT_USEC="), "{waiting:?}");
    let last = msgs.last().unwrap();
    assert!(
        last.starts_with("STATUS=failed: no decision within discovery.timeout"),
        "{last:?}"
    );
    assert!(last.ends_with("\nERRNO=110\n"), "ETIMEDOUT: {last:?}");
    assert!(!msgs.iter().any(|m| m.contains("READY=1")));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("etcd.env")).unwrap(),
        "PREVIOUS=1\n"
    );
}

#[test]
fn no_socket_means_no_notification_and_no_failure() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1, &["etcd-0=127.20.2.1"], "10s");
    let out = Command::new(AGENT)
        .arg("--config")
        .arg(&cfg)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
