//! `tracer stats`: the daemon's counters, or a short in-process measurement.

use std::{process::ExitCode, time::Duration};

use anyhow::Result;
use serde_json::{Value, json};

use crate::{
    cli::StatsArgs,
    daemon::{client::Client, protocol::Request},
    tracker::{self, Tracker},
};

pub async fn run(args: StatsArgs) -> Result<ExitCode> {
    let stats = if !args.client.standalone
        && let Some(mut client) = Client::connect(&args.client.socket).await?
    {
        client.request(&Request::Stats).await?.get("stats").cloned().unwrap_or(Value::Null)
    } else {
        // No daemon: run the engine for one second and report what it saw.
        let mut updates = Vec::new();
        let mut tracker = Tracker::start(&args.kernel.options(), tracker::engine_config(), &mut updates).await?;
        let end = tokio::time::Instant::now() + Duration::from_secs(1);
        while tokio::time::Instant::now() < end {
            updates.clear();
            tokio::select! {
                input = tracker.next_input() => { tracker.handle(input, &mut updates).await?; }
                _ = tokio::time::sleep_until(end) => {}
            }
        }
        let s = tracker.engine.stats();
        json!({
            "uptime_s": 1.0,
            "events_total": s.applied,
            "lost": s.lost,
            "degraded": s.degraded,
            "repairs": s.repairs,
            "walks": s.walks,
            "processes": s.processes,
            "threads": s.threads,
            "exited_kept": s.exited,
        })
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else if let Value::Object(m) = &stats {
        for (k, v) in m {
            println!("{k:<14} {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
