//! What the backup store and etcd hand the agent: a manifest and an object name read back from
//! a store anyone with write access could have filled, and etcd's snapshot stream cut anywhere.
//! None may panic; a name accepted is the agent's own shape and renders back to itself; a
//! stream is accepted only with the hash of exactly the bytes it put out.
#![no_main]

use etcd_bootstrap::backup::manifest::{Manifest, SnapshotName};
use etcd_bootstrap::backup::stream::{SnapshotStream, sha256_hex};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some((name, _)) = SnapshotName::parse("prod", &text) {
        assert!(text == name.database() || text == name.manifest(), "{text:?}");
        let _ = Manifest::read(data, "prod", &name);
    }
    let name = SnapshotName::new("prod", 1_795_254_605, 0x1735fe321d725815);
    if let Ok(m) = Manifest::read(data, "prod", &name) {
        assert_eq!(m.snapshot, name.database());
    }
    // The stream, fed in two pieces split at the first byte's value.
    let split = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    let mut stream = SnapshotStream::default();
    let mut out = Vec::new();
    let fed = stream
        .feed(&data[..split], &mut out)
        .and_then(|()| stream.feed(&data[split..], &mut out));
    if fed.is_ok() && let Ok(checked) = stream.finish(&mut out) {
        let db = &out[..out.len() - 32];
        assert_eq!(checked.size as usize, db.len());
        assert_eq!(checked.sha256, sha256_hex(db));
    }
});
