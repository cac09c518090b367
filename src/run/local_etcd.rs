//! Which etcd this machine would start: `<etcd> --version`, asked once per run, while the
//! provider lists the machines, so a first boot does not wait for it. Its version
//! decides etcd's version rules (decide/version.rs) and the env file's spelling of the keys
//! that changed between versions.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::decide::{EtcdVersion, LocalEtcd};

/// `etcd --version` prints and exits at once; a binary that hangs is not one to trust.
const TIMEOUT: Duration = Duration::from_secs(10);

pub async fn ask(binary: &Path) -> Result<LocalEtcd, String> {
    // The answer costs a Go runtime's start and etcd's package init: 14-17 ms of CPU for etcd
    // 3.5, 10.7 ms with one scheduler thread and no collector (perf stat, 2 cores), which counts
    // on small machines and wherever agents share cores. Printing the version needs neither.
    let run = tokio::process::Command::new(binary)
        .arg("--version")
        .env("GOMAXPROCS", "1")
        .env("GOGC", "off")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(TIMEOUT, run)
        .await
        .map_err(|_| {
            format!(
                "{} --version did not answer within {TIMEOUT:?}",
                binary.display()
            )
        })?
        .map_err(|e| format!("cannot run {} --version: {e}", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = EtcdVersion::from_version_output(&text).ok_or_else(|| {
        format!(
            "{} --version printed no \"etcd Version: X.Y.Z\" line ({})",
            binary.display(),
            crate::member::excerpt(text.lines().next().unwrap_or_default())
        )
    })?;
    Ok(LocalEtcd {
        binary: binary.display().to_string(),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn reads_the_version_a_binary_prints_and_names_one_that_prints_none() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("etcd");
        // The fake says what it was started with, so the test sees the Go settings arrive.
        let seen = dir.path().join("seen");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho \"$GOMAXPROCS $GOGC\" > {}\necho 'etcd Version: 3.5.26'\necho 'Git SHA: 0'\n",
                seen.display()
            ),
        )
        .unwrap();
        let wrong = dir.path().join("not-etcd");
        std::fs::write(&wrong, "#!/bin/sh\necho hello\n").unwrap();
        for p in [&fake, &wrong] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let rt = runtime();
        let local = rt.block_on(ask(&fake)).unwrap();
        assert_eq!(local.version, EtcdVersion::new(3, 5, 26));
        assert_eq!(std::fs::read_to_string(&seen).unwrap(), "1 off\n");
        let err = rt.block_on(ask(&wrong)).unwrap_err();
        assert!(
            err.contains("printed no \"etcd Version: X.Y.Z\" line"),
            "{err}"
        );
        let err = rt.block_on(ask(&dir.path().join("missing"))).unwrap_err();
        assert!(err.starts_with("cannot run "), "{err}");
    }
}
