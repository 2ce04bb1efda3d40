//! `tracer events --kind/--comm/--user/--pid` and the fields exec and exit lines
//! gained (`parent_comm`, `lifetime_ns`): real processes spawned here, checked
//! against what the test knows of them (and /proc, as the oracle).

use std::{
    io::Write,
    os::unix::process::CommandExt,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::support::{
    self,
    daemon::Daemon,
    event::{dump, has_exec},
    tracer::{StoryWatch, TRACER, Tracer},
};

/// This process's comm (its leader thread's, as the engine keeps it; the
/// calling test thread has its own name).
fn leader_comm() -> String {
    std::fs::read_to_string(format!("/proc/{}/comm", std::process::id())).expect("/proc/PID/comm").trim().to_string()
}

/// A uid's number from `id -u NAME`.
fn uid_of(name: &str) -> u32 {
    let out = support::run(Command::new("id").args(["-u", name]), Duration::from_secs(10));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("no uid for {name}: {out:?}"))
}

/// `sh -c '/bin/true & echo $!; wait'`: its pid and its child's (printed).
fn sh_with_child() -> (u32, u32) {
    let child =
        Command::new("sh").args(["-c", "/bin/true & echo $!; wait"]).stdout(Stdio::piped()).spawn().expect("spawn sh");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for sh");
    assert!(out.status.success(), "sh ended with {}", out.status);
    let kid = String::from_utf8_lossy(&out.stdout).trim().parse().expect("sh printed its child's pid");
    (pid, kid)
}

/// `--kind exec`: only exec lines, and each names its parent's comm.
#[test]
fn kind_exec_only_with_parent_comm() {
    if !support::require_root() {
        return;
    }
    let mut tracer = Tracer::start(&["--kind", "exec"]);
    let (sh, kid) = sh_with_child();
    assert!(tracer.wait_for("the exec of sh's child", |evs| has_exec(evs, kid)), "{}", tracer.stderr());
    let out = tracer.stop();
    let bad: Vec<_> = out.events.iter().filter(|e| e.kind() != "exec").collect();
    assert!(bad.is_empty(), "--kind exec let other kinds through:\n{}", dump(bad));
    let my_comm = leader_comm();
    let exec_of = |pid| out.events.iter().find(|e| e.pid() == pid).unwrap_or_else(|| panic!("no exec of {pid}"));
    assert_eq!(exec_of(kid).str("parent_comm"), "sh", "{}", exec_of(kid));
    assert_eq!(exec_of(sh).str("parent_comm"), my_comm, "{}", exec_of(sh));
    assert_eq!(out.summary().by_kind.keys().collect::<Vec<_>>(), ["exec"], "{}", out.stderr);
}

/// `--comm 'sl*p'` matches sleep (its exec and exit), nothing else; the exit
/// carries how long it lived, within what the test measured around it.
#[test]
fn comm_glob_and_lifetime() {
    if !support::require_root() {
        return;
    }
    let mut tracer = Tracer::start(&["--comm", "sl*p"]);
    let t0 = Instant::now();
    let mut child = Command::new("sleep").arg("0.2").spawn().expect("spawn sleep");
    let pid = child.id();
    child.wait().expect("wait for sleep");
    let elapsed = t0.elapsed().as_nanos() as u64;
    let (_, other) = sh_with_child();
    tracer.wait_exit(pid);
    let out = tracer.stop();
    // A rename shows under the name it takes too (exec renames the child to sleep).
    let sleep = |e: &&crate::support::event::Event| e.str("comm") == "sleep" || e.get("new_comm") == "sleep";
    let bad: Vec<_> = out.events.iter().filter(|e| !sleep(e)).collect();
    assert!(bad.is_empty(), "--comm 'sl*p' let other comms through:\n{}", dump(bad));
    assert!(!out.events.iter().any(|e| e.pid() == other), "sh's child {other} is no sleep");
    assert!(has_exec(&out.events, pid), "no exec of sleep {pid}:\n{}", dump(&out.events));
    let exit = out.events.iter().find(|e| e.kind() == "exit" && e.pid() == pid).expect("sleep's exit");
    let lifetime = exit.u64("lifetime_ns");
    assert_eq!(lifetime, exit.ts() - exit.u64("proc_start_ns"), "{exit}");
    assert!((200_000_000..=elapsed).contains(&lifetime), "sleep 0.2 lived {lifetime} ns, the test saw {elapsed}");
}

