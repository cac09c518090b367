//! 1. Boot-path latency: the agent (`run --dry-run`) against the mock DigitalOcean API and
//!    metadata service, 3 members, vs the shell baseline and one `curl` of the same URL.

use crate::fleet;
use crate::lab::{AgentSetup, Api, Lab, initial_cluster_len};
use crate::measure;
use crate::report::{Report, dur, mib, ratio, spread};

/// Returns the agent's peak RSS, KiB.
pub fn run(lab: &Lab, report: &mut Report) -> Result<u64, String> {
    let api = Api::DigitalOcean {
        tag: "bench-latency",
    };
    let machines = fleet::machines("etcd", 1001, 50, 3);
    lab.mock.add_droplets("bench-latency", &machines);
    let dir = lab.scratch("latency");
    let setup = AgentSetup {
        api,
        me: &machines[0],
        size: 3,
        cluster_extra: "bootstrap_settle = \"0s\"\n",
        dir: &dir.join("agent"),
    };
    let env_file = dir.join("baseline.env");
    let cmds = [
        lab.agent_cmd(
            "etcd-bootstrap run --dry-run",
            &setup,
            &["run", "--dry-run"],
        ),
        lab.baseline_cmd(api, &machines[0], &env_file),
        lab.curl_cmd(api),
    ];
    let (warmup, runs) = if lab.smoke { (1, 3) } else { (5, 41) };
    // What each command must ask: (metadata, API pages).
    let requests = [(1, 1), (1, 1), (0, 1)];
    lab.mock.take();
    let samples = measure::interleaved(&cmds, warmup, runs, &dir.join("run"), |i, s| {
        lab.expect(requests[i].0, requests[i].1)?;
        // The agent prints its env file; the baseline writes one; the curl makes none.
        let env = match i {
            0 => s.stdout.clone(),
            1 => std::fs::read_to_string(&env_file).map_err(|e| e.to_string())?,
            _ => return Ok(()),
        };
        if initial_cluster_len(&env) != 3 || !env.contains("ETCD_INITIAL_CLUSTER_STATE=new") {
            return Err(format!("unexpected env file:\n{env}"));
        }
        Ok(())
    })?;
    let rss = cmds
        .iter()
        .map(|c| measure::peak_rss(c, &dir.join("rss")))
        .collect::<Result<Vec<_>, _>>()?;
    lab.mock.take();
    let [agent, shell, curl] = [0, 1, 2].map(|i| measure::walls(&samples[i]));
    let vs_shell = ratio(shell.median, agent.median);
    let vs_curl = ratio(agent.median, curl.median);
    report.goal(
        "Boot path, 3 members: agent vs shell baseline",
        "≥ 10× faster",
        format!(
            "{vs_shell:.1}× faster ({} vs {})",
            dur(agent.median),
            dur(shell.median)
        ),
        vs_shell >= 10.0,
    );
    report.goal(
        "Boot path, 3 members: agent vs one curl",
        "no slower (≤ 1.00×)",
        format!(
            "{vs_curl:.2}× the curl ({} vs {})",
            dur(agent.median),
            dur(curl.median)
        ),
        vs_curl <= 1.0,
    );
    let mut t = format!(
        "## 1. Boot-path latency (DigitalOcean, 3 members)\n\n\
         {runs} interleaved rounds after {warmup} warm-up rounds; whole-process wall time, median \
         (interquartile range). Requests are counted by the mock on every run, warm-ups included.\n\n\
         | Command | Wall time | Requests (metadata + API) | Peak RSS |\n|---|---|---|---|\n"
    );
    for (i, cmd) in cmds.iter().enumerate() {
        t += &format!(
            "| {} | {} | {} + {} | {} |\n",
            cmd.label,
            spread(&measure::walls(&samples[i])),
            requests[i].0,
            requests[i].1,
            mib(rss[i])
        );
    }
    t += &format!(
        "\nThe agent is {vs_shell:.1}× faster than the shell baseline and takes {vs_curl:.2}× the \
         time of a single curl, while it also probes both peers' etcd ports, checks the data dir \
         and validates every name and address. The agent ran with `bootstrap_settle = \"0s\"`: \
         the shipped default (30 s) waits on purpose before a first bootstrap (docs/safety.md).\n"
    );
    report.section(t);
    Ok(rss[0])
}
