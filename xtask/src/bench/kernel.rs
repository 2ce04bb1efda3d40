//! What the kernel says about a run: BPF programs' run time and run count
//! (kernel.bpf_stats_enabled, `bpftool prog show --json`), which programs a
//! process holds (/proc/PID/fdinfo), and a process's CPU time (/proc/PID/stat).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use super::procs;

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// kernel.bpf_stats_enabled=1 while it lives; the old value back when dropped
/// (on every path: errors and Ctrl-C included).
pub struct BpfStatsGuard {
    old: String,
}

impl BpfStatsGuard {
    pub fn enable() -> Result<Self> {
        let old = fs::read_to_string(BPF_STATS)
            .with_context(|| format!("bench: reading {BPF_STATS} (kernel without BPF run-time stats?)"))?
            .trim()
            .to_owned();
        fs::write(BPF_STATS, "1").with_context(|| {
            format!("bench: `sysctl kernel.bpf_stats_enabled=1` failed (writing {BPF_STATS}); the bench needs root")
        })?;
        Ok(BpfStatsGuard { old })
    }

    pub fn old(&self) -> &str {
        &self.old
    }
}

impl Drop for BpfStatsGuard {
    fn drop(&mut self) {
        if let Err(e) = fs::write(BPF_STATS, &self.old) {
            eprintln!(
                "warning: could not restore kernel.bpf_stats_enabled={} ({e}); run `sysctl kernel.bpf_stats_enabled={}`",
                self.old, self.old
            );
        }
    }
}

// ----------------------------------------------------------------- fdinfo ----

/// `prog_id` and `run_cnt` of one /proc/PID/fdinfo file (a program fd has
/// both, a link fd the id of its program alone; other fds neither).
pub fn parse_fdinfo(text: &str) -> Option<(u32, Option<u64>)> {
    let field =
        |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(|v| v.trim().to_owned()));
    let id = field("prog_id")?.parse().ok()?;
    Some((id, field("run_cnt").and_then(|v| v.parse().ok())))
}

/// The BPF programs the processes `pids` hold open (program and link fds),
/// with their run counts where the fd tells it.
pub fn held_programs(pids: &[u32]) -> BTreeMap<u32, Option<u64>> {
    let mut progs = BTreeMap::new();
    for pid in pids {
        let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else { continue };
        for entry in dir.flatten() {
            let Ok(text) = fs::read_to_string(entry.path()) else { continue };
            if let Some((id, cnt)) = parse_fdinfo(&text) {
                let slot: &mut Option<u64> = progs.entry(id).or_default();
                if cnt.is_some() {
                    *slot = cnt;
                }
            }
        }
    }
    progs
}

// ---------------------------------------------------------------- bpftool ----

/// One program's counters (or, after [`diff`], their growth over a run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgStat {
    pub id: u32,
    pub kind: String,
    pub name: String,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

impl ProgStat {
    pub fn json(&self) -> Value {
        json!({"id": self.id, "type": self.kind, "name": self.name, "run_time_ns": self.run_time_ns, "run_cnt": self.run_cnt})
    }
}

/// `bpftool prog show --json`: programs by id (bpftool leaves the counters
/// out while they are zero).
pub fn parse_bpftool(text: &str) -> Result<BTreeMap<u32, ProgStat>> {
    let v: Value = serde_json::from_str(text).context("bench: `bpftool prog show --json` printed no JSON")?;
    let list = v.as_array().context("bench: `bpftool prog show --json` printed no array")?;
    let mut progs = BTreeMap::new();
    for p in list {
        let Some(id) = p.get("id").and_then(Value::as_u64) else { continue };
        let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let n = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
        progs.insert(
            id as u32,
            ProgStat {
                id: id as u32,
                kind: s("type"),
                name: s("name"),
                run_time_ns: n("run_time_ns"),
                run_cnt: n("run_cnt"),
            },
        );
    }
    Ok(progs)
}

pub fn bpftool_snapshot() -> Result<BTreeMap<u32, ProgStat>> {
    let mut cmd = Command::new("bpftool");
    cmd.args(["prog", "show", "--json"]);
    let out = procs::output(cmd, Duration::from_secs(30))
        .context("bench: `bpftool prog show --json` failed (apt package bpftool; `cargo xtask setup` installs it)")?;
    ensure!(
        out.status.success(),
        "bench: `bpftool prog show --json` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    parse_bpftool(&String::from_utf8_lossy(&out.stdout))
}

/// The growth of the programs `ids` between two snapshots (a program absent
/// from `before` started at zero; one absent from `after` is left out).
pub fn diff(before: &BTreeMap<u32, ProgStat>, after: &BTreeMap<u32, ProgStat>, ids: &BTreeSet<u32>) -> Vec<ProgStat> {
    ids.iter()
        .filter_map(|id| {
            let a = after.get(id)?;
            let (t0, c0) = before.get(id).map_or((0, 0), |b| (b.run_time_ns, b.run_cnt));
            Some(ProgStat {
                run_time_ns: a.run_time_ns.saturating_sub(t0),
                run_cnt: a.run_cnt.saturating_sub(c0),
                ..a.clone()
            })
        })
        .collect()
}

// ------------------------------------------------------------- /proc/stat ----

/// utime + stime (clock ticks) from the text of /proc/PID/stat (the whole
/// thread group's, exited threads included).
pub fn parse_proc_stat(text: &str) -> Result<u64> {
    // The comm (field 2) is in parentheses and may hold anything: fields are
    // counted from the last ')'. Field 3 is the first after it; utime is 14.
    let rest = text.rsplit_once(')').map(|(_, r)| r).context("bench: /proc/PID/stat without ')'")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> Result<u64> {
        fields.get(i - 3).and_then(|f| f.parse().ok()).with_context(|| format!("bench: /proc/PID/stat field {i}"))
    };
    Ok(num(14)? + num(15)?)
}

pub fn clock_ticks_per_s() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// CPU time (user + system) of process `pid` so far, in ns.
pub fn cpu_ns(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("bench: reading {path}"))?;
    let ticks = parse_proc_stat(&text)?;
    Ok(ticks * (1_000_000_000 / clock_ticks_per_s()))
}

