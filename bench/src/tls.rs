//! A throwaway CA and a certificate for some loopback addresses, made with `openssl`, so the mock
//! APIs serve HTTPS like the real ones and every client verifies them (the agent through
//! `discovery.<provider>.ca_file`, curl through `--cacert`). The agent's TLS tests
//! (`tests/tls.rs`) include this file too, for etcd's certificates.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir` (a path without spaces). The
/// certificate is good for every address in `ips`, for serving and as a client certificate
/// (etcd presents its peer certificate as a client to the other members).
pub fn make(dir: &Path, ips: &[&str]) -> Result<Certs, String> {
    let d = dir.display();
    let san: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName={}\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
            san.join(",")
        ),
    )
    .map_err(|e| format!("{d}: {e}"))?;
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    for args in [
        format!(
            "req -x509 {ec} -days 2 -subj /CN=etcd-bootstrap-bench-CA \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
             -keyout {d}/ca.key -out {d}/ca.pem"
        ),
        format!(
            "req {ec} -subj /CN={} -keyout {d}/server.key -out {d}/server.csr",
            ips[0]
        ),
        format!(
            "x509 -req -days 2 -set_serial 2 -in {d}/server.csr -CA {d}/ca.pem -CAkey {d}/ca.key \
             -extfile {d}/server.ext -out {d}/server.pem"
        ),
    ] {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .output()
            .map_err(|e| format!("cannot run openssl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "openssl {args}: {}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            ));
        }
    }
    Ok(Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    })
}
