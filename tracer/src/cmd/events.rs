//! `tracer events`: the lifecycle event stream, one line per event.
//!
//! Events pass through the engine before they are printed: it orders a process
//! exit after the exits of its threads, adds `reparent` events for orphans, knows
//! each process's ancestry for `--pid`, and repairs the tree after lost records
//! (the loss and each repair are printed too). With a daemon running, the daemon's
//! engine does this and the command only prints.

use std::{
    collections::BTreeMap,
    io::{self, Write},
    process::ExitCode,
};

use anyhow::Result;
use serde_json::Value;

use crate::{
    cli::EventsArgs,
    clock,
    daemon::{
        client::{self, Client},
        protocol::{LineFormat, Request},
    },
    events::format::{self, Line},
    events::select::{self, ContainerScope, Selector},
    shutdown::Shutdown,
    story::Stories,
    tracker::{self, Outcome, Tracker},
};

pub async fn run(args: EventsArgs) -> Result<ExitCode> {
    if !args.client.standalone
        && let Some(client) = Client::connect(&args.client.socket).await?
    {
        return from_daemon(args, client).await;
    }
    // Handle Ctrl-C from before the "tracing" line on: a stop right after it
    // still ends with the summary.
    let mut stop = Shutdown::new()?;
    let mut updates = Vec::with_capacity(4096);
    let mut tracker = Tracker::start(&args.kernel.options(), tracker::engine_config(), &mut updates).await?;
    updates.clear(); // the start-up walk is state, not events
    let filter = Selector::new(&args.stream_filter(), &tracker.engine).map_err(anyhow::Error::msg)?;
    eprintln!("tracer: tracing process lifecycle events (Ctrl-C to stop)");

    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout);
    let mut printer = Printer::new(args.json);
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let enrich = args.state.enricher();
    let mut scope = args.container.as_deref().map(|q| ContainerScope::new(q, enrich.clone()));
    if args.containers {
        return stories(args, tracker, stop, updates, clock::WallMap::system(), scope, enrich).await;
    }
    loop {
        let step = tokio::select! {
            input = tracker.next_input() => tracker.handle(input, &mut updates).await?,
            _ = stop.wait() => break,
        };
        if let Outcome::Lost { lost, total, ts_ns } = step {
            *counts.entry("lost").or_default() += lost;
            printer.line(&Line::Lost { ts_ns, lost, total });
        }
        for u in updates.drain(..) {
            if let Some(line) = select::line_for(&tracker.engine, &filter, &u)
                && scope.as_mut().is_none_or(|s| s.admits(&tracker.engine, &tracker.cgroups, &u))
            {
                *counts.entry(line.kind()).or_default() += 1;
                printer.line(&line);
            }
        }
        if let Err(e) = printer.flush(&mut out) {
            return write_failed(e);
        }
        if step == Outcome::Ended {
            break;
        }
    }
    updates.clear();
    tracker.finish(&mut updates).await;
    for u in updates.drain(..) {
        if let Some(line) = select::line_for(&tracker.engine, &filter, &u)
            && scope.as_mut().is_none_or(|s| s.admits(&tracker.engine, &tracker.cgroups, &u))
        {
            *counts.entry(line.kind()).or_default() += 1;
            printer.line(&line);
        }
    }
    if let Err(e) = printer.flush(&mut out) {
        return write_failed(e);
    }
    let stats = tracker.engine.stats();
    let malformed = tracker.reader_stats().malformed.load(std::sync::atomic::Ordering::Relaxed);
    summary(&mut counts, stats.lost, stats.repairs.added_processes + stats.repairs.removed_processes, malformed);
    Ok(ExitCode::SUCCESS)
}

