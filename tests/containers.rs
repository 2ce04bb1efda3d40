//! Containers seen from the kernel: a real dockerd started here (no host
//! networking touched) running busybox and Apache httpd containers, and plain runc;
//! `docker ps` / `docker inspect` / `runc state` / /proc as the oracle for the
//! daemon's `containers` verb and its snapshot.
//!
//! No registry is reachable: the busybox image is made from the host's busybox, the
//! Apache one from a Debian rootfs made by debootstrap, cached as a tarball between
//! runs (see [`apache_rootfs_tar`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{
    self,
    cgroup::container_cgroup_id,
    daemon::Daemon,
    docker::{APACHE_IMAGE, BUSYBOX_IMAGE, Dockerd, apache_image, busybox_image, docker_cgroups},
    procfs::{ProcInfo, proc_oracle, proc_pids_in, show_oracle, task_children},
    rootfs::apache_rootfs_tar,
    runc::RuncContainer,
    tmux::Tmux,
    tracer::{StoryWatch, TRACER},
};

/// How long the daemon's view may take to agree with the oracle (containers starting,
/// Apache children spawning their threads, exec'd processes joining).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long stopped containers may take to leave the list.
const GONE_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Container stories (`tracer events --containers --json`)

/// The causal order of a start's stages: each one's time is at or after the previous.
const STAGE_ORDER: &[&str] = &["shim", "create", "init", "namespaces", "start", "entrypoint"];

