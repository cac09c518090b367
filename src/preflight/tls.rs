//! The certificates etcd will be given, checked the way etcd and its peers will use them, before
//! etcd is started with them: readable by etcd's user, the key that goes with the certificate,
//! valid now, signed by the CA the peers trust, for the names this node advertises.

use std::path::Path;
use std::sync::Arc;

use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{CertificateError, Error as TlsError};

use super::user::User;
use super::x509::{self, Validity};
use crate::config::EtcdTls;
use crate::member::Host;
use crate::pem::{certificates, private_key, trust_anchors};

/// One certificate, key and CA as etcd is told to use them: its client-facing server (`tls.cert_file`)
/// or its peer port (`tls.peer_cert_file`).
pub struct Role<'a> {
    /// `tls.` or `tls.peer_`: the configuration keys' prefix, which every message names.
    pub prefix: &'static str,
    /// "client" or "peer": which URL the certificate must name.
    pub url_kind: &'static str,
    pub cert: &'a Path,
    pub key: &'a Path,
    pub ca: Option<&'a Path>,
    /// etcd also presents this certificate as a client: to other members (the peer certificate,
    /// with peer client-cert auth) or to itself (its gateway, with client-cert auth).
    pub also_client: bool,
}

/// The roles this configuration gives etcd certificates for.
pub fn roles(tls: &EtcdTls) -> Vec<Role<'_>> {
    let mut roles = Vec::new();
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        roles.push(Role {
            prefix: "tls.",
            url_kind: "client",
            cert,
            key,
            ca: tls.trusted_ca_file.as_deref(),
            also_client: tls.client_cert_auth,
        });
    }
    if let (Some(cert), Some(key)) = (&tls.peer_cert_file, &tls.peer_key_file) {
        roles.push(Role {
            prefix: "tls.peer_",
            url_kind: "peer",
            cert,
            key,
            ca: tls.peer_trusted_ca_file.as_deref(),
            also_client: tls.peer_client_cert_auth,
        });
    }
    roles
}

/// Why a role's files cannot be used. `NotYetValid` is kept apart: on a machine that booted with
/// its clock behind, time sync may yet make it valid.
pub enum Problem {
    NotYetValid(String),
    Fatal(String),
}

/// A role's files, read and checked against each other.
pub struct Loaded {
    pub validity: Validity,
}

