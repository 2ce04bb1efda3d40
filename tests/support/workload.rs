//! Workloads: small C programs built for a test.

use std::{path::PathBuf, process::Command, time::Duration};

use super::{TempDir, run};

/// A C program built for a test, in its own temporary directory.
pub struct CProgram {
    _dir: TempDir,
    pub path: PathBuf,
}

/// Builds `source` with `cc -O2 -Wall -Werror -pthread` into an executable named `name`
/// (so its comm is `name`, cut to 15 bytes). Panics with the compiler's output on failure.
/// Callers check [`require_tool`](super::require_tool)`("cc")` first.
pub fn compile_c(name: &str, source: &str) -> CProgram {
    let dir = TempDir::new(name);
    let src = dir.path().join(format!("{name}.c"));
    std::fs::write(&src, source).expect("write C source");
    let path = dir.path().join(name);
    let out = run(
        Command::new("cc").args(["-O2", "-Wall", "-Werror", "-pthread", "-o"]).arg(&path).arg(&src),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "cc failed to build {name} ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    CProgram { _dir: dir, path }
}
