//! `[backup]`: where `etcd-bootstrap snapshot` puts the cluster's snapshots, how often and for
//! how long (docs/backup.md). Absent (no `backup.url`): no backups.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::dur;
use crate::member::excerpt;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackup {
    pub url: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: Option<bool>,
    pub access_key_id_file: Option<PathBuf>,
    pub secret_access_key_file: Option<PathBuf>,
    pub interval: Option<String>,
    pub keep_newest: Option<i64>,
    pub keep_daily: Option<i64>,
    pub timeout: Option<String>,
    pub restore_tool: Option<PathBuf>,
    pub restore: Option<bool>,
}

/// Where snapshots are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// `file:///DIR`: a directory, usually a mounted volume.
    File(PathBuf),
    /// `s3://BUCKET/PREFIX`: any S3-compatible store; `prefix` is empty or ends in `/`.
    S3 { bucket: String, prefix: String },
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::File(dir) => write!(f, "file://{}", dir.display()),
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// Which snapshots retention keeps (docs/backup.md, "Retention"): the `newest` ones, and the
/// newest of each of the last `daily` UTC days that have one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keep {
    pub newest: usize,
    pub daily: usize,
}

#[derive(Clone, Debug)]
pub struct BackupSettings {
    pub store: StoreUrl,
    /// An S3-compatible endpoint (`https://fra1.digitaloceanspaces.com`); `None`: AWS S3.
    pub endpoint: Option<String>,
    /// The SigV4 signing region.
    pub region: String,
    /// `https://ENDPOINT/BUCKET/KEY` rather than `https://BUCKET.ENDPOINT/KEY`.
    pub path_style: bool,
    pub access_key_id_file: Option<PathBuf>,
    pub secret_access_key_file: Option<PathBuf>,
    /// A snapshot is taken when the newest one is at least this old.
    pub interval: Duration,
    pub keep: Keep,
    /// How long the store may take to connect or stay silent within a call.
    pub timeout: Duration,
    /// etcd's own restore tool (`etcdutl`, or `etcdctl` for 3.4); `None`: the one beside the
    /// etcd binary.
    pub restore_tool: Option<PathBuf>,
    /// A fleet that would bootstrap empty restores the store's newest snapshot of its token
    /// (the `restore` row); off: it waits, naming the snapshot.
    pub restore: bool,
}

