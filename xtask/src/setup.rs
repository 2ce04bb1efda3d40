//! Set-up of what each task needs, and `cargo xtask setup`. Every step checks
//! first and prints one line to stderr (never stdout: `cargo xtask run -- events`
//! streams events there): `ok: ...` when the thing was already there,
//! `installed: ...` when it acted.
//!
//! Building needs the eBPF toolchain, bpf-linker and the static target; running
//! adds tracefs and the kernel's BTF; the tests add rustfmt, clippy and the
//! workloads they drive ([`TEST_PACKAGES`]); the bench adds bpftool (its peers
//! come from [`bench_packages`]); `dist` adds binutils' strip and cargo-deb.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{self, cargo, is_root};

/// Toolchain that builds the eBPF programs (see shared TOOLCHAIN.md).
pub const NIGHTLY: &str = "nightly-2026-05-19";
/// Components the eBPF toolchain needs (`-Z build-std=core`).
pub const NIGHTLY_COMPONENTS: &[&str] = &["rust-src"];
/// Components of the default (stable) toolchain used by `cargo xtask test`.
pub const STABLE_COMPONENTS: &[&str] = &["rustfmt", "clippy"];
/// bpf-linker version that works with the nightly's LLVM here.
pub const BPF_LINKER_VERSION: &str = "0.10.4";
/// Debian packages of the build: musl-gcc for the C code some dependencies
/// build (the allocator) for the static target.
pub const BUILD_PACKAGES: &[&str] = &["musl-tools"];
/// Debian packages of running tracer from the tree: `mountpoint` and `mount`
/// for tracefs.
pub const RUN_PACKAGES: &[&str] = &["util-linux"];
/// Debian packages of the tests: tools, and the real workloads the integration
/// tests drive (debootstrap makes the Apache image and `dist`'s clean root).
pub const TEST_PACKAGES: &[&str] = &[
    "bpftool",
    "strace",
    "tmux",
    "apache2",
    "apache2-utils",
    "busybox-static",
    "docker.io",
    "containerd",
    "runc",
    "debootstrap",
    "procps",
    "util-linux",
];
/// Debian packages of `cargo xtask dist`: strip (binutils).
pub const DIST_PACKAGES: &[&str] = &["binutils"];
/// Debian packages the kernel matrix (`vm-test`) needs: qemu, and what the
/// initramfs is made of.
pub const VM_PACKAGES: &[&str] = &["qemu-system-x86", "cpio", "busybox-static"];
/// Debian packages of the peers `cargo xtask bench` compares tracer with
/// (installed by the bench only, see [`bench_packages`]).
pub const BENCH_PACKAGES: &[&str] = &["bpftrace", "linux-perf"];
/// The Rust target of the static release binary.
pub const STATIC_TARGET: &str = crate::STATIC_TARGET;
pub const TRACEFS: &str = "/sys/kernel/tracing";
pub const BTF_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// The task a set-up is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// `cargo xtask build`, and `vm-test` (which adds [`vm_packages`]).
    Build,
    /// `cargo xtask run`, and `cargo xtask setup`.
    Run,
    /// `cargo xtask test`, and `cargo xtask setup --test-deps`.
    Test,
    /// `cargo xtask bench` (whose peers come from [`bench_packages`]).
    Bench,
    /// `cargo xtask dist`.
    Dist,
}

/// What a purpose needs set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Needs {
    /// rustfmt and clippy on the default toolchain.
    pub checks: bool,
    /// Debian packages, each once, in order.
    pub apt: Vec<&'static str>,
    /// tracefs mounted and the kernel's BTF (what loading the programs needs).
    pub kernel: bool,
}

