//! `cargo xtask dist --verify`: the .deb installed into a clean Debian 12 root
//! (debootstrap, in a chroot) and checked there as a user would meet it: dpkg
//! installs it (twice: the postinst runs again), the files are where Debian
//! keeps them, group tracer exists, `tracer --version` runs, `man tracer-ps`
//! renders, bash completes `tracer p` to `ps`, and `systemd-analyze verify`
//! accepts the unit.
//!
//! The clean root is made once and kept as a tarball under
//! /var/cache/tracer-tests (`$TRACER_TEST_CACHE`), named by the hash of its
//! recipe; each run unpacks a fresh copy and removes it afterwards.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

use super::VERSION;
use crate::util;

const SUITE: &str = "bookworm";
/// What the checks use beyond minbase: man, bash's completion, systemd-analyze
/// (and systemd-sysusers, which the postinst then uses).
const PACKAGES: &[&str] = &["man-db", "bash-completion", "systemd"];
/// Everything that decides the root's content: its hash names the cached tarball.
const RECIPE: &str = "r1: debootstrap --variant=minbase bookworm MIRROR; policy-rc.d 101; apt-get install -y \
                      --no-install-recommends man-db bash-completion systemd; apt-get clean; tar --numeric-owner";
const PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where the .deb puts its files (checked after installing).
const INSTALLED: &[&str] = &[
    "usr/bin/tracer",
    "usr/share/man/man1/tracer.1",
    "usr/share/man/man1/tracer-ps.1",
    "usr/share/man/man1/tracer-events.1",
    "usr/share/bash-completion/completions/tracer",
    "usr/share/zsh/vendor-completions/_tracer",
    "usr/share/fish/vendor_completions.d/tracer.fish",
    "usr/lib/systemd/system/tracer.service",
    "usr/lib/sysusers.d/tracer.conf",
    "usr/share/doc/tracer/LICENSE-MIT",
    "usr/share/doc/tracer/LICENSE-APACHE",
];

/// Bash in the chroot: the installed completion, asked to complete `tracer p`.
const COMPLETE_P: &str = "source /usr/share/bash-completion/completions/tracer && \
                          COMP_WORDS=(tracer p) && COMP_CWORD=1 && COMP_LINE='tracer p' && COMP_POINT=8 && \
                          _tracer tracer p tracer && printf '%s\\n' \"${COMPREPLY[@]}\"";

pub fn verify(deb: &Path) -> Result<()> {
    if !util::is_root() {
        bail!("dist --verify: debootstrap and chroot need root; run `cargo xtask dist --verify` as root");
    }
    for tool in ["debootstrap", "chroot", "tar", "mount"] {
        if util::which(tool).is_none() {
            bail!("dist --verify: `{tool}` is not on PATH; `cargo xtask setup --test-deps` installs it");
        }
    }
    let cached = clean_root_tar()?;
    let work = Work::new(&cache_dir().join(format!("dist-run-{}", std::process::id())))?;
    let root = work.path.join("root");
    fs::create_dir_all(&root).with_context(|| format!("dist --verify: creating {}", root.display()))?;
    step("unpacking the clean root", Command::new("tar").arg("-xf").arg(&cached).arg("-C").arg(&root))?;
    step("mounting /proc in the root", Command::new("mount").args(["-t", "proc", "proc"]).arg(root.join("proc")))?;
    fs::copy(deb, root.join("tmp/tracer.deb")).context("dist --verify: copying the .deb into the root")?;
    let failures = checks(&root)?;
    if !failures.is_empty() {
        bail!("dist --verify: the installed .deb failed {} check(s):\n{}", failures.len(), failures.join("\n"));
    }
    eprintln!("dist --verify: ok: the .deb installs and works in a clean Debian 12 root");
    Ok(())
}

/// The checks; each failure is one line (with the output that shows it).
fn checks(root: &Path) -> Result<Vec<String>> {
    let mut failed = Vec::new();
    for round in ["install", "reinstall"] {
        let out = chroot(root, &["dpkg", "-i", "/tmp/tracer.deb"])?;
        expect(&mut failed, &format!("dpkg -i ({round})"), &out, |_| true);
    }
    for f in INSTALLED {
        if !root.join(f).is_file() {
            failed.push(format!("/{f}: not installed"));
        }
    }
    expect(&mut failed, "getent group tracer", &chroot(root, &["getent", "group", "tracer"])?, |o| {
        o.starts_with("tracer:")
    });
    let version = format!("tracer {VERSION} (static build");
    expect(&mut failed, "tracer --version", &chroot(root, &["tracer", "--version"])?, |o| o.starts_with(&version));
    let man = chroot(root, &["env", "MANPAGER=cat", "MANWIDTH=80", "man", "tracer-ps"])?;
    expect(&mut failed, "man tracer-ps", &man, |o| {
        // Rendered: roff requests gone, sections and options as text.
        o.contains("NAME") && o.contains("SYNOPSIS") && o.contains("--json") && !o.contains(".TH")
    });
    expect(&mut failed, "bash completion of `tracer p`", &chroot(root, &["bash", "-c", COMPLETE_P])?, |o| {
        o.lines().collect::<Vec<_>>() == ["ps"]
    });
    let unit = "/usr/lib/systemd/system/tracer.service";
    let analyze = chroot(root, &["systemd-analyze", "verify", unit])?;
    expect(&mut failed, "systemd-analyze verify", &analyze, |_| {
        !String::from_utf8_lossy(&analyze.stderr).contains("tracer.service")
    });
    Ok(failed)
}

