//! `tracer daemon`: the protocol, many clients, slow and stuck clients, bad
//! requests, crashes and restarts, and who may connect.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{
    self, TempDir,
    daemon::Daemon,
    tracer::TRACER,
    workload::{CProgram, compile_c},
};

/// One request on a fresh connection; the raw answer line.
fn ask(d: &Daemon, line: &[u8]) -> Value {
    let mut c = UnixStream::connect(d.socket()).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(line).unwrap();
    let mut r = BufReader::new(c);
    let mut out = String::new();
    r.read_line(&mut out).expect("answer");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {out:?}"))
}

fn cc(name: &str, src: &str) -> CProgram {
    compile_c(name, src)
}

const STORM: &str = r#"
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void *nop(void *a) { return a; }
int main(int argc, char **argv) {
    int procs = atoi(argv[1]), threads = atoi(argv[2]);
    for (int i = 0; i < procs; i++) {
        pid_t p = fork();
        if (p == 0) _exit(0);
        waitpid(p, 0, 0);
    }
    for (int i = 0; i < threads; i++) {
        pthread_t t;
        pthread_create(&t, 0, nop, 0);
        pthread_join(t, 0);
    }
    return 0;
}
"#;

#[test]
fn every_verb_round_trips() {
    if !support::require_root() {
        return;
    }
    let d = Daemon::start(&[]);
    let v = ask(&d, b"{\"verb\":\"version\"}\n");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["protocol"], 1, "{v}");
    let st = d.stats();
    for k in ["lost", "processes", "threads", "walks", "events_total", "uptime_s", "max_rss_kib"] {
        assert!(st.get(k).is_some(), "stats lack {k}: {st}");
    }
    let me = std::process::id();
    let snap = d.snapshot(None);
    let procs = snap["processes"].as_array().expect("processes");
    assert!(procs.iter().any(|p| p["pid"] == me), "the test process {me} is not in the snapshot");
    for (format, needle) in [("forest", "COMMAND"), ("threads", "LWP")] {
        let v = ask(&d, format!("{{\"verb\":\"snapshot\",\"format\":\"{format}\"}}\n").as_bytes());
        let text = v["text"].as_str().unwrap_or_else(|| panic!("{format}: no text: {v}"));
        assert!(text.contains(needle) && text.contains(&me.to_string()), "{format} view lacks {needle} or pid {me}");
    }
    let v = ask(&d, b"{\"verb\":\"containers\"}\n");
    assert!(v["containers"].is_array(), "containers: {v}");
    // A subscription sees a process that runs after it started, with its status.
    let sub = d.subscribe();
    let child = Command::new("sh").args(["-c", "exit 3"]).status().expect("sh");
    assert_eq!(child.code(), Some(3));
    let seen = sub.wait_for_within("the exit of sh", Duration::from_secs(10), |st| {
        st.events.iter().any(|e| e["kind"] == "exit" && e["comm"] == "sh" && e["status"]["code"] == 3)
    });
    assert!(seen, "no exit 3 of sh on the subscription; got {} events", sub.events().len());
    d.stop();
}

#[test]
fn ps_from_daemon_equals_in_process() {
    if !support::require_root() {
        return;
    }
    let d = Daemon::start(&[]);
    let t0 = std::time::SystemTime::now();
    let run = |args: &[&str]| -> Value {
        let out = support::run(Command::new(TRACER).args(args), Duration::from_secs(60));
        assert!(out.status.success(), "tracer {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("ps --json is JSON")
    };
    let socket = d.socket().display().to_string();
    let key = |v: &Value| -> BTreeMap<(u64, u64), (u64, u64, String)> {
        v["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .map(|p| {
                let k = (p["pid"].as_u64().unwrap_or(0), p["start_ns"].as_u64().unwrap_or(0));
                (k, (p["ppid"].as_u64().unwrap_or(0), p["nlwp"].as_u64().unwrap_or(0), p["comm"].to_string()))
            })
            .collect()
    };
    // Processes that live through both runs must look the same either way.
    let a = key(&run(&["ps", "--json", "--socket", &socket]));
    let b = key(&run(&["ps", "--json", "--standalone"]));
    let c = key(&run(&["ps", "--json", "--socket", &socket]));
    let stable: Vec<_> = a.iter().filter(|(k, v)| c.get(k) == Some(v)).collect();
    let differ: Vec<String> = stable
        .iter()
        .filter(|(k, v)| b.get(k) != Some(v))
        .map(|(k, v)| format!("pid {}: daemon {v:?}, in-process {:?}", k.0, b.get(k)))
        .collect();
    assert!(stable.len() > 20, "too few stable processes ({}) since {t0:?}", stable.len());
    assert!(differ.len() <= 2, "daemon and in-process trees differ:\n{}", differ.join("\n"));
    d.stop();
}