impl BackupSettings {
    pub fn from_raw(raw: RawBackup) -> Result<Option<Self>, String> {
        // (key, set?, only meaningful for an s3:// store)
        let given = [
            ("endpoint", raw.endpoint.is_some(), true),
            ("region", raw.region.is_some(), true),
            ("path_style", raw.path_style.is_some(), true),
            ("access_key_id_file", raw.access_key_id_file.is_some(), true),
            (
                "secret_access_key_file",
                raw.secret_access_key_file.is_some(),
                true,
            ),
            ("interval", raw.interval.is_some(), false),
            ("keep_newest", raw.keep_newest.is_some(), false),
            ("keep_daily", raw.keep_daily.is_some(), false),
            ("timeout", raw.timeout.is_some(), false),
            ("restore_tool", raw.restore_tool.is_some(), false),
            ("restore", raw.restore.is_some(), false),
        ];
        let Some(url) = raw.url else {
            return match given.iter().find(|(_, set, _)| *set) {
                Some((key, ..)) => Err(format!(
                    "backup.{key} is set but backup.url is not: set backup.url (s3://BUCKET/PREFIX or file:///DIR)"
                )),
                None => Ok(None),
            };
        };
        let store = parse_url(&url)?;
        if let (StoreUrl::File(_), Some((key, ..))) =
            (&store, given.iter().find(|(_, set, s3)| *set && *s3))
        {
            return Err(format!(
                "backup.{key} is for an s3:// store, but backup.url is {url}"
            ));
        }
        #[cfg(not(feature = "aws"))]
        if let StoreUrl::S3 { .. } = store {
            return Err(format!(
                "backup.url {url}: this etcd-bootstrap was built without the aws feature, which s3:// stores need (SigV4)"
            ));
        }
        let endpoint = raw.endpoint.map(|e| check_endpoint(&e)).transpose()?;
        let region = match (raw.region, &endpoint, &store) {
            (Some(r), _, _) => check_region(&r)?,
            // Other stores ignore the region or take any: MinIO's default.
            (None, Some(_), _) | (None, None, StoreUrl::File(_)) => "us-east-1".into(),
            (None, None, StoreUrl::S3 { .. }) => {
                return Err(
                    "backup.region is needed for AWS S3 (the bucket's region, e.g. eu-central-1)"
                        .into(),
                );
            }
        };
        if raw.access_key_id_file.is_some() != raw.secret_access_key_file.is_some() {
            return Err(
                "backup.access_key_id_file and backup.secret_access_key_file go together: set both or neither"
                    .into(),
            );
        }
        for (key, path) in [
            ("backup.access_key_id_file", &raw.access_key_id_file),
            ("backup.secret_access_key_file", &raw.secret_access_key_file),
        ] {
            if let Some(p) = path
                && !p.is_absolute()
            {
                return Err(format!("{key} {} must be an absolute path", p.display()));
            }
        }
        let interval = dur("backup.interval", raw.interval.as_deref(), "1h")?;
        if interval < Duration::from_secs(60) {
            return Err(format!(
                "backup.interval is {interval:?}; it must be at least 1m"
            ));
        }
        let count = |key: &str, value: Option<i64>, default: usize, min: i64| match value {
            None => Ok(default),
            Some(n) if (min..=10_000).contains(&n) => Ok(n as usize),
            Some(n) => Err(format!(
                "backup.{key} is {n}; it must be between {min} and 10000"
            )),
        };
        if let Some(tool) = &raw.restore_tool
            && (!tool.is_absolute()
                || !matches!(
                    tool.file_name().and_then(|n| n.to_str()),
                    Some("etcdutl" | "etcdctl")
                ))
        {
            return Err(format!(
                "backup.restore_tool {} must be the absolute path of etcdutl (etcd 3.5 and later) or etcdctl (3.4)",
                tool.display()
            ));
        }
        let timeout = dur("backup.timeout", raw.timeout.as_deref(), "30s")?;
        if timeout.is_zero() {
            return Err("backup.timeout must be more than 0s".into());
        }
        let keep = Keep {
            newest: count("keep_newest", raw.keep_newest, 24, 1)?,
            daily: count("keep_daily", raw.keep_daily, 7, 0)?,
        };
        Ok(Some(BackupSettings {
            path_style: raw.path_style.unwrap_or(endpoint.is_some()),
            store,
            endpoint,
            region,
            access_key_id_file: raw.access_key_id_file,
            secret_access_key_file: raw.secret_access_key_file,
            interval,
            keep,
            timeout,
            restore_tool: raw.restore_tool,
            restore: raw.restore.unwrap_or(true),
        }))
    }
}

/// `s3://BUCKET/PREFIX` (S3's bucket naming rules) or `file:///ABSOLUTE/DIR`.
pub fn parse_url(url: &str) -> Result<StoreUrl, String> {
    if let Some(path) = url.strip_prefix("file://") {
        let dir = PathBuf::from(path);
        if !dir.is_absolute() || path.split('/').any(|s| s == "..") {
            return Err(format!(
                "backup.url {}: a file:// URL names an absolute directory: file:///var/backups/etcd",
                excerpt(url)
            ));
        }
        return Ok(StoreUrl::File(dir));
    }
    let Some(rest) = url.strip_prefix("s3://") else {
        return Err(format!(
            "backup.url {} must be s3://BUCKET/PREFIX or file:///DIR",
            excerpt(url)
        ));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    check_bucket(bucket)?;
    let prefix = prefix.trim_end_matches('/');
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    if !prefix.is_empty() && !prefix.split('/').all(segment_ok) {
        return Err(format!(
            "backup.url {}: the prefix must be path segments of letters, digits, '.', '_' and '-'",
            excerpt(url)
        ));
    }
    Ok(StoreUrl::S3 {
        bucket: bucket.to_owned(),
        prefix: if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        },
    })
}

/// S3's rules for bucket names (general purpose buckets): 3 to 63 lowercase letters, digits,
/// '.' and '-', starting and ending with a letter or digit, no "..", not an IP address.
fn check_bucket(bucket: &str) -> Result<(), String> {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge(bucket.chars().next())
        && edge(bucket.chars().last())
        && !bucket.contains("..")
        && bucket.parse::<std::net::Ipv4Addr>().is_err();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "backup.url: {} is not an S3 bucket name (3 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit)",
            excerpt(bucket)
        ))
    }
}

