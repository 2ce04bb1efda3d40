//! Root filesystems for containers, made here (no registry is reachable): a busybox one
//! from the host's static busybox, and a Debian one with Apache httpd made by debootstrap,
//! cached as a tarball between runs (see [`apache_rootfs_tar`]).

use std::{
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use super::tail;

/// A busybox root filesystem (the host's static busybox and a few applets) in `dir`.
pub fn busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("copy /bin/busybox (package busybox-static)");
    for applet in ["sh", "sleep", "httpd", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
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
pub fn apache_rootfs_tar() -> Result<PathBuf, String> {
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
        if super::which(tool).is_none() {
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
    let out = super::run(cmd, timeout);
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
