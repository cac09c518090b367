//! 7. Backups: a snapshot of a loaded etcd (3.5, loopback) streamed to an S3 server on loopback
//!    (moto's, from PyPI, as the tests use) by `etcd-bootstrap snapshot`, against what an
//!    operator would script: `etcdctl snapshot save` to a file, then an upload with boto3's
//!    managed transfer (the AWS SDK for Python, multipart and threaded, as `aws s3 cp` does).
//!    Interleaved rounds; wall time, throughput and peak RSS. Then a fresh fleet restores the
//!    first size's snapshot (`restore.rs`).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::formation::etcd_bin;
use crate::grow::{Children, put};
use crate::lab::Lab;
use crate::measure::{self, Cmd, walls};
use crate::report::{Report, mib, ratio, spread};
use crate::restore;

const ETCD_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 97, 1);
const S3: &str = "127.0.97.2:5000";
const BUCKET: &str = "bench-backups";

pub fn run(lab: &Lab, report: &mut Report) -> Result<(), String> {
    let moto_path = std::env::var("MOTO_PYTHONPATH").map_err(|_| {
        "MOTO_PYTHONPATH is not set: scripts/test --install-only installs moto and writes it to target/test-tools/env".to_owned()
    })?;
    let (sizes_mib, rounds): (&[usize], usize) = if lab.smoke {
        (&[4], 1)
    } else {
        (&[100, 1024], 3)
    };
    let mut t = format!(
        "## 7. Backups: a snapshot to S3\n\n\
         One etcd 3.5 member on loopback holding the size given (values of 1 MiB), and moto's S3 \
         server on loopback (Python; it bounds both contenders alike). *Agent*: `etcd-bootstrap \
         snapshot --force` (the gateway's stream, checked against etcd's hash, uploaded in 8 MiB \
         parts as it arrives, one on its way while the next fills). *By hand*: `etcdctl snapshot \
         save` to a file on tmpfs, then boto3's `upload_file` (multipart, 10 threads). {rounds} \
         interleaved rounds; peak RSS of a separate run (the by-hand figure is the larger of \
         etcdctl's and Python's).\n\n\
         | Database | Agent | By hand | Agent's throughput | By hand | Ratio | Agent's peak RSS | By hand |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    let mut restored = String::new();
    for &size in sizes_mib {
        let dir = lab.scratch(&format!("snapshot-{size}"));
        let mut procs = Children::default();
        procs.0.push(start_etcd(&dir)?);
        procs.0.push(start_moto(&moto_path, &dir)?);
        let value = "x".repeat(1 << 20);
        for i in 0..size {
            put(ETCD_IP, &format!("k{i}"), &value).map_err(|e| format!("loading key {i}: {e}"))?;
        }
        let agent = agent_cmd(lab, &dir)?;
        let by_hand = by_hand_cmd(&dir, &moto_path)?;
        let samples = measure::interleaved(&[agent, by_hand], 0, rounds, &dir, |_, _| {
            // Names are by the second: two snapshots a second apart never share one.
            std::thread::sleep(Duration::from_millis(1000));
            Ok(())
        })?;
        let (a, h) = (walls(&samples[0]), walls(&samples[1]));
        let db = std::fs::metadata(dir.join("by-hand.db")).map_or(0, |m| m.len());
        let throughput = |d: Duration| format!("{:.0} MB/s", db as f64 / 1e6 / d.as_secs_f64());
        let agent_rss = measure::peak_rss(&agent_cmd(lab, &dir)?, &dir.join("rss-agent"))?;
        let hand_rss = measure::peak_rss(&by_hand_cmd(&dir, &moto_path)?, &dir.join("rss-hand"))?;
        // Throughput ratio: by hand's time over the agent's.
        let r = ratio(h.median, a.median);
        t += &format!(
            "| {} MB | {} | {} | {} | {} | {r:.2}× | {} | {} |\n",
            db / 1_000_000,
            spread(&a),
            spread(&h),
            throughput(a.median),
            throughput(h.median),
            mib(agent_rss),
            mib(hand_rss),
        );
        if !lab.smoke {
            report.goal(
                &format!("Snapshot to S3, {size} MiB: agent vs etcdctl + boto3"),
                "≥ 0.9× their throughput",
                format!(
                    "{r:.2}× ({} vs {})",
                    throughput(a.median),
                    throughput(h.median)
                ),
                r >= 0.9,
            );
            report.goal(
                &format!("Snapshot to S3, {size} MiB: agent's peak RSS"),
                "≤ 32 MiB, flat in the size",
                mib(agent_rss),
                agent_rss <= 32 * 1024,
            );
        }
        // The first size's snapshots, still in the store, are what a fresh fleet restores.
        if size == sizes_mib[0] {
            // Stopped first: it would compete with the restored fleet for the two cores.
            procs.0.remove(0).kill().map_err(|e| e.to_string())?;
            let src = restore::Source {
                endpoint: S3,
                bucket: BUCKET,
                prefix: "agent",
                token: "bench",
                moto_path: &moto_path,
                probe_key: &format!("k{}", size - 1),
            };
            restored = restore::run(lab, &src, size, rounds, report)?;
        }
        drop(procs);
        let _ = std::fs::remove_dir_all(&dir);
    }
    t += &restored;
    report.section(t);
    Ok(())
}

fn start_etcd(dir: &Path) -> Result<Child, String> {
    let peer = format!("http://{ETCD_IP}:2380");
    let client = format!("http://{ETCD_IP}:2379");
    let child = Command::new(etcd_bin())
        .args(["--name", "m", "--data-dir"])
        .arg(dir.join("data"))
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args(["--initial-cluster", &format!("m={peer}")])
        .args(["--quota-backend-bytes", "8589934592"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("etcd.log")).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("etcd: {e}"))?;
    wait_until(|| put(ETCD_IP, "ready", "1").is_ok(), "etcd never served")?;
    Ok(child)
}

fn start_moto(moto_path: &str, dir: &Path) -> Result<Child, String> {
    let (host, port) = S3.split_once(':').expect("host:port");
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", host, "-p", port])
        .env("PYTHONPATH", moto_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("moto.log")).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("moto: {e}"))?;
    wait_until(|| make_bucket().is_ok(), "moto's S3 server never answered")?;
    Ok(child)
}

