//! Whole-process measurements: wall time from spawn to exit, with commands interleaved round by
//! round so that a slow moment of the machine hits every contender alike; and peak RSS.
//!
//! Peak RSS is not taken from the timed runs: Linux keeps a process's high-water mark across
//! `exec`, and a child spawned from this (large) process starts with this process's pages, so its
//! `ru_maxrss` would be ours. `peak_rss` runs the command under this binary's small `--peak-rss`
//! trampoline instead, whose child starts from a few hundred KiB.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A command to measure, and what its output is kept in.
pub struct Cmd {
    pub label: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Cmd {
    pub fn new(label: &str, program: impl Into<PathBuf>, args: &[&str]) -> Cmd {
        Cmd {
            label: label.to_owned(),
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
        }
    }

    pub fn arg(mut self, a: &str) -> Cmd {
        self.args.push(a.to_owned());
        self
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Cmd {
        self.env.push((k.to_owned(), v.into()));
        self
    }

    pub fn command(&self, scratch: &Path) -> std::io::Result<Command> {
        let mut c = Command::new(&self.program);
        c.args(&self.args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(scratch.join("stdout"))?)
            .stderr(std::fs::File::create(scratch.join("stderr"))?);
        Ok(c)
    }
}

#[derive(Clone, Debug)]
pub struct Sample {
    pub wall: Duration,
    pub stdout: String,
}

/// Runs `cmd` to its end. A non-zero exit is an error carrying its stderr: a benchmark of a failed
/// run measures nothing.
pub fn run(cmd: &Cmd, scratch: &Path) -> Result<Sample, String> {
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let mut command = cmd.command(scratch).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("{}: cannot start {}: {e}", cmd.label, cmd.program.display()))?;
    let (status, _) =
        wait4(child.id() as libc::pid_t).map_err(|e| format!("{}: wait4: {e}", cmd.label))?;
    let wall = start.elapsed();
    let stdout = std::fs::read_to_string(scratch.join("stdout")).unwrap_or_default();
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let stderr = std::fs::read_to_string(scratch.join("stderr")).unwrap_or_default();
        return Err(format!(
            "{} failed (wait status {status:#x}): {}",
            cmd.label,
            stderr.trim_end()
        ));
    }
    Ok(Sample { wall, stdout })
}

/// The peak RSS of one run of `cmd`, in KiB, through the `--peak-rss` trampoline.
pub fn peak_rss(cmd: &Cmd, scratch: &Path) -> Result<u64, String> {
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let out = scratch.join("peak-rss");
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut args = vec!["--peak-rss".to_owned(), out.to_string_lossy().into_owned()];
    args.push(cmd.program.to_string_lossy().into_owned());
    args.extend(cmd.args.iter().cloned());
    let wrapped = Cmd {
        label: cmd.label.clone(),
        program: me,
        args,
        env: cmd.env.clone(),
    };
    run(&wrapped, scratch)?;
    let text = std::fs::read_to_string(&out).map_err(|e| e.to_string())?;
    text.trim()
        .parse()
        .map_err(|e| format!("peak-rss output {text:?}: {e}"))
}

/// The trampoline: runs `program args` with this process's stdio, writes its `ru_maxrss` (KiB)
/// to `out`, and exits with its status.
pub fn trampoline(out: &Path, program: &str, args: &[String]) -> i32 {
    let child = match Command::new(program).args(args).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("--peak-rss: cannot start {program}: {e}");
            return 127;
        }
    };
    let Ok((status, rusage)) = wait4(child.id() as libc::pid_t) else {
        return 127;
    };
    if std::fs::write(out, rusage.ru_maxrss.to_string()).is_err() {
        return 127;
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128
    }
}

pub fn wait4(pid: libc::pid_t) -> std::io::Result<(libc::c_int, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain old data that wait4 fills in.
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; pid is our own child, not yet reaped.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut rusage) };
        if r == pid {
            return Ok((status, rusage));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Runs every command `warmup` times, then `runs` rounds of one run each, the order rotating each
/// round. `check` sees every run (warm-ups too) and may fail it: request counts are asserted, not
/// assumed. Returns the measured samples per command.
pub fn interleaved(
    cmds: &[Cmd],
    warmup: usize,
    runs: usize,
    scratch: &Path,
    mut check: impl FnMut(usize, &Sample) -> Result<(), String>,
) -> Result<Vec<Vec<Sample>>, String> {
    let mut out = vec![Vec::new(); cmds.len()];
    for round in 0..warmup + runs {
        for k in 0..cmds.len() {
            let i = (round + k) % cmds.len();
            let sample = run(&cmds[i], scratch)?;
            check(i, &sample).map_err(|e| format!("{}: {e}", cmds[i].label))?;
            if round >= warmup {
                out[i].push(sample);
            }
        }
    }
    Ok(out)
}

/// Median, and the 25th and 75th percentiles, of some durations.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub median: Duration,
    pub p25: Duration,
    pub p75: Duration,
}

pub fn stats(samples: &[Duration]) -> Stats {
    let mut s = samples.to_vec();
    s.sort();
    let at = |q: f64| {
        let pos = q * (s.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        s[lo] + (s[hi] - s[lo]).mul_f64(pos - lo as f64)
    };
    Stats {
        median: at(0.5),
        p25: at(0.25),
        p75: at(0.75),
    }
}

pub fn walls(samples: &[Sample]) -> Stats {
    stats(&samples.iter().map(|s| s.wall).collect::<Vec<_>>())
}

/// Which of two contenders goes first in `round`: the first in even rounds, the second in odd
/// ones, so neither always follows a teardown.
pub fn alternating(round: usize) -> [bool; 2] {
    if round.is_multiple_of(2) {
        [true, false]
    } else {
        [false, true]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let ms = |v: u64| Duration::from_millis(v);
        let s = stats(&[ms(4), ms(1), ms(3), ms(2)]);
        assert_eq!(s.median, Duration::from_micros(2500));
        assert_eq!(s.p25, Duration::from_micros(1750));
        assert_eq!(stats(&[ms(7)]).median, ms(7));
    }

    #[test]
    fn measures_a_real_process_and_reports_failures() {
        let dir = std::env::temp_dir().join(format!("bench-measure-{}", std::process::id()));
        let s = run(&Cmd::new("echo", "/bin/sh", &["-c", "echo hi"]), &dir).unwrap();
        assert_eq!(s.stdout, "hi\n");
        let e = run(
            &Cmd::new("fails", "/bin/sh", &["-c", "echo nope >&2; exit 3"]),
            &dir,
        );
        assert!(e.unwrap_err().contains("nope"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
