//! Containers seen from the kernel: a real dockerd started here (no host
//! networking touched), busybox containers, and `docker ps` / `docker inspect` /
//! /proc as the oracle for `tracer containers`.

use std::{
    collections::BTreeSet,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    tree::daemon::Daemon,
    util::{self, TempDir},
};

/// A dockerd of the test's own, stopped (with its containers) on drop.
struct Dockerd {
    child: Child,
    sock: String,
    dir: TempDir,
    exec_root: String,
    /// Docker's parent cgroups that did not exist before it started: removed after.
    new_cgroups: Vec<std::path::PathBuf>,
}

/// The `docker` parent cgroup in every hierarchy (v1 controllers and v2).
fn docker_cgroups() -> Vec<std::path::PathBuf> {
    let mut v: Vec<std::path::PathBuf> =
        std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten().map(|e| e.path().join("docker")).collect();
    v.push("/sys/fs/cgroup/docker".into());
    v
}

impl Dockerd {
    fn start() -> Dockerd {
        let dir = TempDir::new("dockerd");
        let root = dir.path();
        let sock = format!("unix://{}/docker.sock", root.display());
        let exec_root = format!("/run/tracer-it-docker-{}", std::process::id());
        let new_cgroups = docker_cgroups().into_iter().filter(|p| !p.exists()).collect();
        let child = Command::new("dockerd")
            .args(["--data-root", &root.join("data").display().to_string()])
            .args(["--exec-root", &exec_root, "-H", &sock])
            .args(["--pidfile", &root.join("docker.pid").display().to_string()])
            .args(["--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("dockerd.log")).expect("log file"))
            .spawn()
            .expect("start dockerd");
        let d = Dockerd { child, sock, dir, exec_root, new_cgroups };
        let t = Instant::now();
        while !d.docker(&["version"]).status.success() {
            assert!(t.elapsed() < Duration::from_secs(30), "dockerd did not come up: {}", d.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        d
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        util::run(Command::new("docker").env("DOCKER_HOST", &self.sock).args(args), Duration::from_secs(120))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    fn data_root(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) && !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Leave no cgroups or state behind.
        for p in &self.new_cgroups {
            let _ = std::fs::remove_dir(p);
        }
        let _ = std::fs::remove_dir_all(&self.exec_root);
    }
}

/// A busybox image, imported (no registry is reachable).
fn busybox_image(d: &Dockerd) {
    let dir = TempDir::new("busybox-rootfs");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("copy /bin/busybox (package busybox-static)");
    for applet in ["sh", "sleep", "httpd", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let tar = dir.path().join("rootfs.tar");
    let st =
        Command::new("tar").args(["-C", &dir.path().display().to_string(), "-cf"]).arg(&tar).args(["bin"]).status();
    assert!(st.is_ok_and(|s| s.success()), "tar of the rootfs failed");
    d.ok(&["import", "-c", "CMD [\"/bin/sleep\",\"300\"]", &tar.display().to_string(), "tracer-it-busybox:1"]);
}

fn containers(daemon: &Daemon) -> Vec<Value> {
    daemon.request(&serde_json::json!({"verb": "containers"}))["containers"].as_array().cloned().unwrap_or_default()
}

/// Pids whose /proc cgroup names the container (the oracle).
fn proc_pids_in(id: &str) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u64>() else { continue };
        if std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|c| c.lines().any(|l| l.starts_with("0::") && l.contains(id)))
        {
            out.insert(pid);
        }
    }
    out
}

#[test]
fn docker_containers_seen_from_the_kernel() {
    if !util::require_root() || !util::require_tool("dockerd") || !util::require_tool("docker") {
        return;
    }
    if !std::path::Path::new("/bin/busybox").exists() {
        assert!(!util::under_ci(), "/bin/busybox (busybox-static) is missing");
        eprintln!("skipping: no /bin/busybox");
        return;
    }
    let d = Dockerd::start();
    busybox_image(&d);
    let data_root = d.data_root();
    let daemon = Daemon::start(&["--docker-root", &data_root]);
    let names = ["web-a", "web-b", "sleeper"];
    for n in names {
        let cmd: &[&str] = if n.starts_with("web") { &["/bin/httpd", "-f", "-p", "80"] } else { &[] };
        let mut args = vec!["run", "-d", "--network", "none", "--name", n, "tracer-it-busybox:1"];
        args.extend_from_slice(cmd);
        d.ok(&args);
    }
    let ids: Vec<String> = d.ok(&["ps", "--no-trunc", "-q"]).lines().map(str::to_string).collect();
    assert_eq!(ids.len(), 3, "docker ps: {ids:?}");
    // docker exec: a process that joins a running container later.
    d.ok(&["exec", "-d", "sleeper", "/bin/sleep", "77"]);

    let t = Instant::now();
    let list = loop {
        let list = containers(&daemon);
        let seen: BTreeSet<&str> = list.iter().filter_map(|c| c["id"].as_str()).collect();
        let execd = list.iter().any(|c| c["name"] == "sleeper" && c["processes"].as_u64() == Some(2));
        if ids.iter().all(|i| seen.contains(i.as_str())) && execd {
            break list;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "tracer containers: {list:#?}\ndocker ps: {ids:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for id in &ids {
        let c = list.iter().find(|c| c["id"] == id.as_str()).expect("listed");
        let inspect: Value = serde_json::from_str(&d.ok(&["inspect", id])).expect("docker inspect JSON");
        let pid = inspect[0]["State"]["Pid"].as_u64().expect("State.Pid");
        let name = inspect[0]["Name"].as_str().unwrap_or("").trim_start_matches('/');
        assert_eq!(c["runtime"], "docker", "{c}");
        assert_eq!(c["init_pid"].as_u64(), Some(pid), "init pid of {name}: {c}");
        assert_eq!(c["init_ns_pid"], 1, "{c}");
        assert_eq!(c["name"], name, "{c}");
        assert_eq!(c["image"], "tracer-it-busybox:1", "{c}");
        assert_eq!(c["short_id"], &id[..12], "{c}");
        // Every process /proc puts in the container is attributed to it, and no other.
        let ours: BTreeSet<u64> = c["pids"].as_array().unwrap().iter().filter_map(Value::as_u64).collect();
        assert_eq!(ours, proc_pids_in(id), "processes of {name}: tracer vs /proc");
        let threads: u64 = ours
            .iter()
            .map(|p| std::fs::read_dir(format!("/proc/{p}/task")).map(|d| d.count() as u64).unwrap_or(0))
            .sum();
        assert_eq!(c["threads"].as_u64(), Some(threads), "threads of {name}: {c}");
    }
    // The text view, as `docker ps` would show it.
    let out = util::run(
        Command::new(util::TRACER).args(["containers", "--socket", &daemon.socket().display().to_string()]),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for id in ids.iter().map(|i| &i[..12]) {
        assert!(text.contains(id), "{id} not in:\n{text}");
    }
    // Stopped containers leave the list.
    for n in names {
        d.ok(&["rm", "-f", n]);
    }
    let t = Instant::now();
    while !containers(&daemon).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(20), "containers left after rm: {:#?}", containers(&daemon));
        std::thread::sleep(Duration::from_millis(200));
    }
    daemon.stop();
}