/// (steal, total) clock ticks of all CPUs from the text of /proc/stat (its
/// `cpu` line: user nice system idle iowait irq softirq steal ...).
pub fn parse_cpu_steal(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).map_while(|f| f.parse().ok()).collect();
    // guest and guest_nice (9th, 10th) are already in user and nice.
    Some((*v.get(7)?, v.iter().take(8).sum()))
}

/// All CPUs' (steal, total) ticks so far.
pub fn cpu_steal() -> Option<(u64, u64)> {
    parse_cpu_steal(&fs::read_to_string("/proc/stat").ok()?)
}

/// The kernel release (`uname -r`).
pub fn release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_else(|_| "?".into())
}

/// The CPU model (first `model name` of /proc/cpuinfo) and the CPU count.
pub fn cpu_model(cpuinfo: &str) -> (String, usize) {
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let n = cpuinfo.lines().filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor")).count();
    (model, n)
}

/// Fails unless the bench can read programs' counters at all.
pub fn check_bpftool() -> Result<()> {
    if crate::util::which("bpftool").is_none() && !std::path::Path::new("/usr/sbin/bpftool").exists() {
        bail!("bench: bpftool is missing (apt package bpftool); run `cargo xtask setup` as root");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo() {
        let prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t26\nprog_type:\t26\nprog_jited:\t1\n\
                    prog_tag:\t5b40872c5d4e7add\nmemlock:\t8192\nprog_id:\t1683\nrun_time_ns:\t91234\n\
                    run_cnt:\t77\nrecursion_misses:\t0\nverified_insns:\t812\n";
        assert_eq!(parse_fdinfo(prog), Some((1683, Some(77))));
        let link = "pos:\t0\nflags:\t02000000\nmnt_id:\t17\nino:\t26\nlink_type:\traw_tracepoint\nlink_id:\t12\n\
                    prog_tag:\t5b40872c5d4e7add\nprog_id:\t1683\ntp_name:\tsched_process_fork\n";
        assert_eq!(parse_fdinfo(link), Some((1683, None)));
        let map = "pos:\t0\nflags:\t02000002\nmap_type:\t2\nmap_id:\t1856\n";
        assert_eq!(parse_fdinfo(map), None);
        assert_eq!(parse_fdinfo("pos:\t0\nflags:\t0100000\n"), None);
    }

    const BPFTOOL: &str = r#"[{"id":7,"type":"cgroup_skb","tag":"6deef7357e7b4530","gpl_compatible":true,"loaded_at":1,"uid":0,"bytes_xlated":64,"jited":true,"bytes_jited":54,"bytes_memlock":4096},
        {"id":1683,"type":"tracing","name":"sched_process_fork","tag":"5b40872c5d4e7add","gpl_compatible":true,"run_time_ns":150000,"run_cnt":300,"loaded_at":1,"uid":0},
        {"id":1684,"type":"tracing","name":"iter_task","run_time_ns":9000,"run_cnt":1}]"#;

    #[test]
    fn bpftool_json() {
        let p = parse_bpftool(BPFTOOL).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[&7].run_cnt, 0);
        assert_eq!(p[&7].name, "");
        assert_eq!(
            p[&1683],
            ProgStat {
                id: 1683,
                kind: "tracing".into(),
                name: "sched_process_fork".into(),
                run_time_ns: 150_000,
                run_cnt: 300
            }
        );
        assert!(parse_bpftool("{}").is_err());
        assert!(parse_bpftool("Error: no").is_err());
    }

    #[test]
    fn counters_diff() {
        let before = parse_bpftool(BPFTOOL).unwrap();
        let mut after = before.clone();
        after.get_mut(&1683).unwrap().run_time_ns = 250_000;
        after.get_mut(&1683).unwrap().run_cnt = 400;
        after.insert(
            1700,
            ProgStat { id: 1700, kind: "tracing".into(), name: "new".into(), run_time_ns: 50, run_cnt: 5 },
        );
        let ids: BTreeSet<u32> = [1683, 1684, 1700, 9999].into();
        let d = diff(&before, &after, &ids);
        let got: Vec<(u32, u64, u64)> = d.iter().map(|p| (p.id, p.run_time_ns, p.run_cnt)).collect();
        assert_eq!(got, [(1683, 100_000, 100), (1684, 0, 0), (1700, 50, 5)]);
    }

    #[test]
    fn proc_stat() {
        // A comm with spaces and a ')' in it.
        let stat = "4242 (we ird) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 12345 1000000 500 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_proc_stat(stat).unwrap(), 325);
        assert!(parse_proc_stat("4242 (short) S 1").is_err());
        assert!(parse_proc_stat("garbage").is_err());
    }

    #[test]
    fn steal() {
        let stat = "cpu  100 5 50 800 10 1 2 32 7 0\ncpu0 50 2 25 400 5 0 1 16 0 0\nintr 1\n";
        assert_eq!(parse_cpu_steal(stat), Some((32, 1000)));
        assert_eq!(parse_cpu_steal("cpu  1 2 3\n"), None);
        assert_eq!(parse_cpu_steal(""), None);
    }

    #[test]
    fn cpuinfo() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(text), ("AMD EPYC 7B13".to_owned(), 2));
        assert_eq!(cpu_model(""), ("?".to_owned(), 0));
    }
}
