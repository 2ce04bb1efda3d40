//! The cases on `tracer events --json --standalone`: known processes started by the
//! agent, and the exact events they must produce (`events`), an orphan adopted by a
//! subreaper (`reparent`), a process moved to another cgroup (`cgroup`).

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::child::Child;
use super::tracer::{EventStream, argv, exited, of, one, ps_json, show};
use super::{Ctx, Outcome, SETTLE, marker, oracle, shell, worker_cmd};

/// Threads the thread worker of the `events` case makes.
const THREADS: u64 = 20;
/// Longest wait for one step (a worker's line, an event) under emulation.
const STEP: Duration = Duration::from_secs(30);

/// Process lifecycle: argv of an exec, exit code, death by SIGKILL, threads, one exit
/// per process, nothing lost.
pub fn events(cx: &Ctx) -> Result<Outcome> {
    let mut stream = EventStream::start(&cx.tracer, &["--standalone"], cx.deadline)?;

    // `sh -c 'exit 3' MARKER`: its argv in full, its exit code.
    let sh = shell()?;
    let argv_expected = vec![sh.display().to_string(), "-c".into(), "exit 3".into(), marker("exit3")];
    let mut m = Child::spawn("sh -c 'exit 3'", Command::new(&sh).args(&argv_expected[1..]), false)?;
    let marked = m.pid();
    let status = m.wait_until(cx.within(STEP))?;
    ensure!(status.code() == Some(3), "sh -c 'exit 3' itself ended with {status}");

    // A process killed by SIGKILL once it runs (after its exec).
    let mut k = Child::spawn("vm-worker sleep", &mut worker_cmd(&["sleep", "60"])?, false)?;
    k.expect_line("ready", cx.within(STEP))?;
    let killed = k.pid();
    k.signal(libc::SIGKILL);
    let status = k.wait_until(cx.within(STEP))?;
    ensure!(status.signal() == Some(libc::SIGKILL), "the sleeping worker ended with {status}, not SIGKILL");

    // A process that creates and joins THREADS threads.
    let n = THREADS.to_string();
    let mut t = Child::spawn("vm-worker threads", &mut worker_cmd(&["threads", &n])?, false)?;
    let threaded = t.pid();
    let status = t.wait_until(cx.within(STEP))?;
    ensure!(status.success(), "vm-worker threads {n} ended with {status}");

    let pids = [marked, killed, threaded];
    let all_exited = stream.wait_for(cx.within(STEP), |evs| pids.iter().all(|p| exited(evs, *p)));
    std::thread::sleep(SETTLE);
    let out = stream.stop(cx.deadline)?;
    let evs = &out.events;
    ensure!(all_exited, "no exit event of every one of pids {pids:?} (marker, killed, threads) came");

    let exec = one(&of(evs, "exec", marked), &format!("exec of sh (pid {marked})"))?;
    ensure!(
        argv(exec) == argv_expected,
        "exec argv of pid {marked}: expected {argv_expected:?}, seen {:?} (truncated {}, unreadable {})",
        argv(exec),
        exec["argv_truncated"],
        exec["argv_unreadable"]
    );
    let exit = one(&of(evs, "exit", marked), &format!("exit of sh (pid {marked})"))?;
    ensure!(exit["status"]["code"] == 3, "exit of sh (pid {marked}): expected code 3, seen status {}", exit["status"]);

    let exit = one(&of(evs, "exit", killed), &format!("exit of the killed worker (pid {killed})"))?;
    ensure!(
        exit["status"]["signal"] == "SIGKILL" && exit["status"]["code"].is_null(),
        "exit of the killed worker (pid {killed}): expected signal SIGKILL, seen status {}",
        exit["status"]
    );

    let clones = of(evs, "clone", threaded);
    let texits = of(evs, "thread_exit", threaded);
    ensure!(
        clones.len() as u64 == THREADS && texits.len() as u64 == THREADS,
        "thread worker (pid {threaded}): expected {THREADS} clone and {THREADS} thread_exit events, saw {} and {}",
        clones.len(),
        texits.len()
    );
    one(&of(evs, "exit", threaded), &format!("exit of the thread worker (pid {threaded})"))?;

    let summary = out.summary()?;
    let lost_lines = evs.iter().filter(|e| e["kind"] == "lost").count();
    ensure!(
        summary.lost == 0 && lost_lines == 0,
        "events lost: the summary says lost {}, {lost_lines} `lost` lines",
        summary.lost
    );
    Ok(Outcome::ok(format!(
        "exec argv of {} args and exit code 3; SIGKILL exit; {THREADS} clones and {THREADS} thread exits; \
         one exit for each of 3 processes; lost 0 of {} events",
        argv_expected.len(),
        summary.total
    )))
}

