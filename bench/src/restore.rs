//! 7b. Restore at boot: three fresh machines whose store holds a snapshot of their cluster token
//!    (the one section 7 uploaded), from the moment their agents start to a healthy restored
//!    cluster, against the same restore by hand with the answer known in advance: each machine
//!    downloads the snapshot with boto3, runs `etcdutl snapshot restore` for its member, and
//!    starts etcd from env files written beforehand. etcd starts on each machine as soon as its
//!    agent (or its by-hand script) exits, as `Requires=`/`After=` start etcd.service.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::fleet::{self, Machine};
use crate::formation::{etcd_bin, hand_written, initial_cluster, start_then_healthy};
use crate::grow::has_key;
use crate::lab::Lab;
use crate::measure::{Cmd, stats};
use crate::report::{Report, dur, ratio, spread};

/// Where the restored fleet lives: unused by every other benchmark.
const NET: u8 = 97;

/// The store section 7 wrote: moto's endpoint, its bucket, the agent's prefix and token.
pub struct Source<'a> {
    pub endpoint: &'a str,
    pub bucket: &'a str,
    pub prefix: &'a str,
    /// The cluster token (`bench`, as in the env files `hand_written` writes).
    pub token: &'a str,
    pub moto_path: &'a str,
    /// A key the snapshot holds (the restored cluster must serve it).
    pub probe_key: &'a str,
}