/// `--containers`: container starts and stops as stories.
async fn stories(
    args: EventsArgs,
    mut tracker: Tracker,
    mut stop: Shutdown,
    mut updates: Vec<crate::engine::Update>,
    boot: clock::WallMap,
    scope: Option<ContainerScope>,
    enrich: crate::containers::Enricher,
) -> Result<ExitCode> {
    let mut stories = Stories::new(enrich);
    let mut told = Vec::new();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout);
    let mut finishing = false;
    loop {
        let step = if finishing {
            Outcome::Ended
        } else {
            tokio::select! {
                input = tracker.next_input() => tracker.handle(input, &mut updates).await?,
                _ = stop.wait() => {
                    finishing = true;
                    updates.clear();
                    tracker.finish(&mut updates).await;
                    Outcome::Ended
                }
            }
        };
        if let Outcome::Lost { lost, .. } = step {
            *counts.entry("lost").or_default() += lost;
            eprintln!("tracer: {lost} events lost; stories under way may miss stages");
        }
        for u in updates.drain(..) {
            stories.update(&tracker.engine, &tracker.cgroups, &u);
        }
        // On the way out, tell what is under way now rather than after the settle time.
        let now = if step == Outcome::Ended { u64::MAX / 2 } else { clock::boot_now_ns() };
        stories.tick(now, &mut told);
        for s in told.drain(..) {
            if scope.as_ref().is_some_and(|sc| !sc.admits_story(&s)) {
                continue;
            }
            *counts.entry(s.kind()).or_default() += 1;
            let written = if args.json {
                let mut v = serde_json::to_value(&s)?;
                if let Some(m) = v.as_object_mut() {
                    m.insert("time".into(), clock::format_rfc3339(boot.offset(), s.ts_ns()).into());
                }
                serde_json::to_writer(&mut out, &v).map_err(io::Error::from).and_then(|()| writeln!(out))
            } else {
                writeln!(out, "{}", s.text(boot.offset()))
            };
            if let Err(e) = written.and_then(|()| out.flush()) {
                return write_failed(e);
            }
        }
        if step == Outcome::Ended {
            break;
        }
    }
    let lost = counts.remove("lost").unwrap_or(0);
    eprintln!(
        "tracer: {} container starts, {} stops; lost {lost}",
        counts.get("container_start").unwrap_or(&0),
        counts.get("container_stop").unwrap_or(&0)
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints a daemon subscription.
async fn from_daemon(args: EventsArgs, mut client: Client) -> Result<ExitCode> {
    let mut stop = Shutdown::new()?;
    let format = if args.json { LineFormat::Json } else { LineFormat::Text };
    client.request(&Request::Subscribe { format, filter: args.stream_filter() }).await?;
    eprintln!(
        "tracer: tracing process lifecycle events through the daemon at {} (Ctrl-C to stop)",
        args.client.socket.display()
    );
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout);
    if !args.json
        && !args.containers
        && let Err(e) = writeln!(out, "{}", format::text_header())
    {
        return write_failed(e);
    }
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    loop {
        // Flush only when no further line is waiting: one write per batch.
        if !client.has_buffered()
            && let Err(e) = out.flush()
        {
            return write_failed(e);
        }
        let line = tokio::select! {
            l = client.next_line() => l?,
            _ = stop.wait() => break,
        };
        let Some(line) = line else {
            eprintln!("tracer: the daemon closed the stream");
            break;
        };
        let written = match line {
            client::Line::Event { kind, json } => {
                // Passed on as the daemon wrote it (already escaped JSON).
                *counts.entry(intern(kind)).or_default() += 1;
                out.write_all(json).and_then(|()| out.write_all(b"\n"))
            }
            client::Line::Other(v) => print_other(&mut out, &client::check(v)?, args.json, &mut counts),
        };
        if let Err(e) = written {
            return write_failed(e);
        }
    }
    if let Err(e) = out.flush() {
        return write_failed(e);
    }
    let lost = counts.get("lost").copied().unwrap_or(0);
    let repairs = counts_repairs(&counts);
    // The daemon's own counter of malformed records, over a second connection.
    let mut malformed = 0;
    if let Ok(Some(mut c)) = Client::connect(&args.client.socket).await
        && let Ok(v) = c.request(&Request::Stats).await
    {
        malformed = v.pointer("/stats/malformed").and_then(Value::as_u64).unwrap_or(0);
    }
    summary(&mut counts, lost, repairs, malformed);
    Ok(ExitCode::SUCCESS)
}

/// Prints a subscription line that is not a plain event: a missed-lines notice,
/// a story, an event as an object, or a text line.
fn print_other(
    out: &mut impl Write,
    v: &Value,
    json: bool,
    counts: &mut BTreeMap<&'static str, u64>,
) -> io::Result<()> {
    if let Some(missed) = v.get("missed").and_then(Value::as_u64) {
        // This client fell behind the daemon: say so, in the stream's own form.
        *counts.entry("missed").or_default() += missed;
        if json {
            serde_json::to_writer(&mut *out, &serde_json::json!({"kind": "missed", "missed": missed}))?;
            writeln!(out)
        } else {
            writeln!(out, "MISSED      {missed} events were not delivered to this client (it read too slowly)")
        }
    } else if let Some(obj) = v.get("story").or_else(|| v.get("event")) {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("?");
        *counts.entry(intern(kind)).or_default() += 1;
        serde_json::to_writer(&mut *out, obj)?;
        writeln!(out)
    } else if let Some(text) = v.get("text").and_then(Value::as_str) {
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or("?");
        *counts.entry(intern(kind)).or_default() += 1;
        writeln!(out, "{text}")
    } else {
        Ok(())
    }
}

/// A write to stdout failed. A reader that went away (piped into `head`) ends
/// the stream quietly; anything else (a full disk, an I/O error) is an error
/// that names the cause, and the command exits non-zero: events that could not
/// be written are never dropped silently.
fn write_failed(e: io::Error) -> Result<ExitCode> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return Ok(ExitCode::SUCCESS);
    }
    Err(anyhow::Error::new(e).context("writing events to stdout"))
}

fn counts_repairs(counts: &BTreeMap<&'static str, u64>) -> u64 {
    counts.get("repair").copied().unwrap_or(0)
}

/// A kind's name as the registry has it (`events::kinds`), "other" for one this
/// build does not know (a newer daemon's).
fn intern(kind: &str) -> &'static str {
    crate::events::kinds::index(kind).map_or("other", crate::events::kinds::name)
}

/// The closing line on stderr: events by kind, lost, repairs, malformed records.
fn summary(counts: &mut BTreeMap<&'static str, u64>, lost: u64, repairs: u64, malformed: u64) {
    counts.remove("lost");
    let total: u64 = counts.values().sum();
    let by_kind: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    eprintln!(
        "tracer: {total} events ({}); lost {lost}; repairs {repairs}; malformed {malformed}",
        if by_kind.is_empty() { "none".to_string() } else { by_kind.join(", ") },
    );
}

/// Formats lines as text or JSON into a reused buffer.
struct Printer {
    json: Option<format::JsonWriter>,
    boot: clock::WallMap,
    buf: Vec<u8>,
}

impl Printer {
    fn new(json: bool) -> Printer {
        let writer = json.then(|| format::JsonWriter::new(clock::WallMap::system()));
        let mut p = Printer { json: writer, boot: clock::WallMap::system(), buf: Vec::with_capacity(1 << 16) };
        if !json {
            p.buf.extend_from_slice(format::text_header().as_bytes());
            p.buf.push(b'\n');
        }
        p
    }

    fn line(&mut self, line: &Line<'_>) {
        match &mut self.json {
            Some(w) => w.write(line, &mut self.buf),
            None => {
                self.buf.extend_from_slice(format::text(line, self.boot.offset()).as_bytes());
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
