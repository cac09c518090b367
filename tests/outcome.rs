//! The outcome record (docs/outcome.md): after every run, `outcome.json` beside the env file
//! says what was decided, from where, how long it took and how many requests it made, and the
//! Prometheus textfile says the same; a failed run says so, with its exit code, and writes no
//! env file.

mod common;

use serde_json::Value;

use common::*;

fn outcome_of(lab: &Lab, i: usize) -> Value {
    let path = lab.nodes[i].env_file().with_file_name("outcome.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Adds `text` to node `i`'s `[output]` section.
fn output_with(lab: &Lab, i: usize, text: &str) {
    let path = lab.nodes[i].config();
    let config = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[output]\n", &format!("[output]\n{text}\n"));
    std::fs::write(path, config).unwrap();
}

#[test]
fn every_run_leaves_a_record_and_metrics() {
    let lab = Lab::new(etcd34(), 80, 3, 3);
    lab.configure_all();
    let metrics = lab.root.path().join("etcd-bootstrap.prom");
    output_with(
        &lab,
        0,
        &format!("metrics_file = \"{}\"", metrics.display()),
    );
    lab.agents_ok_together(&[0, 1, 2]);

    let members: Vec<String> = lab
        .nodes
        .iter()
        .map(|n| format!("{}=http://{}:2380", n.name, n.ip))
        .collect();
    for i in 0..3 {
        let r = outcome_of(&lab, i);
        assert_eq!(r["result"], "ok", "{r}");
        assert_eq!(r["exit_code"], 0);
        assert_eq!(r["row"], "bootstrap");
        assert_eq!(r["state"], "new");
        assert_eq!(r["this_node"], lab.nodes[i].name.as_str());
        assert_eq!(r["members"], serde_json::json!(members));
        assert_eq!(r["source"]["name"], "static");
        assert_eq!(r["agent_version"], env!("CARGO_PKG_VERSION"));
        let t = &r["timings_ms"];
        let (total, probes) = (t["total"].as_u64().unwrap(), t["probes"].as_u64().unwrap());
        assert!(probes <= total, "{t}");
        // A static list asks nobody; the peers were asked at least once each.
        assert_eq!(r["requests"]["discovery"], 0);
        assert!(r["requests"]["etcd"].as_u64().unwrap() >= 2, "{r}");
    }
    let prom = std::fs::read_to_string(&metrics).unwrap();
    for line in [
        "# TYPE etcd_bootstrap_last_run_success gauge\netcd_bootstrap_last_run_success 1\n",
        "etcd_bootstrap_last_run_exit_code 0\n",
        "etcd_bootstrap_last_run_requests{to=\"discovery\"} 0\n",
        &format!(
            "etcd_bootstrap_last_run_info{{row=\"bootstrap\",state=\"new\",source=\"static\",version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(prom.contains(line), "no {line:?} in:\n{prom}");
    }
    assert!(
        prom.contains("etcd_bootstrap_last_run_duration_seconds{phase=\"total\"} 0."),
        "{prom}"
    );

    // A rerun that cannot decide (the peers' etcd never started, and they no longer vouch):
    // it fails at its deadline, says so in the record and the metrics, and the env file of the
    // first run stays.
    let env_before = lab.nodes[0].env();
    let path = lab.nodes[0].config();
    let config = std::fs::read_to_string(&path)
        .unwrap()
        .replace("timeout = \"30s\"", "timeout = \"1s\"");
    std::fs::write(&path, config).unwrap();
    let out = lab.agent(0, &[]);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    let r = outcome_of(&lab, 0);
    assert_eq!(r["result"], "failed", "{r}");
    assert_eq!(r["exit_code"], 69);
    assert_eq!(r["row"], Value::Null);
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .starts_with("no decision within discovery.timeout (1s): "),
        "{r}"
    );
    assert_eq!(lab.nodes[0].env(), env_before);
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        prom.contains("etcd_bootstrap_last_run_success 0\n"),
        "{prom}"
    );
    assert!(
        prom.contains("etcd_bootstrap_last_run_exit_code 69\n"),
        "{prom}"
    );
}
