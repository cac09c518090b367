//! Every parser of outside input: provider pages (EC2's XML too), etcd's gateway and peer-port
//! JSON, a certificate's validity (the preflight's DER reader), and a configuration layer (TOML,
//! then validation). None may panic, and a configuration
//! error stays one line (it is printed as one).
#![no_main]

use etcd_bootstrap::config::{Raw, Settings};
use etcd_bootstrap::discovery::aws::ec2;
use etcd_bootstrap::discovery::{digitalocean, hetzner};
use etcd_bootstrap::etcd::wire;
use etcd_bootstrap::preflight::x509;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 7 {
        0 => drop(serde_json::from_slice::<digitalocean::Page>(body)),
        1 => drop(serde_json::from_slice::<hetzner::Page>(body)),
        2 => drop(serde_json::from_slice::<wire::MemberListResponse>(body)),
        3 => drop(serde_json::from_slice::<Vec<wire::Member>>(body)),
        5 => drop(ec2::parse_page(body)),
        6 => drop(ec2::parse_error(body)),
        4 if body.first() == Some(&0x30) => drop(x509::validity(body)),
        _ => {
            let Ok(text) = std::str::from_utf8(body) else {
                return;
            };
            if let Ok(raw) = toml::from_str::<Raw>(text)
                && let Err(e) = Settings::from_raw(raw)
            {
                assert!(!e.contains('\n'), "a multi-line configuration error: {e:?}");
            }
        }
    }
});
