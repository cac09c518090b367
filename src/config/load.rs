//! Layering, later wins: built-in defaults → the main file (`/etc/etcd-bootstrap/config.toml` or
//! `--config`) → `*.toml` fragments in the sibling `config.d/`, in lexical order → environment
//! variables `ETCD_BOOTSTRAP_<SECTION>__<KEY>` → command-line flags.
//!
//! Every layer is checked on its own before it is merged, so an unknown key or a wrong type is
//! reported with the file (and line) or the variable that holds it.

use std::path::{Path, PathBuf};

use config::{Config, File, FileFormat};

use super::{DEFAULT_CONFIG, ENV_PREFIX, Raw, Settings};

/// Keys whose environment values are comma-separated lists.
const LIST_KEYS: &[&str] = &[
    "discovery.static.peers",
    "discovery.dns.nameservers",
    "discovery.aws.tags",
    "discovery.exec.command",
    "discovery.fallback",
];

/// Everything the configuration is made from, gathered by the caller so tests can pass their own.
#[derive(Debug, Default)]
pub struct Layers {
    /// `--config PATH`: must exist. `None`: the default path, which may be absent.
    pub config_file: Option<PathBuf>,
    /// The process environment (all of it; only `ETCD_BOOTSTRAP_*` is read).
    pub env: Vec<(String, String)>,
    /// Values from command-line flags, as dotted keys.
    pub overrides: Vec<(String, OverrideValue)>,
}

#[derive(Clone, Debug)]
pub enum OverrideValue {
    Str(String),
    List(Vec<String>),
}

