use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;

use etcd_bootstrap::cli::{Cli, Command, Format};
use etcd_bootstrap::config::{self, Layers};
use etcd_bootstrap::decide::Decision;
use etcd_bootstrap::error::{Failure, Kind};
use etcd_bootstrap::run::{Agent, Done, etcd_client};
use etcd_bootstrap::{notify, outcome, report};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(Kind::Usage.exit_code() as u8);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    match &cli.command {
        Some(Command::Completions { shell }) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "etcd-bootstrap", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Some(Command::Man) => {
            let man = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            return match man.render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cannot write the man page: {e}");
                    ExitCode::from(Kind::Software.exit_code() as u8)
                }
            };
        }
        _ => {}
    }
    init_logging(cli.verbose);
    match real_main(cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            let fields = [
                ("ETCD_BOOTSTRAP_RESULT", "failed".to_owned()),
                ("ETCD_BOOTSTRAP_EXIT_CODE", f.kind.exit_code().to_string()),
            ];
            if !to_journal(&f.message, outcome::journal::ERR, &fields) {
                tracing::error!("{}", f.message);
            }
            notify::failed(&format!("failed: {}", f.message), f.kind.errno());
            ExitCode::from(f.kind.exit_code() as u8)
        }
    }
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let level = match verbose {
        0 => LevelFilter::INFO,
        1 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    // Our own events at the chosen level; the libraries' (HTTP, TLS, the AWS SDK) only when
    // they warn, unless -vv asks for everything.
    let others = if verbose >= 2 {
        LevelFilter::DEBUG
    } else {
        LevelFilter::WARN
    };
    let filter = Targets::new()
        .with_target("etcd_bootstrap", level)
        .with_default(others);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    // journald stamps every line itself.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        tracing_subscriber::registry()
            .with(layer.without_time())
            .with(filter)
            .init();
    } else {
        tracing_subscriber::registry()
            .with(layer)
            .with(filter)
            .init();
    }
}

/// `Ok(code)`: the exit code of a command that finished (0, or `status`'s verdict).
fn real_main(cli: Cli) -> Result<u8, Failure> {
    let layers = Layers {
        config_file: cli.config.clone(),
        env: std::env::vars().collect(),
        overrides: cli.overrides().map_err(|e| Failure::new(Kind::Usage, e))?,
    };
    let (settings, files) = config::load(&layers).map_err(|e| Failure::new(Kind::Config, e))?;
    for f in &files {
        tracing::debug!("read configuration from {}", f.display());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::new(
                Kind::Software,
                format!("cannot start the async runtime: {e}"),
            )
        })?;
    // The subcommands that run beside etcd build only an etcd client: they run as etcd's user,
    // without the agent's credentials, and need no discovery.
    match cli.command {
        Some(Command::Promote { timeout }) => {
            let timeout = timeout_arg(&timeout)?;
            let etcd = etcd_client(&settings, Default::default())?;
            return finished(
                runtime.block_on(etcd_bootstrap::promote::promote(&settings, &etcd, timeout))?,
            )
            .map(|()| 0);
        }
        Some(Command::Leave {
            ref timeout,
            move_data_aside,
        }) => {
            let timeout = timeout_arg(timeout)?;
            let etcd = etcd_client(&settings, Default::default())?;
            return finished(runtime.block_on(etcd_bootstrap::leave::leave(
                &settings,
                &etcd,
                timeout,
                move_data_aside,
            ))?)
            .map(|()| 0);
        }
        Some(Command::Snapshot { force }) => {
            let etcd = etcd_client(&settings, Default::default())?;
            return finished(
                runtime.block_on(etcd_bootstrap::backup::snapshot(&settings, &etcd, force))?,
            )
            .map(|()| 0);
        }
        Some(Command::Restore {
            ref snapshot,
            replace_data,
        }) => {
            let etcd = etcd_client(&settings, Default::default())?;
            return finished(runtime.block_on(etcd_bootstrap::backup::restore(
                &settings,
                &etcd,
                snapshot.as_deref(),
                replace_data,
            ))?)
            .map(|()| 0);
        }
        Some(Command::Status {
            format,
            ref learner_grace,
        }) => {
            let learner_grace = duration_arg("--learner-grace", learner_grace)?;
            let etcd = etcd_client(&settings, Default::default())?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let status = runtime.block_on(etcd_bootstrap::status::gather(
                &settings,
                &etcd,
                now,
                learner_grace,
            ))?;
            let mut out = std::io::stdout().lock();
            let written = match format {
                Format::Text => {
                    use std::io::IsTerminal;
                    let colour =
                        std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
                    write!(out, "{}", etcd_bootstrap::status::text(&status, colour))
                }
                Format::Json => serde_json::to_writer_pretty(&mut out, &status)
                    .map_err(std::io::Error::from)
                    .and_then(|()| writeln!(out)),
            };
            written.and_then(|()| out.flush()).map_err(|e| {
                Failure::new(
                    Kind::IoErr,
                    format!("cannot write the status to stdout: {e}"),
                )
            })?;
            return Ok(status.verdict.exit_code());
        }
        _ => {}
    }
    let agent = Agent::new(settings)?;

    let done = match cli.command {
        None => run(&runtime, &agent, cli.dry_run),
        Some(Command::Run { dry_run }) => run(&runtime, &agent, dry_run || cli.dry_run),
        Some(Command::Plan { format }) => {
            let plan = runtime.block_on(agent.plan())?;
            let env = match (&plan.outcome.decision, plan.obs.me) {
                (Decision::Start(start), Some(i)) => Some(agent.render_env(
                    &plan.obs.candidates[i],
                    start,
                    plan.obs.local_etcd.as_ref(),
                )?),
                _ => None,
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let written = match format {
                Format::Text => {
                    let text = report::text(&plan, env.as_deref());
                    writeln!(out, "{}", text.trim_end())
                }
                Format::Json => report::write_json(&mut out, &plan, env.as_deref())
                    .map_err(std::io::Error::from)
                    .and_then(|()| writeln!(out)),
            };
            written.and_then(|()| out.flush()).map_err(|e| {
                Failure::new(Kind::IoErr, format!("cannot write the plan to stdout: {e}"))
            })
        }
        Some(Command::Prune { timeout }) => {
            let timeout = timeout_arg(&timeout)?;
            finished(runtime.block_on(etcd_bootstrap::prune::prune(&agent, timeout))?)
        }
        Some(
            Command::Promote { .. }
            | Command::Leave { .. }
            | Command::Status { .. }
            | Command::Snapshot { .. }
            | Command::Restore { .. },
        ) => {
            unreachable!("handled above")
        }
        Some(Command::Completions { .. } | Command::Man) => unreachable!("handled before logging"),
    };
    done.map(|()| 0)
}

