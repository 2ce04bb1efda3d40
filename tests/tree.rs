//! Oracle tests of `tracer daemon`: its live tree compared with /proc (see
//! [`oracle`] for the rules and the documented exceptions of these VMs) on an idle
//! machine, after a start-up amid churn, under churn that wraps the pid range, with orphans, an exec from a
//! non-leader thread, loss and repair, and Apache httpd; and a check that the daemon
//! itself never reads /proc for processes.
//!
//! Each test starts its own daemon on a socket in a temporary directory and queries
//! it over the socket from the test process.

use std::{
    collections::BTreeSet,
    io::Write,
    net::TcpStream,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{
    self, TempDir, Timed,
    apache::{apache_conf, free_port},
    cgroup::TestCgroup,
    daemon::Daemon,
    oracle::{self, Scope, assert_matches_proc, assert_matches_proc_within, snap_find},
    poll,
    procfs::{self, proc_children, proc_ns_pid, read_proc_task, read_stat},
    tracer::tracer_out,
    workload::{Workload, compile_c},
};

const CHURN_C: &str = include_str!("workloads/tree_churn.c");
const HOLDER_C: &str = include_str!("workloads/tree_holder.c");
const ORPHAN_C: &str = include_str!("workloads/tree_orphan.c");
const EXEC_THREAD_C: &str = include_str!("workloads/tree_exec_thread.c");

const LINE_TIMEOUT: Duration = Duration::from_secs(10);

fn stat_u64(stats: &Value, key: &str) -> u64 {
    stats[key].as_u64().unwrap_or_else(|| panic!("stats without a numeric `{key}`: {stats}"))
}

/// `key=N` out of a line of `key=N` words.
fn word(line: &str, key: &str) -> i64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| panic!("no `{key}=N` in {line:?}"))
}

/// Starts `tree_holder n` (a process of `n` threads) and waits until they all run.
fn holder(prog: &Path, n: usize) -> Workload {
    let mut w = Workload::spawn(&format!("tree_holder {n}"), Command::new(prog).arg(n.to_string()));
    assert_eq!(w.line(LINE_TIMEOUT), "ready", "tree_holder {n} should say ready");
    w
}

// ---------------------------------------------------------------------------------------
// 1. Idle

/// On an idle machine the daemon's tree is /proc's.
#[test]
fn idle_tree_equals_proc() {
    if !support::require_root() {
        return;
    }
    let _t = Timed::start("idle_tree_equals_proc");
    let d = Daemon::start(&[]);
    assert_matches_proc(&d, Scope::All, "idle machine");
    let stats = d.stats();
    assert_eq!(stat_u64(&stats, "lost"), 0, "no events may be lost on an idle machine: {stats}");
    d.stop();
}

/// A daemon started while processes come and go (its start-up walk races with forks
/// and exits) ends up with /proc's tree once they stopped.
#[test]
fn startup_during_churn_tree_equals_proc() {
    if !support::require_root() || !support::require_tool("cc") {
        return;
    }
    let _t = Timed::start("startup_during_churn_tree_equals_proc");
    let churn = compile_c("tree_churn", CHURN_C);
    let mut procs = Workload::spawn("tree_churn procs", Command::new(&churn.path).args(["procs", "3000", "5", "1000"]));
    std::thread::sleep(Duration::from_millis(100));
    let d = Daemon::start(&[]);
    let daemon_up = procs.running();
    procs.wait_ok(Duration::from_secs(60));
    eprintln!("start-up during churn: the churn (pid {}) still ran when the daemon served: {daemon_up}", procs.pid());
    assert_matches_proc(&d, Scope::All, "daemon started during churn");
    d.stop();
}

// ---------------------------------------------------------------------------------------
// 2. Churn

