//! Project tasks for tracer, run as `cargo xtask <task>` (alias in
//! `.cargo/config.toml`).

mod bench;
mod setup;
mod util;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::util::{cargo, is_root};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Project tasks for tracer: setup, build, run, test, bench"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the eBPF toolchain, bpf-linker, apt packages; mount tracefs.
    /// Idempotent: prints one line per item.
    Setup,
    /// Setup, then build tracer (release unless --debug).
    Build {
        /// Build the debug profile instead of release.
        #[arg(long)]
        debug: bool,
    },
    /// Setup and build, then run tracer with ARGS (as root; via sudo if not root).
    Run {
        /// Build and run the debug profile instead of release.
        #[arg(long)]
        debug: bool,
        /// Arguments for tracer, e.g. `events --json`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Setup, then fmt check, clippy, and every test (as CI does).
    ///
    /// ARGS go to the test harness after `--test-threads=1` (e.g. a name
    /// filter). To pass arguments to `cargo test` itself, put them before a
    /// second `--`: `cargo xtask test -- --test integration -- FILTER`.
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmark: fork and thread storms, untraced vs traced by
    /// `tracer events --json` (needs root).
    Bench {
        /// Seconds per workload run.
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        /// Rounds (each one untraced run + one traced run) per workload.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
    },
    /// Internal: one benchmark workload; prints one JSON line.
    #[command(hide = true)]
    BenchWorker {
        workload: bench::Workload,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
    },
    /// Internal: starts N idle threads, prints "ready", waits for stdin to close.
    #[command(hide = true)]
    HoldThreads { threads: usize },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Setup => setup::setup(),
        Task::Build { debug } => {
            setup::setup()?;
            build(debug).map(|_| ())
        }
        Task::Run { debug, args } => run(debug, &args),
        Task::Test { args } => test(&args),
        Task::Bench { secs, rounds } => bench::bench(secs, rounds),
        Task::BenchWorker { workload, secs } => bench::worker(workload, secs),
        Task::HoldThreads { threads } => bench::hold_threads(threads),
    }
}

/// Builds tracer; returns the path of the binary.
pub fn build(debug: bool) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.arg("build");
    if !debug {
        cmd.arg("--release");
    }
    cmd.args(["-p", "tracer"]);
    println!("==> {}", util::display(&cmd));
    util::run(&mut cmd, "building tracer", "fix the errors above and rerun `cargo xtask build`")?;
    let bin = util::target_dir().join(if debug { "debug" } else { "release" }).join("tracer");
    if !bin.is_file() {
        bail!(
            "building tracer: cargo succeeded but {} does not exist; check CARGO_TARGET_DIR and .cargo/config.toml",
            bin.display()
        );
    }
    println!("built: {}", bin.display());
    Ok(bin)
}

/// Replaces this process with tracer (so signals and the exit code are
/// tracer's own).
fn run(debug: bool, args: &[OsString]) -> Result<()> {
    setup::setup()?;
    let bin = build(debug)?;
    let mut cmd = if is_root() {
        Command::new(&bin)
    } else if let Some(sudo) = util::which("sudo") {
        println!("note: not root: running tracer via sudo");
        let mut cmd = Command::new(sudo);
        cmd.arg("--").arg(&bin);
        cmd
    } else {
        bail!(
            "running tracer: it needs root (or CAP_BPF+CAP_PERFMON) and there is no sudo; \
             run `cargo xtask run -- ...` as root"
        );
    };
    cmd.args(args);
    println!("==> {}", util::display(&cmd));
    std::io::stdout().flush().ok();
    let err = cmd.exec();
    Err(err).with_context(|| format!("running tracer: could not exec {}", bin.display()))
}

fn test(args: &[String]) -> Result<()> {
    setup::setup()?;
    if !is_root() {
        println!("note: not root: the integration tests need root and BPF and will fail");
    }
    let (cargo_args, harness_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (&[][..], args),
    };

    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    let mut clippy = cargo();
    clippy.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]);
    let mut tests = cargo();
    tests
        .args(["test", "--workspace", "--release"])
        .args(cargo_args)
        .args(["--", "--test-threads=1"])
        .args(harness_args);

    let steps: [(&mut Command, &str, &str); 3] = [
        (&mut fmt, "checking formatting", "run `cargo fmt --all` and rerun `cargo xtask test`"),
        (&mut clippy, "running clippy", "fix the warnings above and rerun `cargo xtask test`"),
        (&mut tests, "running the tests", "see the failing tests above; rerun one with `cargo xtask test -- NAME`"),
    ];
    let n = steps.len();
    for (i, (cmd, doing, fix)) in steps.into_iter().enumerate() {
        println!("==> [{}/{n}] {}", i + 1, util::display(cmd));
        util::run(cmd, doing, fix)?;
    }
    println!("==> all {n} steps passed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_args() {
        let cli = Cli::try_parse_from(["xtask", "test", "--", "--test", "integration", "--", "name"]).unwrap();
        let Task::Test { args } = cli.task else { panic!("not test") };
        assert_eq!(args, ["--test", "integration", "--", "name"]);

        let cli = Cli::try_parse_from(["xtask", "run", "--", "events", "--json"]).unwrap();
        let Task::Run { debug, args } = cli.task else { panic!("not run") };
        assert!(!debug);
        assert_eq!(args, ["events", "--json"]);

        let cli = Cli::try_parse_from(["xtask", "run", "events", "--pid", "1"]).unwrap();
        let Task::Run { args, .. } = cli.task else { panic!("not run") };
        assert_eq!(args, ["events", "--pid", "1"]);
    }
}
