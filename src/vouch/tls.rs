//! The vouch endpoint's TLS, set up as etcd's peer port will be: the peer certificate and key,
//! and with `tls.peer_client_cert_auth` a client certificate signed by the peer CA, so only
//! members can ask members.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::config::EtcdTls;

pub fn acceptor(tls: &EtcdTls) -> Result<tokio_rustls::TlsAcceptor, String> {
    let (Some(cert), Some(key)) = (&tls.peer_cert_file, &tls.peer_key_file) else {
        return Err(
            "not vouching: peer_scheme is https but tls.peer_cert_file/peer_key_file are not set"
                .into(),
        );
    };
    let chain = certificates(cert, "tls.peer_cert_file")?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "not vouching: tls.peer_key_file {}: no usable PEM private key: {e}",
            key.display()
        )
    })?;
    let builder = rustls::ServerConfig::builder();
    let builder = if tls.peer_client_cert_auth {
        let Some(ca) = &tls.peer_trusted_ca_file else {
            return Err(
                "not vouching: tls.peer_client_cert_auth is on but tls.peer_trusted_ca_file is not set"
                    .into(),
            );
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in certificates(ca, "tls.peer_trusted_ca_file")? {
            roots.add(c).map_err(|e| {
                format!(
                    "not vouching: tls.peer_trusted_ca_file {}: {e}",
                    ca.display()
                )
            })?;
        }
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .map_err(|e| format!("not vouching: the peer CA cannot verify clients: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        format!("not vouching: the peer certificate and key do not go together: {e}")
    })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("not vouching: {key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "not vouching: {key} {}: no certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}