/// An orphan adopted by a child subreaper: the `reparent` event, and `tracer ps`'s ppid
/// of the orphan while it lives, as /proc has it.
pub fn reparent(cx: &Ctx) -> Result<Outcome> {
    let mut stream = EventStream::start(&cx.tracer, &["--standalone"], cx.deadline)?;
    let mut w = Child::spawn("vm-worker subreaper", &mut worker_cmd(&["subreaper", "120"])?, true)?;
    let reaper = w.pid();
    let line = w.next_line(cx.within(STEP))?;
    let (child, grandchild) = parse_pair(&line).with_context(|| format!("vm-worker subreaper printed {line:?}"))?;
    w.expect_line("orphaned", cx.within(STEP))?;
    let ctx = format!("subreaper {reaper}, child {child} (exited), grandchild {grandchild}");

    // /proc first: the grandchild is the subreaper's now.
    let proc_ppid = oracle::read_stat(&format!("/proc/{grandchild}/stat"))
        .with_context(|| format!("{ctx}: the grandchild is not in /proc"))?
        .ppid;
    ensure!(proc_ppid == reaper, "{ctx}: /proc says the grandchild's ppid is {proc_ppid}, not the subreaper");

    // The tracer's tree while the grandchild still waits (for its stdin to close).
    let (text, _) = ps_json(&cx.tracer, &["--standalone"], cx.within(Duration::from_secs(60)))?;
    let listed = oracle::parse_ps(&text)?;
    let gc =
        listed.iter().find(|p| p.pid == grandchild).with_context(|| format!("{ctx}: tracer ps lists no grandchild"))?;
    ensure!(
        gc.ppid == proc_ppid,
        "{ctx}: tracer ps ppid of the grandchild: expected (/proc) {proc_ppid}, seen (tracer) {}",
        gc.ppid
    );

    let seen = stream.wait_for(cx.within(STEP), |evs| !of(evs, "reparent", grandchild).is_empty());
    w.close_stdin();
    w.expect_line("done", cx.within(STEP))?;
    let status = w.wait_until(cx.within(STEP))?;
    ensure!(status.success(), "{ctx}: the subreaper ended with {status}");
    stream.wait_for(cx.within(STEP), |evs| exited(evs, reaper));
    std::thread::sleep(SETTLE);
    let out = stream.stop(cx.deadline)?;
    let reparents = of(&out.events, "reparent", grandchild);
    if !seen {
        let mine: Vec<&Value> =
            out.events.iter().filter(|e| [reaper, child, grandchild].iter().any(|p| e["pid"] == *p)).collect();
        bail!("{ctx}: no reparent event of the grandchild; its family's events: {}", show(&mine));
    }
    let r = one(&reparents, &format!("{ctx}: reparent of the grandchild"))?;
    ensure!(
        r["ppid"] == reaper && r["old_ppid"] == child,
        "{ctx}: reparent event: expected ppid {reaper} old_ppid {child}, seen ppid {} old_ppid {}",
        r["ppid"],
        r["old_ppid"]
    );
    Ok(Outcome::ok(format!(
        "one reparent event of the grandchild to the subreaper (old parent {child}); tracer ps ppid {proc_ppid} as /proc"
    )))
}

/// `child=C grandchild=G`.
fn parse_pair(line: &str) -> Option<(u32, u32)> {
    let mut words = line.split_whitespace();
    let c = words.next()?.strip_prefix("child=")?.parse().ok()?;
    let g = words.next()?.strip_prefix("grandchild=")?.parse().ok()?;
    Some((c, g))
}

