//! `cargo xtask vm-test`: the kernel matrix. The same static `tracer` binary is
//! run on Debian's stock kernels (5.10, 6.1, 6.12), each booted under qemu, and on
//! this host; a test agent (this very program, built static too) runs the same
//! cases on each and prints one result line per case, gathered here into a
//! kernel x case table.
//!
//! qemu runs with software emulation (TCG): nested KVM is not available on the
//! machines this project runs on, and a Debian kernel boots in about 13 s
//! without it. The initramfs holds busybox, the two static binaries and an
//! /init script; the serial console carries the agent's lines out.

pub mod agent;
pub mod kernels;

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::util;

/// Longest a VM may run before it is killed and its unfinished cases fail.
const VM_TIMEOUT: Duration = Duration::from_secs(600);
/// Prefixes of the agent's lines (see `agent`).
const CASE: &str = "TRACER-VM-CASE ";
const CHECK: &str = "TRACER-VM-CHECK ";
const DONE: &str = "TRACER-VM-DONE";

/// What one kernel (VM or host) gave.
#[derive(Debug, Default)]
pub struct Column {
    /// Heading: "5.10.0-32-amd64" or "host 6.18.44".
    pub name: String,
    /// `tracer check --json`, as the agent printed it.
    pub check: Option<Value>,
    /// (case, status, detail) in the order run.
    pub cases: Vec<(String, String, String)>,
    /// Why the run ended early, if it did.
    pub broken: Option<String>,
    pub seconds: f64,
}

impl Column {
    fn failed(&self) -> bool {
        self.broken.is_some() || self.cases.iter().any(|(_, status, _)| status != "ok" && status != "degraded")
    }

    /// Reads the agent's lines out of everything the VM printed.
    fn parse(&mut self, output: &str) {
        let mut done = false;
        for line in output.lines() {
            // The serial console may put carriage returns or escape codes before a line.
            let line = line.trim_matches(|c: char| c == '\r' || c.is_whitespace());
            if let Some(i) = line.find(CASE) {
                match serde_json::from_str::<Value>(&line[i + CASE.len()..]) {
                    Ok(v) => self.cases.push((
                        v["case"].as_str().unwrap_or("?").to_string(),
                        v["status"].as_str().unwrap_or("fail").to_string(),
                        v["detail"].as_str().unwrap_or("").to_string(),
                    )),
                    Err(e) => self.cases.push(("?".into(), "fail".into(), format!("unreadable case line ({e})"))),
                }
            } else if let Some(i) = line.find(CHECK) {
                self.check = serde_json::from_str(&line[i + CHECK.len()..]).ok();
            } else if line.contains(DONE) {
                done = true;
            }
        }
        if !done && self.broken.is_none() {
            self.broken = Some("the agent did not finish (see the log)".into());
        }
    }
}

/// Options of `cargo xtask vm-test`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kernel series to boot (default: all of 5.10, 6.1, 6.12).
    #[arg(long, value_delimiter = ',')]
    pub kernel: Vec<String>,
    /// Skip the run on this host.
    #[arg(long)]
    pub no_host: bool,
    /// Cases to run (default: all).
    pub cases: Vec<String>,
}

