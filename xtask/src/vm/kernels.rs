//! Debian's stock kernels for the VM matrix: found in Debian's archive with apt,
//! downloaded and cached, their `vmlinuz` taken out of the package.
//!
//! apt runs with a private state directory (its own sources list, package lists
//! and cache), so the host's apt sources and state are never touched. The
//! archive's address is the one the host's own apt sources name for Debian, so
//! nothing here names a mirror.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};

use crate::util;

/// One kernel series of the matrix: the Debian release that ships it.
#[derive(Clone, Copy, Debug)]
pub struct Series {
    /// Kernel series, e.g. "6.1": the package is the newest `linux-image-6.1.*-amd64-unsigned`.
    pub version: &'static str,
    /// The Debian suite whose main component carries it.
    pub suite: &'static str,
    /// What the kernel stands for, for the table.
    pub release: &'static str,
}

/// The kernels every `vm-test` boots: Debian 11, 12 and 13.
pub const MATRIX: &[Series] = &[
    Series { version: "5.10", suite: "bullseye", release: "Debian 11" },
    Series { version: "6.1", suite: "bookworm", release: "Debian 12" },
    Series { version: "6.12", suite: "trixie", release: "Debian 13" },
];

/// Package lists younger than this are not fetched again.
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Keyring Debian's archive is signed with (package debian-archive-keyring).
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// A kernel ready to boot.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub series: Series,
    /// The package's kernel release, e.g. "6.1.0-50-amd64".
    pub release: String,
    pub vmlinuz: PathBuf,
}

/// Where kernels are cached: under /var/cache when root (kept across fresh
/// clones, as CI makes), else the user's cache directory.
pub fn cache_dir() -> PathBuf {
    if util::is_root() {
        return PathBuf::from("/var/cache/tracer-tests/kernels");
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| util::target_dir().join("vm"));
    base.join("tracer-tests").join("kernels")
}

/// Finds, downloads (unless cached) and unpacks the kernels of `series`.
pub fn fetch(series: &[Series]) -> Result<Vec<Kernel>> {
    let dir = cache_dir();
    let apt = Apt::new(&dir)?;
    apt.update_if_stale(series)?;
    series.iter().map(|s| apt.kernel(*s)).collect()
}

/// apt with a private state under the cache directory.
struct Apt {
    dir: PathBuf,
}

impl Apt {
    fn new(dir: &Path) -> Result<Apt> {
        for sub in ["lists/partial", "cache/archives/partial", "debs"] {
            let d = dir.join(sub);
            fs::create_dir_all(&d).with_context(|| format!("creating the kernel cache {}", d.display()))?;
        }
        Ok(Apt { dir: dir.to_path_buf() })
    }

    fn sources(&self) -> PathBuf {
        self.dir.join("sources.list")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        let lists = self.dir.join("lists");
        let cache = self.dir.join("cache");
        cmd.arg("-o")
            .arg(format!("Dir::Etc::SourceList={}", self.sources().display()))
            .args(["-o", "Dir::Etc::SourceParts=/dev/null"])
            .arg("-o")
            .arg(format!("Dir::State::Lists={}", lists.display()))
            .arg("-o")
            .arg(format!("Dir::Cache={}", cache.display()))
            .args(["-o", "Dir::State::status=/dev/null", "-o", "Debug::NoLocking=1"])
            // Package metadata only: no AppStream or Contents indexes.
            .args(["-o", "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"])
            .args(["-o", "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"])
            .args(["-o", "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"])
            .args(["-o", "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false"]);
        if util::is_root() {
            // Downloads into our own cache need no sandbox user.
            cmd.args(["-o", "APT::Sandbox::User=root"]);
        }
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    }

