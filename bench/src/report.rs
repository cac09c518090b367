//! BENCHMARKS.md: the machine, the command, every figure, and each goal met or not.

use std::fmt::Write;
use std::time::Duration;

use crate::measure::Stats;

#[derive(Default)]
pub struct Report {
    pub sections: Vec<String>,
    pub goals: Vec<Goal>,
    /// Lifecycle events measured against an operator by hand, by whichever section measured
    /// them; section 8 shows them together.
    pub events: Vec<Event>,
}

/// One lifecycle event's figures, both columns.
pub struct Event {
    pub name: String,
    /// Until the cluster is what the event needs, with the agent.
    pub agent: Vec<Duration>,
    /// The same, by hand with the answer known.
    pub hand: Vec<Duration>,
    /// From the agents' start to the last agent's exit.
    pub own: Vec<Duration>,
    /// Metadata + API requests of the agents in the last round.
    pub requests: String,
}

impl Event {
    pub fn new(name: impl Into<String>) -> Self {
        Event {
            name: name.into(),
            agent: Vec::new(),
            hand: Vec::new(),
            own: Vec::new(),
            requests: String::new(),
        }
    }
}

pub struct Goal {
    pub what: String,
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

impl Report {
    pub fn goal(&mut self, what: &str, goal: &str, measured: String, met: bool) {
        self.goals.push(Goal {
            what: what.to_owned(),
            goal: goal.to_owned(),
            measured,
            met,
        });
    }

    pub fn section(&mut self, text: String) {
        self.sections.push(text);
    }

    pub fn render(&self, header: &str, notes: &str) -> String {
        let mut out = String::from(header);
        out += "\n## Goals\n\n| What | Goal | Measured | Met |\n|---|---|---|---|\n";
        for g in &self.goals {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                g.what,
                g.goal,
                g.measured,
                if g.met { "yes" } else { "**no**" }
            );
        }
        for s in &self.sections {
            out += "\n";
            out += s;
        }
        if !notes.is_empty() {
            out += "\n";
            out += notes;
        }
        out
    }
}

/// `12.3 ms` / `1.23 s`.
pub fn dur(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// `12.3 ms (11.9–12.8)`: median and interquartile range.
pub fn spread(s: &Stats) -> String {
    format!("{} ({}–{})", dur(s.median), dur(s.p25), dur(s.p75))
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// Who measured what, where, and how to do it again.
pub fn header(
    lab: &crate::lab::Lab,
    out: &std::path::Path,
    total: Duration,
    root: &std::path::Path,
) -> String {
    let sh = |cmd: &str| {
        std::process::Command::new("/bin/sh")
            .args(["-c", cmd])
            .current_dir(root)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let etcd = crate::formation::etcd_bin();
    format!(
        "# Benchmarks\n\n\
         Written by `bench/run.sh`{smoke} on {date}, in {secs:.0} s, to `{out}`. Do not edit by hand: \
         run it again (about 17 minutes on 2 cores after the release builds, most of it the snapshots of section 7 and the events of section 8).\n\n\
         - Machine: {cpu}, {cores} cores, Linux {kernel}, {mem}\n\
         - Agent: `{agent}` at commit {commit}\n\
         - Baseline tools: {curl}; {jq}; dash as /bin/sh\n\
         - etcd: {etcd_version} (`{etcd}`)\n\
         - Mock APIs: this suite's own HTTPS server (hyper + rustls) on 127.0.0.1, pages rendered once \
           and served from memory; metadata over HTTP, as on the real platforms\n\n\
         Times are whole-process wall times from spawn to exit (or, for formation, to a healthy \
         cluster), medians with the interquartile range in parentheses; contenders run \
         interleaved, round by round. Peak RSS is `ru_maxrss` of a separate run under the suite's \
         own small trampoline (a child of the suite itself would inherit the suite's high-water \
         mark). Every run's requests are counted by the mock and checked: a run that asks more or \
         less than stated fails the suite.\n",
        smoke = if lab.smoke { " --smoke" } else { "" },
        date = sh("date -u '+%Y-%m-%d %H:%M UTC'"),
        secs = total.as_secs_f64(),
        out = out.display(),
        kernel = sh("uname -r"),
        mem = sh("free -g | awk '/Mem:/ {print $2 \" GiB RAM\"}'"),
        agent = sh(&format!("{} --version", lab.agent.display())),
        commit = sh("git describe --always --dirty"),
        curl = sh("curl --version | head -1 | cut -d' ' -f1-2"),
        jq = sh("jq --version"),
        etcd_version = sh(&format!("{} --version | head -1", etcd.display())),
        etcd = etcd.display(),
    )
}
