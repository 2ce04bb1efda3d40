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
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{self, TempDir, cgroup::cgroup2_mount, daemon::Daemon, tmux::Tmux, tracer::TRACER};

/// How long the daemon's view may take to agree with the oracle (containers starting,
/// Apache children spawning their threads, exec'd processes joining).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long stopped containers may take to leave the list.
const GONE_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Container stories (`tracer events --containers --json`)

/// `tracer events --containers --json` running beside a test; its stories are read
/// from the file its stdout goes to.
struct StoryWatch {
    child: Option<Child>,
    dir: TempDir,
}

/// The causal order of a start's stages: each one's time is at or after the previous.
const STAGE_ORDER: &[&str] = &["shim", "create", "init", "namespaces", "start", "entrypoint"];

impl StoryWatch {
    /// Starts it with `args` (`--socket S` through a daemon, or `--standalone`) and
    /// waits until it traces.
    fn start(args: &[&str]) -> StoryWatch {
        StoryWatch::events(&[&["--containers"], args].concat())
    }

    /// `tracer events --json ARGS` (plain events, or stories with `--containers`).
    fn events(args: &[&str]) -> StoryWatch {
        let dir = TempDir::new("stories");
        let child = Command::new(TRACER)
            .args(["events", "--json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("out")).expect("stories file"))
            .stderr(std::fs::File::create(dir.path().join("err")).expect("stderr file"))
            .spawn()
            .expect("start tracer events --containers");
        let w = StoryWatch { child: Some(child), dir };
        let t = Instant::now();
        while !w.stderr().contains("tracing") {
            assert!(t.elapsed() < Duration::from_secs(30), "tracer events --containers did not start: {}", w.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
        w
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("err")).unwrap_or_default()
    }

    fn stories(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("out")).unwrap_or_default();
        text.lines()
            .filter(|l| l.ends_with('}'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("story line is not JSON ({e}): {l}")))
            .collect()
    }

    /// The story of `kind` about container `id`, waiting for it.
    fn wait_for(&self, kind: &str, id: &str, what: &str) -> Value {
        let t = Instant::now();
        loop {
            let all = self.stories();
            if let Some(s) = all.iter().find(|s| s["kind"] == kind && s["container"]["id"] == id) {
                return s.clone();
            }
            assert!(
                t.elapsed() < SETTLE_TIMEOUT,
                "no {kind} story for {what} ({id}) after {SETTLE_TIMEOUT:?}; stories:\n{}\nstderr: {}",
                all.iter().map(Value::to_string).collect::<Vec<_>>().join("\n"),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGINT, then its exit; its stderr (the summary).
    fn stop(mut self) -> String {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let t = Instant::now();
        let status = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break st;
            }
            if t.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("tracer events --containers did not end on SIGINT: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "tracer events --containers ended with {status}: {}", self.stderr());
        self.stderr()
    }
}

impl Drop for StoryWatch {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The children of `pid`, from /proc (the oracle).
fn proc_children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

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

/// The id of container `id`'s cgroup on the v2 hierarchy: its directory's inode,
/// wherever the runtime put it (`/docker/<id>`, `/<id>`).
fn container_cgroup_id(id: &str) -> Option<u64> {
    let root = cgroup2_mount()?;
    [root.join("docker").join(id), root.join(id)]
        .iter()
        .filter_map(|d| std::fs::metadata(d).ok())
        .find(|m| m.is_dir())
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
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
// dockerd

/// A dockerd of the test's own, stopped (with its containers) by [`Dockerd::stop`] or on drop.
struct Dockerd {
    child: Option<Child>,
    sock: String,
    dir: TempDir,
    exec_root: String,
    /// Docker's parent cgroups that did not exist before it started: removed after.
    new_cgroups: Vec<PathBuf>,
}

/// The `docker` parent cgroup in every hierarchy (v1 controllers and v2).
fn docker_cgroups() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
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
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("dockerd.log")).expect("log file"))
            .spawn()
            .expect("start dockerd");
        let d = Dockerd { child: Some(child), sock, dir, exec_root, new_cgroups };
        let t = Instant::now();
        while !d.docker(&["version"]).status.success() {
            assert!(t.elapsed() < Duration::from_secs(30), "dockerd did not come up: {}", d.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        d
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        support::run(Command::new("docker").env("DOCKER_HOST", &self.sock).args(args), Duration::from_secs(120))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}): {}\ndockerd log (tail):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 30)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    fn data_root(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Removes every container, stops dockerd (and the containerd it started) and removes
    /// the parent cgroups it made. Returns what was left behind (empty when clean).
    fn shutdown(&mut self) -> Vec<String> {
        let Some(mut child) = self.child.take() else { return Vec::new() };
        let ids = self.docker(&["ps", "-aq", "--no-trunc"]);
        let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout).split_whitespace().map(str::to_string).collect();
        for id in &ids {
            let _ = self.docker(&["rm", "-f", id]);
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) && !matches!(child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut left = Vec::new();
        if !matches!(child.try_wait(), Ok(Some(_))) {
            left.push(format!("dockerd (pid {}) did not end within 20 s of SIGTERM", child.id()));
            let _ = child.kill();
        }
        let _ = child.wait();
        // containerd and its shims, started by dockerd, name the exec root.
        let t = Instant::now();
        let mut stray = processes_naming(&self.exec_root);
        while !stray.is_empty() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(200));
            stray = processes_naming(&self.exec_root);
        }
        for (pid, cmd) in stray {
            left.push(format!("process {pid} of this dockerd still runs: {cmd}"));
            // SAFETY: a process of our own dockerd.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        // Leave no cgroups or state behind.
        for id in &ids {
            for p in docker_cgroups() {
                let p = p.join(id);
                if p.exists() && std::fs::remove_dir(&p).is_ok() {
                    left.push(format!("cgroup {} was left behind (removed now)", p.display()));
                }
            }
        }
        for p in &self.new_cgroups {
            // Another dockerd (not ours) may use it meanwhile: then it has child cgroups
            // and stays.
            if p.exists() && std::fs::remove_dir(p).is_err() && subdirs(p).is_empty() {
                left.push(format!("cannot remove docker's parent cgroup {}", p.display()));
            }
        }
        let _ = std::fs::remove_dir_all(&self.exec_root);
        left
    }

    /// [`Dockerd::shutdown`], asserting that nothing was left behind.
    fn stop(mut self) {
        let left = self.shutdown();
        assert!(left.is_empty(), "stopping dockerd left things behind:\n{}", left.join("\n"));
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Subdirectories of a directory (child cgroups of a cgroup).
fn subdirs(p: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(p).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()
}

/// Processes whose command line contains `needle`: (pid, command line).
fn processes_naming(needle: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            out.push((pid, cmd.trim().to_string()));
        }
    }
    out
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------
// Images

/// A busybox root filesystem (the host's static busybox and a few applets) in `dir`.
fn busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("copy /bin/busybox (package busybox-static)");
    for applet in ["sh", "sleep", "httpd", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
}

/// A busybox image, imported (no registry is reachable).
fn busybox_image(d: &Dockerd) {
    let dir = TempDir::new("busybox-rootfs");
    busybox_rootfs(dir.path());
    let tar = dir.path().join("rootfs.tar");
    let st =
        Command::new("tar").args(["-C", &dir.path().display().to_string(), "-cf"]).arg(&tar).args(["bin"]).status();
    assert!(st.is_ok_and(|s| s.success()), "tar of the rootfs failed");
    d.ok(&["import", "-c", "CMD [\"/bin/sleep\",\"300\"]", &tar.display().to_string(), BUSYBOX_IMAGE]);
}

const BUSYBOX_IMAGE: &str = "tracer-it-busybox:1";
const APACHE_IMAGE: &str = "tracer-it-apache:1";

/// The Apache image from the cached rootfs tarball: Debian's apache2 run as pid 1 in the
/// foreground, with the environment `apache2ctl` would give it (mpm_event, two children
/// of 25 worker threads, workers as www-data).
fn apache_image(d: &Dockerd, tar: &Path) {
    d.ok(&[
        "import",
        "-c",
        "ENV APACHE_RUN_USER=www-data APACHE_RUN_GROUP=www-data APACHE_PID_FILE=/run/apache2/apache2.pid \
         APACHE_RUN_DIR=/run/apache2 APACHE_LOCK_DIR=/run/lock/apache2 APACHE_LOG_DIR=/var/log/apache2 LANG=C",
        "-c",
        "CMD [\"/usr/sbin/apache2\",\"-DFOREGROUND\"]",
        &tar.display().to_string(),
        APACHE_IMAGE,
    ]);
}

/// The Debian suite of the Apache image.
const SUITE: &str = "bookworm";
/// Everything that decides the Apache rootfs' content: its hash names the cached
/// tarball, so changing the recipe (here and in [`build_apache_rootfs`]) rebuilds it.
const APACHE_RECIPE: &str = "r1: debootstrap --variant=minbase bookworm; apt-get install -y --no-install-recommends \
                             apache2; apt-get clean; empty /var/lib/apt/lists; mkdir /run/apache2 /run/lock/apache2; \
                             ServerName localhost; tar --numeric-owner -C ROOT .";
/// A complete tarball is well over this (about 230 MB); smaller is a broken file.
const APACHE_TAR_MIN_BYTES: u64 = 50 << 20;

/// Where built images are kept between runs: `$TRACER_TEST_CACHE`, else
/// /var/cache/tracer-tests.
fn cache_dir() -> PathBuf {
    std::env::var_os("TRACER_TEST_CACHE").map_or_else(|| PathBuf::from("/var/cache/tracer-tests"), PathBuf::from)
}

/// FNV-1a: a hash that is the same on every build and machine.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The Apache rootfs tarball: from the cache, else built (debootstrap and apt-get from the
/// host's Debian mirror, ~30 s) and kept there. Written under a temporary name and
/// renamed, so a tarball under the final name is complete. Err says why it cannot be had.
fn apache_rootfs_tar() -> Result<PathBuf, String> {
    let dir = cache_dir();
    let path = dir.join(format!("apache2-{SUITE}-{:016x}.tar", fnv1a(APACHE_RECIPE)));
    let usable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() >= APACHE_TAR_MIN_BYTES);
    if usable(&path) {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create the cache dir {}: {e}", dir.display()))?;
    // One builder at a time; a second run waits and then takes the first's tarball.
    let _lock = CacheLock::take(&dir)?;
    if usable(&path) {
        return Ok(path);
    }
    remove_stale_builds(&dir);
    for tool in ["debootstrap", "chroot", "tar"] {
        if support::which(tool).is_none() {
            return Err(format!("`{tool}` is not on PATH (package debootstrap; `cargo xtask setup` installs it)"));
        }
    }
    let t = Instant::now();
    build_apache_rootfs(&dir, &path)?;
    eprintln!("built the Apache rootfs {} in {:.0?}", path.display(), t.elapsed());
    Ok(path)
}

/// An exclusive lock on the cache directory, released on drop.
struct CacheLock {
    _file: std::fs::File,
}

impl CacheLock {
    fn take(dir: &Path) -> Result<CacheLock, String> {
        use std::os::fd::AsRawFd;
        let path = dir.join(".lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let t = Instant::now();
        // SAFETY: flock on a descriptor we own.
        while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            if t.elapsed() > Duration::from_secs(600) {
                return Err(format!("{} stayed locked by another build for 10 minutes", path.display()));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(CacheLock { _file: f })
    }
}

/// Removes build dirs and temporary tarballs of runs that died (their pid is gone).
fn remove_stale_builds(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.strip_prefix("build-").or_else(|| name.rsplit_once(".tmp-").map(|(_, p)| p));
        let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() && pid != std::process::id() {
            continue;
        }
        if e.path().is_dir() {
            drop(BuildDir { path: e.path() });
        } else {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A build directory, removed on drop after unmounting anything left mounted in it (a
/// failed debootstrap may leave its /proc and /sys mounts).
struct BuildDir {
    path: PathBuf,
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        let prefix = format!("{}/", self.path.display());
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> =
            mountinfo.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&prefix)).collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let Ok(c) = std::ffi::CString::new(m) else { continue };
            // SAFETY: a valid C string; detaching a mount under our own build dir.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        let still = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if still.lines().filter_map(|l| l.split(' ').nth(4)).any(|m| m.starts_with(&prefix)) {
            eprintln!("not removing {}: something is still mounted under it", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The Debian mirror: `$TRACER_TEST_DEBIAN_MIRROR`, else the host's apt source that
/// serves the suite (one-line or deb822 format), else deb.debian.org.
/// Returns it and where it came from.
fn debian_mirror() -> (String, &'static str) {
    if let Ok(m) = std::env::var("TRACER_TEST_DEBIAN_MIRROR") {
        return (m, "$TRACER_TEST_DEBIAN_MIRROR");
    }
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    let mut more: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources"))
        .collect();
    more.sort();
    files.extend(more);
    let mut found: Vec<String> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        if f.extension().is_some_and(|x| x == "sources") {
            for para in text.split("\n\n") {
                let field = |name: &str| {
                    para.lines()
                        .filter(|l| !l.trim_start().starts_with('#'))
                        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
                        .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                        .unwrap_or_default()
                };
                if field("Types").iter().any(|t| t == "deb")
                    && field("Suites").iter().any(|s| s == SUITE)
                    && !field("Enabled").iter().any(|e| e == "no")
                {
                    found.extend(field("URIs"));
                }
            }
        } else {
            for l in text.lines() {
                let mut w = l.split_whitespace().filter(|w| !w.starts_with('['));
                if w.next() == Some("deb")
                    && let (Some(uri), Some(suite)) = (w.next(), w.next())
                    && suite == SUITE
                {
                    found.push(uri.to_string());
                }
            }
        }
    }
    // Plain http needs no certificates inside the new rootfs.
    found.sort_by_key(|u| !u.starts_with("http://"));
    match found.into_iter().next() {
        Some(m) => (m, "the host's apt sources"),
        None => ("http://deb.debian.org/debian".to_string(), "the default: no apt source of the host serves it"),
    }
}

/// Runs one build step, Err with its output's tail when it fails.
fn step(what: &str, cmd: &mut Command, timeout: Duration) -> Result<(), String> {
    let out = support::run(cmd, timeout);
    if out.status.success() {
        return Ok(());
    }
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Err(format!("{what} failed ({}); output (tail):\n{}", out.status, tail(&text, 30)))
}

fn build_apache_rootfs(dir: &Path, tar: &Path) -> Result<(), String> {
    let pid = std::process::id();
    let work = BuildDir { path: dir.join(format!("build-{pid}")) };
    let root = work.path.join("rootfs");
    std::fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let (mirror, origin) = debian_mirror();
    let path_env = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    step(
        &format!("debootstrap --variant=minbase {SUITE} from {mirror} (from {origin})"),
        Command::new("debootstrap").env("PATH", path_env).args(["--variant=minbase", SUITE]).arg(&root).arg(&mirror),
        Duration::from_secs(600),
    )?;
    // No service starts inside the chroot.
    let policy = root.join("usr/sbin/policy-rc.d");
    std::fs::write(&policy, "#!/bin/sh\nexit 101\n").map_err(|e| format!("policy-rc.d: {e}"))?;
    std::fs::set_permissions(&policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| format!("policy-rc.d: {e}"))?;
    let chroot = |args: &[&str]| {
        let mut c = Command::new("chroot");
        c.env_clear().env("PATH", path_env).env("DEBIAN_FRONTEND", "noninteractive").env("LANG", "C");
        c.arg(&root).args(args);
        c
    };
    step(
        &format!("apt-get update in the chroot (mirror {mirror})"),
        &mut chroot(&["apt-get", "update"]),
        Duration::from_secs(300),
    )?;
    step(
        &format!("apt-get install apache2 in the chroot (mirror {mirror})"),
        &mut chroot(&["apt-get", "install", "-y", "--no-install-recommends", "apache2"]),
        Duration::from_secs(600),
    )?;
    step("apt-get clean in the chroot", &mut chroot(&["apt-get", "clean"]), Duration::from_secs(60))?;
    let _ = std::fs::remove_file(&policy);
    for e in std::fs::read_dir(root.join("var/lib/apt/lists")).into_iter().flatten().flatten() {
        if e.path().is_file() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    for d in ["run/apache2", "run/lock/apache2"] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| format!("mkdir {d}: {e}"))?;
    }
    std::fs::write(root.join("etc/apache2/conf-enabled/tracer-it.conf"), "ServerName localhost\n")
        .map_err(|e| format!("ServerName: {e}"))?;
    // What the test relies on.
    for f in ["usr/sbin/apache2", "etc/apache2/apache2.conf", "etc/apache2/mods-enabled/mpm_event.load", "bin/sleep"] {
        if !root.join(f).exists() {
            return Err(format!("the built rootfs has no /{f}"));
        }
    }
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    if !passwd.lines().any(|l| l.starts_with("www-data:x:33:33:")) {
        return Err(format!("the built rootfs has no www-data user of uid 33:\n{passwd}"));
    }
    let tmp = tar.with_extension(format!("tar.tmp-{pid}"));
    let r = step(
        "tar of the Apache rootfs",
        Command::new("tar").arg("--numeric-owner").arg("-C").arg(&root).arg("-cf").arg(&tmp).arg("."),
        Duration::from_secs(300),
    )
    .and_then(|()| {
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| format!("sync {}: {e}", tmp.display()))
    })
    .and_then(|()| std::fs::rename(&tmp, tar).map_err(|e| format!("rename to {}: {e}", tar.display())));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

// ---------------------------------------------------------------------------------------
// Oracles

fn containers(daemon: &Daemon) -> Vec<Value> {
    daemon.request(&serde_json::json!({"verb": "containers"}))["containers"].as_array().cloned().unwrap_or_default()
}

/// Pids whose /proc cgroup (the v2 line) is the cgroup `/.../<id>` (the oracle).
fn proc_pids_in(id: &str) -> BTreeSet<u32> {
    let leaf = format!("/{id}");
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|c| c.lines().any(|l| l.starts_with("0::") && l.ends_with(&leaf)))
        {
            out.insert(pid);
        }
    }
    out
}

/// What /proc says of one process.
#[derive(Debug)]
struct ProcInfo {
    ppid: u32,
    /// Real uid and gid.
    uid: u32,
    gid: u32,
    /// All four uids (real, effective, saved, fs).
    uids: Vec<u32>,
    threads: usize,
    cmdline: String,
}

fn proc_info(pid: u32) -> Option<ProcInfo> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_default()
    };
    let uids = field("Uid:");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(ProcInfo {
        ppid: *field("PPid:").first()?,
        uid: *uids.first()?,
        gid: *field("Gid:").first()?,
        uids,
        threads: std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.count(),
        cmdline: String::from_utf8_lossy(&cmdline).replace('\0', " ").trim().to_string(),
    })
}

/// A container's processes as /proc sees them, for comparisons and messages.
fn proc_oracle(id: &str) -> BTreeMap<u32, ProcInfo> {
    proc_pids_in(id).into_iter().filter_map(|p| Some((p, proc_info(p)?))).collect()
}

fn show_oracle(o: &BTreeMap<u32, ProcInfo>) -> String {
    o.iter()
        .map(|(pid, i)| format!("    {pid} ppid {} uids {:?} threads {} {}\n", i.ppid, i.uids, i.threads, i.cmdline))
        .collect()
}

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
        let list = containers(&daemon);
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
        let list = containers(&daemon);
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

// ---------------------------------------------------------------------------------------
// Plain runc

/// A busybox container run by plain runc (state in a directory of its own), killed and
/// deleted, its cgroups removed, by [`RuncContainer::stop`] or on drop.
struct RuncContainer {
    id: String,
    state_root: String,
    bundle: TempDir,
    stopped: bool,
}

impl RuncContainer {
    /// The id `run(name)` gives its container.
    fn id_for(name: &str) -> String {
        format!("tracer-it-runc-{}-{name}", std::process::id())
    }

    /// `runc run -d` of `/bin/sleep 300` in a busybox bundle, as `tracer-it-runc-PID-NAME`.
    fn run(name: &str) -> RuncContainer {
        let bundle = TempDir::new("runc-bundle");
        // The rootfs path must be absolute and not go through a symlink (/tmp may be one).
        let dir = bundle.path().canonicalize().expect("canonical bundle path");
        let rootfs = dir.join("rootfs");
        busybox_rootfs(&rootfs);
        let c = RuncContainer {
            id: RuncContainer::id_for(name),
            state_root: format!("/run/tracer-it-runc-{}-{name}", std::process::id()),
            bundle,
            stopped: false,
        };
        let out = c.runc(&["spec", "--bundle", &dir.display().to_string()]);
        assert!(out.status.success(), "runc spec: {}", String::from_utf8_lossy(&out.stderr));
        let config = dir.join("config.json");
        let mut spec: Value = serde_json::from_slice(&std::fs::read(&config).expect("config.json")).expect("JSON");
        spec["process"]["args"] = serde_json::json!(["/bin/sleep", "300"]);
        spec["process"]["terminal"] = Value::Bool(false);
        spec["root"]["path"] = Value::from(rootfs.display().to_string());
        spec["root"]["readonly"] = Value::Bool(true);
        std::fs::write(&config, serde_json::to_vec_pretty(&spec).unwrap()).expect("write config.json");
        let st = c.detached(&["run", "-d", "--bundle", &dir.display().to_string(), &c.id]);
        assert!(st.success(), "runc run -d failed ({st}): {}", c.log());
        c
    }

    fn runc(&self, args: &[&str]) -> std::process::Output {
        support::run(Command::new("runc").args(["--root", &self.state_root]).args(args), Duration::from_secs(60))
    }

    fn log_path(&self) -> PathBuf {
        self.bundle.path().join("runc.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A runc command that leaves a process running with its stdio: no pipes (a reader
    /// would wait for that process), output to the log file.
    fn detached(&self, args: &[&str]) -> ExitStatus {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("runc log");
        let mut child = Command::new("runc")
            .args(["--root", &self.state_root])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start runc");
        let t = Instant::now();
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st;
            }
            if t.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("runc {args:?} did not end within 60 s: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `runc state`'s JSON.
    fn state(&self) -> Value {
        let out = self.runc(&["state", &self.id]);
        assert!(out.status.success(), "runc state: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("runc state JSON")
    }

    /// The container's cgroup directories in every hierarchy (v1, hybrid v2, pure v2).
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join(&self.id))
            .collect();
        v.push(Path::new("/sys/fs/cgroup").join(&self.id));
        v.into_iter().filter(|p| p.exists()).collect()
    }

    /// Kills and deletes the container. Returns what was left behind (and removed now).
    fn shutdown(&mut self) -> Vec<String> {
        if std::mem::replace(&mut self.stopped, true) {
            return Vec::new();
        }
        let mut left = Vec::new();
        let _ = self.runc(&["kill", &self.id, "KILL"]);
        let t = Instant::now();
        while !proc_pids_in(&self.id).is_empty() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = self.runc(&["delete", "-f", &self.id]);
        if !out.status.success() {
            left.push(format!("runc delete -f {}: {}", self.id, String::from_utf8_lossy(&out.stderr).trim()));
        }
        let pids = proc_pids_in(&self.id);
        if !pids.is_empty() {
            left.push(format!("processes of {} still run: {pids:?}", self.id));
            for p in pids {
                // SAFETY: a process of our own container.
                unsafe { libc::kill(p as i32, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        for p in self.cgroup_dirs() {
            left.push(format!("cgroup {} was left behind", p.display()));
            let _ = std::fs::remove_dir(&p);
        }
        let _ = std::fs::remove_dir_all(&self.state_root);
        left
    }

    /// [`RuncContainer::shutdown`], asserting that nothing was left behind.
    fn stop(mut self) {
        let left = self.shutdown();
        assert!(left.is_empty(), "stopping the runc container left things behind:\n{}", left.join("\n"));
    }
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
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
        let list = containers(daemon);
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
            let child = proc_children(nsenter.id()).into_iter().find(|c| ns(*c).is_some() && ns(*c) == ns(inits[1]));
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
            let list = containers(&daemon);
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
        let list = containers(&daemon);
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
