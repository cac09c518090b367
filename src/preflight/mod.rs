//! Checks made before etcd is given its env file, of what etcd would otherwise find only after
//! it starts, in a log line on one machine, as a cluster that never forms: certificates that do
//! not fit (docs/preflight.md), and a config file that would make etcd ignore the env file.
//!
//! The file checks run before discovery (a wrong file fails at once, not after the peers were
//! waited for); the names check runs once this node's address is known, before the env file is
//! written.

mod tls;
pub mod unit;
pub mod user;
pub mod x509;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Settings;
use crate::error::{Failure, Kind};
use crate::member::Candidate;
use crate::notify;

pub use unit::EtcdUnit;
use user::User;

/// How often a certificate that is not valid yet is looked at again while the clock may be
/// catching up.
const CLOCK_LOOK: Duration = Duration::from_secs(1);

/// What the file checks found: one line each, for `plan` and the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Checked {
    pub passed: Vec<String>,
    pub warnings: Vec<String>,
    /// The etcd this machine starts (`etcd_binary`).
    #[serde(skip)]
    pub etcd_binary: Option<PathBuf>,
}

/// Where distributions install etcd, when neither `etcd.binary` nor the unit says.
pub const DEFAULT_ETCD: &str = "/usr/bin/etcd";

/// Where etcd is: `etcd.binary` when set; else the program the unit's `ExecStart=` runs, when
/// that is named `etcd` (a wrapper script might start etcd when asked for `--version`); else
/// /usr/bin/etcd. The warning says why the unit's program was passed over.
pub fn etcd_binary(
    configured: Option<&Path>,
    unit: &EtcdUnit,
    unit_name: &str,
) -> (PathBuf, Option<String>) {
    if let Some(path) = configured {
        return (path.to_owned(), None);
    }
    match &unit.path {
        Some(path) if path.file_name().is_some_and(|n| n == "etcd") => (path.clone(), None),
        Some(path) => (
            DEFAULT_ETCD.into(),
            Some(format!(
                "{unit_name} runs {}, not a program named etcd: assuming etcd is {DEFAULT_ETCD}; set etcd.binary to the etcd it starts",
                path.display()
            )),
        ),
        None => (DEFAULT_ETCD.into(), None),
    }
}

