//! The outcome record as a Prometheus textfile, for node_exporter's textfile collector. Every
//! label value comes from a closed set (rows, states, provider names) or the agent's version.

use super::Record;

/// One gauge `etcd_bootstrap_<name>` in the exposition format: its help, type and samples
/// (`labels` as written, `{a="b"}` or empty).
pub fn gauge(out: &mut String, name: &str, help: &str, samples: &[(String, String)]) {
    out.push_str(&format!(
        "# HELP etcd_bootstrap_{name} {help}\n# TYPE etcd_bootstrap_{name} gauge\n"
    ));
    for (labels, value) in samples {
        out.push_str(&format!("etcd_bootstrap_{name}{labels} {value}\n"));
    }
}

pub fn text(r: &Record) -> String {
    let mut out = String::new();
    let mut gauge =
        |name: &str, help: &str, samples: &[(String, String)]| gauge(&mut out, name, help, samples);
    let plain = |v: String| vec![(String::new(), v)];
    gauge(
        "last_run_success",
        "1 if the last run wrote etcd's env file, 0 if it failed.",
        &plain(u8::from(r.ok()).to_string()),
    );
    gauge(
        "last_run_exit_code",
        "The last run's exit code (docs/exit-codes.md).",
        &plain(r.exit_code.to_string()),
    );
    gauge(
        "last_run_timestamp_seconds",
        "When the last run ended, in seconds since the Unix epoch.",
        &plain(r.finished_at.to_string()),
    );
    let t = &r.timings_ms;
    gauge(
        "last_run_duration_seconds",
        "Where the last run's time went: listing machines, asking peers, and in all.",
        &[
            ("{phase=\"discovery\"}".into(), seconds(t.discovery)),
            ("{phase=\"probes\"}".into(), seconds(t.probes)),
            ("{phase=\"total\"}".into(), seconds(t.total)),
        ],
    );
    gauge(
        "last_run_requests",
        "Requests the last run made, to discovery sources and to etcd.",
        &[
            (
                "{to=\"discovery\"}".into(),
                r.requests.discovery.to_string(),
            ),
            ("{to=\"etcd\"}".into(), r.requests.etcd.to_string()),
        ],
    );
    let labels = format!(
        "{{row=\"{}\",state=\"{}\",source=\"{}\",version=\"{}\"}}",
        r.row.unwrap_or(""),
        r.state.unwrap_or(""),
        r.source.as_ref().map_or("", |s| s.name),
        escape(r.agent_version)
    );
    gauge(
        "last_run_info",
        "The last run's decision: its row, the state written and where the members came from.",
        &[(labels, "1".into())],
    );
    out
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// A label value as the exposition format writes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
