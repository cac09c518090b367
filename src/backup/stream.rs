//! etcd's snapshot as the JSON gateway sends it (`POST /v3/maintenance/snapshot`):
//! newline-separated objects `{"result":{"remaining_bytes":"N","blob":"<base64>"}}`, whose blobs
//! put together are the bbolt database followed by etcd's own sha256 of it (32 bytes): the file
//! `etcdctl snapshot save` writes, and what `etcdutl snapshot restore` checks. This turns that
//! stream into those bytes, hashing the database as it passes, and checks the hash at the end:
//! a cut or corrupted stream is an error, never a snapshot.

use aws_lc_rs::digest::{self, Context, SHA256};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

const HASH_LEN: usize = 32;
/// A line holds one chunk (about 32 KiB of database, 44 KiB of base64); anything far longer is
/// not etcd's stream.
const MAX_LINE: usize = 16 << 20;

#[derive(Deserialize)]
struct Line {
    result: Option<Chunk>,
    error: Option<GatewayError>,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    blob: String,
}

#[derive(Deserialize)]
struct GatewayError {
    #[serde(default)]
    message: String,
}

pub struct SnapshotStream {
    line: Vec<u8>,
    /// Bytes not yet known to be database rather than the trailing hash.
    held: Vec<u8>,
    hash: Context,
    size: u64,
}

/// The database's size and sha256 (the snapshot file is 32 bytes longer: the hash follows the
/// database), once the stream ended with the hash etcd sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub size: u64,
    pub sha256: String,
}

impl Default for SnapshotStream {
    fn default() -> Self {
        SnapshotStream {
            line: Vec::new(),
            held: Vec::new(),
            hash: Context::new(&SHA256),
            size: 0,
        }
    }
}

impl SnapshotStream {
    /// Takes in what the network delivered, appending the snapshot bytes it completes to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        while let Some(newline) = input.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&input[..newline]);
            input = &input[newline + 1..];
            let line = std::mem::take(&mut self.line);
            self.chunk(&line, out)?;
        }
        self.line.extend_from_slice(input);
        if self.line.len() > MAX_LINE {
            return Err(format!(
                "a line of the snapshot stream is longer than {MAX_LINE} bytes: not etcd's snapshot"
            ));
        }
        Ok(())
    }

    fn chunk(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let parsed: Line = serde_json::from_slice(line).map_err(|e| {
            format!("the snapshot stream holds something other than etcd's chunks: {e}")
        })?;
        if let Some(e) = parsed.error {
            return Err(format!("etcd stopped the snapshot: {}", e.message));
        }
        let Some(chunk) = parsed.result else {
            return Err("the snapshot stream holds an object without a result".into());
        };
        let bytes = STANDARD
            .decode(chunk.blob.as_bytes())
            .map_err(|e| format!("a chunk of the snapshot stream is not base64: {e}"))?;
        self.held.extend_from_slice(&bytes);
        if self.held.len() > HASH_LEN {
            let done = self.held.len() - HASH_LEN;
            self.hash.update(&self.held[..done]);
            out.extend_from_slice(&self.held[..done]);
            self.size += done as u64;
            self.held.drain(..done);
        }
        Ok(())
    }

    /// The stream ended: the last 32 bytes must be the sha256 of all before them; they are
    /// appended to `out`, which then holds the whole snapshot file.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<Checked, String> {
        let rest = std::mem::take(&mut self.line);
        self.chunk(&rest, out)?;
        if self.held.len() < HASH_LEN || self.size == 0 {
            return Err(format!(
                "the snapshot stream ended after {} bytes, before etcd's hash: cut off",
                self.size + self.held.len() as u64
            ));
        }
        let digest = self.hash.finish();
        if digest.as_ref() != self.held.as_slice() {
            return Err(format!(
                "the snapshot's {} bytes do not match the sha256 etcd sent with them: corrupted in transit",
                self.size
            ));
        }
        out.extend_from_slice(&self.held);
        Ok(Checked {
            size: self.size,
            sha256: hex(digest.as_ref()),
        })
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest::digest(&SHA256, bytes).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gateway's stream for `db`: chunks of `size` bytes, then etcd's hash as its own chunk.
    fn stream(db: &[u8], size: usize) -> Vec<u8> {
        let mut all = db.to_vec();
        all.extend_from_slice(digest::digest(&SHA256, db).as_ref());
        let mut out = Vec::new();
        let mut remaining = all.len();
        for piece in db.chunks(size).chain([&all[db.len()..]]) {
            remaining -= piece.len();
            out.extend_from_slice(
                format!(
                    "{{\"result\":{{\"remaining_bytes\":\"{remaining}\",\"blob\":\"{}\"}}}}\n",
                    STANDARD.encode(piece)
                )
                .as_bytes(),
            );
        }
        out
    }

    fn decode(wire: &[u8], split: usize) -> Result<(Vec<u8>, Checked), String> {
        let mut s = SnapshotStream::default();
        let mut out = Vec::new();
        for piece in wire.chunks(split) {
            s.feed(piece, &mut out)?;
        }
        let checked = s.finish(&mut out)?;
        Ok((out, checked))
    }

    #[test]
    fn the_database_comes_out_whole_however_the_network_cuts_it() {
        let db: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let wire = stream(&db, 32 * 1024);
        for split in [1, 7, 1000, 65_536, wire.len()] {
            let (out, checked) = decode(&wire, split).unwrap();
            assert_eq!(out[..db.len()], db[..], "split {split}");
            assert_eq!(
                hex(&out[db.len()..]),
                sha256_hex(&db),
                "the hash follows the database"
            );
            assert_eq!(checked.size, 100_000);
            assert_eq!(checked.sha256, sha256_hex(&db));
        }
    }

    #[test]
    fn a_cut_or_altered_stream_is_refused() {
        let db = vec![42u8; 70_000];
        let wire = stream(&db, 32 * 1024);
        let last_line = wire[..wire.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .unwrap()
            + 1;
        assert!(
            decode(&wire[..last_line], 100)
                .unwrap_err()
                .contains("do not match")
        );
        assert!(decode(b"", 100).unwrap_err().contains("cut off"));
        let mut altered = wire.clone();
        altered[100] = if altered[100] == b'A' { b'B' } else { b'A' };
        assert!(decode(&altered, 4096).is_err());
        let error = b"{\"error\":{\"grpc_code\":14,\"message\":\"etcdserver: server stopped\"}}\n";
        assert_eq!(
            decode(error, 10).unwrap_err(),
            "etcd stopped the snapshot: etcdserver: server stopped"
        );
        assert!(
            decode(b"<html>502</html>\n", 10)
                .unwrap_err()
                .contains("other than etcd's chunks")
        );
    }
}
