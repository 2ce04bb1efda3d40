//! `tracer events`: the lifecycle event stream, one line per event.
//!
//! Events pass through the tracker's engine before they are printed: it orders a
//! process exit after the exits of its threads, adds `reparent` events for
//! orphans, knows each process's ancestry for `--pid`, and repairs the tree after
//! lost records (the loss and each repair are printed too).

use std::{
    collections::BTreeMap,
    io::{self, Write},
    process::ExitCode,
};

use anyhow::Result;

use crate::{
    cli::EventsArgs,
    clock,
    engine::{Engine, GoneReason, Origin, Update},
    event::{Body, Event},
    output::{self, Line},
    tracker::{self, Step, Tracker},
};

pub async fn run(args: EventsArgs) -> Result<ExitCode> {
    let mut updates = Vec::with_capacity(4096);
    let mut tracker = Tracker::start(&args.kernel.options(), tracker::engine_config(), &mut updates).await?;
    updates.clear(); // the start-up walk is state, not events
    eprintln!("tracer: tracing process lifecycle events (Ctrl-C to stop)");

    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let boot = clock::boot_epoch_ns();
    let mut printer =
        Printer { json: args.json.then(|| output::JsonWriter::new(boot)), boot, buf: Vec::with_capacity(1 << 16) };
    if !args.json {
        printer.buf.extend_from_slice(output::text_header().as_bytes());
        printer.buf.push(b'\n');
    }
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let step = tokio::select! {
            s = tracker.step(&mut updates) => s?,
            _ = &mut ctrl_c => break,
            _ = term.recv() => break,
        };
        if let Step::Lost { lost, total, ts_ns } = step {
            *counts.entry("lost").or_default() += lost;
            printer.line(&Line::Lost { ts_ns, lost, total });
        }
        for u in updates.drain(..) {
            if let Some(name) = print_update(&args, &tracker.engine, &u, &mut printer) {
                *counts.entry(name).or_default() += 1;
            }
        }
        if let Err(e) = printer.flush(&mut out) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e.into());
        }
        if step == Step::Ended {
            break;
        }
    }
    let _ = printer.flush(&mut out);
    let lost = counts.remove("lost").unwrap_or(0);
    let total: u64 = counts.values().sum();
    let by_kind: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let stats = tracker.engine.stats();
    eprintln!(
        "tracer: {total} events ({}); lost {}; repairs {}; malformed {}",
        if by_kind.is_empty() { "none".to_string() } else { by_kind.join(", ") },
        stats.lost.max(lost),
        stats.repairs.added_processes + stats.repairs.removed_processes,
        tracker.reader_stats().malformed.load(std::sync::atomic::Ordering::Relaxed),
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints one update if the filters keep it; returns the kind printed.
fn print_update(args: &EventsArgs, engine: &Engine, u: &Update, printer: &mut Printer) -> Option<&'static str> {
    match u {
        Update::Event(ev) => {
            if matches!(ev.body, Body::Snapshot { .. }) || !wanted(args, engine, ev) {
                return None;
            }
            printer.line(&Line::Event(ev));
            Some(ev.body.name())
        }
        Update::Reparent { child, old_ppid, new_ppid, ts_ns } => {
            let p = engine.get(*child)?;
            if !in_scope(args, engine, child.pid) && !in_scope(args, engine, *old_ppid) {
                return None;
            }
            if let Some(comm) = &args.filter.comm
                && p.comm.as_bytes() != comm.as_bytes()
            {
                return None;
            }
            printer.line(&Line::Reparent {
                ts_ns: *ts_ns,
                child: *child,
                comm: p.comm,
                uid: p.uid,
                old_ppid: *old_ppid,
                new_ppid: *new_ppid,
            });
            Some("reparent")
        }
        Update::Added { proc, ts_ns, origin } => {
            let p = engine.get(*proc)?;
            if !in_scope(args, engine, proc.pid) {
                return None;
            }
            let what = match origin {
                // Its first event was not its fork: the fork was lost, or made by a
                // process the kernel hides from BPF programs (on some sandboxes, PID 1).
                Origin::Inferred => "added: first seen after its fork (the fork was not visible)",
                _ => "added: found alive by a repair walk, its fork was not seen",
            };
            printer.line(&Line::Repaired { ts_ns: *ts_ns, proc: *proc, comm: p.comm, uid: p.uid, ppid: p.ppid, what });
            Some("repair")
        }
        Update::Gone { proc, ts_ns, reason } => {
            let p = engine.get(*proc)?;
            if !in_scope(args, engine, proc.pid) {
                return None;
            }
            let what = match reason {
                GoneReason::PidReused => "ended: its pid now belongs to a newer process, its exit was not seen",
                GoneReason::NotInWalk => "ended: gone from the task list, its exit was not seen",
            };
            printer.line(&Line::Repaired { ts_ns: *ts_ns, proc: *proc, comm: p.comm, uid: p.uid, ppid: p.ppid, what });
            Some("repair")
        }
        Update::ThreadGone { .. } | Update::Dropped { .. } => None,
    }
}

/// Whether `pid` is the `--pid` process or one of its descendants (always, without `--pid`).
fn in_scope(args: &EventsArgs, engine: &Engine, pid: u32) -> bool {
    match args.filter.pid {
        None => true,
        Some(root) => pid == root || engine.is_descendant(pid, root),
    }
}

fn wanted(args: &EventsArgs, engine: &Engine, ev: &Event) -> bool {
    if args.no_threads && matches!(ev.body, Body::Clone { .. } | Body::ThreadExit { .. }) {
        return false;
    }
    if args.no_kthreads && ev.task.kthread {
        return false;
    }
    if let Some(comm) = &args.filter.comm {
        let now = ev.task.comm.as_bytes() == comm.as_bytes();
        let renamed = matches!(&ev.body, Body::Rename { new_comm } if new_comm.as_bytes() == comm.as_bytes());
        if !now && !renamed {
            return false;
        }
    }
    in_scope(args, engine, ev.task.pid)
}

/// Formats lines as text or JSON into a reused buffer.
struct Printer {
    json: Option<output::JsonWriter>,
    boot: i128,
    buf: Vec<u8>,
}

impl Printer {
    fn line(&mut self, line: &Line<'_>) {
        match &mut self.json {
            Some(w) => w.write(line, &mut self.buf),
            None => {
                self.buf.extend_from_slice(output::text(line, self.boot).as_bytes());
                self.buf.push(b'\n');
            }
        }
    }

    fn flush(&mut self, out: &mut impl Write) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        out.write_all(&self.buf)?;
        self.buf.clear();
        out.flush()
    }
}