/// `--user nobody`: only the events of nobody's processes (the exec and exit of
/// a shell run as nobody; not its fork, made as root, nor root's shell beside it).
#[test]
fn user_nobody_only() {
    if !support::require_root() {
        return;
    }
    let nobody = uid_of("nobody");
    let mut tracer = Tracer::start(&["--user", "nobody"]);
    let mut child = Command::new("sh").args(["-c", "exit 0"]).uid(nobody).spawn().expect("spawn sh as nobody");
    let pid = child.id();
    child.wait().expect("wait for sh");
    let (root_sh, _) = sh_with_child();
    tracer.wait_exit(pid);
    let out = tracer.stop();
    let bad: Vec<_> = out.events.iter().filter(|e| e.u32("uid") != nobody).collect();
    assert!(bad.is_empty(), "--user nobody let others' events through:\n{}", dump(bad));
    assert!(has_exec(&out.events, pid), "no exec of nobody's sh {pid}:\n{}", dump(&out.events));
    assert!(!out.events.iter().any(|e| e.pid() == root_sh), "root's sh {root_sh} is not nobody's");
}

/// `--pid N` follows N and its children, not the test's other processes; a pid
/// no process has is an error (status 1, one line), for `events` and `ps`.
#[test]
fn pid_follows_children_and_a_missing_pid_fails() {
    if !support::require_root() {
        return;
    }
    let mut sh = Command::new("sh")
        .args(["-c", "read line; /bin/true; exit 4"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let pid = sh.id();
    let mut tracer = Tracer::start(&["--pid", &pid.to_string()]);
    let (other, _) = sh_with_child();
    sh.stdin.take().expect("piped").write_all(b"go\n").expect("write to sh");
    assert_eq!(sh.wait().expect("wait for sh").code(), Some(4));
    tracer.wait_exit(pid);
    let out = tracer.stop();
    let all = || dump(&out.events);
    let kid_exec = out.events.iter().find(|e| e.kind() == "exec" && e.ppid() == pid);
    let kid = kid_exec.unwrap_or_else(|| panic!("no exec of sh's child:\n{}", all()));
    assert_eq!(kid.argv(), ["/bin/true"], "{kid}");
    assert_eq!(kid.str("parent_comm"), "sh", "{kid}");
    assert!(out.events.iter().any(|e| e.kind() == "fork" && e.pid() == kid.pid()), "no fork:\n{}", all());
    let exit = out.events.iter().find(|e| e.kind() == "exit" && e.pid() == pid).expect("sh's exit");
    assert_eq!(exit.exit_code(), Some(4), "{exit}");
    let strays: Vec<_> = out.events.iter().filter(|e| e.pid() != pid && e.ppid() != pid).collect();
    assert!(strays.is_empty(), "--pid {pid} let others through (the test's sh was {other}):\n{}", dump(strays));

    // `pid` is reaped now: no process has it (a reuse this soon is out of reach).
    for args in [&["events", "--standalone", "--pid"][..], &["ps", "--standalone", "--pid"]] {
        let o = support::run(Command::new(TRACER).args(args).arg(pid.to_string()), Duration::from_secs(60));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "tracer {args:?} {pid}: {err}");
        assert!(err.contains(&format!("no process with pid {pid}")), "tracer {args:?} {pid}: {err}");
        assert_eq!(err.lines().filter(|l| l.contains("error")).count(), 1, "{err}");
    }
}

/// The same filters through the daemon: `--kind exec --comm 'sl*p'` sees the
/// exec of sleep (with its parent) and nothing else; a missing pid fails.
#[test]
fn filters_through_the_daemon() {
    if !support::require_root() {
        return;
    }
    let d = Daemon::start(&[]);
    let socket = d.socket().display().to_string();
    let w = StoryWatch::events(&["--socket", &socket, "--kind", "exec", "--comm", "sl*p"]);
    let mut child = Command::new("sleep").arg("0").spawn().expect("spawn sleep");
    let pid = child.id();
    child.wait().expect("wait for sleep");
    let (other, _) = sh_with_child();
    let t = Instant::now();
    while !w.stories().iter().any(|e| e["pid"] == pid) {
        assert!(t.elapsed() < Duration::from_secs(30), "no exec of sleep {pid}: {:?}", w.stories());
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines = w.stories();
    let _ = w.stop();
    let bad: Vec<_> = lines.iter().filter(|e| e["kind"] != "exec" || e["comm"] != "sleep").collect();
    assert!(bad.is_empty(), "the daemon let through {bad:?}");
    assert!(!lines.iter().any(|e| e["pid"] == other));
    let exec = lines.iter().find(|e| e["pid"] == pid).expect("sleep's exec");
    let my_comm = leader_comm();
    assert_eq!(exec["parent_comm"], my_comm, "{exec}");

    let args = ["events", "--socket", &socket, "--pid", &pid.to_string()];
    let o = support::run(Command::new(TRACER).args(args), Duration::from_secs(60));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("no process with pid {pid}")), "{err}");
    d.stop();
}
