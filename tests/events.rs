//! `tracer events --json`: known workloads spawned from the test, and the exact events
//! they must produce (ids checked against the children spawned here and /proc).

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Read},
    process::{Command, Stdio},
    time::Duration,
};

use crate::support::{
    self, TempDir,
    cgroup::TestCgroup,
    event::{Event, dump, has_exec, kind, kinds, of_pid},
    tracer::{START_TIMEOUT, STOP_TIMEOUT, Summary, TRACER, Tracer},
    workload::compile_c,
};

const THREADS_C: &str = include_str!("workloads/threads.c");
const EXEC_THREAD_C: &str = include_str!("workloads/exec_thread.c");
const RENAMER_C: &str = include_str!("workloads/renamer.c");

/// Kinds that change the process/thread tree (rename left out: exec renames too).
const TREE_KINDS: &[&str] = &["fork", "clone", "exec", "thread_exit", "exit"];

fn tree_kinds(events: &[&Event]) -> Vec<String> {
    kinds(events).into_iter().filter(|k| TREE_KINDS.contains(&k.as_str())).collect()
}

/// Exactly one event of `kind` among `events`, or a panic showing them.
fn one<'a>(events: &[&'a Event], kind_: &str, what: &str) -> &'a Event {
    let k = kind(events, kind_);
    assert_eq!(k.len(), 1, "{what}: expected exactly one `{kind_}` event, saw {}:\n{}", k.len(), dump(events.to_vec()));
    k[0]
}

/// The numbers a workload printed on stdout, one per line.
fn printed_tids(stdout: &[u8]) -> Vec<u32> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap_or_else(|_| panic!("workload printed {l:?}, not a tid")))
        .collect()
}

/// `sh -c 'exit 3'`: one fork, one exec, one exit with code 3, in that order.
#[test]
fn fork_exec_exit_of_sh() {
    if !support::require_root() {
        return;
    }
    let mut tracer = Tracer::start(&[]);
    let me = std::process::id();
    let my_tid = support::gettid();
    let mut child =
        Command::new("sh").args(["-c", "exit 3"]).stdin(Stdio::null()).spawn().expect("spawn sh -c 'exit 3'");
    let pid = child.id();
    let status = child.wait().expect("wait for sh");
    assert_eq!(status.code(), Some(3), "sh -c 'exit 3' itself ended with {status}");
    tracer.wait_exit(pid);
    let out = tracer.stop();

    let evs = of_pid(&out.events, pid);
    let ctx = format!("sh -c 'exit 3' as pid {pid}, spawned by pid {me} tid {my_tid}");
    assert_eq!(
        tree_kinds(&evs),
        ["fork", "exec", "exit"],
        "{ctx}: expected fork, exec, exit (by ts_ns); saw:\n{}",
        dump(evs.clone())
    );
    let fork = one(&evs, "fork", &ctx);
    let exec = one(&evs, "exec", &ctx);
    let exit = one(&evs, "exit", &ctx);

    assert_eq!((fork.pid(), fork.tid()), (pid, pid), "{ctx}: fork pid/tid: {fork}");
    assert_eq!(fork.ppid(), me, "{ctx}: fork ppid should be the test process: {fork}");
    assert_eq!(fork.u32("creator_tid"), my_tid, "{ctx}: fork creator_tid should be the spawning thread: {fork}");

    assert_eq!((exec.pid(), exec.tid(), exec.ppid()), (pid, pid, me), "{ctx}: exec pid/tid/ppid: {exec}");
    assert_eq!(exec.argv(), ["sh", "-c", "exit 3"], "{ctx}: exec argv: {exec}");
    assert!(exec.str("filename").ends_with("/sh"), "{ctx}: exec filename should end in /sh: {exec}");
    assert_eq!(exec.u32("old_tid"), pid, "{ctx}: exec old_tid: {exec}");
    assert!(!exec.bool("argv_truncated") && !exec.bool("argv_unreadable"), "{ctx}: argv flags: {exec}");
    assert_eq!(exec.u64("argv_real_len"), 13, "{ctx}: argv_real_len of sh\\0-c\\0exit 3\\0: {exec}");
    assert_eq!(exec.str("comm"), "sh", "{ctx}: comm after exec: {exec}");

    assert_eq!((exit.pid(), exit.tid(), exit.ppid()), (pid, pid, me), "{ctx}: exit pid/tid/ppid: {exit}");
    assert_eq!(exit.exit_code(), Some(3), "{ctx}: exit status.code: {exit}");
    assert_eq!(exit.exit_signal(), None, "{ctx}: exit status.signal: {exit}");

    // All are the same process: same start time as the fork reported.
    let start = fork.u64("proc_start_ns");
    for e in &evs {
        assert_eq!(e.u64("proc_start_ns"), start, "{ctx}: proc_start_ns differs from the fork's ({start}): {e}");
    }
    assert_eq!(kind(&evs, "thread_exit").len(), 0, "{ctx}: unexpected thread exits:\n{}", dump(evs.clone()));
}

