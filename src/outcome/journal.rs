//! The run's final line, sent to journald with structured fields (`ETCD_BOOTSTRAP_ROW=`, ...,
//! docs/outcome.md) through its native protocol, so `journalctl ETCD_BOOTSTRAP_STATE=new` finds
//! it. Only under systemd with the journal on stderr (`JOURNAL_STREAM`); elsewhere, and if the
//! journal cannot be reached, the caller logs the line as usual.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

pub const SOCKET: &str = "/run/systemd/journal/socket";

/// syslog priorities, as journald reads `PRIORITY=`.
pub const INFO: u8 = 6;
pub const ERR: u8 = 3;

/// Whether stderr goes to the journal: only then is a native entry the same line in the same
/// place.
pub fn stderr_is_journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

/// Sends one entry: `message`, `priority`, and `fields` (names already upper case, values on one
/// line). `Err` if the journal did not take it.
pub fn send(
    socket: &Path,
    message: &str,
    priority: u8,
    fields: &[(&str, String)],
) -> std::io::Result<()> {
    let mut entry = String::new();
    let mut field = |name: &str, value: &str| {
        entry.push_str(name);
        entry.push('=');
        // The simple form of the protocol carries one line per field.
        entry.push_str(&value.replace('\n', " "));
        entry.push('\n');
    };
    field("MESSAGE", message);
    field("PRIORITY", &priority.to_string());
    field("SYSLOG_IDENTIFIER", "etcd-bootstrap");
    for (name, value) in fields {
        field(name, value);
    }
    let sock = UnixDatagram::unbound()?;
    sock.send_to(entry.as_bytes(), socket).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_one_datagram_of_field_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let journal = UnixDatagram::bind(&path).unwrap();
        send(
            &path,
            "wrote /run/etcd-bootstrap/etcd.env: bootstrapping\na new cluster",
            INFO,
            &[
                ("ETCD_BOOTSTRAP_ROW", "bootstrap".into()),
                ("ETCD_BOOTSTRAP_STATE", "new".into()),
            ],
        )
        .unwrap();
        let mut buf = [0u8; 4096];
        let n = journal.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            "MESSAGE=wrote /run/etcd-bootstrap/etcd.env: bootstrapping a new cluster\n\
             PRIORITY=6\nSYSLOG_IDENTIFIER=etcd-bootstrap\n\
             ETCD_BOOTSTRAP_ROW=bootstrap\nETCD_BOOTSTRAP_STATE=new\n"
        );
        assert!(send(&dir.path().join("absent"), "x", ERR, &[]).is_err());
    }
}