/// Loads and validates; also returns the files that were read, for the log.
pub fn load(layers: &Layers) -> Result<(Settings, Vec<PathBuf>), String> {
    let mut builder = Config::builder();
    let mut read = Vec::new();

    let main = layers
        .config_file
        .clone()
        .unwrap_or_else(|| DEFAULT_CONFIG.into());
    match std::fs::read_to_string(&main) {
        Ok(text) => {
            builder = builder.add_source(checked_file(&main, &text)?);
            read.push(main.clone());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && layers.config_file.is_none() => {}
        Err(e) => return Err(format!("cannot read config file {}: {e}", main.display())),
    }

    for fragment in fragments(&main)? {
        let text = std::fs::read_to_string(&fragment)
            .map_err(|e| format!("cannot read config fragment {}: {e}", fragment.display()))?;
        builder = builder.add_source(checked_file(&fragment, &text)?);
        read.push(fragment);
    }

    let prefix = format!("{ENV_PREFIX}_");
    let mut env: Vec<_> = layers
        .env
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .collect();
    env.sort();
    for (var, value) in env {
        let key = var[prefix.len()..]
            .split("__")
            .collect::<Vec<_>>()
            .join(".")
            .to_ascii_lowercase();
        let value = if LIST_KEYS.contains(&key.as_str()) {
            OverrideValue::List(value.split(',').map(|s| s.trim().to_owned()).collect())
        } else {
            OverrideValue::Str(value.clone())
        };
        builder = with_override(builder, &key, &value)
            .and_then(|b| {
                check_single(&key, &value)?;
                Ok(b)
            })
            .map_err(|e| format!("environment variable {var}: {e}"))?;
    }

    for (key, value) in &layers.overrides {
        check_single(key, value).map_err(|e| format!("command-line flag for {key}: {e}"))?;
        builder = with_override(builder, key, value)?;
    }

    let raw: Raw = builder
        .build()
        .and_then(Config::try_deserialize)
        .map_err(|e| format!("configuration: {e}"))?;
    let settings = Settings::from_raw(raw).map_err(|e| format!("configuration: {e}"))?;
    Ok((settings, read))
}

/// `config.d/*.toml` beside the main file, in lexical order of file name.
fn fragments(main: &Path) -> Result<Vec<PathBuf>, String> {
    let dir = main.parent().unwrap_or(Path::new("/")).join("config.d");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// Parses one file on its own so errors name it, then hands its text to `config`.
fn checked_file(
    path: &Path,
    text: &str,
) -> Result<File<config::FileSourceString, FileFormat>, String> {
    if let Err(e) = toml::from_str::<Raw>(text) {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .map(|l| format!(":{l}"))
            .unwrap_or_default();
        return Err(format!("{}{line}: {}", path.display(), e.message().trim()));
    }
    Ok(File::from_str(text, FileFormat::Toml))
}

fn with_override(
    builder: config::ConfigBuilder<config::builder::DefaultState>,
    key: &str,
    value: &OverrideValue,
) -> Result<config::ConfigBuilder<config::builder::DefaultState>, String> {
    match value {
        OverrideValue::Str(s) => builder.set_override(key, s.as_str()),
        OverrideValue::List(l) => builder.set_override(key, l.clone()),
    }
    .map_err(|e| e.to_string())
}

/// Checks one key/value against the schema alone, so the error names where it came from.
fn check_single(key: &str, value: &OverrideValue) -> Result<(), String> {
    with_override(Config::builder(), key, value)?
        .build()
        .and_then(Config::try_deserialize::<Raw>)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Provider;

    const BASE: &str = r#"
[node]
name = "etcd-0"
[cluster]
size = 3
token = "prod"
[discovery.static]
peers = ["etcd-0=10.0.0.10", "etcd-1=10.0.0.11", "etcd-2=10.0.0.12"]
"#;

    fn dir_with(main: &str, fragments: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, main).unwrap();
        if !fragments.is_empty() {
            std::fs::create_dir(dir.path().join("config.d")).unwrap();
        }
        for (name, text) in fragments {
            std::fs::write(dir.path().join("config.d").join(name), text).unwrap();
        }
        (dir, path)
    }

    fn layers(path: &Path) -> Layers {
        Layers {
            config_file: Some(path.to_owned()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_apply_where_nothing_is_said() {
        let (_d, path) = dir_with(BASE, &[]);
        let (s, read) = load(&layers(&path)).unwrap();
        assert_eq!(read, vec![path]);
        assert_eq!(s.cluster.peer_port, 2380);
        assert_eq!(s.cluster.client_port, 2379);
        assert_eq!(s.cluster.data_dir, PathBuf::from("/var/lib/etcd/default"));
        assert_eq!(s.discovery.timeout, None, "unbounded unless set");
        assert_eq!(s.env_file, PathBuf::from("/run/etcd-bootstrap/etcd.env"));
        assert_eq!(
            s.outcome_file,
            PathBuf::from("/run/etcd-bootstrap/outcome.json")
        );
        assert_eq!(s.metrics_file, None);
        assert!(s.cluster.remove_dead_members);
        assert!(s.cluster.join_as_learner);
    }

    #[test]
    fn fragments_apply_in_lexical_order_over_the_file() {
        let (_d, path) = dir_with(
            BASE,
            &[
                ("20-size.toml", "[cluster]\nsize = 5\n"),
                ("10-size.toml", "[cluster]\nsize = 1\ntoken = \"frag\"\n"),
                ("30-ignored.conf", "this is not toml and not read"),
            ],
        );
        let (s, read) = load(&layers(&path)).unwrap();
        assert_eq!(s.cluster.size, 5, "20-size.toml comes after 10-size.toml");
        assert_eq!(
            s.cluster.token, "frag",
            "keys a later fragment does not set survive"
        );
        assert_eq!(read.len(), 3);
    }

    #[test]
    fn environment_beats_files_and_flags_beat_environment() {
        let (_d, path) = dir_with(BASE, &[("10.toml", "[cluster]\nsize = 5\n")]);
        let mut l = layers(&path);
        l.env = vec![
            ("ETCD_BOOTSTRAP_CLUSTER__SIZE".into(), "7".into()),
            ("ETCD_BOOTSTRAP_CLUSTER__TOKEN".into(), "0123".into()),
            (
                "ETCD_BOOTSTRAP_DISCOVERY__STATIC__PEERS".into(),
                "a=127.0.0.1, b=127.0.0.2".into(),
            ),
            ("UNRELATED".into(), "x".into()),
        ];
        let (s, _) = load(&l).unwrap();
        assert_eq!(s.cluster.size, 7);
        assert_eq!(s.cluster.token, "0123", "string values stay strings");
        let Provider::Static { peers } = &s.discovery.provider else {
            panic!("static provider expected")
        };
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[1].0.as_str(), "b");

        l.overrides = vec![("cluster.size".into(), OverrideValue::Str("1".into()))];
        let (s, _) = load(&l).unwrap();
        assert_eq!(s.cluster.size, 1);
    }

    #[test]
    fn unknown_key_in_a_file_names_the_key_and_the_file() {
        let (_d, path) = dir_with(BASE, &[("50-typo.toml", "[cluster]\nsise = 5\n")]);
        let err = load(&layers(&path)).unwrap_err();
        assert!(err.contains("50-typo.toml:2"), "{err}");
        assert!(err.contains("sise"), "{err}");
        assert!(!err.contains('\n'), "{err:?}");
    }

    #[test]
    fn unknown_section_in_the_main_file_is_refused() {
        let (_d, path) = dir_with(&format!("{BASE}\n[clsuter]\nsize = 3\n"), &[]);
        let err = load(&layers(&path)).unwrap_err();
        assert!(
            err.contains("config.toml") && err.contains("clsuter"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_in_the_environment_names_the_variable() {
        let (_d, path) = dir_with(BASE, &[]);
        let mut l = layers(&path);
        l.env = vec![("ETCD_BOOTSTRAP_CLUSTER__SISE".into(), "5".into())];
        let err = load(&l).unwrap_err();
        assert!(
            err.contains("ETCD_BOOTSTRAP_CLUSTER__SISE") && err.contains("sise"),
            "{err}"
        );
    }

    #[test]
    fn wrong_types_and_values_are_clear() {
        let (_d, path) = dir_with(BASE, &[("1.toml", "[cluster]\nsize = \"three\"\n")]);
        let err = load(&layers(&path)).unwrap_err();
        assert!(err.contains("1.toml"), "{err}");

        let (_d, path) = dir_with(BASE, &[("1.toml", "[cluster]\nsize = 0\n")]);
        assert!(
            load(&layers(&path))
                .unwrap_err()
                .contains("cluster.size is 0")
        );
        let (_d, path) = dir_with(BASE, &[("1.toml", "[cluster]\nmax_learners = 0\n")]);
        assert!(
            load(&layers(&path))
                .unwrap_err()
                .contains("cluster.max_learners is 0; it must be between 1 and 9")
        );

        let (_d, path) = dir_with(
            BASE,
            &[("1.toml", "[discovery]\ntimeout = \"10 minutes\"\n")],
        );
        assert!(
            load(&layers(&path))
                .unwrap_err()
                .contains("discovery.timeout")
        );

        let (_d, path) = dir_with(
            BASE,
            &[("1.toml", "[discovery.static]\npeers = [\"a=b=c\"]\n")],
        );
        assert!(load(&layers(&path)).unwrap_err().contains("static.peers"));
    }

    #[test]
    fn an_explicit_config_file_must_exist_but_the_default_may_not() {
        let err = load(&layers(Path::new("/nonexistent/etcd-bootstrap.toml"))).unwrap_err();
        assert!(err.contains("/nonexistent/etcd-bootstrap.toml"), "{err}");
    }

    #[test]
    fn https_without_certificates_is_a_config_error() {
        let (_d, path) = dir_with(BASE, &[("1.toml", "[cluster]\npeer_scheme = \"https\"\n")]);
        assert!(
            load(&layers(&path))
                .unwrap_err()
                .contains("tls.peer_cert_file")
        );
    }
}
