//! What the agent knows of how etcd will be started on this machine: the unit's `User=`, its
//! environment and its command line, as systemd itself reports them (`systemctl show`). From it:
//! whose permissions the certificates need, and whether etcd would read a config file, which
//! makes it ignore every `ETCD_*` variable of the env file.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long `systemctl show` may take (it asks the service manager over D-Bus).
const SHOW_TIMEOUT: Duration = Duration::from_secs(10);

/// The distributions' defaults files for etcd: Debian's, and Fedora/RHEL's. Read even when the
/// service manager cannot be asked, since etcd's packaged units load them.
pub const DEFAULTS_FILES: [&str; 3] = [
    "/etc/default/etcd",
    "/etc/sysconfig/etcd",
    "/etc/etcd/etcd.conf",
];

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EtcdUnit {
    /// `User=`; `None`: root, or systemd not asked.
    pub user: Option<String>,
    /// `Environment=` assignments.
    pub environment: Vec<String>,
    /// `EnvironmentFile=` paths.
    pub environment_files: Vec<PathBuf>,
    /// `ExecStart=`'s argv, as written (variables unexpanded).
    pub argv: Vec<String>,
    /// The program `ExecStart=` runs (its `path=`).
    pub path: Option<PathBuf>,
}

impl EtcdUnit {
    /// Asks systemd about `unit`. Without systemd as the service manager (a container, a test
    /// machine) there is nothing to ask: an empty description.
    pub async fn read(unit: &str) -> Result<EtcdUnit, String> {
        if !Path::new("/run/systemd/system").exists() {
            return Ok(EtcdUnit::default());
        }
        let mut show = tokio::process::Command::new("systemctl");
        show.args([
            "show",
            unit,
            "--property=User,Environment,EnvironmentFiles,ExecStart",
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
        let out = tokio::time::timeout(SHOW_TIMEOUT, show.output())
            .await
            .map_err(|_| format!("systemctl show {unit} did not answer within {SHOW_TIMEOUT:?}"))?
            .map_err(|e| format!("cannot run systemctl show {unit}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "systemctl show {unit} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(parse_show(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// `systemctl show`'s `KEY=VALUE` lines. `EnvironmentFiles=` repeats, one file a line with a
/// `(ignore_errors=...)` suffix; `ExecStart=` is `{ path=... ; argv[]=... ; ... }`.
pub fn parse_show(text: &str) -> EtcdUnit {
    let mut unit = EtcdUnit::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "User" if !value.is_empty() && value != "root" => unit.user = Some(value.to_owned()),
            "Environment" => unit.environment.extend(
                value
                    .split_whitespace()
                    .map(|w| w.trim_matches('"').to_owned()),
            ),
            "EnvironmentFiles" => {
                let path = value.rsplit_once(" (").map_or(value, |(p, _)| p);
                if !path.is_empty() {
                    unit.environment_files.push(path.into());
                }
            }
            "ExecStart" => {
                unit.path = value
                    .split(" ; ")
                    .find_map(|part| part.trim_start_matches("{ ").strip_prefix("path="))
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from);
                if let Some(argv) = value
                    .split(" ; ")
                    .find_map(|part| part.trim_start_matches("{ ").strip_prefix("argv[]="))
                {
                    unit.argv = argv.split_whitespace().map(str::to_owned).collect();
                }
            }
            _ => {}
        }
    }
    unit
}

/// Why etcd would ignore the env file, if it would: a config file named by `ETCD_CONFIG_FILE` or
/// `--config-file` in the unit, its environment files, or the distribution's defaults file.
/// `env_file`: the agent's own, which never names one.
pub fn config_file_conflict(unit: &EtcdUnit, unit_name: &str, env_file: &Path) -> Option<String> {
    let fix = format!(
        "etcd reads only its config file when given one and would ignore every ETCD_* setting the agent writes; remove it (systemctl edit {unit_name}, or the file named) or stop using etcd-bootstrap on this machine"
    );
    if let Some(arg) = unit.argv.iter().find(|a| is_config_flag(a)) {
        return Some(format!("{unit_name}'s ExecStart passes {arg}: {fix}"));
    }
    if let Some(v) = unit.environment.iter().find(|v| names_config_file(v)) {
        return Some(format!("{unit_name}'s Environment sets {v}: {fix}"));
    }
    let mut files: Vec<PathBuf> = unit.environment_files.clone();
    files.extend(DEFAULTS_FILES.iter().map(PathBuf::from));
    files.dedup();
    for file in files.iter().filter(|f| f.as_path() != env_file) {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            let key = key.trim().trim_start_matches("export ").trim();
            if (key == "ETCD_CONFIG_FILE" && !value.is_empty())
                || value.split_whitespace().any(is_config_flag)
            {
                return Some(format!(
                    "{}:{} sets {key}={value}: {fix}",
                    file.display(),
                    n + 1
                ));
            }
        }
    }
    None
}

fn is_config_flag(arg: &str) -> bool {
    let flag = arg.trim_start_matches('-');
    arg.starts_with('-') && (flag == "config-file" || flag.starts_with("config-file="))
}

fn names_config_file(assignment: &str) -> bool {
    matches!(assignment.split_once('='), Some(("ETCD_CONFIG_FILE", v)) if !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `systemctl show etcd.service --property=...` on Debian 12 with etcd-server installed and
    /// the agent's drop-in, plus one `Environment=` an operator added.
    const SHOW: &str = "ExecStart={ path=/usr/bin/etcd ; argv[]=/usr/bin/etcd $DAEMON_ARGS ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }
User=etcd
Environment=ETCD_UNSUPPORTED_ARCH=arm64 \"ETCD_CONFIG_FILE=/etc/etcd/etcd.yml\"
EnvironmentFiles=/etc/default/etcd (ignore_errors=yes)
EnvironmentFiles=/run/etcd-bootstrap/etcd.env (ignore_errors=no)
";

    #[test]
    fn reads_what_systemd_says_of_the_unit() {
        let unit = parse_show(SHOW);
        assert_eq!(unit.user.as_deref(), Some("etcd"));
        assert_eq!(unit.argv, ["/usr/bin/etcd", "$DAEMON_ARGS"]);
        assert_eq!(
            unit.environment,
            [
                "ETCD_UNSUPPORTED_ARCH=arm64",
                "ETCD_CONFIG_FILE=/etc/etcd/etcd.yml"
            ]
        );
        assert_eq!(
            unit.environment_files,
            [
                PathBuf::from("/etc/default/etcd"),
                "/run/etcd-bootstrap/etcd.env".into()
            ]
        );
        assert_eq!(parse_show("User=\nExecStart=\n"), EtcdUnit::default());
    }

    #[test]
    fn a_config_file_anywhere_etcd_would_see_it_is_named() {
        let env_file = Path::new("/run/etcd-bootstrap/etcd.env");
        let unit = parse_show(SHOW);
        let why = config_file_conflict(&unit, "etcd.service", env_file).unwrap();
        assert!(why.starts_with("etcd.service's Environment sets ETCD_CONFIG_FILE=/etc/etcd/etcd.yml: etcd reads only its config file"), "{why}");

        let flag = EtcdUnit {
            argv: vec!["/usr/bin/etcd".into(), "--config-file=/etc/etcd.yml".into()],
            ..Default::default()
        };
        let why = config_file_conflict(&flag, "etcd.service", env_file).unwrap();
        assert!(
            why.contains("ExecStart passes --config-file=/etc/etcd.yml"),
            "{why}"
        );

        let dir = tempfile::tempdir().unwrap();
        let defaults = dir.path().join("etcd");
        std::fs::write(
            &defaults,
            "# ETCD_CONFIG_FILE=/etc/x.yml\nDAEMON_ARGS=\"--config-file /etc/etcd/etcd.yml\"\n",
        )
        .unwrap();
        let from_file = EtcdUnit {
            environment_files: vec![defaults.clone()],
            ..Default::default()
        };
        let why = config_file_conflict(&from_file, "etcd.service", env_file).unwrap();
        assert!(
            why.starts_with(&format!(
                "{}:2 sets DAEMON_ARGS=--config-file /etc/etcd/etcd.yml",
                defaults.display()
            )),
            "{why}"
        );

        std::fs::write(
            &defaults,
            "# ETCD_CONFIG_FILE=/etc/x.yml\nETCD_CONFIG_FILE=\nETCD_NAME=a\n",
        )
        .unwrap();
        assert_eq!(
            config_file_conflict(&from_file, "etcd.service", env_file),
            None
        );
    }
}
