//! The load generator end to end: the real binary, its embedded broker, a
//! tiny fixed-rate workload (static consumers, or consumer groups), and the
//! JSON report it writes.
use std::process::Command;

fn run(args: &[&str], name: &str) -> serde_json::Value {
    let dir = std::env::temp_dir().join(format!("loadgen-e2e-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let html = dir.join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-loadgen"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .arg("--quiet")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "status {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains("end-to-end"), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") || page.contains("createElementNS"));
    assert!(
        !page.contains("http-equiv") && !page.contains("src=\"http"),
        "no external assets"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    report
}

fn n(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// A clean run in which every message was consumed `fanout` times.
fn check(report: &serde_json::Value, fanout: u64) {
    let produced = n(&report["messages_produced"]);
    assert!(produced > 0, "{report}");
    assert_eq!(produced * fanout, n(&report["messages_consumed"]), "{report}");
    assert_eq!(produced, n(&report["messages_sent"]), "{report}");
    assert_eq!(n(&report["errors"]), 0, "{report}");
    assert!(report["produce"]["msgs_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["consume"]["mb_per_s"].as_f64().unwrap() > 0.0);
    for key in ["publish_latency_us", "end_to_end_latency_us"] {
        let p = &report[key];
        assert!(n(&p["count"]) > 0, "{key}: {p}");
        let ordered: Vec<u64> = ["p50", "p75", "p95", "p99", "p99_9", "p99_99", "max"]
            .iter()
            .map(|k| n(&p[*k]))
            .collect();
        assert!(ordered.windows(2).all(|w| w[0] <= w[1]), "{key} not ordered: {p}");
    }
    assert!(!report["series"].as_array().unwrap().is_empty());
}

#[test]
fn fixed_rate_run_against_the_embedded_broker() {
    let report = run(
        &[
            "--partitions",
            "4",
            "--rate",
            "500",
            "--warmup",
            "0.5",
            "--duration",
            "1.5",
            "--message-size",
            "256",
            "--broker-shards",
            "1",
        ],
        "fixed",
    );
    check(&report, 1);
    assert_eq!(report["mode"], "fixed-rate");
    assert_eq!(report["broker"], "embedded");
    assert_eq!(report["workload"]["message_size"], 256);
}

#[test]
fn max_rate_keyed_run_from_a_bundled_workload() {
    let report = run(
        &[
            "--workload",
            "max-rate-100b",
            "--partitions",
            "2",
            "--warmup",
            "0",
            "--duration",
            "1",
            "--keyed",
            "--inflight",
            "64",
            "--acks",
            "all",
            "--compression",
            "lz4",
            "--broker-shards",
            "1",
        ],
        "max",
    );
    check(&report, 1);
    assert_eq!(report["mode"], "max-rate");
    assert_eq!(report["workload"]["name"], "max-rate-100b");
}

#[test]
fn two_subscriptions_each_consume_every_message_once() {
    let report = run(
        &[
            "--subscriptions",
            "2",
            "--consumers",
            "2",
            "--partitions",
            "4",
            "--rate",
            "2000",
            "--warmup",
            "1",
            "--duration",
            "2",
            "--message-size",
            "128",
            "--broker-shards",
            "2",
        ],
        "groups",
    );
    check(&report, 2);
    assert_eq!(report["workload"]["subscriptions"], 2);
    assert_eq!(report["workload"]["consumers"], 2);
    let produced = n(&report["messages_produced"]);
    let by_subscription: Vec<u64> = report["messages_consumed_by_subscription"]
        .as_array()
        .unwrap_or_else(|| panic!("no per-subscription counts: {report}"))
        .iter()
        .map(n)
        .collect();
    assert_eq!(by_subscription, [produced, produced], "{report}");
}

#[test]
fn bad_input_fails_cleanly() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-loadgen"))
        .args(["--workload", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonexistent"));
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-loadgen"))
        .args(["--message-size", "4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-loadgen"))
        .args(["--subscriptions", "2", "--consumers", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("subscriptions = 2 needs consumers >= 1"), "{stderr}");
}
