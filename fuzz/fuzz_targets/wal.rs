//! etcd's write-ahead log and snapshot files as the agent reads them from a data dir before etcd
//! runs: any bytes, whole or torn, never panic and never allocate beyond the record bound.
#![no_main]

use etcd_bootstrap::datadir::{WalInfo, snap, wal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut info = WalInfo::default();
    wal::read_segment(data, &mut info);
    let _ = info.is_distribution_default();
    let _ = snap::parse(data);
});
