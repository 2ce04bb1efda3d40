//! Plain runc: a busybox container in a bundle of its own, with runc's state in a
//! directory of its own.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{TempDir, procfs::proc_pids_in, rootfs::busybox_rootfs};

/// A busybox container run by plain runc (state in a directory of its own), killed and
/// deleted, its cgroups removed, by [`RuncContainer::stop`] or on drop.
pub struct RuncContainer {
    pub id: String,
    state_root: String,
    bundle: TempDir,
    stopped: bool,
}

impl RuncContainer {
    /// The id `run(name)` gives its container.
    pub fn id_for(name: &str) -> String {
        format!("tracer-it-runc-{}-{name}", std::process::id())
    }

    /// `runc run -d` of `/bin/sleep 300` in a busybox bundle, as `tracer-it-runc-PID-NAME`.
    pub fn run(name: &str) -> RuncContainer {
        RuncContainer::run_args(name, &["/bin/sleep", "300"])
    }

    /// As [`RuncContainer::run`], with `args` as the container's process.
    pub fn run_args(name: &str, args: &[&str]) -> RuncContainer {
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
        spec["process"]["args"] = serde_json::json!(args);
        spec["process"]["terminal"] = Value::Bool(false);
        spec["root"]["path"] = Value::from(rootfs.display().to_string());
        spec["root"]["readonly"] = Value::Bool(true);
        std::fs::write(&config, serde_json::to_vec_pretty(&spec).unwrap()).expect("write config.json");
        let st = c.detached(&["run", "-d", "--bundle", &dir.display().to_string(), &c.id]);
        assert!(st.success(), "runc run -d failed ({st}): {}", c.log());
        c
    }

    fn runc(&self, args: &[&str]) -> std::process::Output {
        super::run(Command::new("runc").args(["--root", &self.state_root]).args(args), Duration::from_secs(60))
    }

    fn log_path(&self) -> PathBuf {
        self.bundle.path().join("runc.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A runc command that leaves a process running with its stdio: no pipes (a reader
    /// would wait for that process), output to the log file.
    pub fn detached(&self, args: &[&str]) -> ExitStatus {
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
    pub fn state(&self) -> Value {
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
    pub fn stop(mut self) {
        let left = self.shutdown();
        assert!(left.is_empty(), "stopping the runc container left things behind:\n{}", left.join("\n"));
    }
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
