//! A dockerd of the test's own (no host networking touched) and the images it runs: no
//! registry is reachable, so they are imported from root filesystems made here.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{TempDir, cgroup::subdirs, procfs::processes_naming, rootfs::busybox_rootfs, tail};

/// A dockerd of the test's own, stopped (with its containers) by [`Dockerd::stop`] or on drop.
pub struct Dockerd {
    child: Option<Child>,
    sock: String,
    dir: TempDir,
    exec_root: String,
    /// Docker's parent cgroups that did not exist before it started: removed after.
    new_cgroups: Vec<PathBuf>,
}

/// The `docker` parent cgroup in every hierarchy (v1 controllers and v2).
pub fn docker_cgroups() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten().map(|e| e.path().join("docker")).collect();
    v.push("/sys/fs/cgroup/docker".into());
    v
}

impl Dockerd {
    pub fn start() -> Dockerd {
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
        super::run(Command::new("docker").env("DOCKER_HOST", &self.sock).args(args), Duration::from_secs(120))
    }

    pub fn ok(&self, args: &[&str]) -> String {
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

    pub fn data_root(&self) -> String {
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
    pub fn stop(mut self) {
        let left = self.shutdown();
        assert!(left.is_empty(), "stopping dockerd left things behind:\n{}", left.join("\n"));
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

// ---------------------------------------------------------------------------------------
// Images

/// A busybox image, imported (no registry is reachable).
pub fn busybox_image(d: &Dockerd) {
    let dir = TempDir::new("busybox-rootfs");
    busybox_rootfs(dir.path());
    let tar = dir.path().join("rootfs.tar");
    let st =
        Command::new("tar").args(["-C", &dir.path().display().to_string(), "-cf"]).arg(&tar).args(["bin"]).status();
    assert!(st.is_ok_and(|s| s.success()), "tar of the rootfs failed");
    d.ok(&["import", "-c", "CMD [\"/bin/sleep\",\"300\"]", &tar.display().to_string(), BUSYBOX_IMAGE]);
}

pub const BUSYBOX_IMAGE: &str = "tracer-it-busybox:1";
pub const APACHE_IMAGE: &str = "tracer-it-apache:1";

/// The Apache image from the cached rootfs tarball: Debian's apache2 run as pid 1 in the
/// foreground, with the environment `apache2ctl` would give it (mpm_event, two children
/// of 25 worker threads, workers as www-data).
pub fn apache_image(d: &Dockerd, tar: &Path) {
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