/// 50 threads started and joined: 50 clones, 50 thread exits, then one exit.
#[test]
fn fifty_threads() {
    if !support::require_root() || !support::require_tool("cc") {
        return;
    }
    const N: usize = 50;
    let prog = compile_c("threads50", THREADS_C);
    let mut tracer = Tracer::start(&[]);
    let child = Command::new(&prog.path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the 50-thread workload");
    let pid = child.id();
    let output = child.wait_with_output().expect("wait for the 50-thread workload");
    assert_eq!(output.status.code(), Some(0), "workload itself ended with {}", output.status);
    let printed: BTreeSet<u32> = printed_tids(&output.stdout).into_iter().collect();
    assert_eq!(printed.len(), N, "workload should print {N} distinct tids, printed {printed:?}");
    tracer.wait_exit(pid);
    let out = tracer.stop();

    let evs = of_pid(&out.events, pid);
    let ctx = format!("50-thread workload as pid {pid}");
    let clones = kind(&evs, "clone");
    let texits = kind(&evs, "thread_exit");
    let exits = kind(&evs, "exit");

    assert_eq!(clones.len(), N, "{ctx}: expected {N} clone events, saw {}:\n{}", clones.len(), dump(evs.clone()));
    let clone_tids: BTreeSet<u32> = clones.iter().map(|e| e.tid()).collect();
    assert_eq!(clone_tids.len(), N, "{ctx}: clone tids are not {N} distinct: {clone_tids:?}\n{}", dump(clones));
    assert!(!clone_tids.contains(&pid), "{ctx}: a clone has tid == pid:\n{}", dump(clones));
    assert_eq!(clone_tids, printed, "{ctx}: clone tids (left) != tids the threads printed (right)");
    for c in &clones {
        assert_eq!(c.u32("creator_tid"), pid, "{ctx}: threads are created by the main thread: {c}");
        assert_eq!(c.ppid(), std::process::id(), "{ctx}: clone ppid should be the test process: {c}");
    }

    assert_eq!(texits.len(), N, "{ctx}: expected {N} thread_exit events, saw {}:\n{}", texits.len(), dump(evs.clone()));
    let texit_tids: BTreeSet<u32> = texits.iter().map(|e| e.tid()).collect();
    assert_eq!(texit_tids, clone_tids, "{ctx}: thread_exit tids (left) != clone tids (right)");
    for t in &texits {
        assert_eq!(t.exit_code(), Some(0), "{ctx}: threads return normally: {t}");
    }

    assert_eq!(exits.len(), 1, "{ctx}: expected exactly one exit, saw {}:\n{}", exits.len(), dump(evs.clone()));
    let exit = exits[0];
    assert_eq!(exit.tid(), pid, "{ctx}: the last thread to exit is the main thread: {exit}");
    assert_eq!(exit.exit_code(), Some(0), "{ctx}: exit status.code: {exit}");
    let last_texit = texits.iter().map(|e| e.ts()).max().unwrap_or(0);
    assert!(
        exit.ts() > last_texit,
        "{ctx}: exit (ts {}) should come after every thread_exit (last ts {last_texit}):\n{}",
        exit.ts(),
        dump(evs.clone())
    );
    for c in &clones {
        let t = texits.iter().find(|t| t.tid() == c.tid()).expect("matched above");
        assert!(c.ts() < t.ts(), "{ctx}: thread {} exits before it is created:\n{c}\n{t}", c.tid());
    }
}

/// `sleep 30` killed with SIGKILL: its exit says so.
#[test]
fn sigkill_exit_status() {
    if !support::require_root() {
        return;
    }
    let mut tracer = Tracer::start(&[]);
    let mut child = Command::new("sleep").arg("30").stdin(Stdio::null()).spawn().expect("spawn sleep 30");
    let pid = child.id();
    // Kill it once it runs sleep, not the test's pre-exec copy.
    tracer.wait_for(&format!("the exec of sleep as pid {pid}"), |evs| has_exec(evs, pid));
    child.kill().expect("SIGKILL sleep");
    let status = child.wait().expect("wait for sleep");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL), "sleep ended: {status}");
    tracer.wait_exit(pid);
    let out = tracer.stop();

    let evs = of_pid(&out.events, pid);
    let ctx = format!("sleep 30 as pid {pid}, killed with SIGKILL");
    assert_eq!(tree_kinds(&evs), ["fork", "exec", "exit"], "{ctx}: events (by ts_ns):\n{}", dump(evs.clone()));
    let exit = one(&evs, "exit", &ctx);
    assert_eq!(exit.exit_signal().as_deref(), Some("SIGKILL"), "{ctx}: status.signal: {exit}");
    assert_eq!(exit.exit_code(), None, "{ctx}: status.code should be null: {exit}");
    assert_eq!(exit.status().get("core_dumped"), Some(&serde_json::Value::Bool(false)), "{ctx}: {exit}");
    assert_eq!(exit.status().get("raw").and_then(|v| v.as_u64()), Some(9), "{ctx}: status.raw: {exit}");
    assert_eq!(exit.tid(), pid, "{ctx}: exit tid: {exit}");
}