/// 20,000 short-lived processes and 20,000 threads in bursts (the pid range wraps)
/// while long-lived multi-threaded processes stay; they are right at the peak, and
/// afterwards the whole tree is /proc's, with nothing lost.
#[test]
fn churn_wraps_pids_and_tree_equals_proc() {
    if !support::require_root() || !support::require_tool("cc") {
        return;
    }
    let _t = Timed::start("churn_wraps_pids_and_tree_equals_proc");
    let churn = compile_c("tree_churn", CHURN_C);
    let hold = compile_c("tree_holder", HOLDER_C);
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("read /proc/sys/kernel/pid_max");
    assert!(pid_max < 40_000, "pid_max is {pid_max}: 40,000 tasks would not wrap the pid range");
    let d = Daemon::start(&[]);
    let mut holders: Vec<(usize, Workload)> = [3, 6, 9].into_iter().map(|n| (n, holder(&hold.path, n))).collect();

    let started = Instant::now();
    let mut procs =
        Workload::spawn("tree_churn procs", Command::new(&churn.path).args(["procs", "20000", "100", "2000"]));
    let mut threads =
        Workload::spawn("tree_churn threads", Command::new(&churn.path).args(["threads", "20000", "100", "5000"]));
    std::thread::sleep(Duration::from_millis(300));
    assert!(procs.running(), "the process churn ended before the peak check ({:?})", started.elapsed());
    for (n, h) in &holders {
        let what = format!("holder of {n} threads (pid {}) during the churn", h.pid());
        let out = assert_matches_proc(&d, Scope::Subtree(h.pid()), &what);
        assert_eq!(out.procs_compared, 1, "{what}: compared {}", out.summary());
        let p = snap_find(&d.snapshot(Some(h.pid())), h.pid()).unwrap_or_else(|| panic!("{what}: not in the tree"));
        assert_eq!(p.nlwp, *n as u64, "{what}: nlwp");
    }
    let peak_done = started.elapsed();
    let procs_running = procs.running();

    procs.wait_ok(Duration::from_secs(60));
    threads.wait_ok(Duration::from_secs(60));
    let churn_time = started.elapsed();
    let (pl, tl) = (procs.line(LINE_TIMEOUT), threads.line(LINE_TIMEOUT));
    eprintln!(
        "churn: pid_max {pid_max}; processes: {pl}; threads: {tl}; {churn_time:?} (peak checks done at {peak_done:?}, process churn still running then: {procs_running})"
    );
    let wraps = word(&pl, "wraps") + word(&tl, "wraps");
    assert!(
        wraps >= 1,
        "the pid range did not wrap (pid_max {pid_max}): processes {pl}; threads {tl} (each wrap shows as an id below the one before)"
    );

    for (_, h) in &mut holders {
        h.close_stdin();
        h.wait_ok(LINE_TIMEOUT);
    }
    drop(holders);
    assert_matches_proc(&d, Scope::All, "after the churn");
    let stats = d.stats();
    eprintln!(
        "after the churn: stats processes {} threads {} lost {} walks {} events_total {}",
        stats["processes"], stats["threads"], stats["lost"], stats["walks"], stats["events_total"]
    );
    assert_eq!(stat_u64(&stats, "lost"), 0, "events lost with the default ring buffer: {stats}");
    assert_eq!(stats["degraded"], Value::Bool(false), "degraded after the churn: {stats}");
    d.stop();
}

// ---------------------------------------------------------------------------------------
// 3. Orphans

