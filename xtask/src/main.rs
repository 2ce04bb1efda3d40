//! Project tasks for tracer, run as `cargo xtask <task>` (alias in
//! `.cargo/config.toml`).

mod bench;
mod dist;
mod fuzz;
mod setup;
mod util;
mod vm;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::setup::Purpose;
use crate::util::{cargo, is_root};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Project tasks for tracer: setup, build, run, test, fuzz, bench"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and running need: the eBPF toolchain, bpf-linker,
    /// the static target, musl-tools; mount tracefs. With --test-deps also what
    /// the tests need (rustfmt, clippy, the workloads: docker.io, apache2,
    /// debootstrap, ...). Idempotent: prints one line per item, on stderr.
    Setup {
        /// Also install the tests' tools and workloads (`cargo xtask test` does).
        #[arg(long)]
        test_deps: bool,
    },
    /// Set up what building needs, then build the static release binary of tracer
    /// (target/x86_64-unknown-linux-musl/release/tracer), or with --debug the
    /// host's debug build.
    Build {
        /// Build the debug profile instead of release.
        #[arg(long)]
        debug: bool,
    },
    /// Set up what running needs and build, then run tracer with ARGS (as root; via sudo if not root).
    Run {
        /// Build and run the debug profile instead of release.
        #[arg(long)]
        debug: bool,
        /// Arguments for tracer, e.g. `events --json`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Set up the tests' needs too, then fmt check, clippy, every test, the
    /// package check (`dist --verify`) and the kernel matrix (as CI does).
    ///
    /// ARGS go to the test harness after `--test-threads=1` (e.g. a name
    /// filter). To pass arguments to `cargo test` itself, put them before a
    /// second `--`: `cargo xtask test -- --test integration -- FILTER`.
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmark (needs root): fork, exec, thread and thread-burst storms,
    /// unpinned and pinned to CPU 0, untraced vs traced by `tracer daemon` with
    /// a subscriber, `tracer events --standalone`, bpftrace and `perf record`,
    /// interleaved; ops/s ratios, events delivered and lost, kernel ns per
    /// event (bpf_stats), CPU per event, daemon latency; then the start-up tree
    /// and the engine benchmark. Writes target/bench/bench.md and bench.json.
    Bench(bench::Args),
    /// Build the packages into target/dist/: a tarball (static stripped binary,
    /// man pages, completions, systemd unit, sysusers.d file, licences), a .deb
    /// (cargo-deb) and SHA256SUMS. With --verify, also install the .deb into a
    /// clean Debian 12 chroot and check it there (needs root).
    Dist(dist::Args),
    /// Fuzz every parser of hostile input (cargo-fuzz, libFuzzer) for --secs
    /// each; prints the executions per target, fails on a crash.
    Fuzz(fuzz::Args),
    /// The kernel matrix: the static tracer on Debian's 5.10, 6.1 and 6.12
    /// kernels under qemu and on this host, one table of cases (needs root).
    VmTest(vm::Args),
    /// Internal: one benchmark workload; prints one JSON line.
    #[command(hide = true)]
    BenchWorker {
        workload: bench::Workload,
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
        /// Pin the worker (and its children) to this CPU.
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// Internal: starts N idle threads, prints "ready", waits for stdin to close.
    #[command(hide = true)]
    HoldThreads { threads: usize },
    /// Internal: the test agent of vm-test, run inside each VM (and on the host):
    /// runs the cases (all, or those named) against the tracer, one line each.
    #[command(hide = true)]
    VmAgent {
        #[arg(long)]
        tracer: PathBuf,
        cases: Vec<String>,
    },
    /// Internal: one workload of the vm-test agent (`vm-worker MODE ARGS`).
    #[command(hide = true)]
    VmWorker {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Setup { test_deps } => setup::setup(if test_deps { Purpose::Test } else { Purpose::Run }),
        Task::Build { debug } => {
            setup::setup(Purpose::Build)?;
            if debug { build(true).map(|_| ()) } else { build_static().map(|_| ()) }
        }
        Task::Run { debug, args } => run(debug, &args),
        Task::Test { args } => test(&args),
        Task::Bench(args) => bench::bench(&args),
        Task::Dist(args) => dist::dist(&args),
        Task::Fuzz(args) => fuzz::fuzz(&args),
        Task::VmTest(args) => {
            setup::setup(Purpose::Run)?;
            vm::vm_test(&args)
        }
        Task::BenchWorker { workload, secs, cpu } => bench::worker(workload, secs, cpu),
        Task::HoldThreads { threads } => bench::hold_threads(threads),
        Task::VmAgent { tracer, cases } => vm::agent::run(&tracer, &cases),
        Task::VmWorker { args } => vm::agent::worker(&args),
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
    eprintln!("==> {}", util::display(&cmd));
    util::run(&mut cmd, "building tracer", "fix the errors above and rerun `cargo xtask build`")?;
    let bin = util::target_dir().join(if debug { "debug" } else { "release" }).join("tracer");
    if !bin.is_file() {
        bail!(
            "building tracer: cargo succeeded but {} does not exist; check CARGO_TARGET_DIR and .cargo/config.toml",
            bin.display()
        );
    }
    eprintln!("built: {}", bin.display());
    Ok(bin)
}

/// The target of the release binary: static, so that one file runs on any
/// distribution's libc, or none.
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-musl";

/// Builds the static release binary; returns its path.
pub fn build_static() -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["build", "--release", "-p", "tracer", "--target", STATIC_TARGET]);
    eprintln!("==> {}", util::display(&cmd));
    util::run(&mut cmd, "building the static tracer", "fix the errors above and rerun `cargo xtask build`")?;
    let bin = util::target_dir().join(STATIC_TARGET).join("release").join("tracer");
    if !bin.is_file() {
        bail!("building tracer: cargo succeeded but {} does not exist; check CARGO_TARGET_DIR", bin.display());
    }
    eprintln!("built: {} (static)", bin.display());
    Ok(bin)
}