/// A non-leader thread calls execve: the exec is reported for the pid with tid == pid and
/// old_tid == the thread's tid, after the old leader's thread_exit.
#[test]
fn exec_from_non_leader_thread() {
    if !support::require_root() || !support::require_tool("cc") {
        return;
    }
    let prog = compile_c("exec_thread", EXEC_THREAD_C);
    let mut tracer = Tracer::start(&[]);
    let child = Command::new(&prog.path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the exec-from-thread workload");
    let pid = child.id();
    let output = child.wait_with_output().expect("wait for the exec-from-thread workload");
    assert_eq!(output.status.code(), Some(0), "workload (then /bin/true) ended with {}", output.status);
    let printed = printed_tids(&output.stdout);
    assert_eq!(printed.len(), 1, "the thread should print its tid once, printed {printed:?}");
    let thread = printed[0];
    assert_ne!(thread, pid, "the exec'ing thread is not the leader");
    tracer.wait_exit(pid);
    let out = tracer.stop();

    let evs = of_pid(&out.events, pid);
    let ctx = format!("exec from thread {thread} of pid {pid}");
    let execs: Vec<&Event> = kind(&evs, "exec").into_iter().filter(|e| e.str("filename") == "/bin/true").collect();
    assert_eq!(execs.len(), 1, "{ctx}: expected one exec of /bin/true, saw {}:\n{}", execs.len(), dump(evs.clone()));
    let exec = execs[0];
    assert_eq!((exec.pid(), exec.tid()), (pid, pid), "{ctx}: exec pid/tid (tid must be the pid): {exec}");
    assert_eq!(exec.u32("old_tid"), thread, "{ctx}: exec old_tid should be the thread's tid: {exec}");
    assert_eq!(exec.argv(), ["true", "exec-from-thread"], "{ctx}: exec argv: {exec}");

    let clone = one(&evs, "clone", &ctx);
    assert_eq!(clone.tid(), thread, "{ctx}: the clone is of the thread that printed its tid: {clone}");
    assert!(clone.ts() < exec.ts(), "{ctx}: clone after exec:\n{}", dump(evs.clone()));

    let leader_exits: Vec<&Event> = kind(&evs, "thread_exit").into_iter().filter(|e| e.tid() == pid).collect();
    assert_eq!(
        leader_exits.len(),
        1,
        "{ctx}: expected one thread_exit of the old leader (tid {pid}), saw {}:\n{}",
        leader_exits.len(),
        dump(evs.clone())
    );
    assert!(
        leader_exits[0].ts() < exec.ts(),
        "{ctx}: the old leader's thread_exit should come before the exec:\n{}",
        dump(evs.clone())
    );

    let exit = one(&evs, "exit", &ctx);
    assert!(exit.ts() > exec.ts(), "{ctx}: exit before the exec:\n{}", dump(evs.clone()));
    assert_eq!((exit.tid(), exit.exit_code()), (pid, Some(0)), "{ctx}: exit of /bin/true: {exit}");
    // The program itself was exec'd once by the spawn, then /bin/true: two execs in all.
    assert_eq!(
        tree_kinds(&evs),
        ["fork", "exec", "clone", "thread_exit", "exec", "exit"],
        "{ctx}: events (by ts_ns):\n{}",
        dump(evs.clone())
    );
}

/// The argv area `args` make in the new process: each argument and its NUL.
fn argv_area(args: &[String]) -> Vec<u8> {
    let mut v = Vec::new();
    for a in args {
        v.extend_from_slice(a.as_bytes());
        v.push(0);
    }
    v
}

/// The `argv` array tracer shows for the captured bytes `raw` (one trailing NUL dropped,
/// split at NULs).
fn shown_argv(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|&b| b == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// Runs `/bin/true` with `args` (argv[1..]) under a tracer started with `tracer_args` and
/// returns its one exec event, plus the pid.
fn exec_true_traced(tracer_args: &[&str], args: &[String]) -> (Event, u32) {
    let mut tracer = Tracer::start(tracer_args);
    let mut child = Command::new("/bin/true").args(args).stdin(Stdio::null()).spawn().expect("spawn /bin/true");
    let pid = child.id();
    let status = child.wait().expect("wait for /bin/true");
    assert!(status.success(), "/bin/true with long argv ended with {status}");
    tracer.wait_exit(pid);
    let out = tracer.stop();
    let evs = of_pid(&out.events, pid);
    let exec = one(&evs, "exec", &format!("/bin/true with long argv as pid {pid}, tracer {tracer_args:?}"));
    (exec.clone(), pid)
}

/// A 100 KiB argv: cut at the default --argv-max 32K and flagged, whole with 256K.
#[test]
fn long_argv() {
    if !support::require_root() {
        return;
    }
    // 1000 distinct arguments of 102 bytes each, ~100 KiB with their NULs.
    let args: Vec<String> = (0..1000).map(|i| format!("arg{i:04}-{}", "x".repeat(94))).collect();
    let mut full = vec!["/bin/true".to_string()];
    full.extend(args.iter().cloned());
    let area = argv_area(&full);
    let real_len = area.len() as u64;
    assert!(real_len > 100 * 1000, "workload argv is {real_len} bytes");

    // Default --argv-max: 32768 bytes captured.
    let (exec, pid) = exec_true_traced(&[], &args);
    let ctx = format!("/bin/true with {real_len} bytes of argv as pid {pid}, default --argv-max");
    assert_eq!(exec.str("filename"), "/bin/true", "{ctx}: filename: {exec}");
    assert!(exec.bool("argv_truncated"), "{ctx}: argv_truncated should be true: {exec}");
    assert!(!exec.bool("argv_unreadable"), "{ctx}: argv_unreadable: {exec}");
    assert_eq!(exec.u64("argv_real_len"), real_len, "{ctx}: argv_real_len (expected the whole area): {exec}");
    assert_eq!(exec.u64("argv_len"), 32768, "{ctx}: argv_len (captured bytes): {exec}");
    let expect = shown_argv(&area[..32768]);
    let seen = exec.argv();
    assert!(
        seen == expect,
        "{ctx}: argv should be the first 32768 bytes of the real one: expected {} args ending {:?}, saw {} args ending {:?}",
        expect.len(),
        expect.last(),
        seen.len(),
        seen.last()
    );

    // --argv-max 256K: all of it.
    let (exec, pid) = exec_true_traced(&["--argv-max", "256K"], &args);
    let ctx = format!("/bin/true with {real_len} bytes of argv as pid {pid}, --argv-max 256K");
    assert!(!exec.bool("argv_truncated"), "{ctx}: argv_truncated should be false: {exec}");
    assert!(!exec.bool("argv_unreadable"), "{ctx}: argv_unreadable: {exec}");
    assert_eq!(exec.u64("argv_real_len"), real_len, "{ctx}: argv_real_len: {exec}");
    assert_eq!(exec.u64("argv_len"), real_len, "{ctx}: argv_len should be all of it: {exec}");
    let seen = exec.argv();
    if seen != full {
        let first_diff = seen.iter().zip(&full).position(|(a, b)| a != b);
        panic!(
            "{ctx}: argv differs from what was passed: expected {} args, saw {}; first difference at index {first_diff:?}",
            full.len(),
            seen.len()
        );
    }
}

/// pthread_setname_np in a thread: a rename event for that thread.
#[test]
fn thread_rename() {
    if !support::require_root() || !support::require_tool("cc") {
        return;
    }
    let prog = compile_c("renamer", RENAMER_C);
    let mut tracer = Tracer::start(&[]);
    let child = Command::new(&prog.path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the rename workload");
    let pid = child.id();
    let output = child.wait_with_output().expect("wait for the rename workload");
    assert_eq!(output.status.code(), Some(0), "workload itself ended with {}", output.status);
    let printed = printed_tids(&output.stdout);
    assert_eq!(printed.len(), 1, "the thread should print its tid once, printed {printed:?}");
    let thread = printed[0];
    tracer.wait_exit(pid);
    let out = tracer.stop();

    let evs = of_pid(&out.events, pid);
    let ctx = format!("thread {thread} of pid {pid} renaming itself to worker-x");
    let renames: Vec<&Event> = kind(&evs, "rename").into_iter().filter(|e| e.tid() == thread).collect();
    assert_eq!(
        renames.len(),
        1,
        "{ctx}: expected one rename of tid {thread}, saw {}:\n{}",
        renames.len(),
        dump(evs.clone())
    );
    let r = renames[0];
    assert_eq!(r.pid(), pid, "{ctx}: rename pid: {r}");
    assert_eq!(r.str("new_comm"), "worker-x", "{ctx}: new_comm: {r}");
    assert_eq!(r.str("comm"), "renamer", "{ctx}: comm (the old name): {r}");
    let clone = one(&evs, "clone", &ctx);
    assert_eq!(clone.tid(), thread, "{ctx}: clone tid: {clone}");
    let texit = one(&evs, "thread_exit", &ctx);
    assert!(
        clone.ts() < r.ts() && r.ts() < texit.ts(),
        "{ctx}: rename outside the thread's life:\n{}",
        dump(evs.clone())
    );
    assert_eq!(texit.str("comm"), "worker-x", "{ctx}: the thread exits under its new name: {texit}");
    // The leader keeps its name: the only other renames are the exec's (to "renamer").
    for e in kind(&evs, "rename") {
        if e.tid() != thread {
            assert_eq!(e.str("new_comm"), "renamer", "{ctx}: unexpected rename: {e}");
        }
    }
}

/// A process in a new pid namespace: its ns_pid is 1 and its pidns is not ours.
#[test]
fn new_pid_namespace() {
    if !support::require_root() || !support::require_tool("unshare") {
        return;
    }
    let own_pidns = support::ns_inode("pid");
    let mut tracer = Tracer::start(&[]);
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "sh", "-c", "exec sleep 1"])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn unshare");
    let upid = child.id();
    let status = child.wait().expect("wait for unshare");
    assert!(status.success(), "unshare --pid --fork sh -c 'exec sleep 1' ended with {status}");
    tracer.wait_exit(upid);
    let out = tracer.stop();

    let ctx = format!("unshare --pid --fork sh -c 'exec sleep 1' as pid {upid} (test pidns {own_pidns})");
    let uevs = of_pid(&out.events, upid);
    let uexec = one(&uevs, "exec", &ctx);
    assert_eq!(uexec.u64("pidns"), own_pidns, "{ctx}: unshare itself stays in our pid namespace: {uexec}");

    let forks: Vec<&Event> = out.events.iter().filter(|e| e.is("fork") && e.ppid() == upid).collect();
    assert_eq!(forks.len(), 1, "{ctx}: expected unshare to fork once, saw:\n{}", dump(forks.clone()));
    let inner = forks[0].pid();
    let evs = of_pid(&out.events, inner);
    let sleeps: Vec<&Event> =
        kind(&evs, "exec").into_iter().filter(|e| e.str("filename").ends_with("/sleep")).collect();
    assert_eq!(sleeps.len(), 1, "{ctx}: expected one exec of sleep in pid {inner}, saw:\n{}", dump(evs.clone()));
    let s = sleeps[0];
    assert_eq!(s.argv(), ["sleep", "1"], "{ctx}: sleep argv: {s}");
    assert_ne!(s.pid(), 1, "{ctx}: pid is the host-side pid: {s}");
    assert_eq!((s.u32("ns_pid"), s.u32("ns_tid")), (1, 1), "{ctx}: ns_pid/ns_tid of sleep: {s}");
    assert_ne!(s.u64("pidns"), own_pidns, "{ctx}: sleep's pidns should differ from ours ({own_pidns}): {s}");
    assert_eq!(s.ppid(), upid, "{ctx}: sleep's parent is unshare: {s}");
    for e in &evs {
        assert_eq!(e.u32("ns_pid"), 1, "{ctx}: every event of pid {inner} has ns_pid 1: {e}");
    }
}

/// The summary on SIGINT: lost 0, malformed 0, and counts per kind equal to the lines printed.
#[test]
fn summary_matches_events() {
    if !support::require_root() {
        return;
    }
    let mut tracer = Tracer::start(&[]);
    let mut pids = Vec::new();
    for _ in 0..3 {
        let mut c = Command::new("true").stdin(Stdio::null()).spawn().expect("spawn true");
        pids.push(c.id());
        let _ = c.wait();
    }
    let last = *pids.last().expect("three");
    tracer.wait_exit(last);
    let out = tracer.stop();
    let s = out.summary();

    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for e in out.events.iter().filter(|e| !e.is("lost")) {
        *counted.entry(e.kind().to_string()).or_default() += 1;
    }
    let lost_lines: Vec<&Event> = out.events.iter().filter(|e| e.is("lost")).collect();
    assert!(lost_lines.is_empty(), "lost records under light load:\n{}", dump(lost_lines));
    assert_eq!(s.lost, 0, "summary should report lost 0:\n{}", out.stderr);
    assert_eq!(s.malformed, 0, "summary should report malformed 0:\n{}", out.stderr);
    assert_eq!(s.by_kind, counted, "summary counts per kind (left) != event lines printed (right):\n{}", out.stderr);
    assert_eq!(s.total, counted.values().sum::<u64>(), "summary total != event lines printed:\n{}", out.stderr);
    for pid in pids {
        let evs = of_pid(&out.events, pid);
        assert_eq!(tree_kinds(&evs), ["fork", "exec", "exit"], "`true` as pid {pid}:\n{}", dump(evs.clone()));
    }
}

fn one_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr).trim_end().to_string()
}