/// A sleeping process moved into a new cgroup and back: one `cgroup` event into it,
/// with the new cgroup's id (its directory's inode number) and path.
pub fn cgroup(cx: &Ctx) -> Result<Outcome> {
    let mount = cgroup2_mount().context("no cgroup2 hierarchy mounted (see /proc/self/mountinfo)")?;
    let cg = TestCgroup::new(&mount)?;
    let id = std::fs::metadata(&cg.path).with_context(|| format!("stat {}", cg.path.display()))?.ino();
    let parent_id = std::fs::metadata(&mount).with_context(|| format!("stat {}", mount.display()))?.ino();

    let mut stream = EventStream::start(&cx.tracer, &["--standalone"], cx.deadline)?;
    let mut s = Child::spawn("vm-worker sleep", &mut worker_cmd(&["sleep", "60"])?, false)?;
    s.expect_line("ready", cx.within(STEP))?;
    let pid = s.pid();
    let ctx = format!("pid {pid} moved to {} (id {id})", cg.path.display());
    cg.enter(pid)?;
    let moved = stream.wait_for(cx.within(STEP), |evs| of(evs, "cgroup", pid).iter().any(|e| e["cgroup_id"] == id));
    cg.leave(pid)?;
    stream.wait_for(cx.within(STEP), |evs| of(evs, "cgroup", pid).iter().any(|e| e["cgroup_id"] == parent_id));
    s.signal(libc::SIGKILL);
    s.wait_until(cx.within(STEP))?;
    stream.wait_for(cx.within(STEP), |evs| exited(evs, pid));
    std::thread::sleep(SETTLE);
    let out = stream.stop(cx.deadline)?;

    let moves = of(&out.events, "cgroup", pid);
    let into: Vec<&Value> = moves.iter().copied().filter(|e| e["cgroup_id"] == id).collect();
    ensure!(moved, "{ctx}: no cgroup event into it came; its cgroup events: {}", show(&moves));
    let e = one(&into, &format!("{ctx}: cgroup events into it"))?;
    let path = e["cgroup_path"].as_str().unwrap_or_default();
    ensure!(
        path.ends_with(&format!("/{}", cg.name)),
        "{ctx}: cgroup_path: expected one ending in /{}, seen {}",
        cg.name,
        e["cgroup_path"]
    );
    let back = moves.iter().filter(|e| e["cgroup_id"] == parent_id).count();
    drop(cg);
    Ok(Outcome::ok(format!(
        "one cgroup event into the new cgroup (id {id}, path {path}); {back} back to the parent; {} cgroup events in all",
        moves.len()
    )))
}

/// Where the cgroup2 hierarchy is mounted: /sys/fs/cgroup, or /sys/fs/cgroup/unified
/// on hybrid hosts.
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split_whitespace().next()? == "cgroup2").then(|| pre.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// The case's own cgroup, `tracer-vmtest-<agent pid>`, under the cgroup2 root. On
/// drop, what is still in it goes back to the parent and it is removed (only it).
struct TestCgroup {
    path: PathBuf,
    name: String,
}

impl TestCgroup {
    fn new(mount: &Path) -> Result<TestCgroup> {
        let name = format!("tracer-vmtest-{}", std::process::id());
        let path = mount.join(&name);
        std::fs::create_dir(&path).with_context(|| format!("mkdir {}", path.display()))?;
        Ok(TestCgroup { path, name })
    }

    fn procs(dir: &Path) -> PathBuf {
        dir.join("cgroup.procs")
    }

    fn parent(&self) -> &Path {
        self.path.parent().unwrap_or(&self.path)
    }

    /// Moves process `pid` in.
    fn enter(&self, pid: u32) -> Result<()> {
        let f = Self::procs(&self.path);
        std::fs::write(&f, pid.to_string()).with_context(|| format!("moving {pid} into {}", f.display()))
    }

    /// Moves process `pid` back to the parent.
    fn leave(&self, pid: u32) -> Result<()> {
        let f = Self::procs(self.parent());
        std::fs::write(&f, pid.to_string()).with_context(|| format!("moving {pid} back to {}", f.display()))
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.path.exists() && std::fs::remove_dir(&self.path).is_err() && Instant::now() < until {
            let procs = std::fs::read_to_string(Self::procs(&self.path)).unwrap_or_default();
            for pid in procs.lines().filter_map(|p| p.parse::<u32>().ok()) {
                let _ = self.leave(pid);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