/// The whole matrix: build, fetch, boot, gather, print. Fails on any FAIL.
pub fn vm_test(args: &Args) -> Result<()> {
    crate::setup::vm_packages()?;
    let series: Vec<kernels::Series> = if args.kernel.is_empty() {
        kernels::MATRIX.to_vec()
    } else {
        let mut v = Vec::new();
        for k in &args.kernel {
            let Some(s) = kernels::MATRIX.iter().find(|s| s.version == k) else {
                let known: Vec<&str> = kernels::MATRIX.iter().map(|s| s.version).collect();
                bail!("--kernel {k}: not in the matrix ({})", known.join(", "));
            };
            v.push(*s);
        }
        v
    };
    let tracer = crate::build_static()?;
    let agent = build_agent()?;
    let kernels = kernels::fetch(&series)?;
    let work = util::target_dir().join("vm");
    fs::create_dir_all(&work)?;
    let initrd = initramfs(&work, &tracer, &agent, &args.cases)?;

    let mut columns = Vec::new();
    if !args.no_host {
        columns.push(host_run(&agent, &tracer, &args.cases, &work)?);
    }
    // One VM at a time: TCG keeps a core busy per vCPU, and each VM has two.
    for k in &kernels {
        columns.push(boot(k, &initrd, &work)?);
    }
    let table = render(&columns);
    println!("{table}");
    fs::write(work.join("matrix.md"), &table)?;
    let json: Vec<Value> = columns
        .iter()
        .map(|c| {
            serde_json::json!({
                "kernel": c.name, "check": c.check, "broken": c.broken, "seconds": c.seconds,
                "cases": c.cases.iter().map(|(n, s, d)| serde_json::json!({"case": n, "status": s, "detail": d})).collect::<Vec<_>>(),
            })
        })
        .collect();
    fs::write(work.join("matrix.json"), serde_json::to_string_pretty(&json)?)?;
    eprintln!("wrote {} and matrix.json; VM logs in {}", work.join("matrix.md").display(), work.display());
    let failed: Vec<&str> = columns.iter().filter(|c| c.failed()).map(|c| c.name.as_str()).collect();
    if !failed.is_empty() {
        bail!("vm-test: FAIL on {} (see the table above and the logs in {})", failed.join(", "), work.display());
    }
    Ok(())
}

/// The agent (xtask itself) built static, so that it runs in a bare initramfs.
fn build_agent() -> Result<PathBuf> {
    let mut cmd = util::cargo();
    cmd.args(["build", "--release", "-p", "xtask", "--target", crate::STATIC_TARGET]);
    eprintln!("==> {}", util::display(&cmd));
    util::run(&mut cmd, "building the static test agent", "fix the errors above and rerun")?;
    Ok(util::target_dir().join(crate::STATIC_TARGET).join("release").join("xtask"))
}

/// /init of the VMs: mounts what the tracer and the agent need, runs the agent,
/// powers off.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tracefs tracefs /sys/kernel/tracing
mount -t cgroup2 cgroup2 /sys/fs/cgroup
hostname tracer-vm
echo "TRACER-VM-KERNEL $(uname -r)"
/agent vm-agent --tracer /tracer @CASES@
echo o > /proc/sysrq-trigger
sleep 30
"#;

/// Builds the initramfs (newc cpio, gzip) with busybox, the tracer and the agent.
fn initramfs(work: &Path, tracer: &Path, agent: &Path, cases: &[String]) -> Result<PathBuf> {
    let root = work.join("initramfs");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("clearing {}", root.display()))?;
    }
    for d in ["bin", "proc", "sys", "dev", "tmp", "run", "etc", "root"] {
        fs::create_dir_all(root.join(d))?;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .context("no /bin/busybox: install the Debian package busybox-static (`cargo xtask setup --test-deps`)")?;
    copy_exec(busybox, &root.join("bin/busybox"))?;
    copy_exec(tracer, &root.join("tracer"))?;
    copy_exec(agent, &root.join("agent"))?;
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")?;
    fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    let quoted: Vec<String> = cases.iter().map(|c| format!("'{}'", c.replace('\'', ""))).collect();
    let init = root.join("init");
    fs::write(&init, INIT.replace("@CASES@", &quoted.join(" ")))?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    let out = work.join("initramfs.cpio.gz");
    let script = "cd \"$1\" && find . | cpio -o -H newc --quiet | gzip -1 > \"$2\"";
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script, "sh"]).arg(&root).arg(&out);
    util::run(&mut cmd, "packing the initramfs", "install cpio and gzip (`cargo xtask setup --test-deps`)")?;
    Ok(out)
}

