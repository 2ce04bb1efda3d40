//! `cargo xtask dist`: the packages, in target/dist/:
//!
//! - `tracer-VERSION-x86_64-linux-musl.tar.gz`: the static binary (stripped), the
//!   man pages, the bash, zsh and fish completions, the systemd unit, the
//!   sysusers.d file, the licences and the README, under `tracer-VERSION/`;
//! - `tracer_VERSION-1_amd64.deb` (cargo-deb, configured in tracer/Cargo.toml)
//!   that installs them where Debian keeps them, and creates group tracer;
//! - `SHA256SUMS` of both (`sha256sum -c SHA256SUMS` checks them).
//!
//! With `--verify` the .deb is then installed into a clean Debian 12 root and
//! checked there ([`verify`]).

mod verify;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::setup::{self, Purpose};
use crate::util::{self, cargo};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Then install the .deb into a clean Debian 12 chroot (debootstrap, cached
    /// under /var/cache/tracer-tests) and check the binary, a man page, the bash
    /// completion and the unit there (needs root; `cargo xtask test` does it).
    #[arg(long)]
    pub verify: bool,
}

/// The package version (the workspace's, which tracer shares).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Where the binary of the unit in the tree is, and where the .deb puts it.
const UNIT_BIN: &str = "/usr/local/bin/tracer";
const DEB_BIN: &str = "/usr/bin/tracer";

pub fn dist(args: &Args) -> Result<()> {
    setup::setup(Purpose::Dist)?;
    setup::cargo_deb()?;
    let deb = make()?;
    if args.verify {
        verify::verify(&deb)?;
    }
    Ok(())
}

/// Builds everything into target/dist/ (emptied first); returns the .deb.
fn make() -> Result<PathBuf> {
    let bin = crate::build_static()?;
    let out = util::target_dir().join("dist");
    // The folder cargo-deb's `target/release/dist/` assets are read from.
    let staged = bin.parent().context("the static binary has no folder")?.join("dist");
    for dir in [&out, &staged] {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("dist: removing the old {}", dir.display()))?;
        }
        fs::create_dir_all(dir).with_context(|| format!("dist: creating {}", dir.display()))?;
    }
    stage(&bin, &staged)?;
    let deb = deb(&out)?;
    let tarball = tarball(&staged, &out)?;
    sums(&out, &[&tarball, &deb])?;
    eprintln!("dist: made {}, {} and SHA256SUMS in {}", file_name(&tarball), file_name(&deb), out.display());
    Ok(deb)
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Runs a step of `dist`, its stdout to stderr.
fn run(cmd: &mut Command, doing: &str) -> Result<()> {
    cmd.stdout(std::io::stderr());
    eprintln!("==> {}", util::display(cmd));
    util::run(cmd, doing, "fix the error above and rerun `cargo xtask dist`")
}

/// Fills `staged` with the stripped binary, the man pages and completions it
/// generates (`tracer __generate`), and the unit as the .deb installs it.
fn stage(bin: &Path, staged: &Path) -> Result<()> {
    let tracer = staged.join("tracer");
    run(Command::new("strip").arg("-o").arg(&tracer).arg(bin), "stripping the binary (binutils)")?;
    for what in ["man", "completions"] {
        run(Command::new(&tracer).args(["__generate", what]).arg(staged.join(what)), &format!("generating {what}"))?;
    }
    let src = tracer_dir().join("dist");
    let unit = fs::read_to_string(src.join("tracer.service")).context("dist: reading tracer/dist/tracer.service")?;
    fs::write(staged.join("tracer.service"), deb_unit(&unit)?).context("dist: writing the .deb's unit")?;
    Ok(())
}

/// The unit with ExecStart at the .deb's binary. Err when the unit no longer
/// names [`UNIT_BIN`] (it would then start a binary the .deb does not have).
fn deb_unit(unit: &str) -> Result<String> {
    if !unit.lines().any(|l| l.starts_with(&format!("ExecStart={UNIT_BIN} "))) {
        bail!("dist: tracer/dist/tracer.service has no `ExecStart={UNIT_BIN} ...`: update deb_unit in xtask/src/dist");
    }
    Ok(unit.replace(&format!("ExecStart={UNIT_BIN} "), &format!("ExecStart={DEB_BIN} ")))
}

fn tracer_dir() -> PathBuf {
    util::repo_root().join("tracer")
}

/// The .deb, by cargo-deb from the staged files (no build, no strip: done).
fn deb(out: &Path) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["deb", "-p", "tracer", "--no-build", "--no-strip", "--target", crate::STATIC_TARGET, "--output"])
        .arg(out);
    run(&mut cmd, "making the .deb with cargo-deb")?;
    only_file(out, ".deb")
}

