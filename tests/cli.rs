//! The command-line contract: exit codes, one-line errors, dry runs and plans that change
//! nothing, and a failed run that leaves the previous env file in place.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::AGENT;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(body: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text = body
            .replace("@DATA@", &dir.path().join("data").display().to_string())
            .replace("@ENV@", &dir.path().join("etcd.env").display().to_string());
        std::fs::write(dir.path().join("config.toml"), text).unwrap();
        Setup { dir }
    }
    fn env_file(&self) -> PathBuf {
        self.dir.path().join("etcd.env")
    }
    fn run(&self, args: &[&str]) -> Output {
        Command::new(AGENT)
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap()
    }
}

const ONE: &str = r#"
[node]
name = "etcd-0"
[cluster]
size = 1
data_dir = "@DATA@"
[discovery]
timeout = "5s"
[discovery.static]
peers = ["etcd-0=127.21.0.1"]
[output]
env_file = "@ENV@"
"#;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn error_lines(o: &Output) -> Vec<String> {
    stderr(o)
        .lines()
        .filter(|l| l.contains("ERROR"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_config_error_exits_78_with_one_line_naming_the_file_and_keeps_the_env_file() {
    let s = Setup::new(&format!("{ONE}\n[output2]\nx = 1\n"));
    std::fs::write(s.env_file(), "PREVIOUS=1\n").unwrap();
    let out = s.run(&[]);
    assert_eq!(out.status.code(), Some(78));
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{}", stderr(&out));
    assert!(
        errors[0].contains("config.toml") && errors[0].contains("output2"),
        "{errors:?}"
    );
    assert_eq!(
        std::fs::read_to_string(s.env_file()).unwrap(),
        "PREVIOUS=1\n"
    );
}

#[test]
fn a_hostile_static_peer_name_is_a_config_error() {
    for name in ["etcd-0\\nETCD_NAME=evil", "$(reboot)", "a,b", "a b", "`id`"] {
        let s = Setup::new(&ONE.replace("etcd-0=127.21.0.1", &format!("{name}=127.21.0.1")));
        let out = s.run(&[]);
        assert_eq!(out.status.code(), Some(78), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains("member name"), "{}", stderr(&out));
        assert!(!s.env_file().exists());
    }
}

#[test]
fn dry_run_prints_the_file_and_writes_nothing() {
    let s = Setup::new(ONE);
    let out = s.run(&["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("ETCD_INITIAL_CLUSTER=etcd-0=http://127.21.0.1:2380\n"),
        "{stdout}"
    );
    assert!(stdout.contains("ETCD_INITIAL_CLUSTER_STATE=new\n"));
    assert!(!s.env_file().exists(), "a dry run writes no file");
}

#[test]
fn plan_json_shows_the_row_the_reason_and_the_env_and_writes_nothing() {
    let s = Setup::new(ONE);
    let out = s.run(&["plan", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"]["row"], "bootstrap");
    assert_eq!(v["outcome"]["decision"], "start");
    assert_eq!(v["outcome"]["state"], "new");
    assert_eq!(v["env"]["ETCD_NAME"], "etcd-0");
    assert_eq!(v["this_node"], "etcd-0");
    assert!(!s.env_file().exists());
}

#[test]
fn flags_override_the_file() {
    let s = Setup::new(ONE);
    let out = s.run(&["plan", "--size", "3"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("waiting for 3 members, found 1"), "{text}");
}

#[test]
fn usage_errors_exit_64_and_help_and_version_exit_0() {
    let out = Command::new(AGENT).arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    for flag in ["--help", "--version"] {
        let out = Command::new(AGENT).arg(flag).output().unwrap();
        assert!(out.status.success(), "{flag}");
    }
    let out = Command::new(AGENT)
        .args(["--set", "no-equals-sign"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn an_env_file_that_cannot_be_written_exits_73_and_keeps_the_old_one() {
    let s = Setup::new(ONE);
    // The env file's directory is a regular file: creating the directory fails.
    let blocker = s.dir.path().join("blocker");
    std::fs::write(&blocker, "").unwrap();
    let target = blocker.join("etcd.env");
    let out = s.run(&["--env-file", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(73), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot write"), "{}", stderr(&out));
}

#[test]
fn data_present_never_bootstraps_even_alone() {
    let s = Setup::new(&ONE.replace("size = 1", "size = 3"));
    std::fs::create_dir_all(s.dir.path().join("data/member")).unwrap();
    let out = s.run(&["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("ETCD_INITIAL_CLUSTER_STATE=existing\n"),
        "{stdout}"
    );
}
