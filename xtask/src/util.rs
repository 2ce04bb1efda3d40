//! Small helpers shared by the tasks: paths, child commands, root check.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The workspace root (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` if set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => repo_root().join(dir),
        _ => repo_root().join("target"),
    }
}

/// `$CARGO_HOME` or `~/.cargo`.
pub fn cargo_home() -> Option<PathBuf> {
    match env::var_os("CARGO_HOME") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")),
    }
}

/// `$PATH` with `$CARGO_HOME/bin` appended when it is missing, so that tools
/// installed by `cargo install` (bpf-linker) are found by nested builds.
pub fn path_with_cargo_bin() -> OsString {
    let path = env::var_os("PATH").unwrap_or_default();
    let Some(bin) = cargo_home().map(|h| h.join("bin")) else {
        return path;
    };
    let mut dirs: Vec<PathBuf> = env::split_paths(&path).collect();
    if !dirs.iter().any(|d| d == &bin) {
        dirs.push(bin);
    }
    env::join_paths(dirs).unwrap_or(path)
}

/// A `cargo` command (the cargo that runs xtask) in the workspace root.
pub fn cargo() -> Command {
    let program = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(repo_root()).env("PATH", path_with_cargo_bin());
    cmd
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Finds an executable on `$PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// The command line of `cmd`, for messages.
pub fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    if let Some(name) = Path::new(&s).file_name() {
        s = name.to_string_lossy().into_owned();
    }
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` with inherited stdio; fails unless it exits 0.
/// `doing` says what it was for, `fix` what the user should do on failure.
pub fn run(cmd: &mut Command, doing: &str, fix: &str) -> Result<()> {
    let line = display(cmd);
    let status = cmd.status().with_context(|| format!("{doing}: could not start `{line}`; {fix}"))?;
    if !status.success() {
        bail!("{doing}: `{line}` failed ({status}); {fix}");
    }
    Ok(())
}
