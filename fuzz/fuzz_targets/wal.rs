//! etcd's write-ahead log, snapshot files and backend (bbolt) as the agent reads them from a
//! data dir before etcd runs: any bytes, whole or torn, never panic and never allocate beyond
//! the record and page bounds. The log is also replayed on top of a snapshot's members
//! (promotions, changes at or below the snapshot's index skipped), as `datadir::read_member`
//! does.
#![no_main]

use etcd_bootstrap::datadir::{WalInfo, bolt, snap, wal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut info = WalInfo::default();
    wal::read_segment(data, &mut info);
    let _ = info.is_package_cluster("http://10.0.0.1:2380");
    if let Some((index, members)) = snap::parse(data) {
        let mut on_snapshot = WalInfo {
            last_index: index,
            members_base_index: index,
            members,
            members_complete: true,
            ..WalInfo::default()
        };
        wal::read_segment(data, &mut on_snapshot);
        assert!(on_snapshot.last_index >= index);
    }
    // The backend: the same bytes as a bbolt file (its meta pages need a valid checksum, which
    // the corpus's seeds carry; the fuzzer mutates from there).
    if let Some(recorded) = bolt::parse(data) {
        let _ = recorded.version();
    }
});