/// Runs tree_orphan (`sub`: as a child subreaper) and checks the grandchild's
/// reparenting: the event, the snapshot and /proc. Returns nothing; panics on a difference.
fn orphan_case(sub: bool) {
    let prog = compile_c("tree_orphan", ORPHAN_C);
    let d = Daemon::start(&[]);
    let subs = d.subscribe();
    let mode = if sub { "sub" } else { "nosub" };
    let mut w = Workload::spawn(&format!("tree_orphan {mode}"), Command::new(&prog.path).arg(mode));
    let main = w.pid();
    let (mut child, mut gc, mut printed_ppid) = (None, None, None);
    while child.is_none() || printed_ppid.is_none() {
        let l = w.line(Duration::from_secs(25));
        if l.starts_with("child=") {
            child = Some(word(&l, "child") as u32);
            gc = Some(word(&l, "grandchild") as u32);
        } else if l.starts_with("reparented") {
            printed_ppid = Some(word(&l, "ppid") as u32);
        } else {
            panic!("tree_orphan printed {l:?}");
        }
    }
    let (child, gc, printed_ppid) = (child.expect("set"), gc.expect("set"), printed_ppid.expect("set"));
    let proc_ppid =
        read_stat(&format!("/proc/{gc}/stat")).unwrap_or_else(|| panic!("grandchild {gc} is not in /proc")).ppid;
    assert_eq!(proc_ppid, printed_ppid, "grandchild {gc}: /proc ppid vs getppid()");
    let reaper = if sub {
        assert_eq!(proc_ppid, main, "grandchild {gc} should be reparented to the subreaper {main} (/proc)");
        main
    } else {
        assert!(
            proc_ppid != child && proc_ppid != main,
            "grandchild {gc}: /proc ppid {proc_ppid} (child {child}, main {main})"
        );
        proc_ppid
    };
    let ctx = format!("tree_orphan {mode}: main {main}, child {child} (exited), grandchild {gc}, reaper {reaper}");

    let seen = subs.wait_for_within("the grandchild's reparent event", Duration::from_secs(10), |st| {
        st.events.iter().any(|e| e["kind"] == "reparent" && e["pid"] == gc)
    });
    let evs = subs.events();
    let mine: Vec<&Value> = evs.iter().filter(|e| [main, child, gc].iter().any(|p| e["pid"] == *p)).collect();
    let dump: String = mine.iter().map(|e| format!("    {e}\n")).collect();
    assert!(seen, "{ctx}: no reparent event for the grandchild; its events:\n{dump}");
    let rep: Vec<&&Value> = mine.iter().filter(|e| e["kind"] == "reparent" && e["pid"] == gc).collect();
    assert_eq!(rep.len(), 1, "{ctx}: expected one reparent event of the grandchild:\n{dump}");
    assert_eq!(rep[0]["old_ppid"], child, "{ctx}: reparent old_ppid: {}", rep[0]);
    assert_eq!(rep[0]["ppid"], reaper, "{ctx}: reparent ppid: {}", rep[0]);

    let snap = d.snapshot(Some(gc));
    let p = snap_find(&snap, gc).unwrap_or_else(|| panic!("{ctx}: grandchild not in the snapshot: {snap}"));
    assert_eq!(p.ppid, reaper, "{ctx}: the snapshot's ppid of the grandchild");
    if sub {
        let out = assert_matches_proc(&d, Scope::Subtree(main), &ctx);
        assert_eq!(out.procs_compared, 2, "{ctx}: compared {}", out.summary());
    } else {
        assert_matches_proc(&d, Scope::Subtree(gc), &ctx);
    }
    w.close_stdin();
    w.wait_ok(LINE_TIMEOUT);
}

/// A subreaper (PR_SET_CHILD_SUBREAPER) gets its orphaned grandchild.
#[test]
fn orphan_goes_to_subreaper() {
    if !support::require_root() || !support::require_tool("cc") {
        return;
    }
    let _t = Timed::start("orphan_goes_to_subreaper");
    orphan_case(true);
}

/// Without a subreaper on the way, the orphan goes to the init of the pid namespace
/// (or the nearest subreaper above the test): as /proc says after the fact.
#[test]
fn orphan_goes_to_init() {
    if !support::require_root() || !support::require_tool("cc") {
        return;
    }
    let _t = Timed::start("orphan_goes_to_init");
    orphan_case(false);
}

// ---------------------------------------------------------------------------------------
// 4. Exec from a non-leader thread