fn check_endpoint(endpoint: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "backup.endpoint {} must be an http(s) URL without a path, e.g. https://fra1.digitaloceanspaces.com",
            excerpt(endpoint)
        )
    };
    let url = reqwest::Url::parse(endpoint).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || url.path() != "/"
        || url.query().is_some()
        || !url.username().is_empty()
    {
        return Err(bad());
    }
    Ok(endpoint.trim_end_matches('/').to_owned())
}

fn check_region(region: &str) -> Result<String, String> {
    let ok = !region.is_empty()
        && region.len() <= 32
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(region.to_owned())
    } else {
        Err(format!(
            "backup.region {} is not a region name (e.g. eu-central-1, fra1)",
            excerpt(region)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: &str) -> RawBackup {
        RawBackup {
            url: Some(url.into()),
            ..RawBackup::default()
        }
    }

    #[test]
    fn urls_name_a_bucket_and_prefix_or_a_directory() {
        assert_eq!(
            parse_url("s3://etcd-backups/prod/main/").unwrap(),
            StoreUrl::S3 {
                bucket: "etcd-backups".into(),
                prefix: "prod/main/".into()
            }
        );
        assert_eq!(
            parse_url("s3://etcd-backups").unwrap(),
            StoreUrl::S3 {
                bucket: "etcd-backups".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            parse_url("file:///var/backups/etcd").unwrap(),
            StoreUrl::File("/var/backups/etcd".into())
        );
        for bad in [
            "s3://Etcd_Backups/x",
            "s3://ab",
            "s3://-etcd/x",
            "s3://etcd..b/x",
            "s3://192.168.1.10/x",
            "s3://etcd/../x",
            "s3://etcd/a b",
            "file://relative/dir",
            "file:///var/../etc",
            "gs://bucket/x",
            "https://bucket.s3.amazonaws.com",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} was accepted");
        }
        assert!(
            parse_url("s3://Etcd_Backups/x")
                .unwrap_err()
                .contains("\"Etcd_Backups\" is not an S3 bucket name")
        );
    }

    #[test]
    fn defaults_and_checks() {
        let b = BackupSettings::from_raw(RawBackup {
            endpoint: Some("https://fra1.digitaloceanspaces.com/".into()),
            ..raw("s3://etcd/prod")
        })
        .unwrap()
        .unwrap();
        assert!(b.path_style);
        assert_eq!(b.region, "us-east-1");
        assert_eq!(
            b.endpoint.as_deref(),
            Some("https://fra1.digitaloceanspaces.com")
        );
        assert_eq!(b.interval, Duration::from_secs(3600));
        assert_eq!(
            b.keep,
            Keep {
                newest: 24,
                daily: 7
            }
        );

        let aws = BackupSettings::from_raw(RawBackup {
            region: Some("eu-central-1".into()),
            ..raw("s3://etcd/prod")
        })
        .unwrap()
        .unwrap();
        assert!(!aws.path_style);
        assert!(
            BackupSettings::from_raw(raw("s3://etcd/prod"))
                .unwrap_err()
                .contains("backup.region is needed")
        );
        assert!(
            BackupSettings::from_raw(RawBackup::default())
                .unwrap()
                .is_none()
        );
        let errors = [
            RawBackup {
                interval: Some("2h".into()),
                ..RawBackup::default()
            },
            RawBackup {
                region: Some("eu-central-1".into()),
                ..raw("file:///var/backups")
            },
            RawBackup {
                endpoint: Some("https://minio.internal:9000/bucket".into()),
                ..raw("s3://etcd")
            },
            RawBackup {
                keep_newest: Some(0),
                ..raw("file:///var/backups")
            },
            RawBackup {
                interval: Some("10s".into()),
                ..raw("file:///var/backups")
            },
            RawBackup {
                endpoint: Some("http://127.0.0.1:9000".into()),
                access_key_id_file: Some("/etc/key".into()),
                ..raw("s3://etcd")
            },
        ];
        for e in errors {
            let what = format!("{e:?}");
            assert!(BackupSettings::from_raw(e).is_err(), "{what} was accepted");
        }
    }
}