fn copy_exec(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Runs the agent on this host, as the matrix's host column.
fn host_run(agent: &Path, tracer: &Path, cases: &[String], work: &Path) -> Result<Column> {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut col = Column { name: format!("host {}", release.trim()), ..Column::default() };
    eprintln!("==> host: {} vm-agent", agent.display());
    let t0 = Instant::now();
    let mut cmd = Command::new(agent);
    cmd.arg("vm-agent").arg("--tracer").arg(tracer).args(cases);
    let out = cmd.stderr(Stdio::inherit()).output().context("running the test agent on this host")?;
    col.seconds = t0.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    fs::write(work.join("host.log"), text.as_bytes())?;
    if !out.status.success() {
        col.broken = Some(format!("the agent exited with {}", out.status));
    }
    col.parse(&text);
    Ok(col)
}

/// Boots `kernel` with the initramfs and gathers the agent's lines.
fn boot(kernel: &kernels::Kernel, initrd: &Path, work: &Path) -> Result<Column> {
    let mut col = Column { name: kernel.release.clone(), ..Column::default() };
    let log_path = work.join(format!("{}.log", kernel.release));
    eprintln!("==> booting {} ({}) under qemu; log: {}", kernel.release, kernel.series.release, log_path.display());
    let t0 = Instant::now();
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "2"])
        .args(["-nographic", "-no-reboot", "-monitor", "none", "-serial", "stdio"])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("starting qemu-system-x86_64 (`cargo xtask setup --test-deps` installs it)")?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let deadline = t0 + VM_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_secs(1))) {
            Ok(line) => {
                if line.contains(CASE) {
                    eprintln!("    {}", line.trim());
                }
                log.push_str(&line);
                log.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) if left.is_zero() => {
                let _ = child.kill();
                col.broken = Some(format!("killed after {} s", VM_TIMEOUT.as_secs()));
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    let status = child.wait()?;
    let _ = reader.join();
    col.seconds = t0.elapsed().as_secs_f64();
    if let Some(mut err) = child.stderr.take() {
        let mut e = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut e);
        if !e.trim().is_empty() {
            log.push_str("\n--- qemu stderr ---\n");
            log.push_str(&e);
        }
    }
    fs::write(&log_path, &log)?;
    if !status.success() && col.broken.is_none() {
        col.broken = Some(format!("qemu exited with {status}"));
    }
    col.parse(&log);
    eprintln!("    {} done in {:.0} s", kernel.release, col.seconds);
    Ok(col)
}

/// The kernel x case table (Markdown), each cell `ok`, `degraded: why` or `FAIL: why`,
/// then the features `tracer check` reported per kernel.
pub fn render(columns: &[Column]) -> String {
    let mut cases: Vec<String> = Vec::new();
    for c in columns {
        for (name, ..) in &c.cases {
            if !cases.contains(name) {
                cases.push(name.clone());
            }
        }
    }
    let mut out = String::new();
    let _ = write!(out, "| case |");
    for c in columns {
        let _ = write!(out, " {} |", c.name);
    }
    out.push('\n');
    out.push_str("|---|");
    out.push_str(&"---|".repeat(columns.len()));
    out.push('\n');
    for case in &cases {
        let _ = write!(out, "| {case} |");
        for c in columns {
            let cell = match c.cases.iter().find(|(n, ..)| n == case) {
                Some((_, s, _)) if s == "ok" => "ok".to_string(),
                Some((_, s, d)) if s == "degraded" => format!("degraded: {d}"),
                Some((_, _, d)) => format!("FAIL: {d}"),
                None => match &c.broken {
                    Some(why) => format!("FAIL: {why}"),
                    None => "-".to_string(),
                },
            };
            let _ = write!(out, " {} |", cell.replace('|', "/"));
        }
        out.push('\n');
    }
    // What tracer check said of each kernel.
    let _ = write!(out, "| tracer check |");
    for c in columns {
        let _ = write!(out, " {} |", check_cell(c.check.as_ref()).replace('|', "/"));
    }
    out.push('\n');
    let _ = write!(out, "| time |");
    for c in columns {
        let _ = write!(out, " {:.0} s |", c.seconds);
    }
    out.push('\n');
    out
}

/// `mode`, then each feature that is not full, from `tracer check --json`.
fn check_cell(check: Option<&Value>) -> String {
    let Some(v) = check else { return "no output".into() };
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return format!("error: {e}");
    }
    let mode = v["mode"].as_str().unwrap_or("?").to_string();
    let mut parts = vec![mode];
    for f in v["features"].as_array().into_iter().flatten() {
        let status = f["status"].as_str().unwrap_or("?");
        if status != "full" {
            parts.push(format!("{} {status}", f["name"].as_str().unwrap_or("?")));
        }
    }
    parts.join("; ")
}
