//! The BPF programs and links the kernel holds, as `bpftool` lists them (the
//! oracle for what a tracer left attached), and those a process holds open
//! (`prog_id` and `link_id` of its /proc/PID/fdinfo).

use std::{collections::BTreeSet, process::Command, time::Duration};

use serde_json::Value;

/// The names of tracer's programs that every mode loads (a process fork, a task
/// exit, the task iterator).
const TRACER_PROGRAMS: [&str; 3] = ["sched_process_fork", "sched_process_exit", "iter_task"];

fn bpftool_json(args: &[&str]) -> Vec<Value> {
    let out = super::run(Command::new("bpftool").arg("--json").args(args), Duration::from_secs(20));
    assert!(
        out.status.success(),
        "bpftool {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bpftool {args:?} printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    v.as_array().cloned().unwrap_or_default()
}

/// Ids of every loaded program (`bpftool prog show`).
pub fn programs() -> BTreeSet<u64> {
    bpftool_json(&["prog", "show"]).iter().filter_map(|p| p["id"].as_u64()).collect()
}

/// Ids of the loaded programs that carry tracer's program names (matched as
/// prefixes: without BTF, names are cut to 15 bytes).
pub fn tracer_programs() -> BTreeSet<u64> {
    bpftool_json(&["prog", "show"])
        .iter()
        .filter(|p| {
            let name = p["name"].as_str().unwrap_or("");
            name.len() >= 8 && TRACER_PROGRAMS.iter().any(|n| n.starts_with(name))
        })
        .filter_map(|p| p["id"].as_u64())
        .collect()
}

/// Ids of every link, i.e. attachment (`bpftool link show`).
pub fn links() -> BTreeSet<u64> {
    bpftool_json(&["link", "show"]).iter().filter_map(|l| l["id"].as_u64()).collect()
}

/// What one process holds open: program ids and link ids.
#[derive(Debug, Default)]
pub struct Held {
    pub programs: BTreeSet<u64>,
    pub links: BTreeSet<u64>,
}

/// The programs and links `pid` holds, from its descriptors' fdinfo.
pub fn held_by(pid: u32) -> Held {
    let mut held = Held::default();
    let dir = format!("/proc/{pid}/fdinfo");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {dir}: {e}"));
    for e in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else { continue };
        let field = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok());
        match (field("link_id:"), field("prog_id:")) {
            (Some(link), prog) => {
                held.links.insert(link);
                held.programs.extend(prog);
            }
            (None, Some(prog)) => {
                held.programs.insert(prog);
            }
            (None, None) => {}
        }
    }
    held
}