/// `etcd_binary` for a command that runs without the preflight (`restore`): the same rule, from
/// the settings and the unit as systemd reports it, so a restore checks and uses the etcd that
/// etcd.service will start. The warning says why the unit's program was passed over.
pub async fn etcd_binary_of(settings: &Settings) -> (PathBuf, Option<String>) {
    let unit_name = &settings.etcd.unit;
    if settings.etcd.binary.is_some() {
        return etcd_binary(
            settings.etcd.binary.as_deref(),
            &EtcdUnit::default(),
            unit_name,
        );
    }
    match EtcdUnit::read(unit_name).await {
        Ok(unit) => etcd_binary(None, &unit, unit_name),
        Err(e) => (
            DEFAULT_ETCD.into(),
            Some(format!(
                "cannot ask systemd how {unit_name} starts etcd ({e}): assuming etcd is {DEFAULT_ETCD}; set etcd.binary to the etcd it starts"
            )),
        ),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The unit and user checks, then every certificate the env file will name. A certificate that
/// is not valid yet is waited for up to `tls.clock_sync_wait`: a machine often boots before its
/// clock is synchronised.
pub async fn before_discovery(settings: &Settings) -> Result<Checked, Failure> {
    let mut checked = Checked::default();
    let unit_name = &settings.etcd.unit;
    let unit = EtcdUnit::read(unit_name).await.unwrap_or_else(|e| {
        checked.warnings.push(format!(
            "cannot ask systemd how {unit_name} starts etcd ({e}); its config file and user are not checked"
        ));
        EtcdUnit::default()
    });
    if let Some(why) = unit::config_file_conflict(&unit, unit_name, &settings.env_file) {
        return Err(Failure::new(Kind::Config, why));
    }
    let (binary, why) = etcd_binary(settings.etcd.binary.as_deref(), &unit, unit_name);
    checked.warnings.extend(why);
    checked.etcd_binary = Some(binary);
    checked.passed.push(format!(
        "etcd reads no config file that would hide the env file ({unit_name})"
    ));

    let roles = tls::roles(&settings.tls);
    if roles.is_empty() {
        return Ok(checked);
    }
    let user = match (&settings.etcd.user, &unit.user) {
        (Some(name), _) => Some(
            User::lookup(name)
                .map_err(|e| Failure::new(Kind::Config, format!("etcd.user: {e}")))?,
        ),
        (None, Some(name)) => Some(User::lookup(name).map_err(|e| {
            Failure::new(
                Kind::Config,
                format!("{unit_name} runs etcd as User={name}, but {e}"),
            )
        })?),
        (None, None) => None,
    };
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let waited_from = std::time::Instant::now();
    for role in &roles {
        let loaded = loop {
            match role.check_files(user.as_ref(), now(), &provider) {
                Ok(loaded) => break loaded,
                Err(tls::Problem::NotYetValid(why))
                    if waited_from.elapsed() + CLOCK_LOOK <= settings.tls.clock_sync_wait =>
                {
                    let line = format!("waiting for the clock: {why}");
                    tracing::warn!("{line}");
                    notify::waiting(&line, CLOCK_LOOK + Duration::from_secs(30));
                    tokio::time::sleep(CLOCK_LOOK).await;
                }
                Err(tls::Problem::NotYetValid(why) | tls::Problem::Fatal(why)) => {
                    return Err(Failure::new(Kind::Certificate, why));
                }
            }
        };
        let who = user
            .as_ref()
            .map_or(String::new(), |u| format!(", readable by {}", u.name));
        checked.passed.push(format!(
            "{}cert_file {}: key matches, valid until {}{}{who}",
            role.prefix,
            role.cert.display(),
            x509::date(loaded.validity.not_after),
            if role.ca.is_some() {
                ", signed by the trusted CA"
            } else {
                ""
            },
        ));
        let left = loaded.validity.not_after - now();
        if left < settings.tls.expiry_warning.as_secs() as i64 {
            checked.warnings.push(format!(
                "{}cert_file {} expires on {}, in {} days; renew it before then",
                role.prefix,
                role.cert.display(),
                x509::date(loaded.validity.not_after),
                left / 86_400
            ));
        }
    }
    Ok(checked)
}

/// Each certificate names this node's host, as its URLs will advertise it.
pub fn names(settings: &Settings, me: &Candidate) -> Result<Vec<String>, Failure> {
    let spec = &settings.cluster;
    let mut passed = Vec::new();
    for role in tls::roles(&settings.tls) {
        let url = match role.url_kind {
            "peer" => spec.peer_url(&me.host),
            _ => spec.client_url(&me.host),
        };
        role.check_name(&me.host, &url)
            .map_err(|why| Failure::new(Kind::Certificate, why))?;
        passed.push(format!(
            "{}cert_file {} names {}",
            role.prefix,
            role.cert.display(),
            me.host
        ));
    }
    Ok(passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_is_the_setting_else_the_units_program_when_it_is_etcd() {
        let unit = |path: Option<&str>| EtcdUnit {
            path: path.map(PathBuf::from),
            ..EtcdUnit::default()
        };
        let set = Path::new("/opt/etcd-v3.5.26/etcd");
        assert_eq!(
            etcd_binary(Some(set), &unit(Some("/usr/bin/etcd")), "etcd.service"),
            (set.to_owned(), None)
        );
        assert_eq!(
            etcd_binary(None, &unit(Some("/usr/local/bin/etcd")), "etcd.service"),
            ("/usr/local/bin/etcd".into(), None)
        );
        assert_eq!(
            etcd_binary(None, &unit(None), "etcd.service"),
            ("/usr/bin/etcd".into(), None)
        );
        let (path, why) = etcd_binary(None, &unit(Some("/bin/sh")), "etcd.service");
        assert_eq!(path, PathBuf::from("/usr/bin/etcd"));
        assert_eq!(
            why.unwrap(),
            "etcd.service runs /bin/sh, not a program named etcd: assuming etcd is /usr/bin/etcd; set etcd.binary to the etcd it starts"
        );
    }
}
