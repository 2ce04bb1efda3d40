//! `tracer check`, `tracer --version` and the mode in `tracer stats`: what this
//! kernel supports, told by loading the programs, and told the same way everywhere.
//! (The other kernels of the matrix are checked in VMs by `cargo xtask vm-test`.)

use std::{process::Command, time::Duration};

use serde_json::Value;

use crate::support::{
    self, require_root, require_tool,
    tracer::{TRACER, tracer_out},
};

fn check_json() -> Value {
    let out = tracer_out(&["check", "--json"]);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("tracer check --json is not JSON ({e}): {out}"))
}

#[test]
fn check_lists_every_feature_with_a_status_and_reason() {
    if !require_root() {
        return;
    }
    let v = check_json();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    assert_eq!(v["kernel"], release.trim(), "{v}");
    let features = v["features"].as_array().unwrap_or_else(|| panic!("no features: {v}"));
    let names: Vec<&str> = features.iter().filter_map(|f| f["name"].as_str()).collect();
    for want in ["start-up argv", "cgroup moves", "renames", "resident memory (RSS)", "reparenting to subreapers"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for f in features {
        match f["status"].as_str() {
            Some("full") => assert!(f["why"].is_null(), "a full feature gives no reason: {f}"),
            Some("degraded" | "missing") => {
                assert!(f["why"].as_str().is_some_and(|w| !w.is_empty()), "no reason: {f}")
            }
            other => panic!("status {other:?} of {f}"),
        }
    }
    // The mode names exactly the features that are not full.
    let lacking: Vec<&str> =
        features.iter().filter(|f| f["status"] != "full").filter_map(|f| f["name"].as_str()).collect();
    let mode = v["mode"].as_str().expect("mode");
    if lacking.is_empty() {
        assert_eq!(mode, "full");
    } else {
        assert_eq!(mode, format!("degraded ({})", lacking.join(", ")));
    }
    // What was probed agrees with the features: start-up argv is full exactly
    // when the sleepable iterator loaded, and then nothing was refused for it.
    let argv = features.iter().find(|f| f["name"] == "start-up argv").expect("listed");
    assert_eq!(argv["status"] == "full", v["probes"]["task_iterator"] == "sleepable", "{v}");
    if argv["status"] == "full" {
        let refused = v["refused"].as_array().expect("refused is a list");
        assert!(refused.iter().all(|r| r["program"] != "iter_task"), "{v}");
    }
}

/// `--version` tells the mode from BTF alone, `check` by loading, `stats` as run:
/// on one kernel they agree.
#[test]
fn version_check_and_stats_name_the_same_mode() {
    if !require_root() {
        return;
    }
    let mode = check_json()["mode"].as_str().expect("mode").to_string();
    let version = tracer_out(&["--version"]);
    let mut lines = version.lines();
    let first = lines.next().unwrap_or("");
    assert!(first.starts_with(&format!("tracer {}", env!("CARGO_PKG_VERSION"))), "{version}");
    let second = lines.next().unwrap_or("");
    assert!(second.contains(&format!("mode {mode} ")), "--version says {second:?}, check says {mode:?}");
    let stats: Value = serde_json::from_str(&tracer_out(&["stats", "--json", "--standalone"])).expect("stats JSON");
    assert_eq!(stats["mode"], mode.as_str(), "{stats}");
    let text = tracer_out(&["check"]);
    assert!(text.lines().any(|l| l == format!("mode     {mode}")), "{text}");
}

/// Without privileges nothing can be probed: one line says why, and the mode BTF
/// predicts; the exit status is 1.
#[test]
fn check_without_privileges_says_why_in_one_line() {
    if !require_root() || !require_tool("setpriv") {
        return;
    }
    let out = support::run(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
            .args([TRACER, "check", "--json"]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim().lines().count(), 1, "{stdout}");
    let v: Value = serde_json::from_str(stdout.trim()).expect("JSON");
    let err = v["error"].as_str().expect("error");
    assert!(err.contains("root") && !err.contains('\n'), "{err}");
    assert!(v["predicted_mode"].as_str().is_some_and(|m| m == "full" || m.starts_with("degraded")), "{v}");
}