/// A client's own copy of the tree, kept from a subscription: pid -> tids.
#[derive(Default)]
struct Copy {
    procs: BTreeMap<u64, BTreeSet<u64>>,
    lines: u64,
    resyncs: u64,
    ended: bool,
}

impl Copy {
    fn load(&mut self, snap: &Value) {
        self.procs.clear();
        for p in snap["processes"].as_array().into_iter().flatten() {
            if p["state"] != "alive" {
                continue;
            }
            let tids = p["threads"].as_array().into_iter().flatten().filter_map(|t| t["tid"].as_u64()).collect();
            self.procs.insert(p["pid"].as_u64().unwrap_or(0), tids);
        }
    }

    fn apply(&mut self, e: &Value) {
        let pid = e["pid"].as_u64().unwrap_or(0);
        let tid = e["tid"].as_u64().unwrap_or(0);
        match e["kind"].as_str().unwrap_or("") {
            "fork" => {
                self.procs.insert(pid, [tid].into());
            }
            "clone" => {
                self.procs.entry(pid).or_default().insert(tid);
            }
            "thread_exit" => {
                if let Some(t) = self.procs.get_mut(&pid) {
                    t.remove(&tid);
                }
            }
            "exec" => {
                self.procs.insert(pid, [pid].into());
            }
            "exit" => {
                self.procs.remove(&pid);
            }
            "repair" => {
                let what = e["what"].as_str().unwrap_or("");
                if what.starts_with("added") {
                    self.procs.entry(pid).or_insert_with(|| [pid].into());
                } else {
                    self.procs.remove(&pid);
                }
            }
            _ => {}
        }
    }
}

fn subscriber(socket: &std::path::Path) -> Arc<Mutex<Copy>> {
    let copy = Arc::new(Mutex::new(Copy::default()));
    let mut conn = UnixStream::connect(socket).expect("connect");
    conn.write_all(b"{\"verb\":\"subscribe\"}\n").unwrap();
    let c = copy.clone();
    std::thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 20, conn);
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                c.lock().unwrap().ended = true;
                return;
            }
            let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
            let mut c = c.lock().unwrap();
            c.lines += 1;
            if let Some(e) = v.get("event") {
                c.apply(e);
            } else if let Some(s) = v.get("snapshot") {
                if v.get("missed").is_some() {
                    c.resyncs += 1;
                }
                c.load(s);
            }
        }
    });
    copy
}

