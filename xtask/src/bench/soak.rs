//! The soak (`--only soak`; not in the default set, it takes minutes): one
//! million short processes (fork + `_exit`, from many threads at once) through
//! a running `tracer daemon`. The daemon's RSS (VmRSS of /proc/PID/status) and
//! its counters of what it keeps (`exited_kept`, `cgroups_known`, `processes`,
//! `heap_bytes` of `tracer stats --json`) are read at the start, after every
//! 100,000 processes, and at the end once the daemon has settled. It tells
//! whether the RSS stayed within 5 MiB of its value after the first 100,000,
//! and whether kept exits or known cgroups grew.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::columns::{daemon_stats, socket_path};
use super::procs::{self, Spawned};
use super::report::thousands;

/// Processes made in all.
pub const PROCESSES: u64 = 1_000_000;
/// A sample after every so many.
const STEP: u64 = 100_000;
/// Threads forking at once.
const FORKERS: usize = 16;
/// How far the RSS may move from its value after the first step.
const FLAT_KIB: u64 = 5 * 1024;
/// Time left to the daemon after the last process, before the end sample
/// (exited processes are kept for a linger of 2 s).
const SETTLE: Duration = Duration::from_secs(5);

/// One reading of the daemon.
pub struct Sample {
    /// What it is: `start`, a count of processes, `end`.
    pub label: String,
    pub made: u64,
    pub secs: f64,
    pub rss_kib: u64,
    pub stats: Value,
}

impl Sample {
    fn stat(&self, key: &str) -> u64 {
        self.stats[key].as_u64().unwrap_or(0)
    }
}

pub struct Soak {
    pub daemon_pid: u32,
    pub samples: Vec<Sample>,
}

/// Runs the soak against a daemon of its own on `dir`'s socket.
pub fn soak(tracer: &Path, dir: &Path) -> Result<Soak> {
    let socket = socket_path(dir);
    let mut cmd = Command::new(tracer);
    cmd.args(["daemon", "--socket"]).arg(&socket);
    let mut daemon = Spawned::start("tracer daemon", cmd, Stdio::null())?;
    daemon.wait_stderr("serving", Duration::from_secs(30))?;
    let pid = daemon.pid();
    println!();
    println!(
        "soak: {} processes (fork + _exit from {FORKERS} threads) through tracer daemon pid {pid}",
        thousands(PROCESSES)
    );
    let started = Instant::now();
    let sample = |label: String, made: u64| -> Result<Sample> {
        let s = Sample {
            label,
            made,
            secs: started.elapsed().as_secs_f64(),
            rss_kib: rss_kib(pid)?,
            stats: daemon_stats(tracer, &socket)?,
        };
        println!("{}", row(&s));
        std::io::stdout().flush().ok();
        Ok(s)
    };
    println!("{HEADER}");
    let mut samples = vec![sample("start".into(), 0)?];
    let made = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let forkers: Vec<_> = (0..FORKERS)
        .map(|_| {
            let (made, stop) = (made.clone(), stop.clone());
            thread::spawn(move || forker(&made, &stop))
        })
        .collect();
    let mut next = STEP;
    let result = loop {
        if let Err(e) = procs::check_interrupted().and_then(|()| daemon.ensure_running()) {
            break Err(e);
        }
        let n = made.load(Ordering::Relaxed);
        if n >= next {
            match sample(thousands(next), n) {
                Ok(s) => samples.push(s),
                Err(e) => break Err(e),
            }
            if next >= PROCESSES {
                break Ok(());
            }
            next += STEP;
        }
        if forkers.iter().all(|f| f.is_finished()) && made.load(Ordering::Relaxed) < next {
            break Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    };
    stop.store(true, Ordering::Relaxed);
    for f in forkers {
        f.join().map_err(|_| anyhow::anyhow!("soak: a forking thread panicked"))??;
    }
    result?;
    procs::sleep(SETTLE)?;
    samples.push(sample("end".into(), made.load(Ordering::Relaxed))?);
    daemon.stop(Duration::from_secs(15))?;
    let soak = Soak { daemon_pid: pid, samples };
    print!("{}", soak.verdict());
    Ok(soak)
}

/// Forks until [`PROCESSES`] are made (counted after each is reaped) or `stop`.
fn forker(made: &AtomicU64, stop: &AtomicBool) -> Result<()> {
    while !stop.load(Ordering::Relaxed) && made.load(Ordering::Relaxed) < PROCESSES {
        // SAFETY: the child calls only _exit, which is async-signal-safe, so
        // forking from a thread of this multi-threaded process is sound.
        let child = unsafe { libc::fork() };
        match child {
            -1 => {
                return Err(std::io::Error::last_os_error())
                    .context("soak: fork() failed (pid limit? check `ulimit -u` and pid_max)");
            }
            // SAFETY: in the child: leave at once.
            0 => unsafe { libc::_exit(0) },
            _ => {}
        }
        loop {
            let mut status = 0;
            // SAFETY: waiting for our own child; status points to a local.
            let r = unsafe { libc::waitpid(child, &mut status, 0) };
            if r == child {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).context("soak: waitpid() failed");
            }
        }
        made.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("soak: reading /proc/{pid}/status (did the daemon exit?)"))?;
    parse_vmrss(&status).with_context(|| format!("soak: no VmRSS in /proc/{pid}/status"))
}