/// What is wrong with a start story, given the container's runtime, id, pid 1 on the
/// host (the oracle's) and the stages it must have.
fn start_story_problems(s: &Value, runtime: &str, init_pid: u32, stages: &[&str]) -> Vec<String> {
    let mut p = Vec::new();
    if s["container"]["runtime"] != runtime {
        p.push(format!("runtime {} (want {runtime})", s["container"]["runtime"]));
    }
    if s["init_pid"].as_u64() != Some(u64::from(init_pid)) || s["init_ns_pid"] != 1 {
        p.push(format!("init pid {} ({} inside), want {init_pid} (1 inside)", s["init_pid"], s["init_ns_pid"]));
    }
    let steps = s["steps"].as_array().cloned().unwrap_or_default();
    let at = |stage: &str| steps.iter().find(|x| x["stage"] == stage);
    for want in stages {
        if at(want).is_none() {
            p.push(format!("no `{want}` stage"));
        }
    }
    // Causal order, and time since the first stage that only grows.
    let times: Vec<(&str, u64)> = STAGE_ORDER.iter().filter_map(|st| Some((*st, at(st)?["ts_ns"].as_u64()?))).collect();
    for w in times.windows(2) {
        if w[0].1 > w[1].1 {
            p.push(format!("`{}` after `{}`", w[0].0, w[1].0));
        }
    }
    if let (Some(cg), Some(entry)) = (at("cgroup"), at("entrypoint"))
        && cg["ts_ns"].as_u64() > entry["ts_ns"].as_u64()
    {
        p.push("`cgroup` after `entrypoint`".into());
    }
    let since: Vec<u64> = steps.iter().filter_map(|x| x["since_ns"].as_u64()).collect();
    if since.first() != Some(&0) || since.windows(2).any(|w| w[0] > w[1]) {
        p.push(format!("since_ns not from 0 and growing: {since:?}"));
    }
    match s["to_entrypoint_ns"].as_u64() {
        // A start takes ~0.2-0.5 s here: 20 s is far beyond any plausible one.
        Some(ns) if ns > 0 && ns < 20_000_000_000 => {}
        other => p.push(format!("implausible time to the entrypoint: {other:?} ns")),
    }
    if let Some(entry) = at("entrypoint")
        && entry["pid"].as_u64() != Some(u64::from(init_pid))
    {
        p.push(format!("the entrypoint exec is by pid {}, not the init", entry["pid"]));
    }
    p
}
/// `tracer events --container` output: the execs `want` (pid, file name) are there,
/// and every event is in the container's cgroup (the oracle: its directory's inode).
fn check_container_events(w: &StoryWatch, id: &str, want: &[(u32, &str)]) {
    let cgroup = container_cgroup_id(id).unwrap_or_else(|| panic!("no cgroup directory of {id}"));
    let t = Instant::now();
    let events = loop {
        let events = w.stories();
        let has = |pid: u32, file: &str| {
            events.iter().any(|e| e["kind"] == "exec" && e["pid"] == pid && e["filename"].as_str() == Some(file))
        };
        if want.iter().all(|(p, f)| has(*p, f)) {
            break events;
        }
        assert!(
            t.elapsed() < SETTLE_TIMEOUT,
            "tracer events --container {id}: no exec of {want:?} in:\n{}\nstderr: {}",
            events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n"),
            w.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Kernel events say their task's cgroup (derived lines, such as reparent, do not).
    let outside: Vec<&Value> =
        events.iter().filter(|e| e.get("cgroup_id").is_some() && e["cgroup_id"].as_u64() != Some(cgroup)).collect();
    assert!(outside.is_empty(), "events of --container {id} outside its cgroup {cgroup}: {outside:#?}");
}

/// The exit status an oracle reports (docker's ExitCode: the code, or 128 + signal).
fn exit_code_of(story: &Value) -> Option<u64> {
    let raw = story["status"]["raw"].as_u64()?;
    Some(if raw & 0x7f != 0 { 128 + (raw & 0x7f) } else { (raw >> 8) & 0xff })
}
// ---------------------------------------------------------------------------------------
// Oracles

fn pids_of(c: &Value) -> BTreeSet<u32> {
    c["pids"].as_array().into_iter().flatten().filter_map(Value::as_u64).map(|p| p as u32).collect()
}

/// Differences between a listed container's processes and threads and /proc's.
fn check_processes(c: &Value, what: &str, oracle: &BTreeMap<u32, ProcInfo>, problems: &mut Vec<String>) {
    let ours = pids_of(c);
    let theirs: BTreeSet<u32> = oracle.keys().copied().collect();
    if ours != theirs {
        problems.push(format!(
            "{what}: pids differ: tracer only {:?}, /proc only {:?}",
            ours.difference(&theirs).collect::<Vec<_>>(),
            theirs.difference(&ours).collect::<Vec<_>>()
        ));
    }
    if c["processes"].as_u64() != Some(ours.len() as u64) {
        problems.push(format!("{what}: processes {} but {} pids listed", c["processes"], ours.len()));
    }
    let threads: usize = oracle.values().map(|i| i.threads).sum();
    if c["threads"].as_u64() != Some(threads as u64) {
        problems.push(format!("{what}: threads {} but /proc has {threads}", c["threads"]));
    }
}

// ---------------------------------------------------------------------------------------
// Docker

/// What a docker container is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    BusyboxHttpd,
    Apache,
}

/// One container the test started, with docker's view of it (the oracle), kept through
/// the test so that checks of its stop can be added.
#[derive(Debug)]
struct DockerContainer {
    name: String,
    workload: Workload,
    /// The image it was started from, as `docker run` was given it.
    image: String,
    /// Full id, from `docker run` (and `docker ps --no-trunc`).
    id: String,
    /// `docker inspect` right after start, and after its removal was asked for.
    inspect: Value,
    /// Set by `docker rm -f`: the time it was asked for.
    removed_at: Option<Instant>,
    /// The pid of a `docker exec -d`'d process, once /proc shows it.
    execd: Option<u32>,
}

impl DockerContainer {
    fn init_pid(&self) -> u32 {
        self.inspect[0]["State"]["Pid"].as_u64().unwrap_or_else(|| panic!("no State.Pid: {}", self.inspect)) as u32
    }

    /// Differences between the daemon's entry (None: not listed) and the oracle.
    fn problems(&self, listed: Option<&Value>) -> Vec<String> {
        let what = format!("{} ({})", self.name, &self.id[..12]);
        let Some(c) = listed else { return vec![format!("{what}: not listed")] };
        let mut p = Vec::new();
        let inspect = &self.inspect[0];
        let mut eq = |field: &str, want: Value| {
            if c[field] != want {
                p.push(format!("{what}: {field} is {} but docker says {want}", c[field]));
            }
        };
        eq("id", inspect["Id"].clone());
        eq("short_id", Value::from(&self.id[..12]));
        eq("runtime", Value::from("docker"));
        eq("init_pid", inspect["State"]["Pid"].clone());
        eq("init_ns_pid", Value::from(1));
        eq("name", Value::from(inspect["Name"].as_str().unwrap_or("").trim_start_matches('/')));
        eq("image", Value::from(self.image.as_str()));
        eq("cgroup", Value::from(format!("/docker/{}", self.id)));
        eq("state", Value::from("running"));
        let oracle = proc_oracle(&self.id);
        check_processes(c, &what, &oracle, &mut p);
        if let Some(execd) = self.execd
            && !pids_of(c).contains(&execd)
        {
            p.push(format!("{what}: the docker exec'd process {execd} is not among its pids"));
        }
        if self.workload == Workload::Apache {
            // The parent (root) and at least two mpm_event children of many threads.
            let init = self.init_pid();
            let children: Vec<(&u32, &ProcInfo)> = oracle.iter().filter(|(_, i)| i.ppid == init).collect();
            if children.len() < 2 || children.iter().any(|(_, i)| i.threads < 3) {
                p.push(format!("{what}: /proc shows no two threaded Apache children of {init}"));
            }
        }
        p
    }
}

/// The docker exec'd `sleep 77` of a container, from /proc.
fn execd_sleep(id: &str) -> Option<u32> {
    proc_oracle(id).into_iter().find(|(_, i)| i.cmdline == "/bin/sleep 77").map(|(p, _)| p)
}

/// The live processes of the daemon's snapshot, by pid.
fn snapshot_by_pid(daemon: &Daemon) -> BTreeMap<u64, Value> {
    let mut snap = daemon.snapshot(None);
    let procs = snap["processes"].take();
    let Value::Array(procs) = procs else { return BTreeMap::new() };
    procs.into_iter().filter(|p| p["state"] == "alive").filter_map(|p| Some((p["pid"].as_u64()?, p))).collect()
}

/// Checks a container's processes in the daemon's snapshot against /proc: the same
/// parent, uid and gid, thread count, pid 1 of its namespace for the init only, and
/// `container` (fields `want`) on exactly these processes.
fn snapshot_problems(
    snap: &BTreeMap<u64, Value>,
    what: &str,
    id: &str,
    init: u32,
    oracle: &BTreeMap<u32, ProcInfo>,
    want: &[(&str, Value)],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (pid, i) in oracle {
        let Some(s) = snap.get(&u64::from(*pid)) else {
            problems.push(format!("{what}: pid {pid} ({}) is not alive in the snapshot", i.cmdline));
            continue;
        };
        let fields = [("uid", i.uid as usize), ("gid", i.gid as usize), ("nlwp", i.threads), ("ppid", i.ppid as usize)];
        for (field, want) in fields {
            if s[field].as_u64() != Some(want as u64) {
                problems.push(format!("{what}: pid {pid}: snapshot {field} {} but /proc {want}", s[field]));
            }
        }
        if s["ns_pid"].as_u64().is_none_or(|n| (n == 1) != (*pid == init)) {
            problems.push(format!("{what}: pid {pid}: snapshot ns_pid {} (init is {init})", s["ns_pid"]));
        }
        for (field, want) in want {
            if s["container"][field] != *want {
                problems.push(format!(
                    "{what}: pid {pid}: snapshot container.{field} {} not {want}",
                    s["container"][field]
                ));
            }
        }
    }
    let claimed: Vec<u64> = snap
        .iter()
        .filter(|(pid, p)| p["container"]["id"] == id && !oracle.contains_key(&(**pid as u32)))
        .map(|(pid, _)| *pid)
        .collect();
    if !claimed.is_empty() {
        problems.push(format!("{what}: the snapshot puts processes /proc has elsewhere in it: {claimed:?}"));
    }
    if !problems.is_empty() {
        let shown: Vec<&Value> = oracle.keys().filter_map(|p| snap.get(&u64::from(*p))).collect();
        problems.push(format!("snapshot entries of {what}'s processes: {:#}", serde_json::json!(shown)));
    }
    problems
}

/// [`snapshot_problems`] of a docker container; Apache's workers must be www-data
/// (uid 33) in /proc (and so in the snapshot), named so when the host's passwd says so.
fn docker_snapshot_problems(snap: &BTreeMap<u64, Value>, c: &DockerContainer) -> Vec<String> {
    let init = c.init_pid();
    let oracle = proc_oracle(&c.id);
    let mut problems = Vec::new();
    if c.workload == Workload::Apache {
        let workers: Vec<u32> = oracle.iter().filter(|(_, i)| i.ppid == init).map(|(p, _)| *p).collect();
        if workers.len() < 2 {
            problems.push(format!("{}: fewer than two Apache workers in /proc", c.name));
        }
        let host_www_data =
            std::fs::read_to_string("/etc/passwd").is_ok_and(|p| p.lines().any(|l| l.starts_with("www-data:x:33:")));
        for w in &workers {
            if oracle[w].uids != [33, 33, 33, 33] {
                problems.push(format!(
                    "{}: Apache worker {w} has uids {:?} in /proc, not www-data (33)",
                    c.name, oracle[w].uids
                ));
            }
            let user = snap.get(&u64::from(*w)).map(|s| s["user"].clone()).unwrap_or_default();
            if host_www_data && user != "www-data" {
                problems.push(format!("{}: Apache worker {w}: snapshot user {user}, not www-data", c.name));
            }
        }
    }
    let want = [
        ("runtime", Value::from("docker")),
        ("id", Value::from(c.id.as_str())),
        ("name", Value::from(c.name.as_str())),
        ("image", Value::from(c.image.as_str())),
    ];
    problems.extend(snapshot_problems(snap, &c.name, &c.id, init, &oracle, &want));
    problems
}

#[test]
fn docker_containers_seen_from_the_kernel() {
    if !support::require_root() || !support::require_tool("dockerd") || !support::require_tool("docker") {
        return;
    }
    if !Path::new("/bin/busybox").exists() {
        assert!(!support::under_ci(), "/bin/busybox (busybox-static) is missing");
        eprintln!("skipping: no /bin/busybox");
        return;
    }
    // The Apache image first (a build takes ~30 s), before anything else runs.
    let apache = match apache_rootfs_tar() {
        Ok(p) => Some(p),
        Err(e) if support::under_ci() => panic!("cannot make the Apache httpd rootfs (needed under CI): {e}"),
        Err(e) => {
            eprintln!("NOTE: the Apache containers are skipped, only busybox ones run: {e}");
            None
        }
    };
    let d = Dockerd::start();
    busybox_image(&d);
    if let Some(tar) = &apache {
        apache_image(&d, tar);
    }
    let daemon = Daemon::start(&["--docker-root", &d.data_root()]);
    // Every start and stop told as a story, through the daemon.
    let stories = StoryWatch::start(&["--socket", &daemon.socket().display().to_string()]);
    // The events of one container, named before it exists, through the daemon.
    let web_a_events =
        StoryWatch::events(&["--socket", &daemon.socket().display().to_string(), "--container", "web-a"]);

    let mut plan = vec![("web-a", Workload::BusyboxHttpd), ("web-b", Workload::BusyboxHttpd)];
    if apache.is_some() {
        plan.extend([("apache-a", Workload::Apache), ("apache-b", Workload::Apache)]);
    }
    let mut started: Vec<DockerContainer> = Vec::new();
    for (name, workload) in plan {
        let image = match workload {
            Workload::BusyboxHttpd => BUSYBOX_IMAGE,
            Workload::Apache => APACHE_IMAGE,
        };
        let mut args = vec!["run", "-d", "--network", "none", "--name", name, image];
        if workload == Workload::BusyboxHttpd {
            args.extend(["/bin/httpd", "-f", "-p", "80"]);
        }
        let id = d.ok(&args);
        let inspect: Value = serde_json::from_str(&d.ok(&["inspect", &id])).expect("docker inspect JSON");
        let c = DockerContainer {
            name: name.to_string(),
            workload,
            image: image.to_string(),
            id,
            inspect,
            removed_at: None,
            execd: None,
        };
        assert_eq!(c.inspect[0]["State"]["Running"], true, "{name} is not running: {}", c.inspect);
        assert_eq!(c.inspect[0]["Config"]["Image"], image, "{name}: {}", c.inspect);
        started.push(c);
    }
    let ps: BTreeSet<String> = d.ok(&["ps", "--no-trunc", "-q"]).lines().map(str::to_string).collect();
    let ours: BTreeSet<String> = started.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ps, ours, "docker ps --no-trunc -q vs the ids docker run gave");

    // docker exec: a process that joins a running container later (busybox and Apache).
    for c in started.iter_mut().filter(|c| matches!(c.name.as_str(), "web-a" | "apache-b")) {
        d.ok(&["exec", "-d", &c.name, "/bin/sleep", "77"]);
        let t = Instant::now();
        c.execd = loop {
            if let Some(p) = execd_sleep(&c.id) {
                break Some(p);
            }
            assert!(t.elapsed() < Duration::from_secs(10), "docker exec'd sleep 77 not in /proc for {}", c.name);
            std::thread::sleep(Duration::from_millis(100));
        };
    }

    // Poll until the daemon agrees with docker and /proc (Apache's children start their
    // threads for a while), then assert.
    let t = Instant::now();
    let list = loop {
        let list = daemon.containers();
        let by_id: BTreeMap<&str, &Value> = list.iter().filter_map(|c| Some((c["id"].as_str()?, c))).collect();
        let mut problems: Vec<String> =
            started.iter().flat_map(|c| c.problems(by_id.get(c.id.as_str()).copied())).collect();
        // No other container (of another runtime or dockerd on this host) claims ours.
        let all_ours: BTreeSet<u32> = started.iter().flat_map(|c| proc_pids_in(&c.id)).collect();
        for c in list.iter().filter(|c| !c["id"].as_str().is_some_and(|i| ours.contains(i))) {
            let stolen: Vec<u32> = pids_of(c).intersection(&all_ours).copied().collect();
            if !stolen.is_empty() {
                problems.push(format!("container {} claims processes of ours: {stolen:?}", c["id"]));
            }
        }
        if problems.is_empty() {
            let snap = snapshot_by_pid(&daemon);
            for c in &started {
                problems.extend(docker_snapshot_problems(&snap, c));
            }
        }
        if problems.is_empty() {
            break list;
        }
        if t.elapsed() > SETTLE_TIMEOUT {
            let oracle: String = started
                .iter()
                .map(|c| format!("{} {} (init {}):\n{}", c.name, c.id, c.init_pid(), show_oracle(&proc_oracle(&c.id))))
                .collect();
            panic!(
                "after {SETTLE_TIMEOUT:?} the daemon's containers still disagree with docker and /proc:\n{}\n\
                 tracer containers: {:#}\n/proc:\n{oracle}",
                problems.join("\n"),
                Value::from(list)
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    eprintln!("containers agreed with docker and /proc after {:.1?}", t.elapsed());
    for c in &started {
        let listed = list.iter().find(|l| l["id"] == c.id.as_str()).expect("listed");
        eprintln!("  {} {}: {} processes, {} threads", c.name, &c.id[..12], listed["processes"], listed["threads"]);
    }

    // `tracer events --container web-a`: web-a's entrypoint and its docker exec'd
    // sleep, every event in web-a's cgroup, nothing of the others.
    let web_a = started.iter().find(|c| c.name == "web-a").expect("web-a");
    let execd = web_a.execd.expect("web-a has an exec'd sleep");
    check_container_events(&web_a_events, &web_a.id, &[(web_a.init_pid(), "/bin/httpd"), (execd, "/bin/sleep")]);
    let others: BTreeSet<u32> = started.iter().filter(|c| c.name != "web-a").map(|c| c.init_pid()).collect();
    let strays: Vec<Value> = web_a_events
        .stories()
        .into_iter()
        .filter(|e| e["pid"].as_u64().is_some_and(|p| others.contains(&(p as u32))))
        .collect();
    assert!(strays.is_empty(), "events of other containers' inits in web-a's stream: {strays:#?}");
    web_a_events.stop();

    // Each start, told as one story: the runtime chain from the shim to the entrypoint.
    for c in &started {
        let story = stories.wait_for("container_start", &c.id, &c.name);
        let stages = ["shim", "create", "init", "namespaces", "cgroup", "start", "entrypoint"];
        let mut problems = start_story_problems(&story, "docker", c.init_pid(), &stages);
        if story["container"]["name"] != c.name.as_str() || story["container"]["image"] != c.image.as_str() {
            problems.push(format!("name/image {} {}", story["container"]["name"], story["container"]["image"]));
        }
        let entry = story["steps"].as_array().and_then(|v| v.iter().find(|x| x["stage"] == "entrypoint").cloned());
        let program = if c.workload == Workload::Apache { "/usr/sbin/apache2" } else { "/bin/httpd" };
        if !entry.as_ref().and_then(|e| e["detail"].as_str()).is_some_and(|d| d.starts_with(program)) {
            problems.push(format!("entrypoint {entry:?}, want an exec of {program}"));
        }
        // Apache's pid 1 forks its children as it starts.
        if c.workload == Workload::Apache && story["forks"].as_u64().unwrap_or(0) == 0 {
            problems.push("Apache forked no child in its first second".into());
        }
        assert!(
            problems.is_empty(),
            "start story of {}: {}
{story:#}",
            c.name,
            problems.join("; ")
        );
        eprintln!(
            "  {} start: entrypoint after {:.1} ms, {} forks, {} threads",
            c.name,
            story["to_entrypoint_ns"].as_f64().unwrap_or(0.0) / 1e6,
            story["forks"],
            story["threads"]
        );
    }

    // The text view, as `docker ps` would show it.
    let out = support::run(
        Command::new(TRACER).args(["containers", "--socket", &daemon.socket().display().to_string()]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "tracer containers: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for c in &started {
        let line = text.lines().find(|l| l.contains(&c.id[..12]));
        assert!(line.is_some_and(|l| l.contains(&c.name)), "{} ({}) not in:\n{text}", c.name, &c.id[..12]);
    }

    // Stops: busybox httpd killed (SIGKILL: as pid 1 it ignores SIGTERM), Apache stopped
    // (SIGTERM: a graceful exit). Each stop story has pid 1's status as docker has it.
    for c in &started {
        match c.workload {
            Workload::BusyboxHttpd => d.ok(&["kill", &c.name]),
            Workload::Apache => d.ok(&["stop", "-t", "20", &c.name]),
        };
        let inspect: Value = serde_json::from_str(&d.ok(&["inspect", &c.id])).expect("docker inspect JSON");
        let code = inspect[0]["State"]["ExitCode"].as_u64().expect("State.ExitCode");
        let story = stories.wait_for("container_stop", &c.id, &c.name);
        assert_eq!(story["init_pid"].as_u64(), Some(u64::from(c.init_pid())), "stop of {}: {story:#}", c.name);
        assert_eq!(exit_code_of(&story), Some(code), "stop of {}: docker's ExitCode {code}: {story:#}", c.name);
        let want_signal = if c.workload == Workload::BusyboxHttpd { Some("SIGKILL") } else { None };
        assert_eq!(story["status"]["signal"].as_str(), want_signal, "stop of {}: {story:#}", c.name);
        assert_eq!(story["container"]["name"], c.name.as_str(), "stop of {}: {story:#}", c.name);
        eprintln!("  {} stop: {} (docker ExitCode {code})", c.name, story["status"]);
    }
    // Stopped containers leave the list, and their cgroups go.
    for c in &mut started {
        d.ok(&["rm", "-f", &c.name]);
        c.removed_at = Some(Instant::now());
    }
    let t = Instant::now();
    loop {
        let list = daemon.containers();
        let left: Vec<&Value> = list.iter().filter(|c| c["id"].as_str().is_some_and(|i| ours.contains(i))).collect();
        if left.is_empty() {
            break;
        }
        assert!(t.elapsed() < GONE_TIMEOUT, "containers still listed {GONE_TIMEOUT:?} after docker rm -f: {left:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    for c in &started {
        let left: Vec<PathBuf> = docker_cgroups().into_iter().map(|p| p.join(&c.id)).filter(|p| p.exists()).collect();
        assert!(left.is_empty(), "cgroups of {} left after docker rm -f: {left:?}", c.name);
        assert!(proc_pids_in(&c.id).is_empty(), "processes of {} left after docker rm -f", c.name);
    }
    let summary = stories.stop();
    assert!(summary.contains("lost 0"), "stories: {summary}");
    daemon.stop();
    d.stop();
}
/// Differences between the daemon's list and runc + /proc for a runc container.
fn runc_problems(list: &[Value], c: &RuncContainer, init: u32, execd: Option<u32>) -> Vec<String> {
    let what = format!("runc container {}", c.id);
    let mut p = Vec::new();
    let oracle = proc_oracle(&c.id);
    for other in list.iter().filter(|l| l["id"] != c.id.as_str()) {
        let stolen: Vec<&u32> = oracle.keys().filter(|pid| pids_of(other).contains(pid)).collect();
        if !stolen.is_empty() {
            p.push(format!("container {} claims processes of {what}: {stolen:?}", other["id"]));
        }
    }
    let Some(l) = list.iter().find(|l| l["id"] == c.id.as_str()) else {
        p.push(format!("{what}: not listed"));
        return p;
    };
    for (field, want) in [
        ("id", Value::from(c.id.as_str())),
        ("runtime", Value::from("runc")),
        ("init_pid", Value::from(init)),
        ("init_ns_pid", Value::from(1)),
        ("cgroup", Value::from(format!("/{}", c.id))),
        ("state", Value::from("running")),
    ] {
        if l[field] != want {
            p.push(format!("{what}: {field} is {} but runc says {want}", l[field]));
        }
    }
    check_processes(l, &what, &oracle, &mut p);
    if let Some(e) = execd
        && !pids_of(l).contains(&e)
    {
        p.push(format!("{what}: the runc exec'd process {e} is not among its pids"));
    }
    p
}

/// Polls the daemon until its entry for `c` agrees with runc and /proc; panics at the deadline.
fn wait_runc_agrees(daemon: &Daemon, c: &RuncContainer, init: u32, execd: Option<u32>) -> Value {
    let t = Instant::now();
    loop {
        let list = daemon.containers();
        let mut problems = runc_problems(&list, c, init, execd);
        if problems.is_empty() {
            let want = [("runtime", Value::from("runc")), ("id", Value::from(c.id.as_str())), ("name", Value::Null)];
            problems = snapshot_problems(&snapshot_by_pid(daemon), &c.id, &c.id, init, &proc_oracle(&c.id), &want);
        }
        if problems.is_empty() {
            return list.iter().find(|l| l["id"] == c.id.as_str()).cloned().unwrap_or_default();
        }
        if t.elapsed() > SETTLE_TIMEOUT {
            panic!(
                "after {SETTLE_TIMEOUT:?} the daemon's containers still disagree with runc and /proc:\n{}\n\
                 tracer containers: {:#}\nrunc state: {:#}\n/proc (cgroup /{}):\n{}",
                problems.join("\n"),
                Value::from(list),
                c.state(),
                c.id,
                show_oracle(&proc_oracle(&c.id))
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn runc_container_seen_from_the_kernel() {
    if !support::require_root() || !support::require_tool("runc") {
        return;
    }
    if !Path::new("/bin/busybox").exists() {
        assert!(!support::under_ci(), "/bin/busybox (busybox-static) is missing");
        eprintln!("skipping: no /bin/busybox");
        return;
    }
    // One started before the daemon (found by its first walk), one while it runs (live
    // events).
    let a = RuncContainer::run("a");
    let daemon = Daemon::start(&[]);
    // The start and stop of the second told as stories, by an engine of its own.
    let stories = StoryWatch::start(&["--standalone"]);
    // b's events, by its id before it exists, from an engine of its own.
    let b_events = StoryWatch::events(&["--standalone", "--container", &RuncContainer::id_for("b")]);
    let b = RuncContainer::run("b");
    let mut inits = Vec::new();
    for c in [&a, &b] {
        let state = c.state();
        assert_eq!(state["status"], "running", "runc state: {state}");
        assert_eq!(state["id"], c.id.as_str(), "runc state: {state}");
        let init = state["pid"].as_u64().expect("runc state pid") as u32;
        let listed = wait_runc_agrees(&daemon, c, init, None);
        assert_eq!(listed["name"], Value::Null, "a plain runc container has no name: {listed}");
        assert_eq!(listed["processes"], 1, "{listed}");
        inits.push(init);
    }

    // runc exec -d: a process joining the one found by the walk, while the daemon runs.
    let st = a.detached(&["exec", "-d", &a.id, "/bin/sleep", "77"]);
    assert!(st.success(), "runc exec -d failed ({st}): {}", a.log());
    let t = Instant::now();
    let execd = loop {
        if let Some(p) = execd_sleep(&a.id) {
            break p;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "runc exec'd sleep 77 not in /proc: {}", a.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let listed = wait_runc_agrees(&daemon, &a, inits[0], Some(execd));
    assert_eq!(listed["processes"], 2, "{listed}");
    wait_runc_agrees(&daemon, &b, inits[1], None);

    check_container_events(&b_events, &b.id, &[(inits[1], "/bin/sleep")]);
    b_events.stop();

    // b's start: runc run, its init, the new pid namespace, the cgroup, the entrypoint.
    let story = stories.wait_for("container_start", &b.id, "runc b");
    let problems =
        start_story_problems(&story, "runc", inits[1], &["create", "init", "namespaces", "cgroup", "entrypoint"]);
    assert!(problems.is_empty(), "start story of runc b: {}\n{story:#}", problems.join("; "));
    assert_eq!(story["container"]["cgroup"], format!("/{}", b.id), "{story:#}");

    // setns without a cgroup move: `nsenter --pid` into b forks a child in b's pid
    // namespace that stays in the host's cgroup. It belongs to b all the same.
    if support::which("nsenter").is_some() {
        let mut nsenter = Command::new("nsenter")
            .args(["--target", &inits[1].to_string(), "--pid", "--", "/bin/sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn nsenter");
        let ns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
        let t = Instant::now();
        let joined = loop {
            // The oracle: nsenter's child, in b's pid namespace.
            let child = task_children(nsenter.id()).into_iter().find(|c| ns(*c).is_some() && ns(*c) == ns(inits[1]));
            if let Some(c) = child
                && std::fs::read_to_string(format!("/proc/{c}/comm")).is_ok_and(|n| n.trim() == "sleep")
            {
                break c;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "nsenter's child did not show up in b's pid namespace");
            std::thread::sleep(Duration::from_millis(50));
        };
        let cgroup = std::fs::read_to_string(format!("/proc/{joined}/cgroup")).unwrap_or_default();
        assert!(!cgroup.contains(&b.id), "nsenter's child moved to b's cgroup after all:\n{cgroup}");
        let t = Instant::now();
        loop {
            let list = daemon.containers();
            let c = list.iter().find(|c| c["id"] == b.id.as_str());
            if c.is_some_and(|c| pids_of(c).contains(&joined)) {
                break;
            }
            assert!(
                t.elapsed() < SETTLE_TIMEOUT,
                "pid {joined} (nsenter --pid into b, pid namespace {:?}) not attributed to b: {c:#?}",
                ns(joined)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = nsenter.kill();
        let _ = nsenter.wait();
        // SAFETY: a process this test made (through nsenter).
        unsafe { libc::kill(joined as i32, libc::SIGKILL) };
    } else {
        assert!(!support::under_ci(), "nsenter (util-linux) is missing");
    }

    // Killed: they leave the list, and nothing of them is left.
    let ids = [a.id.clone(), b.id.clone()];
    let b_id = b.id.clone();
    a.stop();
    b.stop();
    let story = stories.wait_for("container_stop", &b_id, "runc b");
    assert_eq!(story["init_pid"].as_u64(), Some(u64::from(inits[1])), "{story:#}");
    assert_eq!(story["status"]["signal"], "SIGKILL", "runc kill KILL: {story:#}");
    stories.stop();
    let t = Instant::now();
    loop {
        let list = daemon.containers();
        let left: Vec<&Value> =
            list.iter().filter(|l| l["id"].as_str().is_some_and(|i| ids.iter().any(|x| x == i))).collect();
        if left.is_empty() {
            break;
        }
        assert!(
            t.elapsed() < GONE_TIMEOUT,
            "runc containers still listed {GONE_TIMEOUT:?} after their kill: {left:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    daemon.stop();
}

/// `tracer watch` says when a container starts and stops, in its status line: in
/// process, and through a daemon (its story subscription).
#[test]
fn watch_tells_container_starts_and_stops() {
    if !support::require_root() || !support::require_tool("runc") || !support::require_tool("tmux") {
        return;
    }
    if !Path::new("/bin/busybox").exists() {
        assert!(!support::under_ci(), "/bin/busybox (busybox-static) is missing");
        return;
    }
    let daemon = Daemon::start(&[]);
    let sock = daemon.socket().display().to_string();
    let screens = [
        ("in-process", Tmux::start("news-local", 220, 12, &format!("{} watch --standalone", TRACER))),
        ("via the daemon", Tmux::start("news-daemon", 220, 12, &format!("{} watch --socket {sock}", TRACER))),
    ];
    for (way, t) in &screens {
        let (s, ok) = t.wait_screen(Duration::from_secs(30), |s| s.contains("processes") && s.contains("q quit"));
        assert!(ok, "{way}: tracer watch did not come up:\n{s}");
    }
    let c = RuncContainer::run("news");
    let init = c.state()["pid"].as_u64().expect("runc state pid");
    let started = format!("container started: runc {}", c.id);
    for (way, t) in &screens {
        let (s, ok) = t.wait_screen(SETTLE_TIMEOUT, |s| s.contains(&started));
        assert!(ok, "{way}: no `{started}` on the screen:\n{s}");
        let line = s.lines().find(|l| l.contains(&started)).unwrap_or_default();
        assert!(line.contains(&format!("init pid {init}")), "{way}: {line}");
    }
    let id = c.id.clone();
    c.stop();
    let stopped = format!("container stopped: runc {id}, init pid {init} killed by SIGKILL");
    for (way, t) in &screens {
        let (s, ok) = t.wait_screen(SETTLE_TIMEOUT, |s| s.contains(&stopped));
        assert!(ok, "{way}: no `{stopped}` on the screen:\n{s}");
    }
    drop(screens);
    daemon.stop();
}