#[test]
fn twenty_clients_keep_up_with_a_storm() {
    if !support::require_root() || !support::require_tool("cc") {
        return;
    }
    let storm = cc("daemon_storm", STORM);
    let d = Daemon::start(&[]);
    let clients: Vec<_> = (0..20).map(|_| subscriber(d.socket())).collect();
    let t = Instant::now();
    while clients.iter().any(|c| c.lock().unwrap().lines == 0) {
        assert!(t.elapsed() < Duration::from_secs(20), "subscriptions did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = support::run(Command::new(&storm.path).args(["3000", "3000"]), Duration::from_secs(120));
    assert!(out.status.success());
    // Let the stream settle, then every copy must equal the daemon's tree.
    std::thread::sleep(Duration::from_millis(700));
    let mut last = String::new();
    for _attempt in 0..10 {
        let a = d.snapshot(None);
        std::thread::sleep(Duration::from_millis(300));
        let b = d.snapshot(None);
        let mut want = Copy::default();
        want.load(&a);
        let mut again = Copy::default();
        again.load(&b);
        if want.procs != again.procs {
            last = "the system was busy between two snapshots".into();
            continue;
        }
        let bad: Vec<String> = clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let c = c.lock().unwrap();
                (c.procs != want.procs).then(|| {
                    let extra: Vec<_> = c.procs.keys().filter(|k| !want.procs.contains_key(k)).collect();
                    let missing: Vec<_> = want.procs.keys().filter(|k| !c.procs.contains_key(k)).collect();
                    format!("client {i}: extra {extra:?} missing {missing:?} ({} lines)", c.lines)
                })
            })
            .collect();
        if bad.is_empty() {
            let st = d.stats();
            assert_eq!(st["lost"], 0, "the engine lost events: {st}");
            let resyncs: u64 = clients.iter().map(|c| c.lock().unwrap().resyncs).sum();
            eprintln!("20 clients equal to the daemon's tree; {resyncs} resyncs; stats {st}");
            d.stop();
            return;
        }
        last = bad.join("\n");
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("clients' copies differ from the daemon's tree:\n{last}");
}

#[test]
fn stuck_client_is_cut_loose() {
    if !support::require_root() || !support::require_tool("cc") {
        return;
    }
    let storm = cc("daemon_stuck", STORM);
    let d = Daemon::start(&[]);
    // Subscribes, then never reads.
    let mut stuck = UnixStream::connect(d.socket()).expect("connect");
    stuck.write_all(b"{\"verb\":\"subscribe\"}\n").unwrap();
    let good = subscriber(d.socket());
    let out = support::run(Command::new(&storm.path).args(["8000", "0"]), Duration::from_secs(120));
    assert!(out.status.success());
    // The stall limit is 5 s; the daemon must still answer promptly meanwhile.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(7) {
        let v = ask(&d, b"{\"verb\":\"version\"}\n");
        assert_eq!(v["ok"], true);
        std::thread::sleep(Duration::from_millis(500));
    }
    // Another storm after the cut: the stuck client gets nothing more.
    let out = support::run(Command::new(&storm.path).args(["500", "0"]), Duration::from_secs(60));
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(500));
    let good_lines = good.lock().unwrap().lines;
    assert!(good_lines > 16_000, "the reading client got only {good_lines} lines");
    // The stuck one: what was queued, then the notice, then the end.
    stuck.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut text = String::new();
    BufReader::new(stuck).read_to_string(&mut text).expect("the stuck client's stream ends");
    let last = text.lines().last().unwrap_or("");
    assert!(last.contains("cut loose"), "the stuck client's last line is {last:?}");
    d.stop();
}

#[test]
fn malformed_requests_get_errors() {
    if !support::require_root() {
        return;
    }
    let d = Daemon::start(&[]);
    for (req, want) in [
        (&b"not json\n"[..], "bad request"),
        (b"{\"verb\":\"reboot\"}\n", "unknown variant"),
        (b"{\"verb\":\"snapshot\",\"format\":\"png\"}\n", "unknown variant"),
        (b"\xff\xfe\n", "UTF-8"),
        (b"{\"verb\":\"snapshot\",\"by_container\":\"yes\"}\n", "bad request"),
        (b"{\"verb\":\"subscribe\",\"filter\":{\"container\":\" \"}}\n", "filter.container is empty"),
    ] {
        let v = ask(&d, req);
        assert_eq!(v["ok"], false, "{v}");
        assert!(v["error"].as_str().unwrap_or("").contains(want), "{:?}: {v}", String::from_utf8_lossy(req));
    }
    // The connection stays usable after an error.
    let mut c = UnixStream::connect(d.socket()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"garbage\n{\"verb\":\"version\"}\n").unwrap();
    let mut r = BufReader::new(c);
    let (mut l1, mut l2) = (String::new(), String::new());
    r.read_line(&mut l1).unwrap();
    r.read_line(&mut l2).unwrap();
    assert!(l1.contains("\"ok\":false") && l2.contains("\"protocol\":1"), "{l1} / {l2}");
    // A 10 MiB line: an error, then the connection closes.
    let mut c = UnixStream::connect(d.socket()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let big = vec![b'x'; 10 << 20];
    let writer = {
        let mut c = c.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = c.write_all(&big);
        })
    };
    let mut text = String::new();
    let _ = BufReader::new(&mut c).read_to_string(&mut text);
    assert!(text.contains("longer than"), "10 MiB line: {text:?}");
    drop(c);
    let _ = writer.join();
    // Half a request, then gone.
    let mut c = UnixStream::connect(d.socket()).unwrap();
    c.write_all(b"{\"verb\":\"ver").unwrap();
    drop(c);
    // Still up.
    assert_eq!(ask(&d, b"{\"verb\":\"version\"}\n")["ok"], true);
    d.stop();
}