/// A 4-thread process whose non-leader thread execs `sleep 2` keeps its pid and start
/// time, and becomes one thread named sleep with argv ["sleep","2"].
#[test]
fn exec_from_non_leader_thread() {
    if !support::require_root() || !support::require_tool("cc") {
        return;
    }
    let _t = Timed::start("exec_from_non_leader_thread");
    let prog = compile_c("tree_exec_thr", EXEC_THREAD_C);
    let d = Daemon::start(&[]);
    let mut w = Workload::spawn("tree_exec_thr", &mut Command::new(&prog.path));
    let pid = w.pid();
    let ready = w.line(LINE_TIMEOUT);
    let execer: u32 = ready.strip_prefix("ready ").and_then(|s| s.parse().ok()).expect("ready TID");
    let before = poll(Duration::from_secs(2), || snap_find(&d.snapshot(Some(pid)), pid).filter(|p| p.nlwp == 4))
        .unwrap_or_else(|| panic!("pid {pid} with 4 threads not in the tree: {}", d.snapshot(Some(pid))));
    assert!(before.threads.contains_key(&execer), "the exec'ing thread {execer} not among {:?}", before.threads.keys());
    assert_matches_proc(&d, Scope::Subtree(pid), "4 threads before the exec");

    w.say("go");
    let execd = poll(Duration::from_secs(5), || {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim_end() == "sleep").then_some(())
    });
    assert!(execd.is_some(), "pid {pid}: /proc never showed comm sleep");
    let after = poll(Duration::from_secs(1), || snap_find(&d.snapshot(Some(pid)), pid).filter(|p| p.comm == "sleep"));
    let after = after.unwrap_or_else(|| {
        panic!("pid {pid}: the tracer never showed comm sleep after the exec: {}", d.snapshot(Some(pid)))
    });
    let ctx = format!("pid {pid} after thread {execer} exec'd sleep 2 (before: {before:?})");
    assert_eq!(after.nlwp, 1, "{ctx}: nlwp; after: {after:?}");
    assert_eq!(after.threads.keys().copied().collect::<Vec<_>>(), [pid], "{ctx}: the one thread has tid == pid");
    assert_eq!(after.argv, ["sleep", "2"], "{ctx}: argv");
    assert_eq!(after.start_ns, before.start_ns, "{ctx}: start_ns (process identity) must not change on exec");
    assert_eq!(after.ppid, std::process::id(), "{ctx}: ppid");
    let proc_now = read_proc_task(pid).expect("pid in /proc");
    assert_eq!(proc_now.start_tick, before.start_ns / 10_000_000, "{ctx}: /proc starttime vs the tracer's start_ns");
    assert_matches_proc(&d, Scope::Subtree(pid), "after the exec from a non-leader thread");
    w.wait_ok(Duration::from_secs(10));
}

// ---------------------------------------------------------------------------------------
// 5. Loss and repair

/// With the smallest ring buffer a storm loses events; the daemon says so, repairs its
/// tree with a walk, and afterwards the tree is /proc's again.
#[test]
fn loss_is_repaired() {
    if !support::require_root() || !support::require_tool("cc") {
        return;
    }
    let _t = Timed::start("loss_is_repaired");
    let churn = compile_c("tree_churn", CHURN_C);
    let d = Daemon::start(&["--ringbuf-size", "4096"]);
    let subs = d.subscribe();
    let mut stats = d.stats();
    let started = Instant::now();
    for round in 1..=3 {
        let mut storm = vec![
            Workload::spawn("storm procs", Command::new(&churn.path).args(["procs", "5000", "200", "0"])),
            Workload::spawn("storm procs", Command::new(&churn.path).args(["procs", "5000", "200", "0"])),
            Workload::spawn("storm threads", Command::new(&churn.path).args(["threads", "5000", "200", "0"])),
        ];
        for w in &mut storm {
            w.wait_ok(Duration::from_secs(60));
        }
        stats = d.stats();
        eprintln!("storm round {round} ({:?}): lost {} walks {}", started.elapsed(), stats["lost"], stats["walks"]);
        if stat_u64(&stats, "lost") > 0 {
            break;
        }
    }
    assert!(stat_u64(&stats, "lost") > 0, "a 4096-byte ring buffer lost nothing in 3 storms: {stats}");

    // Within 10 s of the storm's end: not degraded, a repair walk done, and the tree is /proc's.
    let storm_end = Instant::now();
    let settled = poll(Duration::from_secs(10), || {
        let s = d.stats();
        (s["degraded"] == false && stat_u64(&s, "walks") >= 2).then_some(s)
    });
    let stats = settled.unwrap_or_else(|| {
        let now = oracle::compare_once(&d, Scope::All);
        panic!(
            "not repaired within 10 s of the storm (want degraded false and walks >= 2); stats: {}\n\
             the tree vs /proc now:\n{}",
            d.stats(),
            now.report()
        )
    });
    eprintln!("repaired {:?} after the storm: {stats}", storm_end.elapsed());
    let budget = Duration::from_secs(10).saturating_sub(storm_end.elapsed());
    assert_matches_proc_within(&d, Scope::All, "after loss and repair", budget);
    let stats = d.stats();
    let repairs: u64 = stats["repairs"].as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    assert!(stat_u64(&stats, "walks") >= 2, "no repair walk after the loss: {stats}");

    let saw_lost = subs
        .wait_for_within("a lost event", Duration::from_secs(5), |st| st.events.iter().any(|e| e["kind"] == "lost"));
    let (n_lost, n_repair, n_events, other) = {
        let st = subs.lock();
        let count = |k: &str| st.events.iter().filter(|e| e["kind"] == k).count();
        (count("lost"), count("repair"), st.events.len(), st.other.clone())
    };
    eprintln!(
        "subscription: {n_events} events, {n_lost} lost, {n_repair} repair; other lines: {:?}",
        other.iter().take(3).collect::<Vec<_>>()
    );
    assert!(saw_lost, "the subscription saw no `lost` event (stats: {stats})");
    assert!(n_repair > 0 || repairs > 0, "no repair event on the subscription and stats.repairs all 0: {stats}");
    d.stop();
}