/// A ring buffer size that is not a power of two: a one-line error and a failure exit.
#[test]
fn bad_ringbuf_size_is_rejected() {
    if !support::require_root() {
        return;
    }
    let out = support::run(
        Command::new(TRACER).args(["events", "--json", "--ringbuf-size", "1000"]),
        Duration::from_secs(20),
    );
    let err = one_line(&out.stderr);
    assert!(
        !out.status.success(),
        "tracer events --ringbuf-size 1000 should fail, ended with {}; stderr:\n{err}",
        out.status
    );
    assert_eq!(err.lines().count(), 1, "expected a one-line error, saw:\n{err}");
    assert!(err.contains("power of two"), "the error should mention 'power of two': {err}");
    assert!(out.stdout.is_empty(), "nothing on stdout, saw:\n{}", String::from_utf8_lossy(&out.stdout));
}

/// Without root: --help works, `tracer events` fails with one line that mentions root.
#[test]
fn help_and_events_as_nobody() {
    if !support::require_root() || !support::require_tool("setpriv") {
        return;
    }
    // A copy nobody can surely reach, whatever the permissions of the build directory.
    let dir = TempDir::new("nobody");
    let bin = dir.path().join("tracer");
    std::fs::copy(TRACER, &bin).expect("copy the tracer binary");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod tracer");
    let as_nobody = |args: &[&str]| {
        support::run(
            Command::new("setpriv")
                .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                .arg(&bin)
                .args(args)
                .current_dir("/"),
            Duration::from_secs(20),
        )
    };

    let help = as_nobody(&["--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.status.success(),
        "tracer --help as nobody ended with {}; stderr:\n{}",
        help.status,
        one_line(&help.stderr)
    );
    assert!(text.contains("Usage") && text.contains("events"), "tracer --help output:\n{text}");

    let ev = as_nobody(&["events"]);
    let err = one_line(&ev.stderr);
    assert!(!ev.status.success(), "tracer events as nobody should fail, ended with {}; stderr:\n{err}", ev.status);
    assert_eq!(err.lines().count(), 1, "expected a one-line error as nobody, saw:\n{err}");
    assert!(err.contains("root"), "the error as nobody should mention root: {err}");
}

/// SIGINT as soon as the tracer says it is tracing: it must still stop cleanly, with its
/// summary (the "(Ctrl-C to stop)" it prints must hold from then on). The signal is sent
/// by the thread that reads that line, without the harness's latency, and repeated, as
/// the window is small.
#[test]
fn sigint_right_after_attach() {
    if !support::require_root() {
        return;
    }
    const ROUNDS: usize = 20;
    let mut failed = Vec::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(TRACER)
            .args(["events", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tracer");
        let pid = child.id() as libc::pid_t;
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut stderr = BufReader::new(stderr);
            let mut text = String::new();
            let _ = stderr.read_line(&mut text);
            if text.contains("tracing") {
                // SAFETY: the pid of a child the test has not reaped yet, a valid signal.
                unsafe { libc::kill(pid, libc::SIGINT) };
            }
            // The tracer has no children: its stderr ends when it does.
            let _ = stderr.read_to_string(&mut text);
            let _ = tx.send(text);
        });
        let text = rx.recv_timeout(START_TIMEOUT + STOP_TIMEOUT);
        if text.is_err() {
            let _ = child.kill();
        }
        let status = child.wait().expect("wait for tracer");
        let text =
            text.unwrap_or_else(|_| panic!("round {round}: tracer neither attached nor stopped in time ({status})"));
        assert!(text.contains("tracing"), "round {round}: tracer did not attach ({status}); stderr:\n{text}");
        if !status.success() || Summary::parse(&text).is_none() {
            failed.push(format!("    round {round}: ended with {status}; stderr: {text:?}"));
        }
    }
    assert!(
        failed.is_empty(),
        "SIGINT right after the 'tracing' line: expected exit 0 with a summary every time; \
         {} of {ROUNDS} rounds failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// A sleeping process moved to another cgroup (no exec, no fork after): a `cgroup`
/// event with the new cgroup's id and path; a move on a v1 controller hierarchy
/// alone is no event.
#[test]
fn cgroup_move_is_an_event() {
    if !support::require_root() {
        return;
    }
    let Some(cg) = TestCgroup::new("move") else { return };
    let name = cg.name.clone();
    let v1 = TestCgroup::v1("memory", &name);
    // The cgroup id is the directory's inode number (its kernfs node id).
    let id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&cg.path).expect("stat the cgroup"));

    let mut tracer = Tracer::start(&[]);
    let mut child = Command::new("sleep").arg("30").stdin(Stdio::null()).spawn().expect("spawn sleep 30");
    let pid = child.id();
    tracer.wait_for(&format!("the exec of sleep as pid {pid}"), |evs| has_exec(evs, pid));
    if let Some(v1) = &v1 {
        v1.enter(pid);
    }
    cg.enter(pid);
    let oracle = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    assert!(oracle.lines().any(|l| l == format!("0::/{name}")), "/proc/{pid}/cgroup after the move:\n{oracle}");
    tracer
        .wait_for(&format!("the cgroup move of pid {pid}"), |evs| evs.iter().any(|e| e.is("cgroup") && e.pid() == pid));
    child.kill().expect("kill sleep");
    let _ = child.wait();
    tracer.wait_exit(pid);
    let out = tracer.stop();

    let evs = of_pid(&out.events, pid);
    let ctx = format!("sleep 30 as pid {pid}, moved to cgroup /{name} (id {id})");
    let mv = one(&evs, "cgroup", &ctx);
    assert_eq!(mv.u64("cgroup_id"), id, "{ctx}: cgroup id: {mv}");
    assert_eq!(mv.str("cgroup_path"), format!("/{name}"), "{ctx}: cgroup path: {mv}");
    assert!(mv.bool("threadgroup"), "{ctx}: a cgroup.procs write moves the whole process: {mv}");
    assert_eq!(mv.tid(), pid, "{ctx}: {mv}");
    let exit = one(&evs, "exit", &ctx);
    assert_eq!(exit.u64("cgroup_id"), id, "{ctx}: the exit is in the new cgroup: {exit}");
    assert!(exit.ts() > mv.ts(), "{ctx}: exit after the move");
}