/// Ids of the loaded BPF programs that carry tracer's program names.
fn tracer_programs() -> BTreeSet<u64> {
    let out = support::run(Command::new("bpftool").args(["prog", "show"]), Duration::from_secs(20));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| ["sched_process_fork", "sched_process_exit", "iter_task"].iter().any(|n| l.contains(n)))
        .filter_map(|l| l.split(':').next()?.trim().parse().ok())
        .collect()
}

#[test]
fn kill_9_leaves_nothing_attached_and_restart_works() {
    if !support::require_root() || !support::require_tool("bpftool") {
        return;
    }
    // Programs of other tracer instances (a daemon of an earlier test being freed)
    // are left out: only this daemon's must go.
    let before = tracer_programs();
    let d = Daemon::start(&[]);
    let ours: BTreeSet<u64> = tracer_programs().difference(&before).copied().collect();
    assert!(ours.len() >= 3, "bpftool does not see the daemon's programs (before {before:?})");
    let socket = d.socket().to_path_buf();
    let dir = socket.parent().unwrap().to_path_buf();
    // Keep the directory: the restart reuses the same socket path.
    let keep = dir.with_extension("keep");
    std::fs::create_dir_all(&keep).unwrap();
    d.sigkill();
    let t = Instant::now();
    while !tracer_programs().is_disjoint(&ours) {
        let left: Vec<_> = tracer_programs().intersection(&ours).copied().collect();
        assert!(t.elapsed() < Duration::from_secs(10), "programs still loaded 10 s after kill -9: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The socket file is left behind by the crash; a new daemon must take it over.
    std::fs::create_dir_all(&dir).unwrap();
    let t = Instant::now();
    let mut child = Command::new(TRACER)
        .args(["daemon", "--socket", &socket.display().to_string()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ok = false;
    while t.elapsed() < Duration::from_secs(20) {
        if let Ok(mut c) = UnixStream::connect(&socket) {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            if c.write_all(b"{\"verb\":\"version\"}\n").is_ok() {
                let mut l = String::new();
                if BufReader::new(c).read_line(&mut l).is_ok() && l.contains("\"protocol\":1") {
                    ok = true;
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&keep);
    assert!(ok, "a restarted daemon did not serve the old socket path within 20 s");
    assert!(st.success(), "the restarted daemon ended with {st}");
    assert!(!socket.exists(), "the socket is left behind after SIGTERM");
}

#[test]
fn only_root_and_group_members_are_served() {
    if !support::require_root() || !support::require_tool("useradd") || !support::require_tool("setpriv") {
        return;
    }
    let group = "tracer-it";
    let (member, other) = ("tracer-it-m", "tracer-it-o");
    let sh = |cmd: &str| {
        let _ = support::run(Command::new("sh").args(["-c", cmd]), Duration::from_secs(30));
    };
    sh(&format!("userdel {member}; userdel {other}; groupdel {group}"));
    sh(&format!("groupadd {group} && useradd -M -G {group} {member} && useradd -M {other}"));
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("sh").args(["-c", &self.0]).status();
        }
    }
    let _cleanup = Cleanup(format!("userdel {member}; userdel {other}; groupdel {group}"));
    let d = Daemon::start(&["--group", group]);
    let socket = d.socket().display().to_string();
    // The binary must be reachable by the unprivileged users.
    let bin = TempDir::new("daemon-bin");
    let tracer = bin.path().join("tracer");
    std::fs::copy(TRACER, &tracer).unwrap();
    for p in [bin.path(), d.socket().parent().unwrap()] {
        let _ = Command::new("chmod").args(["755", &p.display().to_string()]).status();
    }
    let as_user = |user: &str| {
        support::run(
            Command::new("setpriv").args([
                "--reuid",
                user,
                "--regid",
                user,
                "--init-groups",
                &tracer.display().to_string(),
                "ps",
                "--socket",
                &socket,
            ]),
            Duration::from_secs(30),
        )
    };
    let m = as_user(member);
    assert!(m.status.success(), "member refused: {}", String::from_utf8_lossy(&m.stderr));
    assert!(String::from_utf8_lossy(&m.stdout).contains("COMMAND"), "member got no tree");
    let o = as_user(other);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a non-member was served");
    assert_eq!(err.trim().lines().count(), 1, "not a one-line error: {err}");
    assert!(err.contains("refused") || err.contains("root"), "unclear error for a non-member: {err}");
    d.stop();
}
