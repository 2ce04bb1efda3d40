//! The `tracer` binary: parses arguments and runs a command.

use clap::Parser;
use tracer::cli::{Cli, Command};

#[global_allocator]
static GLOBAL: tracer::alloc::Allocator = tracer::alloc::ALLOCATOR;

fn main() -> std::process::ExitCode {
    if let Some(code) = tracer::cmd::generate::from_args() {
        return code;
    }
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).format_timestamp(None).init();
    // One worker thread, and the command runs on it (spawned, not in block_on on
    // the main thread): the ring buffer reader and the engine then hand batches
    // over without waking another thread. Blocking walks (block_in_place) move the
    // other tasks to a second thread while they run, so reading never stops.
    // Every thread registers itself, so that the daemon can drop capabilities in
    // all of them (daemon/privileges.rs).
    tracer::daemon::privileges::register_thread();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(tracer::daemon::privileges::register_thread)
        .on_thread_stop(tracer::daemon::privileges::unregister_thread)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tracer: error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let Some(command) = cli.command else {
        // clap prints the help when there are no arguments at all: only --version is left.
        println!("{}", tracer::cmd::check::version());
        return std::process::ExitCode::SUCCESS;
    };
    let result = runtime.block_on(async {
        tokio::spawn(async move {
            match command {
                Command::Events(args) => tracer::cmd::events::run(args).await,
                Command::Ps(args) => tracer::cmd::ps::run(args).await,
                Command::Daemon(args) => tracer::daemon::server::run(args).await,
                Command::Stats(args) => tracer::cmd::stats::run(args).await,
                Command::Containers(args) => tracer::cmd::containers::run(args).await,
                Command::Check(args) => tracer::cmd::check::run(args).await,
                Command::Watch(args) => tracer::watch::run(args).await,
            }
        })
        .await
    });
    let result = result.unwrap_or_else(|e| Err(anyhow::anyhow!("the command's task failed: {e}")));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tracer: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
