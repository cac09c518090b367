//! The PEM files etcd is given, read the one way both their users need: the vouch endpoint's
//! TLS (src/vouch/tls.rs) and the preflight (src/preflight/tls.rs). Errors name the setting and
//! the file.

use std::path::Path;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The certificates in `path` (a chain: the end entity first), at least one.
pub fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{key} {}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{key} {} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// The private key in `path`.
pub fn private_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        format!(
            "{key} {} holds no PEM private key etcd can use ({e})",
            path.display()
        )
    })
}

/// The CA certificates in `path`, as trust anchors.
pub fn trust_anchors(key: &str, path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in certificates(key, path)? {
        roots
            .add(c)
            .map_err(|e| format!("{key} {}: not a CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}