/// Records a failure unless `out` exited 0 and its stdout passes `ok`.
fn expect(failed: &mut Vec<String>, what: &str, out: &Output, ok: impl Fn(&str) -> bool) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && ok(&stdout) {
        eprintln!("dist --verify: ok: {what}");
        return;
    }
    let tail = |s: &str| s.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    failed.push(format!(
        "{what}: {} ; stdout (tail):\n{}\nstderr (tail):\n{}",
        out.status,
        tail(&stdout),
        tail(&String::from_utf8_lossy(&out.stderr))
    ));
}

fn chroot(root: &Path, args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new("chroot");
    cmd.env_clear().env("PATH", PATH_ENV).env("LANG", "C").env("DEBIAN_FRONTEND", "noninteractive");
    cmd.arg(root).args(args);
    cmd.output().with_context(|| format!("dist --verify: could not run `{}`", util::display(&cmd)))
}

/// Runs a step with its output on stderr; fails unless it exits 0.
fn step(doing: &str, cmd: &mut Command) -> Result<()> {
    cmd.stdout(std::io::stderr());
    util::run(cmd, &format!("dist --verify: {doing}"), "read the error above and rerun `cargo xtask dist --verify`")
}

/// Where the clean root is kept: `$TRACER_TEST_CACHE`, else /var/cache/tracer-tests
/// (as the tests' images).
fn cache_dir() -> PathBuf {
    std::env::var_os("TRACER_TEST_CACHE").map_or_else(|| PathBuf::from("/var/cache/tracer-tests"), PathBuf::from)
}

/// FNV-1a: a hash that is the same on every build and machine.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The Debian mirror: `$TRACER_TEST_DEBIAN_MIRROR`, else deb.debian.org.
fn mirror() -> String {
    std::env::var("TRACER_TEST_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".to_string())
}

/// The clean root's tarball: from the cache, else made (about a minute) and kept.
/// Made under a temporary name and renamed, so the final name is complete.
fn clean_root_tar() -> Result<PathBuf> {
    let dir = cache_dir();
    let tar = dir.join(format!("dist-root-{SUITE}-{:016x}.tar", fnv1a(RECIPE)));
    if tar.is_file() {
        eprintln!("ok: clean Debian root {}", tar.display());
        return Ok(tar);
    }
    fs::create_dir_all(&dir).with_context(|| format!("dist --verify: creating {}", dir.display()))?;
    let _lock = lock(&dir)?;
    if tar.is_file() {
        return Ok(tar);
    }
    let work = Work::new(&dir.join(format!("dist-build-{}", std::process::id())))?;
    let root = work.path.join("root");
    fs::create_dir_all(&root).with_context(|| format!("dist --verify: creating {}", root.display()))?;
    eprintln!("installing: a clean Debian {SUITE} root for `dist --verify` into {} ...", tar.display());
    let mut deboot = Command::new("debootstrap");
    deboot.env("PATH", PATH_ENV).args(["--variant=minbase", SUITE]).arg(&root).arg(mirror());
    step("debootstrap (set TRACER_TEST_DEBIAN_MIRROR for another mirror)", &mut deboot)?;
    // No service starts inside the chroot.
    let policy = root.join("usr/sbin/policy-rc.d");
    fs::write(&policy, "#!/bin/sh\nexit 101\n").context("dist --verify: writing policy-rc.d")?;
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o755)).context("dist --verify: chmod policy-rc.d")?;
    let in_root = |args: &[&str]| {
        let mut c = Command::new("chroot");
        c.env_clear().env("PATH", PATH_ENV).env("LANG", "C").env("DEBIAN_FRONTEND", "noninteractive");
        c.arg(&root).args(args);
        c
    };
    step("apt-get update in the root", &mut in_root(&["apt-get", "update", "-q"]))?;
    let mut install = in_root(&["apt-get", "install", "-y", "-q", "--no-install-recommends"]);
    install.args(PACKAGES);
    step("apt-get install in the root", &mut install)?;
    step("apt-get clean in the root", &mut in_root(&["apt-get", "clean"]))?;
    let tmp = tar.with_extension(format!("tar.tmp-{}", std::process::id()));
    let packed = step(
        "packing the clean root",
        Command::new("tar").arg("--numeric-owner").arg("-C").arg(&root).arg("-cf").arg(&tmp).arg("."),
    )
    .and_then(|()| fs::rename(&tmp, &tar).context("dist --verify: renaming the clean root's tarball"));
    if packed.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    packed.map(|()| tar)
}

/// An exclusive lock on the cache directory (one builder at a time), released
/// when the file is dropped.
fn lock(dir: &Path) -> Result<fs::File> {
    let path = dir.join(".dist-lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("dist --verify: opening {}", path.display()))?;
    // SAFETY: flock on a descriptor we own; blocks until the other builder is done.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).context(format!("dist --verify: locking {}", path.display()));
    }
    Ok(f)
}

/// A directory of this run, removed on drop after detaching the mounts in it.
struct Work {
    path: PathBuf,
}

impl Work {
    fn new(path: &Path) -> Result<Work> {
        let work = Work { path: path.to_path_buf() };
        if path.exists() {
            work.clean();
        }
        fs::create_dir_all(path).with_context(|| format!("dist --verify: creating {}", path.display()))?;
        Ok(work)
    }

    /// The mount points under this directory, deepest first.
    fn mounts(&self) -> Vec<String> {
        let prefix = format!("{}/", self.path.display());
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut m: Vec<String> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&prefix))
            .map(String::from)
            .collect();
        m.sort_by_key(|m| std::cmp::Reverse(m.len()));
        m
    }

    fn clean(&self) {
        for m in self.mounts() {
            let Ok(c) = std::ffi::CString::new(m) else { continue };
            // SAFETY: a valid C string; detaching a mount under our own directory.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        if !self.mounts().is_empty() {
            eprintln!("dist --verify: not removing {}: something is still mounted under it", self.path.display());
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        self.clean();
    }
}