/// Measures `rounds` interleaved rounds and returns the table's text.
pub fn run(
    lab: &Lab,
    src: &Source<'_>,
    size_mib: usize,
    rounds: usize,
    report: &mut Report,
) -> Result<String, String> {
    let machines = fleet::machines("restored", 0, NET, 3);
    let newest = newest_key(src)?;
    // Agent; by hand with the etcd settings of the agent's env file for a restore (no initial
    // corruption check); by hand with the check on, to show what the agent saves by leaving it
    // off for this start.
    let labels = ["agent", "hand", "hand-checked"];
    let mut healthy: [Vec<Duration>; 3] = Default::default();
    let mut agents_own = Vec::new();
    for round in 0..rounds {
        for k in 0..3 {
            let who = (round + k) % 3;
            let dir = lab.scratch(&format!("restore-{round}-{}", labels[who]));
            let cmds = (0..3)
                .map(|i| match who {
                    0 => agent_cmd(lab, src, &machines, i, &dir),
                    _ => by_hand_cmd(src, &newest, &machines, i, &dir, who == 2),
                })
                .collect::<Result<Vec<Cmd>, String>>()?;
            let (took, exited, etcds) = start_then_healthy(&cmds, &machines, &dir)?;
            // Healthy is not enough: the cluster must be the snapshot's.
            for m in &machines {
                if !has_key(m.ip, src.probe_key)? {
                    return Err(format!(
                        "{} (restored by {}) does not serve {}",
                        m.name, cmds[0].label, src.probe_key
                    ));
                }
            }
            healthy[who].push(took);
            if who == 0 {
                agents_own.push(exited);
            }
            drop(etcds);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let [a, h, u] = healthy.each_ref().map(|t| stats(t));
    report.events.push(crate::report::Event {
        name: format!("restore at boot, 3 members, {size_mib} MiB (section 7)"),
        agent: healthy[0].clone(),
        hand: healthy[1].clone(),
        own: agents_own.clone(),
        requests: "0 + 0 (static list; the store: 1 listing + 1 manifest + 1 snapshot each)".into(),
    });
    let own = stats(&agents_own);
    let r = ratio(a.median, h.median);
    if !lab.smoke {
        report.goal(
            &format!("Restore at boot, {size_mib} MiB, 3 fresh machines: healthy"),
            "≤ 1.2× the same restore by hand (median)",
            format!("{r:.2}× ({} vs {})", dur(a.median), dur(h.median)),
            r <= 1.2,
        );
    }
    Ok(format!(
        "\n### Restore at boot\n\n\
         Three fresh machines (empty data dirs, static discovery, `[backup]` naming the store \
         above), from the start to every member answering `/health` and serving the snapshot's \
         keys. *Agent*: their agents start together (`run`, shipped defaults): each looks at \
         the store, vouches naming the newest snapshot, and when all three named the same one \
         downloads it, checks its sha256 against the manifest and restores it with \
         `etcdutl`; each etcd starts when its agent exits. *By hand*, the answer known in \
         advance: on each machine boto3's `download_file` of that snapshot, then `etcdutl \
         snapshot restore` with the member's name, peer URL, the initial cluster and token; \
         each etcd starts when its script exits, from env files written beforehand with the \
         etcd settings of the agent's (for a restore: no initial corruption check); the last \
         column is the same with the check on. {rounds} interleaved rounds.\n\n\
         | Database | Agent | By hand | Ratio | Agents' own time (start to the last agent's exit) | By hand, initial corruption check on |\n\
         |---|---|---|---|---|---|\n\
         | {size_mib} MiB | {} | {} | {r:.2}× | {} | {} |\n\n\
         With the check on, a member with data asks every peer for its hash before it serves \
         its own peer port (etcd 3.5, `embed.StartEtcd`), so members starting together on data \
         wait on each other up to etcd's request timeout (7 s per peer). On a restore's first \
         start every member holds the same checked snapshot, so the agent leaves the check off \
         for it (docs/backup.md); every later start has it.\n",
        spread(&a),
        spread(&h),
        spread(&own),
        spread(&u),
    ))
}

/// The newest snapshot's object key, as the operator restoring by hand would have looked it up.
fn newest_key(src: &Source<'_>) -> Result<String, String> {
    let list = format!(
        "import boto3\n\
         s3 = boto3.client('s3', endpoint_url='http://{}', region_name='us-east-1')\n\
         keys = [o['Key'] for o in s3.list_objects_v2(Bucket='{}', Prefix='{}/{}/')['Contents']]\n\
         print(max(k for k in keys if k.endswith('.db')))\n",
        src.endpoint, src.bucket, src.prefix, src.token
    );
    let out = Command::new("python3")
        .args(["-c", &list])
        .env("PYTHONPATH", src.moto_path)
        .env("AWS_ACCESS_KEY_ID", "AKIABENCH")
        .env("AWS_SECRET_ACCESS_KEY", "bench-secret")
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "listing the snapshots: {}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn peers(machines: &[Machine]) -> String {
    machines
        .iter()
        .map(|m| format!("\"{}={}\"", m.name, m.ip))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Machine `i`'s agent: a boot run (`run`) with the store configured.
fn agent_cmd(
    lab: &Lab,
    src: &Source<'_>,
    machines: &[Machine],
    i: usize,
    dir: &Path,
) -> Result<Cmd, String> {
    let scratch = dir.join(format!("m{i}"));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let config = scratch.join("config.toml");
    let text = format!(
        "[node]\nname = \"{name}\"\n\n\
         [cluster]\nsize = 3\ntoken = \"{token}\"\ndata_dir = \"{d}/data\"\n\n\
         [output]\nenv_file = \"{d}/etcd.env\"\n\n\
         [etcd]\nbinary = \"{etcd}\"\n\n\
         [discovery]\nprovider = \"static\"\n\n[discovery.static]\npeers = [{peers}]\n\n\
         [backup]\nurl = \"s3://{bucket}/{prefix}\"\nendpoint = \"http://{endpoint}\"\n",
        name = machines[i].name,
        token = src.token,
        d = scratch.display(),
        etcd = etcd_bin().display(),
        peers = peers(machines),
        bucket = src.bucket,
        prefix = src.prefix,
        endpoint = src.endpoint,
    );
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    let config = config.to_str().ok_or("non-UTF-8 path")?.to_owned();
    Ok(Cmd::new("agent", &lab.agent, &["--config", &config, "run"])
        .env("AWS_ACCESS_KEY_ID", "AKIABENCH")
        .env("AWS_SECRET_ACCESS_KEY", "bench-secret"))
}

/// Machine `i`'s restore by hand: download, `etcdutl snapshot restore`; its env file written
/// beforehand.
fn by_hand_cmd(
    src: &Source<'_>,
    key: &str,
    machines: &[Machine],
    i: usize,
    dir: &Path,
    corrupt_check: bool,
) -> Result<Cmd, String> {
    let scratch = dir.join(format!("m{i}"));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let mut env = hand_written(machines, &machines[i], &scratch);
    if corrupt_check {
        // As the agent writes it for etcd up to 3.5 on every start but a restore's.
        env += "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK=true\n";
    }
    std::fs::write(scratch.join("etcd.env"), env).map_err(|e| e.to_string())?;
    let me = &machines[i];
    let cluster = initial_cluster(machines);
    let etcdutl = etcd_bin().with_file_name("etcdutl");
    let db = scratch.join("snapshot.db");
    let sh = format!(
        "python3 -c \"import boto3; boto3.client('s3', endpoint_url='http://{endpoint}', region_name='us-east-1').download_file('{bucket}', '{key}', '{db}')\" && \
         '{etcdutl}' snapshot restore '{db}' --name {name} --initial-cluster {cluster} \
         --initial-cluster-token {token} --initial-advertise-peer-urls http://{ip}:2380 \
         --data-dir '{data}' >/dev/null",
        endpoint = src.endpoint,
        bucket = src.bucket,
        db = db.display(),
        etcdutl = etcdutl.display(),
        name = me.name,
        token = src.token,
        ip = me.ip,
        data = scratch.join("data").display(),
    );
    Ok(Cmd::new("by hand", "/bin/sh", &["-c", &sh])
        .env("PYTHONPATH", src.moto_path)
        .env("AWS_ACCESS_KEY_ID", "AKIABENCH")
        .env("AWS_SECRET_ACCESS_KEY", "bench-secret"))
}