fn make_bucket() -> Result<(), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(S3).map_err(|e| e.to_string())?;
    write!(
        s,
        "PUT /{BUCKET} HTTP/1.0\r\nHost: {S3}\r\nContent-Length: 0\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    if out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(out.lines().next().unwrap_or_default().to_owned())
    }
}

fn wait_until(mut ok: impl FnMut() -> bool, what: &str) -> Result<(), String> {
    let start = Instant::now();
    while !ok() {
        if start.elapsed() > Duration::from_secs(60) {
            return Err(what.to_owned());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The agent, as `etcd-bootstrap-snapshot.service` runs it: from the env file a boot run wrote.
fn agent_cmd(lab: &Lab, dir: &Path) -> Result<Cmd, String> {
    let w = |name: &str, text: String| -> Result<PathBuf, String> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        Ok(path)
    };
    let env = w(
        "etcd.env",
        format!(
            "ETCD_NAME=m\nETCD_INITIAL_CLUSTER=m=http://{ETCD_IP}:2380\nETCD_INITIAL_ADVERTISE_PEER_URLS=http://{ETCD_IP}:2380\nETCD_ADVERTISE_CLIENT_URLS=http://{ETCD_IP}:2379\n"
        ),
    )?;
    let config = w(
        "config.toml",
        format!(
            "[cluster]\nsize = 1\ntoken = \"bench\"\n\n[output]\nenv_file = \"{}\"\n\n\
             [discovery]\nprovider = \"static\"\n\n[discovery.static]\npeers = [\"m={ETCD_IP}\"]\n\n\
             [backup]\nurl = \"s3://{BUCKET}/agent\"\nendpoint = \"http://{S3}\"\nkeep_newest = 2\nkeep_daily = 0\n",
            env.display()
        ),
    )?;
    let config = config.to_str().ok_or("non-UTF-8 path")?.to_owned();
    Ok(Cmd::new(
        "agent snapshot",
        &lab.agent,
        &["--config", &config, "snapshot", "--force"],
    )
    .env("AWS_ACCESS_KEY_ID", "AKIABENCH")
    .env("AWS_SECRET_ACCESS_KEY", "bench-secret"))
}

/// `etcdctl snapshot save`, then boto3's managed upload of the file.
fn by_hand_cmd(dir: &Path, moto_path: &str) -> Result<Cmd, String> {
    let etcdctl = etcd_bin().with_file_name("etcdctl");
    let upload = format!(
        "import boto3, sys\n\
         s3 = boto3.client('s3', endpoint_url='http://{S3}', region_name='us-east-1')\n\
         s3.upload_file(sys.argv[1], '{BUCKET}', 'by-hand/snapshot.db')\n"
    );
    let script = dir.join("upload.py");
    std::fs::write(&script, upload).map_err(|e| e.to_string())?;
    let file = dir.join("by-hand.db");
    let sh = format!(
        "'{}' --endpoints http://{ETCD_IP}:2379 snapshot save '{}' >/dev/null && python3 '{}' '{}'",
        etcdctl.display(),
        file.display(),
        script.display(),
        file.display()
    );
    Ok(Cmd::new("etcdctl + boto3", "/bin/sh", &["-c", &sh])
        .env("ETCDCTL_API", "3")
        .env("PYTHONPATH", moto_path)
        .env("AWS_ACCESS_KEY_ID", "AKIABENCH")
        .env("AWS_SECRET_ACCESS_KEY", "bench-secret"))
}
