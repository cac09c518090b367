//! 4. Footprint: the stripped release binary with every provider, and the peak RSS of runs.

use crate::lab::Lab;
use crate::report::{Report, mib};

/// `latency_rss`, `scale_rss`: the agent's peak RSS in those benchmarks, KiB (0: not run).
pub fn run(lab: &Lab, latency_rss: u64, scale_rss: u64, report: &mut Report) -> Result<(), String> {
    let size = std::fs::metadata(&lab.agent)
        .map_err(|e| format!("{}: {e}", lab.agent.display()))?
        .len();
    let symbols = std::process::Command::new("nm")
        .arg(&lab.agent)
        .output()
        .map(|o| !String::from_utf8_lossy(&o.stderr).contains("no symbols"))
        .unwrap_or(false);
    let mb = size as f64 / 1e6;
    report.goal(
        "Binary size, stripped, every provider",
        "≤ 16 MB",
        format!(
            "{mb:.1} MB ({} bytes){}",
            size,
            if symbols { ", NOT stripped" } else { "" }
        ),
        size <= 16_000_000 && !symbols,
    );
    let mut t = format!(
        "## 4. Footprint\n\n\
         | What | Measured |\n|---|---|\n\
         | `{}` (release profile: LTO, `opt-level = \"s\"`, stripped; DigitalOcean, Hetzner, AWS, DNS, static) | {mb:.1} MB |\n",
        lab.agent.file_name().unwrap_or_default().to_string_lossy()
    );
    if latency_rss > 0 {
        let rss = latency_rss;
        report.goal(
            "Peak RSS, boot path (3 members)",
            "≤ 16 MiB",
            mib(rss),
            rss <= 16 * 1024,
        );
        t += &format!(
            "| Peak RSS of a boot-path run (3 members) | {} |\n",
            mib(rss)
        );
    }
    if scale_rss > 0 {
        t += &format!(
            "| Peak RSS of a 10,000-machine `plan` (the higher of DigitalOcean and Hetzner) | {} |\n",
            mib(scale_rss)
        );
    }
    report.section(t);
    Ok(())
}
