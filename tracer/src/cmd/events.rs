//! `tracer events`: the lifecycle event stream, one line per event.

use std::{
    collections::BTreeMap,
    io::{self, Write},
    process::ExitCode,
};

use anyhow::Result;

use crate::{
    bpf::reader::Message,
    cli::EventsArgs,
    clock,
    event::{Body, Event},
    output::{self, Line},
    session::Session,
};

pub async fn run(args: EventsArgs) -> Result<ExitCode> {
    let mut session = Session::start(&args.kernel.options())?;
    let boot = clock::boot_epoch_ns();
    eprintln!("tracer: tracing process lifecycle events (Ctrl-C to stop)");
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    if !args.json {
        writeln!(out, "{}", output::text_header())?;
        out.flush()?;
    }
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut last_lost = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let msg = tokio::select! {
            m = session.rx.recv() => m,
            _ = &mut ctrl_c => break,
            _ = term.recv() => break,
        };
        let Some(msg) = msg else { break };
        let res = match msg {
            Message::Events(evs) => {
                let mut r = Ok(());
                for ev in &evs {
                    if !wanted(&args, ev) {
                        continue;
                    }
                    *counts.entry(ev.body.name()).or_default() += 1;
                    r = write_line(&mut out, &Line::Event(ev), args.json, boot);
                    if r.is_err() {
                        break;
                    }
                }
                r
            }
            Message::Lost { total } => {
                let lost = total - last_lost;
                last_lost = total;
                write_line(&mut out, &Line::Lost { ts_ns: clock::boot_now_ns(), lost, total }, args.json, boot)
            }
        };
        if let Err(e) = res.and_then(|()| out.flush()) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e.into());
        }
    }
    let _ = out.flush();
    let total: u64 = counts.values().sum();
    let by_kind: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let stats = &session.stats;
    eprintln!(
        "tracer: {total} events ({}); lost {}; malformed {}",
        if by_kind.is_empty() { "none".to_string() } else { by_kind.join(", ") },
        stats.lost.load(std::sync::atomic::Ordering::Relaxed),
        stats.malformed.load(std::sync::atomic::Ordering::Relaxed),
    );
    Ok(ExitCode::SUCCESS)
}

fn wanted(args: &EventsArgs, ev: &Event) -> bool {
    if args.no_threads && matches!(ev.body, Body::Clone { .. } | Body::ThreadExit { .. }) {
        return false;
    }
    if args.no_kthreads && ev.task.kthread {
        return false;
    }
    if let Some(comm) = &args.filter.comm
        && ev.task.comm.as_bytes() != comm.as_bytes()
    {
        return false;
    }
    true
}

fn write_line(out: &mut impl Write, line: &Line<'_>, json: bool, boot: i128) -> io::Result<()> {
    let s = if json { output::json(line, boot) } else { output::text(line, boot) };
    out.write_all(s.as_bytes())?;
    out.write_all(b"\n")
}
