//! A tiny tmpfs mounted in a temporary directory, to fill up: unmounted on drop.

use std::{path::Path, process::Command, time::Duration};

use super::TempDir;

pub struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    /// `mount -t tmpfs -o size=SIZE` (e.g. `64k`) on a fresh directory. Needs root.
    pub fn mount(size: &str) -> Tmpfs {
        let dir = TempDir::new("tmpfs");
        let out = super::run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tracer-it"])
                .arg(dir.path()),
            Duration::from_secs(20),
        );
        assert!(
            out.status.success(),
            "mount -t tmpfs -o size={size} {} failed ({}): {}",
            dir.path().display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let out = super::run(Command::new("umount").arg(self.dir.path()), Duration::from_secs(20));
        if !out.status.success() {
            eprintln!("umount {} failed: {}", self.dir.path().display(), String::from_utf8_lossy(&out.stderr).trim());
        }
    }
}
