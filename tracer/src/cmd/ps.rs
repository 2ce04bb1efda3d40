//! `tracer ps`: the process tree as the kernel has it, built from a task
//! iterator walk merged with the events that raced with it (never /proc).

use std::{io::Write, process::ExitCode};

use anyhow::Result;

use crate::{
    cli::PsArgs,
    clock,
    daemon::{
        client::Client,
        protocol::{Filter, Request, SnapshotFormat},
    },
    events::select::CommGlob,
    render::{self, Containers, Grouping, RenderOptions},
    tracker::{self, Tracker},
};

pub async fn run(args: PsArgs) -> Result<ExitCode> {
    if let Some(c) = &args.container
        && c.trim().is_empty()
    {
        anyhow::bail!("--container needs a container's short id, id prefix or name");
    }
    if !args.client.standalone
        && let Some(mut client) = Client::connect(&args.client.socket).await?
    {
        if !args.state.docker_root.is_empty() {
            eprintln!("tracer: note: --docker-root is ignored through the daemon (it reads its own --docker-root)");
        }
        let format = match (args.json, args.threads) {
            (true, _) => SnapshotFormat::Json,
            (false, true) => SnapshotFormat::Threads,
            (false, false) => SnapshotFormat::Forest,
        };
        let filter = Filter {
            pid: args.filter.pid,
            comm: args.filter.comm.clone(),
            user: args.user.clone(),
            container: args.container.clone(),
            pid_must_live: args.filter.pid.is_some(),
            ..Filter::default()
        };
        let request = Request::Snapshot { format, filter, show_exited: false, by_container: args.containers };
        let v = client.request(&request).await?;
        let text = match v.get("text").and_then(serde_json::Value::as_str) {
            Some(t) => t.to_string(),
            None => {
                let snap = v.get("snapshot").ok_or_else(|| anyhow::anyhow!("the daemon sent no snapshot"))?;
                let degraded = snap.get("degraded").and_then(serde_json::Value::as_bool) == Some(true);
                if degraded {
                    eprintln!(
                        "tracer: warning: the daemon lost events and is repairing its tree; it may be incomplete"
                    );
                }
                let mut s = serde_json::to_string_pretty(snap)?;
                s.push('\n');
                s
            }
        };
        write_out(&text)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut updates = Vec::new();
    let t0 = std::time::Instant::now();
    let mut tracker = Tracker::start(&args.kernel.options(), tracker::engine_config(), &mut updates).await?;
    log::debug!("tree built in {:?}", t0.elapsed());
    // Release what the walk left pending (process exits held for thread exits).
    tracker.engine.tick(clock::boot_now_ns(), &mut updates);
    if let Some(pid) = args.filter.pid
        && tracker.engine.process(pid).is_none_or(|p| !p.is_alive())
    {
        anyhow::bail!("no process with pid {pid} is running");
    }
    let comm = args.filter.comm.as_deref().map(CommGlob::new).transpose().map_err(anyhow::Error::msg)?;
    let filter = render::Filter { pid: args.filter.pid, comm, user: args.user.clone() };
    let grouping = Grouping { by_container: args.containers, container: args.container.clone() };
    let enrich = args.state.enricher();
    let cx = Containers::build(&tracker.engine, &tracker.cgroups, |c| enrich.lookup(c));
    let opts = RenderOptions::local(false);
    let engine = &tracker.engine;
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&render::json_in(engine, &cx, &filter, &grouping, &opts))?;
        s.push('\n');
        s
    } else if args.threads {
        render::threads_in(engine, &cx, &filter, &grouping, &opts)
    } else {
        render::forest_in(engine, &cx, &filter, &grouping, &opts)
    };
    write_out(&text)?;
    if tracker.engine.degraded() {
        eprintln!("tracer: warning: events were lost while the tree was built; it may be incomplete");
    }
    Ok(ExitCode::SUCCESS)
}

fn write_out(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
