//! The TLS preflight (docs/preflight.md): each way a certificate set cannot work fails the run
//! with exit 80 and one line that names the file, what is wrong and what it must contain, and
//! writes nothing: the previous env file stays as it was. Certificates are made here with rcgen.
//! (A certificate set that works is checked on real etcd in tests/tls.rs.)

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};

const PREVIOUS_ENV: &str = "# written by an earlier run\nETCD_NAME=before\n";

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A member certificate for `sans`, valid from `years.0` to `years.1`, for serving and as a
/// client; its key.
fn member(
    ca: &CertifiedIssuer<'static, KeyPair>,
    sans: &[&str],
    years: (i32, i32),
) -> (String, String) {
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, sans[0]);
    p.not_before = date_time_ymd(years.0, 1, 1);
    p.not_after = date_time_ymd(years.1, 1, 1);
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    /// `ca.pem`, `cert.pem` and `key.pem` in a directory anyone may enter, readable by anyone
    /// but the key (0600, like a real one).
    fn write(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for (name, text, mode) in [
            ("ca.pem", ca_pem, 0o644),
            ("cert.pem", cert_pem, 0o644),
            ("key.pem", key_pem, 0o600),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// One machine (a cluster of one, so the run gets as far as writing the env file), https on
/// both ports with `files`, a previous env file in place.
/// `etcd_lines`: more `[etcd]` settings.
fn lab_with(block: u8, files: &Files, etcd_lines: &str) -> Lab {
    let lab = Lab::new(etcd34(), block, 1, 1);
    lab.configure_all();
    let (ca, cert, key) = (
        files.path("ca.pem"),
        files.path("cert.pem"),
        files.path("key.pem"),
    );
    let tls = format!(
        "[tls]\ncert_file = \"{c}\"\nkey_file = \"{k}\"\ntrusted_ca_file = \"{a}\"\n\
         peer_cert_file = \"{c}\"\npeer_key_file = \"{k}\"\npeer_trusted_ca_file = \"{a}\"\n\
         peer_client_cert_auth = true\nclock_sync_wait = \"0s\"\n",
        c = cert.display(),
        k = key.display(),
        a = ca.display()
    );
    let path = lab.nodes[0].config();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(
            "[cluster]\n",
            "[cluster]\npeer_scheme = \"https\"\nclient_scheme = \"https\"\n",
        )
        .replace("[etcd]\n", &format!("[etcd]\n{etcd_lines}"))
        + &tls;
    std::fs::write(path, text).unwrap();
    std::fs::write(lab.nodes[0].env_file(), PREVIOUS_ENV).unwrap();
    lab
}

/// Runs the agent, insists on exit 80 and an untouched env file, and returns its one error line.
fn refused(lab: &Lab) -> String {
    let out = lab.agent(0, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(80), "{err}");
    assert_eq!(
        std::fs::read_to_string(lab.nodes[0].env_file()).unwrap(),
        PREVIOUS_ENV,
        "the env file was touched"
    );
    assert!(
        !lab.nodes[0].data_dir().exists(),
        "the data dir was touched"
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    errors[0].to_owned()
}

fn cert_path(files: &Files) -> String {
    files.path("cert.pem").display().to_string()
}

#[test]
fn a_certificate_that_does_not_name_this_node_is_refused() {
    let ca = ca("test CA");
    let (cert, key) = member(&ca, &["127.0.0.1", "etcd.example"], (2020, 2090));
    let files = Files::write(&ca.pem(), &cert, &key);
    let lab = lab_with(70, &files, "");
    let line = refused(&lab);
    let ip = &lab.nodes[0].ip;
    assert!(
        line.contains(&format!(
            "tls.cert_file {} does not name {ip}, which this node advertises in its client URL https://{ip}:2379 (it names: 127.0.0.1, etcd.example); reissue it with {ip} in its subjectAltName",
            cert_path(&files)
        )),
        "{line}"
    );
}

#[test]
fn an_expired_certificate_is_refused() {
    let ca = ca("test CA");
    let (cert, key) = member(&ca, &["127.0.0.1"], (2020, 2021));
    let files = Files::write(&ca.pem(), &cert, &key);
    let line = refused(&lab_with(71, &files, ""));
    assert!(
        line.contains(&format!(
            "tls.cert_file {} expired on 2021-01-01 00:00 UTC; renew it",
            cert_path(&files)
        )),
        "{line}"
    );
}

#[test]
fn a_certificate_not_valid_yet_is_waited_for_then_refused() {
    let ca = ca("test CA");
    let (cert, key) = member(&ca, &["127.0.0.1"], (2090, 2091));
    let files = Files::write(&ca.pem(), &cert, &key);
    let lab = lab_with(72, &files, "");
    // A clock behind by decades is not going to catch up; a short wait shows the wait happens.
    let config = lab.nodes[0].config();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("clock_sync_wait = \"0s\"", "clock_sync_wait = \"2s\""),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let line = refused(&lab);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "did not wait for the clock"
    );
    assert!(
        line.contains(&format!("tls.cert_file {} is not valid before 2090-01-01 00:00 UTC, and this machine's clock says", cert_path(&files))),
        "{line}"
    );
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let ca = ca("test CA");
    let (cert, _) = member(&ca, &["127.0.0.1"], (2020, 2090));
    let (_, other_key) = member(&ca, &["127.0.0.1"], (2020, 2090));
    let files = Files::write(&ca.pem(), &cert, &other_key);
    let line = refused(&lab_with(73, &files, ""));
    assert!(
        line.contains(&format!(
            "tls.key_file {} is not the key of tls.cert_file {} (their public keys differ)",
            files.path("key.pem").display(),
            cert_path(&files)
        )),
        "{line}"
    );
}

#[test]
fn a_key_that_etcds_user_cannot_read_is_refused() {
    let ca = ca("test CA");
    let (cert, key) = member(&ca, &["127.0.0.1"], (2020, 2090));
    let files = Files::write(&ca.pem(), &cert, &key);
    // The key is root's, mode 0600 (the tests run as root); etcd runs as `nobody` here.
    let line = refused(&lab_with(74, &files, "user = \"nobody\"\n"));
    assert!(
        line.contains(&format!(
            "tls.key_file {} cannot be read by nobody, the user etcd runs as (Permission denied (os error 13)); make it readable by nobody",
            files.path("key.pem").display()
        )),
        "{line}"
    );
}

#[test]
fn a_certificate_another_ca_signed_is_refused() {
    let (trusted, other) = (ca("trusted CA"), ca("another CA"));
    let (cert, key) = member(&other, &["127.0.0.1"], (2020, 2090));
    let files = Files::write(&trusted.pem(), &cert, &key);
    let line = refused(&lab_with(75, &files, ""));
    assert!(
        line.contains(&format!(
            "tls.cert_file {} is not signed by the CA in tls.trusted_ca_file {}",
            cert_path(&files),
            files.path("ca.pem").display()
        )),
        "{line}"
    );
}

#[test]
fn a_certificate_without_file_is_named() {
    let ca = ca("test CA");
    let (cert, key) = member(&ca, &["127.0.0.1"], (2020, 2090));
    let files = Files::write(&ca.pem(), &cert, &key);
    std::fs::remove_file(files.path("ca.pem")).unwrap();
    let line = refused(&lab_with(76, &files, ""));
    assert!(
        line.contains(&format!(
            "tls.trusted_ca_file {} does not exist",
            files.path("ca.pem").display()
        )),
        "{line}"
    );
}