// ---------------------------------------------------------------------------------------
// 6. No /proc

/// Whether a path the daemon touched reads per-process /proc state.
fn reads_processes_from_proc(path: &str) -> bool {
    // Relative to a directory fd (e.g. of /proc itself): `1234/stat`.
    if !path.starts_with('/') {
        let first = path.split('/').next().unwrap_or("");
        return !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit());
    }
    let Some(rest) = path.strip_prefix("/proc") else { return false };
    if rest.is_empty() || rest == "/" {
        return true; // the pid list
    }
    let Some(rest) = rest.strip_prefix('/') else { return false };
    let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    let leaf = tail.split('/').next().unwrap_or("");
    matches!(first, "self" | "thread-self") && matches!(leaf, "stat" | "status" | "task")
}

/// The first quoted path of a strace line.
fn strace_path(line: &str) -> Option<&str> {
    let start = line.find('"')? + 1;
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

#[test]
fn proc_classifier() {
    for p in ["/proc", "/proc/", "/proc/1", "/proc/123/stat", "/proc/self/stat", "/proc/self/task/5/comm", "42/cmdline"]
    {
        assert!(reads_processes_from_proc(p), "{p}");
    }
    for p in ["/proc/self/maps", "/proc/sys/kernel/pid_max", "/sys/kernel/btf/vmlinux", "/etc/passwd", "/procx", ""] {
        assert!(!reads_processes_from_proc(p), "{p}");
    }
    assert_eq!(strace_path(r#"12 openat(AT_FDCWD, "/proc/1/stat", O_RDONLY) = 3"#), Some("/proc/1/stat"));
}

/// The daemon, run under strace while a workload runs and it is queried, never opens,
/// stats or reads a link under /proc/PID (nor /proc/self's stat, status or task).
#[test]
fn daemon_never_reads_proc() {
    if !support::require_root() || !support::require_tool("strace") || !support::require_tool("cc") {
        return;
    }
    let _t = Timed::start("daemon_never_reads_proc");
    let hold = compile_c("tree_holder", HOLDER_C);
    let dir = TempDir::new("tree-strace");
    let trace = dir.path().join("strace.out");
    let trace_s = trace.display().to_string();
    let wrapper =
        ["strace", "-f", "-qq", "-e", "trace=openat,open,openat2,statx,newfstatat,readlink,readlinkat", "-o", &trace_s];
    let d = Daemon::start_wrapped(&wrapper, &[]);
    let mut h = holder(&hold.path, 3);
    let sh =
        support::run(Command::new("sh").args(["-c", "for i in 1 2 3; do /bin/true; done; sleep 0.1"]), LINE_TIMEOUT);
    assert!(sh.status.success(), "sh workload: {}", sh.status);
    let p = poll(Duration::from_secs(5), || snap_find(&d.snapshot(Some(h.pid())), h.pid()).filter(|p| p.nlwp == 3));
    assert!(p.is_some(), "the holder (pid {}) with 3 threads is not in the daemon's tree", h.pid());
    assert_matches_proc(&d, Scope::Subtree(h.pid()), "holder under a straced daemon");
    let _ = d.stats();
    h.close_stdin();
    h.wait_ok(LINE_TIMEOUT);
    let daemon_pid = d.pid();
    d.stop();

    let text = std::fs::read_to_string(&trace).unwrap_or_else(|e| panic!("reading {}: {e}", trace.display()));
    let lines: Vec<&str> = text.lines().collect();
    let bad: Vec<&str> =
        lines.iter().copied().filter(|l| strace_path(l).is_some_and(reads_processes_from_proc)).collect();
    eprintln!("strace of the daemon (pid {daemon_pid}): {} lines, {} touch /proc per process", lines.len(), bad.len());
    assert!(
        lines.iter().any(|l| strace_path(l).is_some_and(|p| p.starts_with("/sys/"))),
        "strace recorded no /sys access of the daemon (is the trace working?):\n{}",
        lines.iter().take(30).map(|l| format!("    {l}\n")).collect::<String>()
    );
    assert!(
        bad.is_empty(),
        "the daemon touched per-process /proc paths ({} calls):\n{}",
        bad.len(),
        bad.iter().take(50).map(|l| format!("    {l}\n")).collect::<String>()
    );
}

// ---------------------------------------------------------------------------------------
// 7. Apache httpd

/// httpd (mpm_event) grows children under `ab` load and retires them after; at the
/// peak and after, its subtree in the tracer is /proc's; once stopped it is gone.
#[test]
fn apache_httpd_subtree_equals_proc() {
    if !support::require_root() || !support::require_tool("apache2") || !support::require_tool("ab") {
        return;
    }
    let _t = Timed::start("apache_httpd_subtree_equals_proc");
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("tree-httpd");
    let docs = dir.path().join("htdocs");
    std::fs::create_dir(&docs).expect("mkdir htdocs");
    std::fs::write(docs.join("index.html"), "<html><body>tracer</body></html>\n").expect("write index.html");
    for p in [dir.path(), &docs] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    std::fs::set_permissions(docs.join("index.html"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let port = free_port();
    let conf = dir.path().join("httpd.conf");
    std::fs::write(&conf, apache_conf(dir.path(), port)).expect("write httpd.conf");
    let error_log = || std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();

    let d = Daemon::start(&[]);
    let started = Instant::now();
    let mut httpd = Workload::spawn_group("apache2", Command::new("apache2").arg("-f").arg(&conf).arg("-DFOREGROUND"));
    let parent = httpd.pid();
    // (A connection is closed at once: one left open would hold a worker, and keep a
    // retiring child alive, until Timeout.)
    let up = poll(Duration::from_secs(15), || TcpStream::connect(("127.0.0.1", port)).ok().map(drop));
    assert!(up.is_some(), "apache2 (pid {parent}) does not listen on port {port}; error.log:\n{}", error_log());

    // Pinned workers: connections with an unfinished request hold a worker each, so
    // the idle workers run short and httpd starts children (1, 2, 4, 8, ... a second).
    let mut pinned: Vec<TcpStream> = (0..24)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect to httpd");
            c.write_all(b"GET / HTTP/1.1\r\n").expect("write a partial request");
            c
        })
        .collect();
    let url = format!("http://127.0.0.1:{port}/");
    let mut ab = Workload::spawn("ab", Command::new("ab").args(["-q", "-n", "20000", "-c", "200", &url]));
    let peak = poll(Duration::from_secs(30), || {
        let kids = proc_children(parent);
        (kids.len() >= 4).then_some(kids)
    });
    let peak = peak.unwrap_or_else(|| panic!("httpd {parent} never had 4 children; error.log:\n{}", error_log()));
    eprintln!("httpd {parent}: {} children at {:?}: {peak:?}", peak.len(), started.elapsed());
    let out = assert_matches_proc(&d, Scope::Subtree(parent), "httpd at the peak");
    assert!(out.procs_compared >= 5, "httpd at the peak: only {}", out.summary());

    // Let it grow on (to 8 children, or for 10 s) before the load ends, so that the
    // children it retires after are well above the spare threads' worth it keeps.
    let mut most = peak.len();
    let _ = poll(Duration::from_secs(10), || {
        most = most.max(proc_children(parent).len());
        (most >= 8).then_some(())
    });
    eprintln!("httpd {parent}: up to {most} children at {:?}", started.elapsed());
    pinned.clear();
    let ab_status = ab.wait(Duration::from_secs(60));
    let ab_out = ab.rest(Duration::from_secs(2));
    let failed: Vec<&String> =
        ab_out.iter().filter(|l| l.contains("Complete requests") || l.contains("Failed")).collect();
    eprintln!("ab ended ({ab_status}) at {:?}: {failed:?}", started.elapsed());
    let most = proc_children(parent).len().max(most);
    let fewer = poll(Duration::from_secs(20), || {
        let kids = proc_children(parent);
        (kids.len() < most).then_some(kids)
    });
    let fewer = fewer.unwrap_or_else(|| {
        panic!("httpd {parent} kept {most} children for 20 s after the load; error.log:\n{}", error_log())
    });
    eprintln!("httpd {parent}: {} children at {:?}", fewer.len(), started.elapsed());
    assert_matches_proc(&d, Scope::Subtree(parent), "httpd after children retired");

    // Stop: SIGTERM to the parent, then the group.
    let all_pids: BTreeSet<u32> = procfs::proc_subtree(&procfs::read_proc(), parent);
    // SAFETY: kill with our child's pid and a valid signal.
    unsafe { libc::kill(parent as libc::pid_t, libc::SIGTERM) };
    let status = httpd.wait(Duration::from_secs(15));
    httpd.signal(libc::SIGKILL);
    eprintln!("httpd {parent} ended ({status}) at {:?}", started.elapsed());
    let gone = poll(Duration::from_secs(5), || {
        let snap = d.snapshot(None);
        let left: Vec<u32> = oracle::snap_procs(&snap)
            .into_values()
            .filter(|p| all_pids.contains(&p.pid) && p.comm == "apache2")
            .map(|p| p.pid)
            .collect();
        let sub = d.snapshot(Some(parent));
        (left.is_empty() && sub["processes"].as_array().is_some_and(|v| v.is_empty())).then_some(())
    });
    assert!(
        gone.is_some(),
        "httpd {parent} (pids {all_pids:?}) still in the tree 5 s after it ended: {}",
        d.snapshot(Some(parent))
    );
    d.stop();
}

// ---------------------------------------------------------------------------------------
// 6. Pid namespaces and containers

/// The row of `pid` in a `tracer ps` table: its whitespace-separated cells.
fn ps_row(text: &str, pid: u32) -> Option<Vec<String>> {
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cells| cells.get(1).is_some_and(|c| *c == pid.to_string()))
}

/// Processes in a pid namespace of their own (`unshare --pid --fork`), in a cgroup of
/// their own: `tracer ps --json` gives their pid inside as /proc/PID/status's NSpid
/// does, and attributes them to that cgroup as a plain runc container; `ps` shows the
/// NSPID column and the container's header, `ps -C` and `--container` list them
/// alone. In-process and through the daemon alike.
#[test]
fn pid_namespace_and_own_cgroup_in_ps() {
    if !support::require_root() || !support::require_tool("unshare") {
        return;
    }
    let _t = Timed::start("pid_namespace_and_own_cgroup_in_ps");
    let Some(cg) = TestCgroup::new("nspid") else { return };
    let name = cg.name.clone();
    let d = Daemon::start(&[]);
    // Inside: move into the cgroup, start a child (pid 2 inside), become `sleep` (pid 1).
    let script =
        format!("echo 0 > {}/cgroup.procs || exit 1; sleep 300 & echo ready; exec sleep 301", cg.path.display());
    let mut w = Workload::spawn_group(
        "unshare",
        Command::new("unshare").args(["--pid", "--fork", "--mount-proc", "sh", "-c", &script]),
    );
    assert_eq!(w.line(LINE_TIMEOUT), "ready", "the namespaced shell should say ready");
    let unshare = w.pid();
    // The oracle: /proc, once the init has become sleep 301.
    let found = poll(Duration::from_secs(10), || {
        let init = *proc_children(unshare).first()?;
        let bg = *proc_children(init).first()?;
        let comm = |p: u32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        (comm(init).trim() == "sleep" && comm(bg).trim() == "sleep").then_some((init, bg))
    });
    let (init, bg) = found.unwrap_or_else(|| panic!("unshare {unshare}: no init running sleep with a child"));
    let inside: Vec<(u32, u32)> =
        [init, bg].iter().map(|&p| (p, proc_ns_pid(p).unwrap_or_else(|| panic!("no NSpid for {p}")))).collect();
    assert_eq!(inside.iter().map(|x| x.1).collect::<Vec<_>>(), [1, 2], "NSpid of {inside:?}");
    assert_eq!(proc_ns_pid(unshare), Some(unshare));
    eprintln!("unshare {unshare}, inside: {inside:?}, cgroup {}", cg.path.display());

    let socket = d.socket().display().to_string();
    let ways: [(&str, Vec<&str>); 2] = [("in-process", vec!["--standalone"]), ("daemon", vec!["--socket", &socket])];
    for (way, extra) in &ways {
        let args = |more: &[&str]| -> Vec<String> { more.iter().chain(extra.iter()).map(|s| s.to_string()).collect() };
        // The daemon has events to apply: poll it until its tree has them.
        let check_json = |text: &str| -> Result<(), String> {
            let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
            let procs = v["processes"].as_array().ok_or("no processes")?;
            let find = |pid: u32| procs.iter().find(|p| p["pid"] == pid).ok_or(format!("no pid {pid}"));
            for &(pid, ns) in &inside {
                let p = find(pid)?;
                if p["ns_pid"] != ns || p["container"]["runtime"] != "runc" || p["container"]["id"] != name.as_str() {
                    return Err(format!("pid {pid} (NSpid {ns}): {p}"));
                }
            }
            let u = find(unshare)?;
            if u["ns_pid"] != unshare || !u["container"].is_null() {
                return Err(format!("unshare {unshare}: {u}"));
            }
            Ok(())
        };
        let mut last = String::new();
        let ok = poll(Duration::from_secs(10), || match check_json(&tracer_out(&args(&["ps", "--json"]))) {
            Ok(()) => Some(()),
            Err(e) => {
                last = e;
                None
            }
        });
        assert!(ok.is_some(), "{way}: tracer ps --json: {last}");

        // The forest: NSPID, and the container's header right above its init.
        let text = tracer_out(&args(&["ps"]));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].split_whitespace().take(3).eq(["USER", "PID", "NSPID"]), "{way}: {}", lines[0]);
        let row = |pid: u32| ps_row(&text, pid).unwrap_or_else(|| panic!("{way}: no row of {pid}:\n{text}"));
        assert_eq!(row(unshare)[2], "-", "{way}");
        for &(pid, ns) in &inside {
            assert_eq!(row(pid)[2], ns.to_string(), "{way}: NSPID of {pid}");
        }
        let at = lines.iter().position(|l| ps_row(l, init).is_some()).expect("init's line");
        assert_eq!(lines[at - 1].trim(), format!("[runc {name}]"), "{way}: the header above {init}:\n{text}");

        // -C: the container's processes only, under its header.
        let text = tracer_out(&args(&["ps", "-C"]));
        let header = format!("[runc {name}]");
        let start = text.lines().position(|l| l.trim() == header).unwrap_or_else(|| panic!("{way}: -C:\n{text}"));
        let mine: Vec<u32> = text
            .lines()
            .skip(start + 1)
            .take_while(|l| !l.trim_start().starts_with("[runc ") && !l.trim_start().starts_with("[docker "))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .collect();
        assert_eq!(mine, [init, bg], "{way}: -C:\n{text}");
        assert!(ps_row(&text, unshare).is_none(), "{way}: -C shows the host's unshare:\n{text}");

        // --container NAME, as JSON: exactly these two.
        let v: Value = serde_json::from_str(&tracer_out(&args(&["ps", "--json", "--container", &name]))).expect("JSON");
        let pids: Vec<u64> =
            v["processes"].as_array().expect("processes").iter().filter_map(|p| p["pid"].as_u64()).collect();
        assert_eq!(pids, [u64::from(init), u64::from(bg)], "{way}: --container {name}");
        // -L: the threads view has NSPID too.
        let text = tracer_out(&args(&["ps", "-L", "--pid", &init.to_string()]));
        assert_eq!(ps_row(&text, init).map(|r| r[2].clone()), Some("1".to_string()), "{way}: -L:\n{text}");
        // ... and NSLWP: the main thread's tid inside is 1 as well.
        assert_eq!(ps_row(&text, init).map(|r| r[5].clone()), Some("1".to_string()), "{way}: -L NSLWP:\n{text}");
    }
    drop(w);
    drop(cg);
    d.stop();
}
