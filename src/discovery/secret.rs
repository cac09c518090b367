//! API tokens: where they come from, and a type that never prints them.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A token. `Debug` and `Display` print a placeholder, so a token cannot reach a log line or an
/// error message by accident; only `expose` gives it out, for the Authorization header.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The token from, in order: `token_file`, the systemd credential `$CREDENTIALS_DIRECTORY/<id>`
/// (`LoadCredential=`), the environment variable. Errors never include the token.
pub fn load_token(
    token_file: Option<&Path>,
    credential: &str,
    env_var: &str,
    key: &str,
) -> Result<Secret, String> {
    if let Some(path) = token_file {
        return read_token_file(path, &format!("{key}.token_file"));
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        // `LoadCredential=digitalocean-token:PATH`, or the shipped unit's
        // `LoadCredential=etcd-bootstrap:/etc/etcd-bootstrap/credentials`, which systemd exposes
        // file by file as `etcd-bootstrap_<file name>`.
        for name in [
            credential.to_owned(),
            format!("etcd-bootstrap_{credential}"),
        ] {
            let path = Path::new(&dir).join(name);
            if path.exists() {
                return read_token_file(&path, "the systemd credential");
            }
        }
    }
    if let Ok(value) = std::env::var(env_var) {
        return check(value.trim(), env_var);
    }
    Err(format!(
        "no API token: put it in /etc/etcd-bootstrap/credentials/{credential}, set {key}.token_file, or set {env_var}"
    ))
}

fn read_token_file(path: &Path, what: &str) -> Result<Secret, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "token file {} is readable by group or others (mode {:o}); chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    check(text.trim(), &format!("{what} {}", path.display()))
}

/// A token goes into an HTTP header: printable ASCII without spaces, or it is refused (without
/// echoing it).
fn check(token: &str, source: &str) -> Result<Secret, String> {
    if token.is_empty() {
        return Err(format!("{source} holds an empty token"));
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "{source} holds a token with spaces or non-printable characters (not shown)"
        ));
    }
    Ok(Secret(token.to_owned()))
}

/// A token made in a test, for mock servers.
#[cfg(test)]
pub fn tests_only_secret(token: &str) -> Secret {
    Secret(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_token() {
        let s = Secret("dop_v1_supersecret".into());
        assert!(!format!("{s:?} {s}").contains("supersecret"));
        assert_eq!(s.expose(), "dop_v1_supersecret");
    }

    #[test]
    fn reads_and_trims_a_token_file_and_refuses_junk_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc123\n").unwrap();
        assert_eq!(
            load_token(Some(&path), "x", "NOPE_UNSET_VAR", "k")
                .unwrap()
                .expose(),
            "abc123"
        );
        std::fs::write(&path, "abc 123 hunter2\n").unwrap();
        let err = load_token(Some(&path), "x", "NOPE_UNSET_VAR", "k").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        std::fs::write(&path, "\n").unwrap();
        assert!(
            load_token(Some(&path), "x", "NOPE_UNSET_VAR", "k")
                .unwrap_err()
                .contains("empty")
        );
    }
}
