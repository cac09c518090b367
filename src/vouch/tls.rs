//! The vouch endpoint's TLS, set up as etcd's peer port will be: the peer certificate and key,
//! and with `tls.peer_client_cert_auth` a client certificate signed by the peer CA, so only
//! members can ask members.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;

use crate::config::EtcdTls;
use crate::pem::{certificates, private_key, trust_anchors};

pub fn acceptor(tls: &EtcdTls) -> Result<tokio_rustls::TlsAcceptor, String> {
    let (Some(cert), Some(key)) = (&tls.peer_cert_file, &tls.peer_key_file) else {
        return Err(
            "not vouching: peer_scheme is https but tls.peer_cert_file/peer_key_file are not set"
                .into(),
        );
    };
    let chain = certificates("tls.peer_cert_file", cert).map_err(not_vouching)?;
    let key = private_key("tls.peer_key_file", key).map_err(not_vouching)?;
    let builder = rustls::ServerConfig::builder();
    let builder = if tls.peer_client_cert_auth {
        let Some(ca) = &tls.peer_trusted_ca_file else {
            return Err(
                "not vouching: tls.peer_client_cert_auth is on but tls.peer_trusted_ca_file is not set"
                    .into(),
            );
        };
        let roots = trust_anchors("tls.peer_trusted_ca_file", ca).map_err(not_vouching)?;
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

fn not_vouching(why: String) -> String {
    format!("not vouching: {why}")
}