/// The one file in `dir` whose name ends with `suffix`.
fn only_file(dir: &Path, suffix: &str) -> Result<PathBuf> {
    let found: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("dist: reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("dist: expected one *{suffix} in {}, found {found:?}", dir.display()),
    }
}

/// The files of the tarball: (source, path under `tracer-VERSION/`).
fn tarball_files(staged: &Path) -> Result<Vec<(PathBuf, String)>> {
    let t = tracer_dir();
    let mut files = vec![
        (staged.join("tracer"), "bin/tracer".to_string()),
        (t.join("dist/tracer.service"), "systemd/tracer.service".to_string()),
        (t.join("dist/tracer.sysusers.conf"), "sysusers.d/tracer.conf".to_string()),
        (t.join("LICENSE-MIT"), "LICENSE-MIT".to_string()),
        (t.join("LICENSE-APACHE"), "LICENSE-APACHE".to_string()),
        (util::repo_root().join("README.md"), "README.md".to_string()),
    ];
    for dir in ["man", "completions"] {
        let mut names: Vec<PathBuf> = fs::read_dir(staged.join(dir))
            .with_context(|| format!("dist: reading the generated {dir}"))?
            .flatten()
            .map(|e| e.path())
            .collect();
        names.sort();
        for p in names {
            let name = file_name(&p);
            files.push((p, format!("{dir}/{name}")));
        }
    }
    Ok(files)
}

/// `tracer-VERSION-x86_64-linux-musl.tar.gz`, files owned by root, in name order.
fn tarball(staged: &Path, out: &Path) -> Result<PathBuf> {
    let top = format!("tracer-{VERSION}");
    let tree = staged.join("tar").join(&top);
    for (src, rel) in tarball_files(staged)? {
        let dst = tree.join(&rel);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).with_context(|| format!("dist: creating {}", parent.display()))?;
        }
        fs::copy(&src, &dst).with_context(|| format!("dist: copying {} into the tarball", src.display()))?;
    }
    let tarball = out.join(format!("{top}-x86_64-linux-musl.tar.gz"));
    let mut cmd = Command::new("tar");
    cmd.args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "-czf"])
        .arg(&tarball)
        .arg("-C")
        .arg(staged.join("tar"))
        .arg(&top);
    run(&mut cmd, "packing the tarball")?;
    Ok(tarball)
}

/// SHA256SUMS in `out`, in `sha256sum`'s own format (so `sha256sum -c` reads it).
fn sums(out: &Path, files: &[&Path]) -> Result<()> {
    let mut cmd = Command::new("sha256sum");
    cmd.current_dir(out).args(files.iter().map(|f| file_name(f)));
    let text = cmd.output().context("dist: running sha256sum (coreutils)")?;
    if !text.status.success() {
        bail!("dist: sha256sum failed: {}", String::from_utf8_lossy(&text.stderr).trim());
    }
    fs::write(out.join("SHA256SUMS"), &text.stdout).context("dist: writing SHA256SUMS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debs_unit_starts_the_debs_binary() {
        let unit = fs::read_to_string(tracer_dir().join("dist/tracer.service")).unwrap();
        let deb = deb_unit(&unit).unwrap();
        let exec: Vec<&str> = deb.lines().filter(|l| l.starts_with("ExecStart=")).collect();
        assert_eq!(exec.len(), 1, "{exec:?}");
        assert!(exec[0].starts_with("ExecStart=/usr/bin/tracer daemon "), "{exec:?}");
        assert!(deb_unit("ExecStart=/opt/tracer daemon\n").is_err());
    }

    #[test]
    fn the_tarball_takes_every_file_of_the_package() {
        let staged = std::env::temp_dir().join(format!("xtask-dist-{}", std::process::id()));
        for d in ["man", "completions"] {
            fs::create_dir_all(staged.join(d)).unwrap();
        }
        fs::write(staged.join("man/tracer-ps.1"), "").unwrap();
        fs::write(staged.join("completions/_tracer"), "").unwrap();
        let files = tarball_files(&staged).unwrap();
        fs::remove_dir_all(&staged).unwrap();
        let rels: Vec<&str> = files.iter().map(|(_, r)| r.as_str()).collect();
        for want in ["bin/tracer", "systemd/tracer.service", "sysusers.d/tracer.conf", "LICENSE-MIT", "LICENSE-APACHE"]
        {
            assert!(rels.contains(&want), "{want} not in {rels:?}");
        }
        assert!(rels.contains(&"man/tracer-ps.1") && rels.contains(&"completions/_tracer"), "{rels:?}");
        // The files from the tree (not generated) are there.
        for (src, _) in files.iter().filter(|(src, _)| !src.starts_with(&staged)) {
            assert!(src.is_file(), "{} is missing", src.display());
        }
    }
}
