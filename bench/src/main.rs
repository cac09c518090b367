//! The benchmark suite: `bench/run.sh` builds the agent and this, then runs it. It starts mock
//! DigitalOcean and Hetzner APIs over HTTPS on loopback, measures the agent against the shell
//! baseline, one curl, hand-written env files and a scripted backup, asserts the request counts of every run, and
//! writes BENCHMARKS.md. `--smoke` runs the smallest size of everything (CI): it must finish
//! and count right; no figure of it is judged.

mod budget;
mod events;
mod fleet;
mod footprint;
mod formation;
mod grow;
mod lab;
mod latency;
mod measure;
mod mock;
mod report;
mod restore;
mod scale;
mod snapshot;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use lab::Lab;
use report::Report;

struct Args {
    agent: PathBuf,
    out: PathBuf,
    smoke: bool,
    only: Option<String>,
    /// Keep the mock serving after the run, for profiling an agent by hand.
    hold: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        agent: PathBuf::from("target/release/etcd-bootstrap"),
        out: PathBuf::from("BENCHMARKS.md"),
        smoke: false,
        only: None,
        hold: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--smoke" => a.smoke = true,
            "--hold" => a.hold = true,
            "--agent" => a.agent = it.next().ok_or("--agent needs a path")?.into(),
            "--out" => a.out = it.next().ok_or("--out needs a path")?.into(),
            "--only" => a.only = Some(it.next().ok_or("--only needs a benchmark name")?),
            _ => {
                return Err(format!(
                    "unknown argument {arg}; usage: etcd-bootstrap-bench [--smoke] [--agent PATH] [--out FILE] [--only latency|scale|formation|budget|grow|snapshot|events] [--hold]"
                ));
            }
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--peak-rss") && argv.len() >= 4 {
        let code = measure::trampoline(std::path::Path::new(&argv[2]), &argv[3], &argv[4..]);
        return ExitCode::from(code as u8);
    }
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("etcd-bootstrap-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<(), String> {
    let args = args()?;
    let agent = std::fs::canonicalize(&args.agent).map_err(|e| {
        format!(
            "agent binary {}: {e} (build it with `cargo build --release`)",
            args.agent.display()
        )
    })?;
    let root = std::env::current_dir().map_err(|e| e.to_string())?;
    let baseline = root.join("bench/baseline/discover.sh");
    if !baseline.exists() {
        return Err("run from the repository root (bench/baseline/discover.sh not found)".into());
    }
    // tmpfs when there is one: etcd's fsyncs then cost the same for every contender.
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let tmp = base.join(format!("etcd-bootstrap-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let certs = tls::make(&tmp, &["127.0.0.1"])?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mock = runtime
        .block_on(mock::Mock::start(lab::TOKEN, &certs.cert, &certs.key))
        .map_err(|e| format!("cannot start the mock APIs: {e}"))?;
    let lab = Lab {
        mock,
        agent,
        baseline,
        ca: certs.ca,
        tmp: tmp.clone(),
        smoke: args.smoke,
    };

    let mut report = Report::default();
    let started = Instant::now();
    let wanted = |name: &str| args.only.as_deref().is_none_or(|o| o == name);
    let mut step =
        |name: &str, f: &mut dyn FnMut(&mut Report) -> Result<(), String>| -> Result<(), String> {
            if !wanted(name) {
                return Ok(());
            }
            let t = Instant::now();
            eprintln!("=== {name}");
            f(&mut report).map_err(|e| format!("{name}: {e}"))?;
            eprintln!("=== {name}: {:.1}s", t.elapsed().as_secs_f64());
            Ok(())
        };
    let (mut latency_rss, mut scale_rss) = (0, 0);
    step("latency", &mut |r| {
        latency::run(&lab, r).map(|k| latency_rss = k)
    })?;
    step("scale", &mut |r| scale::run(&lab, r).map(|k| scale_rss = k))?;
    step("formation", &mut |r| formation::run(&lab, r))?;
    step("budget", &mut |r| budget::run(&lab, r))?;
    step("grow", &mut |r| grow::run(&lab, r))?;
    step("snapshot", &mut |r| snapshot::run(&lab, r))?;
    step("events", &mut |r| events::run(&lab, r))?;
    if args.only.is_none() {
        footprint::run(&lab, latency_rss, scale_rss, &mut report)?;
    }
    let total = started.elapsed();

    let header = report::header(&lab, &args.out, total, &root);
    // Hand-run figures and notes: the cold build times (`bench/build.sh`, minutes long, so not
    // part of this run) and the profiling notes.
    let notes = ["bench/build.md", "bench/notes.md"]
        .iter()
        .map(|f| std::fs::read_to_string(root.join(f)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&args.out, report.render(&header, &notes))
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    eprintln!(
        "wrote {} in {:.0}s",
        args.out.display(),
        total.as_secs_f64()
    );
    if args.hold {
        eprintln!(
            "holding: the mock serves on {} and {}; the agents' configs are under {}; the token is {} \
             (DIGITALOCEAN_TOKEN or HCLOUD_TOKEN). Ctrl-C ends it.",
            lab.mock.api_url,
            lab.mock.metadata_url,
            tmp.display(),
            lab::TOKEN
        );
        loop {
            std::thread::park();
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