/// A cgroup no process uses any more is dropped (pruning every 200 ms here), and the
/// kernel side is told to forget it: when a process enters it again, its path is
/// sent again and the move shows it.
#[test]
fn pruned_cgroup_path_is_sent_again() {
    if !support::require_root() {
        return;
    }
    let Some(cg) = TestCgroup::new("prune") else { return };
    let name = cg.name.clone();
    let mut tracer = Tracer::start_env(&[], &[("TRACER_CGROUP_PRUNE_MS", "200")]);
    let mut moved = Vec::new();
    for round in 0..2 {
        let mut child = Command::new("sleep").arg("30").stdin(Stdio::null()).spawn().expect("spawn sleep 30");
        let pid = child.id();
        tracer.wait_for(&format!("the exec of sleep as pid {pid}"), |evs| has_exec(evs, pid));
        cg.enter(pid);
        tracer.wait_for(&format!("the cgroup move of pid {pid}"), |evs| {
            evs.iter().any(|e| e.is("cgroup") && e.pid() == pid)
        });
        child.kill().expect("kill sleep");
        let _ = child.wait();
        tracer.wait_exit(pid);
        moved.push(pid);
        if round == 0 {
            // The exited process lingers 2 s; then two prunes forget the cgroup, a
            // third drops it.
            std::thread::sleep(Duration::from_millis(2000 + 4 * 200 + 500));
        }
    }
    let out = tracer.stop();
    for pid in moved {
        let evs = of_pid(&out.events, pid);
        let mv = one(&evs, "cgroup", &format!("sleep as pid {pid}"));
        assert_eq!(
            mv.get("cgroup_path").as_str(),
            Some(format!("/{name}").as_str()),
            "pid {pid}: the move names the cgroup's path: {mv}"
        );
    }
}