impl Role<'_> {
    fn key_name(&self, file: &str) -> String {
        format!("{}{file}", self.prefix)
    }

    /// Reads the files (as this process and as etcd's user), checks that the key is the
    /// certificate's, that the certificate is valid at `now`, and that the CA verifies it.
    pub fn check_files(
        &self,
        user: Option<&User>,
        now: i64,
        provider: &CryptoProvider,
    ) -> Result<Loaded, Problem> {
        let fatal = Problem::Fatal;
        let cert_key = self.key_name("cert_file");
        let key_key = self.key_name("key_file");
        let ca_key = self.key_name("trusted_ca_file");
        for (key, path) in [
            (&cert_key, Some(self.cert)),
            (&key_key, Some(self.key)),
            (&ca_key, self.ca),
        ] {
            if let Some(path) = path {
                readable(key, path, user).map_err(fatal)?;
            }
        }
        let chain = certificates(&cert_key, self.cert).map_err(fatal)?;
        let key = private_key(&key_key, self.key).map_err(fatal)?;
        match rustls::sign::CertifiedKey::from_der(chain.clone(), key, provider) {
            Ok(_) => {}
            Err(TlsError::InconsistentKeys(_)) => {
                return Err(fatal(format!(
                    "{key_key} {} is not the key of {cert_key} {} (their public keys differ); give the key the certificate was issued for",
                    self.key.display(),
                    self.cert.display()
                )));
            }
            Err(e) => {
                return Err(fatal(format!(
                    "{key_key} {}: etcd cannot use this key: {e}",
                    self.key.display()
                )));
            }
        }
        let validity = x509::validity(&chain[0])
            .map_err(|e| fatal(format!("{cert_key} {}: {e}", self.cert.display())))?;
        if now < validity.not_before {
            return Err(Problem::NotYetValid(format!(
                "{cert_key} {} is not valid before {}, and this machine's clock says {}: wait for time sync or reissue it",
                self.cert.display(),
                x509::date(validity.not_before),
                x509::date(now)
            )));
        }
        if now > validity.not_after {
            return Err(fatal(format!(
                "{cert_key} {} expired on {}; renew it",
                self.cert.display(),
                x509::date(validity.not_after)
            )));
        }
        if let Some(ca) = self.ca {
            self.verify_chain(&chain, &ca_key, ca, now, provider)
                .map_err(fatal)?;
        }
        Ok(Loaded { validity })
    }

    fn verify_chain(
        &self,
        chain: &[CertificateDer<'static>],
        ca_key: &str,
        ca: &Path,
        now: i64,
        provider: &CryptoProvider,
    ) -> Result<(), String> {
        let cert_key = self.key_name("cert_file");
        let roots = Arc::new(trust_anchors(ca_key, ca)?);
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.max(0) as u64));
        let parsed = ParsedCertificate::try_from(&chain[0])
            .map_err(|e| format!("{cert_key} {}: {e}", self.cert.display()))?;
        let why = |e: TlsError, usage: &str| {
            let what = match e {
                TlsError::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
                    "is not signed by the CA in {ca_key} {} (nor by a chain in the file leading to it); peers will refuse it",
                    ca.display()
                ),
                TlsError::InvalidCertificate(
                    CertificateError::InvalidPurpose
                    | CertificateError::InvalidPurposeContext { .. },
                ) => format!(
                    "is not for {usage} use, which etcd needs of it; its extendedKeyUsage must include {}",
                    if usage == "server" {
                        "serverAuth"
                    } else {
                        "clientAuth"
                    }
                ),
                other => format!("does not verify with {ca_key} {}: {other}", ca.display()),
            };
            format!("{cert_key} {} {what}", self.cert.display())
        };
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            &chain[1..],
            now,
            provider.signature_verification_algorithms.all,
        )
        .map_err(|e| why(e, "server"))?;
        if self.also_client {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots, Arc::new(provider.clone()))
                    .build()
                    .map_err(|e| format!("{ca_key} {}: {e}", ca.display()))?;
            verifier
                .verify_client_cert(&chain[0], &chain[1..], now)
                .map_err(|e| why(e, "client"))?;
        }
        Ok(())
    }

    /// The certificate names `host`, which this node advertises in its URL.
    pub fn check_name(&self, host: &Host, url: &str) -> Result<(), String> {
        let cert_key = self.key_name("cert_file");
        let chain = certificates(&cert_key, self.cert)?;
        let name = match host {
            Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
            Host::Dns(dns) => ServerName::try_from(dns.as_str())
                .map_err(|e| format!("{dns} is not a name a certificate can hold: {e}"))?
                .to_owned(),
        };
        let parsed = ParsedCertificate::try_from(&chain[0])
            .map_err(|e| format!("{cert_key} {}: {e}", self.cert.display()))?;
        match verify_server_name(&parsed, &name) {
            Ok(()) => Ok(()),
            Err(e) => {
                let names = match e {
                    TlsError::InvalidCertificate(CertificateError::NotValidForNameContext {
                        presented,
                        ..
                    }) if !presented.is_empty() => presented
                        .iter()
                        .map(|n| plain_name(n))
                        .collect::<Vec<_>>()
                        .join(", "),
                    TlsError::InvalidCertificate(CertificateError::NotValidForNameContext {
                        ..
                    }) => "no subjectAltName".into(),
                    other => other.to_string(),
                };
                Err(format!(
                    "{cert_key} {} does not name {host}, which this node advertises in its {} URL {url} (it names: {names}); reissue it with {host} in its subjectAltName",
                    self.cert.display(),
                    self.url_kind,
                ))
            }
        }
    }
}

/// rustls presents a certificate's names as `DnsName("etcd-0")`, `IpAddress(10.0.0.1)`: the
/// name alone is what an operator compares with the address.
fn plain_name(presented: &str) -> &str {
    presented.split_once('(').map_or(presented, |(_, rest)| {
        rest.trim_end_matches(')').trim_matches('"')
    })
}

/// Readable by this process, and by etcd's user when that is someone else.
fn readable(key: &str, path: &Path, user: Option<&User>) -> Result<(), String> {
    if let Err(e) = std::fs::File::open(path) {
        return Err(match e.kind() {
            std::io::ErrorKind::NotFound => format!("{key} {} does not exist", path.display()),
            _ => format!("{key} {} cannot be read: {e}", path.display()),
        });
    }
    match user {
        Some(user) if !user.is_root() => user.can_read(path).map_err(|why| {
            format!(
                "{key} {} cannot be read by {}, the user etcd runs as ({why}); make it readable by {} (chown or chmod)",
                path.display(),
                user.name,
                user.name
            )
        }),
        _ => Ok(()),
    }
}
