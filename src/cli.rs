//! The command line: raw flags here, turned into configuration overrides for `config::load`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::load::OverrideValue;

#[derive(Debug, Parser)]
#[command(
    name = "etcd-bootstrap",
    version,
    about = "Decide how this etcd node starts (new cluster, join, restart) and write etcd's environment file",
    long_about = "Runs once at boot, before etcd.service: finds the peer machines, decides whether this node \
bootstraps a new cluster, joins the existing one or restarts on its data, writes etcd's environment file \
atomically and reports to systemd. With no subcommand it runs. A lost quorum (a majority of the \
members gone for good) is reported, and recovered from the freshest survivor's data only with \
cluster.recover_lost_quorum.\n\n\
Exit codes: 0 ok, 64 usage, 65 bad data from discovery, 69 no decision before the deadline (or a \
recovery start, promote, leave or prune that could not finish), \
70 internal error, 73 cannot write the env file, 74 cannot read the data dir, 77 token rejected, \
78 configuration error, 79 refused as unsafe, 80 a certificate or key that cannot work."
)]
pub struct Cli {
    /// Configuration file [default: /etc/etcd-bootstrap/config.toml, which may be absent];
    /// fragments are read from config.d/ beside it.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Decide and print the env file to stdout; change nothing (no membership calls, no file).
    #[arg(long)]
    pub dry_run: bool,

    /// More detail in the log (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Override node.name.
    #[arg(long, global = true, value_name = "NAME")]
    pub name: Option<String>,
    /// Override node.address.
    #[arg(long, global = true, value_name = "HOST")]
    pub address: Option<String>,
    /// Override cluster.size.
    #[arg(long, global = true, value_name = "N")]
    pub size: Option<String>,
    /// Override cluster.data_dir.
    #[arg(long, global = true, value_name = "PATH")]
    pub data_dir: Option<String>,
    /// Override discovery.provider.
    #[arg(long, global = true, value_name = "NAME")]
    pub provider: Option<String>,
    /// Override discovery.timeout (e.g. 30s, 10m; "off": wait as long as it takes, the default).
    #[arg(long, global = true, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Override output.env_file.
    #[arg(long, global = true, value_name = "PATH")]
    pub env_file: Option<String>,
    /// A static peer NAME=ADDRESS; repeat for each (replaces discovery.static.peers).
    #[arg(long = "peer", global = true, value_name = "NAME=ADDRESS")]
    pub peers: Vec<String>,
    /// Any setting as section.key=value (e.g. cluster.join_as_learner=true); repeatable.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the default).
    Run {
        /// Decide and print the env file to stdout; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Observe once and print the decision and why, the membership calls a run would make and the
    /// env file it would write. Never waits, never changes anything.
    Plan {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The cluster as this member sees it: one line a member (role, health, leader, raft index
    /// and lag, database size, version), alarms, and this machine's last run. Exit code: 0
    /// healthy, 1 degraded (a member down, a learner not promoted in time, an alarm), 2 no quorum
    /// (docs/status.md). Needs only the env file and the etcd_client settings.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// A learner still not promoted after this long makes the cluster degraded.
        #[arg(long, default_value = "10m", value_name = "DURATION")]
        learner_grace: String,
    },
    /// Promote this node from learner to voting member once it has caught up (run by
    /// etcd-bootstrap-promote.service, started with etcd; exits at once on a voter).
    Promote {
        /// Give up after this long.
        #[arg(long, default_value = "10m", value_name = "DURATION")]
        timeout: String,
    },
    /// Remove the members beyond cluster.size whose machines are gone for good (not discovered,
    /// silent at two looks), one at a time while a quorum stays; run by
    /// etcd-bootstrap-prune.timer on each member. How a cluster shrinks when cluster.size is
    /// lowered and machines are terminated.
    Prune {
        /// Give up after this long.
        #[arg(long, default_value = "2m", value_name = "DURATION")]
        timeout: String,
    },
    /// Back the cluster up to the store named by [backup] (docs/backup.md): on the leader, when
    /// the newest snapshot there is at least backup.interval old, stream etcd's snapshot to it
    /// with a manifest, then delete what retention no longer keeps; on the other members, say
    /// who leads and exit 0. Run by etcd-bootstrap-snapshot.timer on each member.
    Snapshot {
        /// Take one now, however recent the newest is (still only on the leader).
        #[arg(long)]
        force: bool,
    },
    /// Restore this member's data dir from a snapshot in the [backup] store, with etcd stopped,
    /// for a cluster brought back by hand: run it on every member, then start etcd on each
    /// (docs/backup.md). The snapshot is checked against its manifest before anything changes;
    /// data already there is kept, renamed, and only with --replace-data.
    Restore {
        /// The snapshot's key (`TOKEN/snapshot-....db`, as `status` and the journal name it);
        /// default: the newest of this cluster's token.
        #[arg(long, value_name = "KEY")]
        snapshot: Option<String>,
        /// Move this node's data dir aside (renamed `<data_dir>.before-restore-<unix time>`)
        /// and restore over it.
        #[arg(long)]
        replace_data: bool,
    },
    /// Leave the cluster for good (decommissioning: a lifecycle hook, a shutdown script): hand
    /// leadership to the healthiest other voter if this member leads, then remove this member.
    /// Refuses when the cluster would lose its quorum. Idempotent.
    Leave {
        /// Give up after this long.
        #[arg(long, default_value = "2m", value_name = "DURATION")]
        timeout: String,
        /// Afterwards, once etcd has stopped, rename the data dir to
        /// `<data_dir>.left-<unix time>`, so a later boot of this disk joins afresh.
        #[arg(long)]
        move_data_aside: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), for packaging.
    #[command(hide = true)]
    Man,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

impl Cli {
    /// The flags as configuration overrides, the last layer.
    pub fn overrides(&self) -> Result<Vec<(String, OverrideValue)>, String> {
        let mut out = Vec::new();
        let single = [
            ("node.name", &self.name),
            ("node.address", &self.address),
            ("cluster.size", &self.size),
            ("cluster.data_dir", &self.data_dir),
            ("discovery.provider", &self.provider),
            ("discovery.timeout", &self.timeout),
            ("output.env_file", &self.env_file),
        ];
        for (key, value) in single {
            if let Some(v) = value {
                out.push((key.to_owned(), OverrideValue::Str(v.clone())));
            }
        }
        if !self.peers.is_empty() {
            out.push((
                "discovery.static.peers".into(),
                OverrideValue::List(self.peers.clone()),
            ));
        }
        for kv in &self.set {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
            out.push((k.trim().to_owned(), OverrideValue::Str(v.to_owned())));
        }
        Ok(out)
    }
}
