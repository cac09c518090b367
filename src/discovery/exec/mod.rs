//! `provider = "exec"`: a command prints the members, one `name=address` a line, as the static
//! list writes them. For platforms without a provider here (an inventory, a CMDB, another
//! cloud's CLI). The command runs without a shell, with a timeout; what it prints is validated
//! like every provider's listing.

use std::process::Stdio;

use tokio::io::AsyncReadExt;

use super::{Discover, DiscoveryError, Listing};
use crate::config::ExecSettings;
use crate::error::Kind;
use crate::member::{Candidate, excerpt, parse_entry};

/// More output than any member list: a command that prints this much is not printing members.
const MAX_STDOUT: u64 = 1 << 20;
/// How much of the command's stderr is kept, and how many of its lines reach the log.
const MAX_STDERR: u64 = 16 << 10;
const STDERR_LINES: usize = 5;

pub struct Exec {
    settings: ExecSettings,
}

impl Exec {
    pub fn new(settings: ExecSettings) -> Self {
        Exec { settings }
    }

    fn program(&self) -> &str {
        &self.settings.command[0]
    }

    /// The command as messages show it.
    fn shown(&self) -> String {
        self.settings
            .command
            .iter()
            .map(|a| excerpt(a).trim_matches('"').to_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn failed(&self, retryable: bool, kind: Kind, what: String) -> DiscoveryError {
        DiscoveryError {
            retryable,
            kind,
            message: format!("discovery.exec: {} {what}", self.shown()),
        }
    }

    /// Runs the command to its end (or its timeout): exit status, stdout, stderr.
    async fn run(&self) -> Result<(std::process::ExitStatus, Vec<u8>, String), DiscoveryError> {
        crate::outcome::counters::discovery_request();
        let mut child = tokio::process::Command::new(self.program())
            .args(&self.settings.command[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so a timeout kills what it started too (a `sleep` left
            // behind would hold its output open).
            .process_group(0)
            .spawn()
            .map_err(|e| self.failed(false, Kind::Config, format!("cannot be run: {e}")))?;
        let group = child.id().and_then(|pid| i32::try_from(pid).ok());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let finished = async {
            let read_out = async {
                if let Some(s) = stdout {
                    s.take(MAX_STDOUT + 1).read_to_end(&mut out).await?;
                }
                Ok::<_, std::io::Error>(())
            };
            let read_err = async {
                if let Some(s) = stderr {
                    s.take(MAX_STDERR).read_to_end(&mut err).await?;
                }
                Ok::<_, std::io::Error>(())
            };
            let (a, b) = tokio::join!(read_out, read_err);
            a.and(b)?;
            child.wait().await
        };
        let status = tokio::time::timeout(self.settings.timeout, finished)
            .await
            .map_err(|_| {
                if let Some(group) = group {
                    // SAFETY: a signal to the process group this command leads.
                    unsafe { libc::kill(-group, libc::SIGKILL) };
                }
                self.failed(
                    true,
                    Kind::Unavailable,
                    format!(
                        "did not finish within discovery.exec.timeout ({:?}); it was killed",
                        self.settings.timeout
                    ),
                )
            })?
            .map_err(|e| self.failed(true, Kind::Unavailable, format!("failed: {e}")))?;
        if out.len() as u64 > MAX_STDOUT {
            return Err(self.failed(
                false,
                Kind::DataErr,
                format!("printed more than {MAX_STDOUT} bytes; a member list is far shorter"),
            ));
        }
        Ok((status, out, String::from_utf8_lossy(&err).into_owned()))
    }
}

/// The first lines of the command's stderr, each cut short and with control characters
/// escaped (a terminal escape must not reach the journal), for the log.
fn first_lines(stderr: &str) -> Vec<String> {
    const MAX: usize = 200;
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(STDERR_LINES)
        .map(|l| {
            let mut line: String = l
                .trim_end()
                .chars()
                .take(MAX)
                .flat_map(char::escape_debug)
                .collect();
            if l.chars().count() > MAX {
                line.push('…');
            }
            line
        })
        .collect()
}

impl Discover for Exec {
    async fn list(&self) -> Result<Listing, DiscoveryError> {
        let (status, stdout, stderr) = self.run().await?;
        let said = first_lines(&stderr);
        for line in &said {
            if status.success() {
                tracing::info!("discovery.exec: {} said: {line}", self.shown());
            } else {
                tracing::warn!("discovery.exec: {} said: {line}", self.shown());
            }
        }
        if !status.success() {
            let last = said.last().map(|l| format!(": {l}")).unwrap_or_default();
            return Err(self.failed(true, Kind::Unavailable, format!("failed ({status}){last}")));
        }
        let text = std::str::from_utf8(&stdout).map_err(|e| {
            self.failed(
                false,
                Kind::DataErr,
                format!("printed bytes that are not UTF-8 ({e})"),
            )
        })?;
        let mut candidates = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, host) = parse_entry(line).map_err(|e| {
                self.failed(
                    false,
                    Kind::DataErr,
                    format!(
                        "printed, on line {}, {e}; each line must be name=address",
                        n + 1
                    ),
                )
            })?;
            candidates.push(Candidate {
                id: name.to_string(),
                name,
                host,
                created: None,
            });
        }
        Ok(Listing {
            candidates,
            self_id: None,
        })
    }
}

#[cfg(test)]
mod tests;