/// Replaces this process with tracer (so signals and the exit code are
/// tracer's own).
fn run(debug: bool, args: &[OsString]) -> Result<()> {
    setup::setup(Purpose::Run)?;
    let bin = if debug { build(true)? } else { build_static()? };
    let mut cmd = if is_root() {
        Command::new(&bin)
    } else if let Some(sudo) = util::which("sudo") {
        eprintln!("note: not root: running tracer via sudo");
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
    eprintln!("==> {}", util::display(&cmd));
    std::io::stdout().flush().ok();
    let err = cmd.exec();
    Err(err).with_context(|| format!("running tracer: could not exec {}", bin.display()))
}

fn test(args: &[String]) -> Result<()> {
    setup::setup(Purpose::Test)?;
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
    // A name filter runs those tests alone; the package check and the kernel
    // matrix run with the whole suite.
    let whole = harness_args.is_empty() && cargo_args.is_empty();
    let n = steps.len() + 2 * usize::from(whole);
    for (i, (cmd, doing, fix)) in steps.into_iter().enumerate() {
        println!("==> [{}/{n}] {}", i + 1, util::display(cmd));
        util::run(cmd, doing, fix)?;
    }
    if whole {
        println!("==> [{}/{n}] cargo xtask dist --verify (the .deb in a clean Debian 12 chroot)", n - 1);
        dist::dist(&dist::Args { verify: true })?;
        println!(
            "==> [{n}/{n}] cargo xtask vm-test (the kernel matrix: Debian 5.10, 6.1, 6.12 under qemu, and this host)"
        );
        vm::vm_test(&vm::Args { kernel: Vec::new(), no_host: false, cases: Vec::new() })?;
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

        let cli = Cli::try_parse_from(["xtask", "fuzz", "--secs", "5", "keys"]).unwrap();
        let Task::Fuzz(f) = cli.task else { panic!("not fuzz") };
        assert_eq!((f.secs, f.targets), (5, vec!["keys".to_string()]));
        let Task::Fuzz(f) = Cli::try_parse_from(["xtask", "fuzz"]).unwrap().task else { panic!("not fuzz") };
        assert_eq!((f.secs, f.targets.len()), (30, 0));

        let cli = Cli::try_parse_from(["xtask", "run", "events", "--pid", "1"]).unwrap();
        let Task::Run { args, .. } = cli.task else { panic!("not run") };
        assert_eq!(args, ["events", "--pid", "1"]);
    }
}