fn parse_vmrss(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

const HEADER: &str = "| after | s | daemon RSS MiB | exited_kept | cgroups_known | processes | heap MiB |\n\
                      |---|---:|---:|---:|---:|---:|---:|";

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn row(s: &Sample) -> String {
    format!(
        "| {} | {:.1} | {} | {} | {} | {} | {} |",
        s.label,
        s.secs,
        mib(s.rss_kib),
        thousands(s.stat("exited_kept")),
        thousands(s.stat("cgroups_known")),
        thousands(s.stat("processes")),
        mib(s.stat("heap_bytes") / 1024)
    )
}

impl Soak {
    /// The sample after the first step (the warm daemon), and the last.
    fn warm_and_end(&self) -> Option<(&Sample, &Sample)> {
        let warm = self.samples.iter().find(|s| s.made >= STEP)?;
        Some((warm, self.samples.last()?))
    }

    /// The largest distance of the RSS from its warm value, in KiB.
    fn rss_drift_kib(&self) -> Option<u64> {
        let (warm, _) = self.warm_and_end()?;
        self.samples.iter().filter(|s| s.made >= STEP).map(|s| s.rss_kib.abs_diff(warm.rss_kib)).max()
    }

    fn grew(&self, key: &str) -> Option<(u64, u64, bool)> {
        let (start, end) = (self.samples.first()?, self.samples.last()?);
        Some((start.stat(key), end.stat(key), end.stat(key) > start.stat(key)))
    }

    /// The closing lines: flat or not, grew or not.
    pub fn verdict(&self) -> String {
        let mut out = String::new();
        match (self.warm_and_end(), self.rss_drift_kib()) {
            (Some((warm, end)), Some(drift)) => out.push_str(&format!(
                "RSS after the first {}: {} MiB, at the end {} MiB; the most it moved from there: {} MiB: {}\n",
                thousands(STEP),
                mib(warm.rss_kib),
                mib(end.rss_kib),
                mib(drift),
                if drift <= FLAT_KIB { "within 5 MiB" } else { "NOT within 5 MiB" }
            )),
            _ => out.push_str(&format!("fewer than {} processes were made: no verdict on RSS\n", thousands(STEP))),
        }
        for key in ["exited_kept", "cgroups_known"] {
            if let Some((a, b, grew)) = self.grew(key) {
                out.push_str(&format!(
                    "{key}: {a} at the start, {b} at the end: {}\n",
                    if grew { "GREW" } else { "did not grow" }
                ));
            }
        }
        if let Some(end) = self.samples.last() {
            out.push_str(&format!("lost {}, events {}\n", end.stat("lost"), thousands(end.stat("events_total"))));
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut md = format!(
            "## Soak\n\n{} processes (fork + `_exit` from {FORKERS} threads) through `tracer daemon` (pid {}):\n\n{HEADER}\n",
            thousands(PROCESSES),
            self.daemon_pid
        );
        for s in &self.samples {
            md.push_str(&row(s));
            md.push('\n');
        }
        md.push('\n');
        md.push_str(&self.verdict());
        md.push('\n');
        md
    }

    pub fn json(&self) -> Value {
        json!({
            "processes": PROCESSES,
            "forkers": FORKERS,
            "daemon_pid": self.daemon_pid,
            "samples": self.samples.iter().map(|s| json!({
                "after": s.label, "made": s.made, "secs": s.secs, "rss_kib": s.rss_kib,
                "exited_kept": s.stats["exited_kept"], "cgroups_known": s.stats["cgroups_known"],
                "processes": s.stats["processes"], "heap_bytes": s.stats["heap_bytes"],
                "lost": s.stats["lost"],
            })).collect::<Vec<_>>(),
            "rss_drift_kib": self.rss_drift_kib(),
            "rss_flat": self.rss_drift_kib().map(|d| d <= FLAT_KIB),
            "exited_kept_grew": self.grew("exited_kept").map(|g| g.2),
            "cgroups_known_grew": self.grew("cgroups_known").map(|g| g.2),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(made: u64, rss_kib: u64, kept: u64) -> Sample {
        Sample {
            label: made.to_string(),
            made,
            secs: 0.0,
            rss_kib,
            stats: json!({"exited_kept": kept, "cgroups_known": 40, "processes": 200, "heap_bytes": 4 << 20}),
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(parse_vmrss("Name:\ttracer\nVmRSS:\t   12345 kB\nVmData: 1 kB\n"), Some(12345));
        assert_eq!(parse_vmrss("Name: x\n"), None);
        let flat = Soak {
            daemon_pid: 1,
            samples: vec![
                sample(0, 10_000, 0),
                sample(STEP, 20_000, 50),
                sample(2 * STEP, 24_000, 0),
                sample(PROCESSES, 21_000, 0),
            ],
        };
        assert_eq!(flat.rss_drift_kib(), Some(4_000));
        assert!(flat.verdict().contains("within 5 MiB") && !flat.verdict().contains("NOT"), "{}", flat.verdict());
        assert!(flat.verdict().contains("exited_kept: 0 at the start, 0 at the end: did not grow"));
        assert_eq!(flat.json()["rss_flat"], true);
        let leak = Soak {
            daemon_pid: 1,
            samples: vec![sample(0, 10_000, 0), sample(STEP, 20_000, 0), sample(500_000, 30_000, 9)],
        };
        assert!(leak.verdict().contains("NOT within 5 MiB") && leak.verdict().contains("GREW"), "{}", leak.verdict());
        assert!(leak.markdown().contains("| 500000 |"));
    }
}