/// A subcommand's last word, in the log and to systemd.
fn finished(done: String) -> Result<(), Failure> {
    tracing::info!("{done}");
    notify::status(&done);
    Ok(())
}

fn timeout_arg(text: &str) -> Result<Duration, Failure> {
    duration_arg("--timeout", text)
}

fn duration_arg(flag: &str, text: &str) -> Result<Duration, Failure> {
    config::duration::parse(text).map_err(|e| Failure::new(Kind::Usage, format!("{flag}: {e}")))
}

fn run(runtime: &tokio::runtime::Runtime, agent: &Agent, dry_run: bool) -> Result<(), Failure> {
    notify::status("discovering peers");
    let started = Instant::now();
    let result = runtime.block_on(agent.run(dry_run));
    if dry_run {
        let done = result?;
        for (action, why) in &done.steps {
            tracing::info!("dry run: would {action:?}: {why}");
        }
        tracing::info!(
            row = done.outcome.row.as_str(),
            "dry run: {}",
            done.outcome.reason
        );
        print!("{}", done.env);
        return Ok(());
    }
    let settings = &agent.settings;
    let record = record(agent, &result, started.elapsed());
    outcome::write(
        &record,
        &settings.outcome_file,
        settings.metrics_file.as_deref(),
    );
    let done = result?;
    let path = settings.env_file.display();
    let state = record.state.unwrap_or_default();
    let source = match &done.source.fallback_because {
        Some(why) => format!(" (members from {}, a fallback: {why})", done.source.name),
        None => String::new(),
    };
    let line = format!("wrote {path}: {}{source}", done.outcome.reason);
    let fields = [
        ("ETCD_BOOTSTRAP_RESULT", "ok".to_owned()),
        ("ETCD_BOOTSTRAP_EXIT_CODE", "0".to_owned()),
        ("ETCD_BOOTSTRAP_ROW", done.outcome.row.as_str().to_owned()),
        ("ETCD_BOOTSTRAP_STATE", state.to_owned()),
        ("ETCD_BOOTSTRAP_NAME", done.this_node.to_string()),
        ("ETCD_BOOTSTRAP_SOURCE", done.source.name.to_owned()),
        (
            "ETCD_BOOTSTRAP_DURATION_MS",
            record.timings_ms.total.to_string(),
        ),
    ];
    if !to_journal(&line, outcome::journal::INFO, &fields) {
        tracing::info!(
            row = done.outcome.row.as_str(),
            state,
            source = done.source.name,
            "{line}"
        );
    }
    notify::ready(&format!(
        "{} ({}): wrote {path}{source}",
        state,
        done.outcome.row.as_str()
    ));
    Ok(())
}

/// The outcome record of a run that ended with `result` after `took`.
fn record(agent: &Agent, result: &Result<Done, Failure>, took: Duration) -> outcome::Record {
    let (listing, probing) = agent.time_spent();
    let finished_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut record = outcome::Record {
        agent_version: env!("CARGO_PKG_VERSION"),
        finished_at,
        result: "ok",
        exit_code: 0,
        row: None,
        state: None,
        learner: false,
        this_node: None,
        members: Vec::new(),
        reason: String::new(),
        source: None,
        timings_ms: outcome::TimingsMs::new(listing, probing, took),
        requests: outcome::counters::requests(),
    };
    match result {
        Ok(done) => {
            record.row = Some(done.outcome.row.as_str());
            if let Decision::Start(plan) = &done.outcome.decision {
                record.state = Some(plan.state.as_str());
                record.learner = plan.learner;
                record.members = plan
                    .initial_cluster
                    .iter()
                    .map(|(name, url)| format!("{name}={url}"))
                    .collect();
            }
            record.this_node = Some(done.this_node.to_string());
            record.reason = done.outcome.reason.clone();
            record.source = Some(done.source.clone());
        }
        Err(f) => {
            record.result = "failed";
            record.row = f.row;
            record.exit_code = f.kind.exit_code();
            record.reason = f.message.clone();
        }
    }
    record
}

/// Sends the final line to the journal with its fields, when stderr is the journal. `false`:
/// not sent; the caller logs it as usual.
fn to_journal(line: &str, priority: u8, fields: &[(&str, String)]) -> bool {
    use outcome::journal;
    journal::stderr_is_journal()
        && journal::send(Path::new(journal::SOCKET), line, priority, fields).is_ok()
}
