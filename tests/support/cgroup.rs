//! Cgroups: the test cgroup on the v2 hierarchy (or a v1 controller's), and what the
//! tests read of containers' cgroups.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::missing;

/// Where the cgroup2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
/// on hybrid hosts), from /proc/self/mountinfo.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split_whitespace().next()? == "cgroup2").then(|| pre.split_whitespace().nth(4).map(Into::into))?
    })
}

/// A cgroup of the test's own on the v2 hierarchy, `tracer-it-<what>-<test pid>`.
/// On drop, what is still in it goes back to its parent and it is removed.
pub struct TestCgroup {
    pub path: PathBuf,
    pub name: String,
}

impl TestCgroup {
    /// Makes it; None (a skip, or a failure under CI) without a cgroup2 hierarchy.
    pub fn new(what: &str) -> Option<TestCgroup> {
        let Some(mount) = cgroup2_mount() else {
            missing("no cgroup2 hierarchy mounted", "integration tests need a cgroup2 hierarchy");
            return None;
        };
        let name = format!("tracer-it-{what}-{}", std::process::id());
        let path = mount.join(&name);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Some(TestCgroup { path, name })
    }

    /// One named `name` on the v1 `controller` hierarchy, when this host has it.
    pub fn v1(controller: &str, name: &str) -> Option<TestCgroup> {
        let path = Path::new("/sys/fs/cgroup").join(controller).join(name);
        std::fs::create_dir(&path).ok().map(|()| TestCgroup { path, name: name.to_string() })
    }

    /// Moves process `pid` into it.
    pub fn enter(&self, pid: u32) {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("moving {pid} to {}: {e}", self.path.display()));
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let parent = self.path.parent().map(|p| p.join("cgroup.procs"));
        let t = Instant::now();
        while self.path.exists() && std::fs::remove_dir(&self.path).is_err() {
            if let (Ok(procs), Some(parent)) = (std::fs::read_to_string(self.path.join("cgroup.procs")), &parent) {
                for pid in procs.lines() {
                    let _ = std::fs::write(parent, pid);
                }
            }
            if t.elapsed() > Duration::from_secs(10) {
                eprintln!("warning: could not remove {}", self.path.display());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The id of container `id`'s cgroup on the v2 hierarchy: its directory's inode,
/// wherever the runtime put it (`/docker/<id>`, `/<id>`).
pub fn container_cgroup_id(id: &str) -> Option<u64> {
    let root = cgroup2_mount()?;
    [root.join("docker").join(id), root.join(id)]
        .iter()
        .filter_map(|d| std::fs::metadata(d).ok())
        .find(|m| m.is_dir())
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

/// Subdirectories of a directory (child cgroups of a cgroup).
pub fn subdirs(p: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(p).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()
}
