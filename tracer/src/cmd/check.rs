//! `tracer check`: what this kernel supports, and which tracer features are
//! full, degraded (and why) or missing. The programs are loaded for real (and
//! unloaded at exit): what the kernel takes is the answer, not a version number.

use std::process::ExitCode;

use anyhow::Result;

use crate::{
    bpf::{self, btf::KernelBtf, features},
    cli::CheckArgs,
};

pub async fn run(args: CheckArgs) -> Result<ExitCode> {
    let kernel = match tokio::task::block_in_place(|| bpf::Kernel::load(&args.kernel.options())) {
        Ok(k) => k,
        Err(e) => {
            // Nothing could be probed: say why, and what BTF alone tells.
            let predicted = KernelBtf::load().map(|b| features::predict(&b)).unwrap_or_else(|e| e.to_string());
            if args.json {
                let v = serde_json::json!({"error": format!("{e:#}"), "predicted_mode": predicted});
                println!("{v}");
            } else {
                println!("tracer could not load its programs: {e:#}");
                println!("mode predicted from the kernel's BTF: {predicted}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let f = &kernel.features;
    if args.json {
        println!("{}", f.json());
        return Ok(ExitCode::SUCCESS);
    }
    println!("kernel   {}", f.kernel);
    println!("mode     {}", f.mode());
    println!();
    let report = f.report();
    let width = report.iter().map(|x| x.name.len()).max().unwrap_or(0);
    for x in &report {
        match &x.why {
            None => println!("  {:width$}  {}", x.name, x.status),
            Some(why) => println!("  {:width$}  {}: {why}", x.name, x.status),
        }
    }
    println!();
    let iter = match f.iterator {
        features::Iterator::Sleepable => "sleepable, with bpf_copy_from_user_task",
        features::Iterator::NoArgv => "not sleepable (no argv)",
        features::Iterator::None => "none",
    };
    println!("probes: task iterator {iter}; iterator walks filtered to one process: {}", yes(f.iter_pid_filter));
    println!(
        "        sched_process_exit passes group_dead: {}; RSS counters: {}; subreaper bits: {}",
        yes(f.exit_group_dead_arg),
        yes(f.rss),
        yes(f.subreapers)
    );
    for (prog, why) in &f.refused {
        println!("refused: {prog}: {why}");
    }
    Ok(ExitCode::SUCCESS)
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// `tracer --version`: the build, and the mode this kernel would run in (from
/// its BTF: no privileges needed).
pub fn version() -> String {
    let build = if cfg!(target_env = "musl") { "static build" } else { "dynamic build" };
    let mut out = format!("tracer {} ({build}, {})", env!("CARGO_PKG_VERSION"), std::env::consts::ARCH);
    match KernelBtf::load() {
        Ok(btf) => out.push_str(&format!(
            "\nkernel {}: mode {} (from its BTF; `tracer check` probes by loading)",
            btf.release().unwrap_or_else(|| "?".into()),
            features::predict(&btf)
        )),
        Err(e) => out.push_str(&format!("\nthis kernel: {e}")),
    }
    out
}