/// What `purpose` needs beyond the eBPF toolchain, bpf-linker and the static
/// target, which every purpose needs.
pub fn needs(purpose: Purpose) -> Needs {
    let (checks, kernel, extra): (bool, bool, &[&[&'static str]]) = match purpose {
        Purpose::Build => (false, false, &[]),
        Purpose::Run => (false, true, &[RUN_PACKAGES]),
        Purpose::Test => (true, true, &[RUN_PACKAGES, TEST_PACKAGES]),
        Purpose::Bench => (false, true, &[RUN_PACKAGES, &["bpftool"]]),
        Purpose::Dist => (false, false, &[DIST_PACKAGES]),
    };
    let mut apt: Vec<&'static str> = BUILD_PACKAGES.to_vec();
    for p in extra.iter().flat_map(|l| l.iter()) {
        if !apt.contains(p) {
            apt.push(p);
        }
    }
    Needs { checks, apt, kernel }
}

/// Installs what `purpose` needs (idempotent).
pub fn setup(purpose: Purpose) -> Result<()> {
    let root = is_root();
    let needs = needs(purpose);
    if !root {
        eprintln!(
            "note: not root: installing apt packages and mounting tracefs need root; \
             run `cargo xtask setup` as root (or via sudo) for those"
        );
    }
    nightly_toolchain()?;
    if needs.checks {
        stable_components()?;
    }
    bpf_linker()?;
    static_target()?;
    // The tests' workloads come with their recommends, as a user would install them.
    apt_packages(root, &needs.apt, purpose != Purpose::Test)?;
    if needs.kernel {
        tracefs(root)?;
        btf();
    }
    Ok(())
}

/// Runs a set-up command with its stdout sent to stderr (see the module doc).
fn run(cmd: &mut Command, doing: &str, fix: &str) -> Result<()> {
    cmd.stdout(std::io::stderr());
    util::run(cmd, doing, fix)
}

fn rustup() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.env("PATH", util::path_with_cargo_bin());
    cmd
}

/// Runs a read-only command and returns its stdout.
fn query(mut cmd: Command, doing: &str, fix: &str) -> Result<String> {
    let line = util::display(&cmd);
    let out = cmd.output().with_context(|| format!("{doing}: could not run `{line}`; {fix}"))?;
    if !out.status.success() {
        bail!("{doing}: `{line}` failed ({}): {}; {fix}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installed components (names without the host-triple suffix) of `toolchain`
/// (`None`: the active toolchain).
fn installed_components(toolchain: Option<&str>) -> Result<Vec<String>> {
    let mut cmd = rustup();
    cmd.args(["component", "list", "--installed"]);
    if let Some(tc) = toolchain {
        cmd.args(["--toolchain", tc]);
    }
    let out = query(cmd, "listing installed rustup components", "check that rustup works (`rustup show`)")?;
    Ok(out.lines().map(|l| l.trim().to_owned()).collect())
}

fn has_component(installed: &[String], name: &str) -> bool {
    installed.iter().any(|c| c == name || c.starts_with(&format!("{name}-")))
}

fn nightly_toolchain() -> Result<()> {
    let mut cmd = rustup();
    cmd.args(["toolchain", "list"]);
    let list = query(
        cmd,
        "listing rustup toolchains",
        "rustup must be installed (https://rustup.rs) and usable by this user; fix that and rerun `cargo xtask setup`",
    )?;
    let present = list.lines().any(|l| {
        let name = l.split_whitespace().next().unwrap_or("");
        name == NIGHTLY || name.starts_with(&format!("{NIGHTLY}-"))
    });
    if !present {
        eprintln!("installing: rustup toolchain {NIGHTLY} with {NIGHTLY_COMPONENTS:?} ...");
        let mut cmd = rustup();
        cmd.args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]);
        for c in NIGHTLY_COMPONENTS {
            cmd.args(["--component", c]);
        }
        run(
            &mut cmd,
            &format!("installing the eBPF toolchain {NIGHTLY}"),
            "check the network access to the Rust toolchain server and rerun `cargo xtask setup`",
        )?;
        eprintln!("installed: rustup toolchain {NIGHTLY} ({})", NIGHTLY_COMPONENTS.join(", "));
        return Ok(());
    }
    let installed = installed_components(Some(NIGHTLY))?;
    let missing: Vec<&str> = NIGHTLY_COMPONENTS.iter().copied().filter(|c| !has_component(&installed, c)).collect();
    if missing.is_empty() {
        eprintln!("ok: rustup toolchain {NIGHTLY} with {}", NIGHTLY_COMPONENTS.join(", "));
        return Ok(());
    }
    let mut cmd = rustup();
    cmd.args(["component", "add", "--toolchain", NIGHTLY]).args(&missing);
    run(&mut cmd, &format!("adding {missing:?} to toolchain {NIGHTLY}"), "rerun `cargo xtask setup`")?;
    eprintln!("installed: {} for toolchain {NIGHTLY}", missing.join(", "));
    Ok(())
}

fn stable_components() -> Result<()> {
    let installed = installed_components(None)?;
    let missing: Vec<&str> = STABLE_COMPONENTS.iter().copied().filter(|c| !has_component(&installed, c)).collect();
    if missing.is_empty() {
        eprintln!("ok: {} for the default toolchain", STABLE_COMPONENTS.join(", "));
        return Ok(());
    }
    let mut cmd = rustup();
    cmd.args(["component", "add"]).args(&missing);
    run(&mut cmd, &format!("adding {missing:?} to the default toolchain"), "rerun `cargo xtask setup`")?;
    eprintln!("installed: {} for the default toolchain", missing.join(", "));
    Ok(())
}

/// `Some(version line)` of the first bpf-linker found on PATH or in
/// `$CARGO_HOME/bin`, with where it was found.
fn bpf_linker_version() -> Option<(String, PathBuf)> {
    let mut candidates = vec![PathBuf::from("bpf-linker")];
    if let Some(home) = util::cargo_home() {
        candidates.push(home.join("bin").join("bpf-linker"));
    }
    for exe in candidates {
        match Command::new(&exe).arg("--version").output() {
            Ok(out) if out.status.success() => {
                let v = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                return Some((v, exe));
            }
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(_) => continue,
        }
    }
    None
}

fn bpf_linker() -> Result<()> {
    if let Some((version, exe)) = bpf_linker_version() {
        if version.split_whitespace().any(|w| w == BPF_LINKER_VERSION) {
            let where_ = if exe == Path::new("bpf-linker") {
                String::new()
            } else {
                format!(" (at {}, not on PATH: nested builds get it added; add it to your PATH)", exe.display())
            };
            eprintln!("ok: bpf-linker {BPF_LINKER_VERSION}{where_}");
            return Ok(());
        }
        eprintln!("note: found `{version}`, want {BPF_LINKER_VERSION}: replacing it");
    }
    eprintln!("installing: bpf-linker {BPF_LINKER_VERSION} (cargo install, about a minute) ...");
    let mut cmd = cargo();
    cmd.args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}"), "--locked"]);
    run(
        &mut cmd,
        &format!("installing bpf-linker {BPF_LINKER_VERSION}"),
        "read cargo's error above (crates.io must be reachable) and rerun `cargo xtask setup`",
    )?;
    eprintln!("installed: bpf-linker {BPF_LINKER_VERSION}");
    Ok(())
}

/// What `cargo xtask fuzz` needs: the pinned nightly (libFuzzer's sanitizer
/// flags are nightly-only) and cargo-fuzz, installed with `cargo install` when
/// missing.
pub fn fuzz_tools() -> Result<()> {
    nightly_toolchain()?;
    let mut candidates = vec![PathBuf::from("cargo-fuzz")];
    if let Some(home) = util::cargo_home() {
        candidates.push(home.join("bin").join("cargo-fuzz"));
    }
    let found = candidates.iter().find_map(|exe| {
        let out = Command::new(exe).arg("--version").output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    if let Some(version) = found {
        println!("ok: {version}");
        return Ok(());
    }
    println!("installing: cargo-fuzz (cargo install, a few minutes) ...");
    let mut cmd = cargo();
    cmd.args(["install", "cargo-fuzz", "--locked"]);
    util::run(
        &mut cmd,
        "installing cargo-fuzz",
        "read cargo's error above (crates.io must be reachable) and rerun `cargo xtask fuzz`",
    )?;
    println!("installed: cargo-fuzz");
    Ok(())
}

/// What the kernel matrix needs beyond [`setup`]: qemu, cpio, busybox.
pub fn vm_packages() -> Result<()> {
    apt_packages(is_root(), VM_PACKAGES, true)
}

/// What the bench needs beyond [`setup`]: bpftrace and perf, installed with
/// apt (as root, without recommends) when missing.
pub fn bench_packages() -> Result<()> {
    apt_packages(is_root(), BENCH_PACKAGES, true)
}

/// The static (musl) target of the default toolchain (musl-gcc comes with
/// [`BUILD_PACKAGES`]).
fn static_target() -> Result<()> {
    let mut cmd = rustup();
    cmd.args(["target", "list", "--installed"]);
    let installed = query(cmd, "listing installed rustup targets", "check that rustup works (`rustup show`)")?;
    if installed.lines().any(|l| l.trim() == STATIC_TARGET) {
        eprintln!("ok: rustup target {STATIC_TARGET}");
    } else {
        let mut cmd = rustup();
        cmd.args(["target", "add", STATIC_TARGET]);
        run(&mut cmd, &format!("adding the rustup target {STATIC_TARGET}"), "rerun `cargo xtask setup`")?;
        eprintln!("installed: rustup target {STATIC_TARGET}");
    }
    Ok(())
}

/// Packages of `packages` that dpkg does not list as installed, or `None`
/// when this is not a dpkg system.
fn missing_apt_packages(packages: &[&'static str]) -> Result<Option<Vec<&'static str>>> {
    let out = match Command::new("dpkg-query").args(["-W", "-f=${Package}\t${Status}\n"]).args(packages).output() {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).context("checking apt packages with dpkg-query: could not run it");
        }
    };
    // dpkg-query exits 1 when some package is unknown: read what it printed.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, status)| status.trim() == "install ok installed")
        .map(|(name, _)| name.split(':').next().unwrap_or(name))
        .collect();
    Ok(Some(packages.iter().copied().filter(|p| !installed.contains(p)).collect()))
}

fn apt_get() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// Installs the `packages` dpkg lacks (without recommends when `bare`).
fn apt_packages(root: bool, packages: &[&'static str], bare: bool) -> Result<()> {
    let Some(missing) = missing_apt_packages(packages)? else {
        eprintln!("warning: no dpkg-query (not Debian?): install the equivalents of {} yourself", packages.join(" "));
        return Ok(());
    };
    if missing.is_empty() {
        eprintln!("ok: apt packages {}", packages.join(" "));
        return Ok(());
    }
    if !root {
        eprintln!(
            "warning: missing apt packages {}: not root, so not installed; run `cargo xtask setup` as root",
            missing.join(" ")
        );
        return Ok(());
    }
    eprintln!("installing: apt packages {} ...", missing.join(" "));
    let fix = "read apt's error above and rerun `cargo xtask setup`";
    run(apt_get().args(["update", "-q"]), "updating apt package lists", fix)?;
    run(
        apt_get()
            .args(["install", "-y", "-q"])
            .args(if bare { &["--no-install-recommends"][..] } else { &[][..] })
            .args(["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"])
            .args(&missing),
        &format!("installing apt packages {}", missing.join(" ")),
        fix,
    )?;
    if let Some(still) = missing_apt_packages(packages)?.filter(|m| !m.is_empty()) {
        bail!("installing apt packages: still not installed after apt-get: {}; install them by hand", still.join(" "));
    }
    eprintln!("installed: apt packages {}", missing.join(" "));
    Ok(())
}

fn is_mountpoint(path: &str) -> Result<bool> {
    let status = Command::new("mountpoint").args(["-q", path]).status().with_context(|| {
        format!("checking whether {path} is mounted: could not run `mountpoint` (apt package util-linux)")
    })?;
    Ok(status.success())
}

fn tracefs(root: bool) -> Result<()> {
    if is_mountpoint(TRACEFS)? {
        eprintln!("ok: tracefs mounted at {TRACEFS}");
        return Ok(());
    }
    let out = Command::new("mount").args(["-t", "tracefs", "tracefs", TRACEFS]).output();
    match out {
        Ok(out) if out.status.success() => {
            eprintln!("installed: mounted tracefs at {TRACEFS}");
            Ok(())
        }
        Ok(out) if !root => {
            eprintln!(
                "warning: tracefs is not mounted at {TRACEFS} and mounting it failed as non-root ({}); run `cargo xtask setup` as root",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            Ok(())
        }
        Ok(out) => bail!(
            "mounting tracefs at {TRACEFS}: `mount -t tracefs tracefs {TRACEFS}` failed ({}): {}; \
             the kernel needs CONFIG_TRACING; mount it by hand and rerun",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) if !root => {
            eprintln!(
                "warning: tracefs is not mounted at {TRACEFS} and `mount` could not run ({e}); run `cargo xtask setup` as root"
            );
            Ok(())
        }
        Err(e) => Err(e)
            .context(format!("mounting tracefs at {TRACEFS}: could not run `mount` (apt package mount/util-linux)")),
    }
}

fn btf() {
    if Path::new(BTF_VMLINUX).exists() {
        eprintln!("ok: kernel BTF at {BTF_VMLINUX}");
    } else {
        eprintln!("warning: no {BTF_VMLINUX}: tracer needs a kernel built with CONFIG_DEBUG_INFO_BTF");
    }
}

/// cargo-deb, which `cargo xtask dist` makes the .deb with: `cargo install
/// cargo-deb --locked` when `cargo deb --version` does not answer.
pub fn cargo_deb() -> Result<()> {
    let mut probe = cargo();
    probe.args(["deb", "--version"]);
    if let Ok(out) = probe.output()
        && out.status.success()
    {
        eprintln!("ok: {}", String::from_utf8_lossy(&out.stdout).trim());
        return Ok(());
    }
    eprintln!("installing: cargo-deb (cargo install, a few minutes) ...");
    let mut cmd = cargo();
    cmd.args(["install", "cargo-deb", "--locked"]);
    run(&mut cmd, "installing cargo-deb", "read cargo's error above (crates.io must be reachable) and rerun")?;
    eprintln!("installed: cargo-deb");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_asks_for_the_build_alone() {
        let n = needs(Purpose::Build);
        assert_eq!(n.apt, ["musl-tools"]);
        assert!(!n.checks && !n.kernel);
    }

    #[test]
    fn run_adds_the_kernel_side_but_no_test_workload() {
        let n = needs(Purpose::Run);
        assert!(n.kernel && !n.checks);
        assert_eq!(n.apt, ["musl-tools", "util-linux"]);
        for p in ["docker.io", "containerd", "runc", "apache2", "debootstrap", "tmux"] {
            assert!(!n.apt.contains(&p), "run asks for {p}");
        }
    }

    #[test]
    fn test_adds_the_workloads_and_checks_once_each() {
        let n = needs(Purpose::Test);
        assert!(n.kernel && n.checks);
        for p in TEST_PACKAGES.iter().chain(BUILD_PACKAGES).chain(RUN_PACKAGES) {
            assert_eq!(n.apt.iter().filter(|a| *a == p).count(), 1, "{p} in {:?}", n.apt);
        }
    }

    #[test]
    fn bench_and_dist_take_their_own_tools_only() {
        let bench = needs(Purpose::Bench);
        assert!(bench.apt.contains(&"bpftool") && bench.kernel);
        assert!(!bench.apt.contains(&"docker.io"));
        for p in BENCH_PACKAGES {
            assert!(!bench.apt.contains(p), "the bench's peers come from bench_packages: {p}");
        }
        let dist = needs(Purpose::Dist);
        assert_eq!(dist.apt, ["musl-tools", "binutils"]);
        assert!(!dist.kernel && !dist.checks);
    }
}
