//! 2. Scale: 10,000 tagged machines on DigitalOcean (50 pages of 200) and Hetzner (200 pages
//!    of 50). The agent's `plan` (one full look: metadata, every page, a probe of every peer) vs
//!    the shell baseline on the same fleet.

use crate::fleet;
use crate::lab::{AgentSetup, Api, Lab, initial_cluster_len};
use crate::measure;
use crate::report::{Report, dur, mib, spread};

/// Returns the agent's highest peak RSS, KiB.
pub fn run(lab: &Lab, report: &mut Report) -> Result<u64, String> {
    let mut t = String::from(
        "## 2. Scale: 10,000 tagged machines\n\n\
         The agent runs `plan --format json`: one complete look (the metadata service, every page \
         at the largest page size, a probe of every listed peer's etcd ports; nothing listens \
         there) and the decision. Interleaved with the shell baseline on the same fleet.\n\n\
         | Provider | Command | Requests (metadata + API pages) | Wall time | Peak RSS | Answer |\n\
         |---|---|---|---|---|---|\n",
    );
    let mut agent_rss = 0;
    for (api, count, net) in [
        (
            Api::DigitalOcean { tag: "bench-scale" },
            if lab.smoke { 400 } else { 10_000 },
            60,
        ),
        (
            Api::Hetzner {
                key: "role",
                value: "bench-scale",
            },
            if lab.smoke { 100 } else { 10_000 },
            61,
        ),
    ] {
        let machines = fleet::machines("etcd", 100_000 * net as u64, net, count);
        match api {
            Api::DigitalOcean { tag } => lab.mock.add_droplets(tag, &machines),
            Api::Hetzner { key, value } => lab.mock.add_servers(key, value, &machines),
        }
        let dir = lab.scratch(&format!("scale-{}", api.name()));
        let setup = AgentSetup {
            api,
            me: &machines[0],
            size: 3,
            cluster_extra: "bootstrap_settle = \"0s\"\n",
            dir: &dir.join("agent"),
        };
        let env_file = dir.join("baseline.env");
        let cmds = [
            lab.agent_cmd("etcd-bootstrap plan", &setup, &["plan", "--format", "json"]),
            lab.baseline_cmd(api, &machines[0], &env_file),
        ];
        let pages = (count as u64).div_ceil(api.max_page());
        let (warmup, runs) = if lab.smoke { (1, 1) } else { (1, 7) };
        let mut agent_answer = String::new();
        let mut shell_members = 0;
        lab.mock.take();
        let samples = measure::interleaved(&cmds, warmup, runs, &dir.join("run"), |i, s| {
            if i == 0 {
                lab.expect(1, pages)?;
                let plan: serde_json::Value =
                    serde_json::from_str(&s.stdout).map_err(|e| format!("plan output: {e}"))?;
                let listed = plan["discovered"].as_array().map_or(0, Vec::len);
                if listed != count {
                    return Err(format!("the plan lists {listed} machines, not {count}"));
                }
                agent_answer = format!(
                    "{} ({} machines listed)",
                    plan["outcome"]["decision"].as_str().unwrap_or("?"),
                    listed
                );
            } else {
                lab.expect(1, 1)?;
                let env = std::fs::read_to_string(&env_file).map_err(|e| e.to_string())?;
                shell_members = initial_cluster_len(&env);
            }
            Ok(())
        })?;
        let agent = measure::walls(&samples[0]);
        let rss = measure::peak_rss(&cmds[0], &dir.join("rss"))?;
        let shell_rss = measure::peak_rss(&cmds[1], &dir.join("rss"))?;
        lab.mock.take();
        agent_rss = agent_rss.max(rss);
        t += &format!(
            "| {} | agent | 1 + {pages} (the minimum) | {} | {} | {agent_answer} |\n",
            api.name(),
            spread(&agent),
            mib(rss),
        );
        t += &format!(
            "| {} | shell baseline | 1 + 1 | {} | {} | **wrong**: a {shell_members}-member `new` cluster from the first page of {} |\n",
            api.name(),
            spread(&measure::walls(&samples[1])),
            mib(shell_rss),
            api.default_page()
        );
        report.goal(
            &format!("Scale, {}: {count} machines", api.name()),
            "minimum requests, < 1 s, < 32 MiB",
            format!("1 + {pages} requests, {}, {}", dur(agent.median), mib(rss)),
            agent.median.as_secs_f64() < 1.0 && rss < 32 * 1024,
        );
    }
    t += "\nThe agent's answer is right: 10,000 machines carry the tag while `cluster.size` is 3, \
          so it starts nothing and says why. The shell baseline writes a new cluster out of \
          whatever the first page held.\n";
    report.section(t);
    Ok(agent_rss)
}
