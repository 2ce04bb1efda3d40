//! `cargo xtask fuzz`: runs every fuzz target of `tracer/fuzz` (cargo-fuzz,
//! libFuzzer) for a while each, and prints how many inputs each one ran.
//!
//! Each target starts from its seeds in `tracer/fuzz/corpus/<target>` (kept in
//! the repository, never written by a run) and a scratch corpus under the target
//! directory, where libFuzzer adds what it finds; a crashing input is saved under
//! `<target dir>/fuzz/artifacts/<target>/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::setup;
use crate::util;

/// The fuzz targets (`tracer/fuzz/fuzz_targets/<name>.rs`), in the order they run.
pub const TARGETS: &[&str] = &["records", "protocol", "cgroup_path", "keys", "container_state"];

#[derive(clap::Args)]
pub struct Args {
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 30)]
    pub secs: u64,
    /// Only these targets (default: all).
    pub targets: Vec<String>,
}

/// The fuzz crate, relative to the workspace root.
const FUZZ_DIR: &str = "tracer/fuzz";

pub fn fuzz(args: &Args) -> Result<()> {
    setup::fuzz_tools()?;
    for t in &args.targets {
        if !TARGETS.contains(&t.as_str()) {
            bail!("fuzzing: no target `{t}`; the targets are {}", TARGETS.join(", "));
        }
    }
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        TARGETS.iter().copied().filter(|t| args.targets.iter().any(|a| a == t)).collect()
    };
    let work = util::target_dir().join("fuzz");
    let mut build = cargo_fuzz();
    build.arg("build").args(common_args(&work));
    println!("==> {}", util::display(&build));
    util::run(&mut build, "building the fuzz targets", "fix the errors above and rerun `cargo xtask fuzz`")?;
    let mut ran = Vec::new();
    for t in targets {
        ran.push((t, run_target(&work, t, args.secs)?));
    }
    println!("fuzzing: {} targets, {} s each, no crash", ran.len(), args.secs);
    for (t, execs) in ran {
        println!("  {t:<16} {execs:>12} executions");
    }
    Ok(())
}

/// `cargo fuzz` with the pinned nightly (the toolchain `cargo xtask setup` installs).
fn cargo_fuzz() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.current_dir(util::repo_root()).env("PATH", util::path_with_cargo_bin());
    // The stable cargo that runs xtask must not leak into the nightly build.
    for k in ["CARGO", "RUSTC", "RUSTDOC", "RUSTUP_TOOLCHAIN", "CARGO_TARGET_DIR", "CARGO_MANIFEST_DIR"] {
        cmd.env_remove(k);
    }
    cmd.args(["run", setup::NIGHTLY, "cargo", "fuzz"]);
    cmd
}

/// Fuzzes `target` for `secs` seconds; returns the executions libFuzzer reports.
fn run_target(work: &Path, target: &str, secs: u64) -> Result<u64> {
    let seeds = util::repo_root().join(FUZZ_DIR).join("corpus").join(target);
    let scratch = work.join("corpus").join(target);
    let artifacts = work.join("artifacts").join(target);
    let logs = work.join("logs");
    for d in [&scratch, &artifacts, &logs] {
        fs::create_dir_all(d).with_context(|| format!("fuzzing {target}: creating {}", d.display()))?;
    }
    let log_path = logs.join(format!("{target}.log"));
    let log =
        fs::File::create(&log_path).with_context(|| format!("fuzzing {target}: creating {}", log_path.display()))?;
    let mut cmd = cargo_fuzz();
    cmd.arg("run").args(common_args(work)).arg(target).arg(&scratch).arg(&seeds).arg("--");
    cmd.arg(format!("-max_total_time={secs}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .args(["-timeout=10", "-print_final_stats=1"]);
    println!("==> fuzzing {target} for {secs} s (log: {})", log_path.display());
    let status = cmd
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("fuzzing {target}: could not start `{}`", util::display(&cmd)))?;
    let out = fs::read_to_string(&log_path).unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = out.lines().rev().take(40).collect();
        for l in tail.into_iter().rev() {
            eprintln!("  | {l}");
        }
        bail!(
            "fuzzing {target}: the target failed ({status}); the crashing input is in {}; reproduce with \
             `cargo +{} fuzz run --fuzz-dir {FUZZ_DIR} {target} FILE`, then turn it into a unit test with the fix",
            artifacts.display(),
            setup::NIGHTLY
        );
    }
    executions(&out).with_context(|| {
        format!("fuzzing {target}: libFuzzer's output ({}) has no count of executions", log_path.display())
    })
}

/// Arguments of every `cargo fuzz` subcommand here: the fuzz crate and the target directory.
fn common_args(work: &Path) -> Vec<PathBuf> {
    vec!["--fuzz-dir".into(), util::repo_root().join(FUZZ_DIR), "--target-dir".into(), work.join("target")]
}

/// The executions libFuzzer reports at the end: `stat::number_of_executed_units: N`
/// (with `-print_final_stats=1`), else the `#N DONE` line.
pub fn executions(out: &str) -> Option<u64> {
    let stat = out
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("stat::number_of_executed_units:").and_then(|n| n.trim().parse().ok()));
    stat.or_else(|| {
        out.lines().rev().find_map(|l| {
            let mut words = l.split_whitespace();
            let n = words.next()?.strip_prefix('#')?.parse().ok()?;
            (words.next()? == "DONE").then_some(n)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_counts() {
        let out = "#2\tINITED cov: 10 ft: 10 corp: 1/1b exec/s: 0 rss: 30Mb\n\
                   #654321\tDONE   cov: 210 ft: 400 corp: 40/1Kb lim: 4096 exec/s: 21816 rss: 60Mb\n\
                   Done 654321 runs in 31 second(s)\n\
                   stat::number_of_executed_units: 654322\n\
                   stat::average_exec_per_sec:     21107\n";
        assert_eq!(executions(out), Some(654_322));
        let without_stats = out.lines().take(3).collect::<Vec<_>>().join("\n");
        assert_eq!(executions(&without_stats), Some(654_321));
        assert_eq!(executions("#1 NEW cov: 3\n==1== ERROR: AddressSanitizer"), None);
    }
}