    /// Writes the private sources list and refreshes the package lists when
    /// they are missing, older than a day, or for other suites.
    fn update_if_stale(&self, series: &[Series]) -> Result<()> {
        let archive = debian_archive()?;
        let mut list = String::new();
        for s in series {
            list.push_str(&format!("deb [signed-by={KEYRING}] {archive} {} main\n", s.suite));
        }
        let old = fs::read_to_string(self.sources()).unwrap_or_default();
        let lists = self.dir.join("lists");
        let fresh = old == list
            && fs::read_dir(&lists).is_ok_and(|d| {
                d.flatten().any(|e| {
                    e.file_name().to_string_lossy().ends_with("_Packages")
                        && e.metadata()
                            .and_then(|m| m.modified())
                            .is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() < LISTS_MAX_AGE)
                })
            });
        if fresh {
            eprintln!("ok: kernel package lists in {} (less than a day old)", lists.display());
            return Ok(());
        }
        fs::write(self.sources(), &list).with_context(|| format!("writing {}", self.sources().display()))?;
        eprintln!("fetching: Debian package lists for {} into {}", suites(series), lists.display());
        let mut cmd = self.command("apt-get");
        cmd.args(["update", "-q"]);
        let out = cmd.output().context("running apt-get update for the kernel cache (is apt-get installed?)")?;
        if !out.status.success() {
            bail!(
                "updating the private package lists for the VM kernels failed ({}): {}; \
                 check that the Debian archive named in /etc/apt/sources.list* is reachable",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// The newest generic amd64 kernel package of `series`, downloaded and unpacked.
    fn kernel(&self, series: Series) -> Result<Kernel> {
        let prefix = format!("linux-image-{}.", series.version);
        let mut cmd = self.command("apt-cache");
        cmd.args(["pkgnames", &prefix]);
        let out = cmd.output().context("running apt-cache pkgnames")?;
        let names = String::from_utf8_lossy(&out.stdout);
        let Some(package) = newest(names.lines(), series.version) else {
            bail!(
                "no linux-image-{}.*-amd64-unsigned package in Debian {} ({}): the archive changed; \
                 update MATRIX in xtask/src/vm/kernels.rs",
                series.version,
                series.suite,
                series.release
            );
        };
        let release = package.trim_start_matches("linux-image-").trim_end_matches("-unsigned").to_string();
        let unpacked = self.dir.join(&release);
        let vmlinuz = unpacked.join("boot").join(format!("vmlinuz-{release}"));
        if vmlinuz.is_file() {
            eprintln!("ok: kernel {release} ({}) cached", series.release);
            return Ok(Kernel { series, release, vmlinuz });
        }
        let debs = self.dir.join("debs");
        eprintln!("fetching: {package} ({})", series.release);
        let mut cmd = self.command("apt-get");
        cmd.current_dir(&debs).args(["download", "-q", &package]);
        util::run(&mut cmd, &format!("downloading {package}"), "check that the Debian archive is reachable")?;
        let deb = fs::read_dir(&debs)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{package}_"))))
            .with_context(|| format!("apt-get download left no {package}_*.deb in {}", debs.display()))?;
        extract_vmlinuz(&deb, &unpacked)?;
        // The package is 50-70 MB: once unpacked, its vmlinuz is all we keep.
        let _ = fs::remove_file(&deb);
        if !vmlinuz.is_file() {
            bail!("{} holds no boot/vmlinuz-{release}", deb.display());
        }
        Ok(Kernel { series, release, vmlinuz })
    }
}

fn suites(series: &[Series]) -> String {
    series.iter().map(|s| s.suite).collect::<Vec<_>>().join(", ")
}

/// The newest `linux-image-<version>.*-amd64-unsigned` (generic flavour) of `names`.
fn newest<'a>(names: impl Iterator<Item = &'a str>, version: &str) -> Option<String> {
    let prefix = format!("linux-image-{version}.");
    names
        .map(str::trim)
        .filter(|n| n.starts_with(&prefix) && n.ends_with("-amd64-unsigned"))
        .filter(|n| !n.contains("-cloud-") && !n.contains("-rt-") && !n.contains("-dbg"))
        .max_by_key(|n| version_key(n))
        .map(str::to_string)
}

/// Numbers of a package name in order, for comparing versions (`6.12.117+deb13`
/// sorts after `6.12.107+deb13`, `5.10.0-32` after `5.10.0-30`).
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect()
}

/// Unpacks `boot/vmlinuz-*` of a .deb into `dest`.
fn extract_vmlinuz(deb: &Path, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest)?;
    let script = "dpkg-deb --fsys-tarfile \"$1\" | tar -x -C \"$2\" --wildcards './boot/vmlinuz-*'";
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script, "sh"]).arg(deb).arg(dest);
    util::run(&mut cmd, &format!("unpacking the kernel from {}", deb.display()), "check dpkg-deb and tar")
}

/// The Debian archive the host's apt sources use (one-line or deb822 format).
fn debian_archive() -> Result<String> {
    if let Ok(uri) = std::env::var("TRACER_VM_DEBIAN_ARCHIVE")
        && !uri.is_empty()
    {
        return Ok(uri);
    }
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let name = f.to_string_lossy();
        if !(name.ends_with(".list") || name.ends_with(".sources")) {
            continue;
        }
        if let Some(uri) = fs::read_to_string(&f).ok().and_then(|text| archive_in(&text)) {
            return Ok(uri);
        }
    }
    bail!(
        "no Debian archive found in /etc/apt/sources.list or /etc/apt/sources.list.d: \
         set TRACER_VM_DEBIAN_ARCHIVE to a Debian mirror's URI (its .../debian directory)"
    )
}

/// The first URI in an apt sources text that ends in `/debian` (the main
/// archive, not debian-security).
fn archive_in(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let uris: Vec<String> = match words.first() {
                Some(&"URIs:") => words[1..].iter().map(|s| s.to_string()).collect(),
                Some(&"deb") => words[1..].iter().filter(|w| w.contains("://")).map(|s| s.to_string()).collect(),
                _ => Vec::new(),
            };
            uris
        })
        .find(|u| u.trim_end_matches('/').ends_with("/debian"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_newest_generic_kernel() {
        let names = [
            "linux-image-6.12.107+deb13-amd64-unsigned",
            "linux-image-6.12.117+deb13-cloud-amd64-unsigned",
            "linux-image-6.12.117+deb13-amd64-unsigned",
            "linux-image-6.12.9-amd64-unsigned",
            "linux-image-6.1.0-50-amd64-unsigned",
        ];
        assert_eq!(newest(names.into_iter(), "6.12").as_deref(), Some("linux-image-6.12.117+deb13-amd64-unsigned"));
        assert_eq!(newest(names.into_iter(), "6.1").as_deref(), Some("linux-image-6.1.0-50-amd64-unsigned"));
        assert_eq!(newest(names.into_iter(), "5.10"), None);
    }

    #[test]
    fn finds_the_archive_in_either_format() {
        let deb822 = "Types: deb\nURIs: http://example.invalid/debian\nSuites: bookworm\n\n\
                      Types: deb\nURIs: http://example.invalid/debian-security\n";
        assert_eq!(archive_in(deb822).as_deref(), Some("http://example.invalid/debian"));
        let one_line = "# deb http://old.invalid/debian bookworm main\n\
                        deb [arch=amd64] http://mirror.invalid/debian/ bookworm main\n";
        assert_eq!(archive_in(one_line).as_deref(), Some("http://mirror.invalid/debian/"));
        assert_eq!(archive_in("deb http://x.invalid/debian-security bookworm-security main"), None);
    }
}
