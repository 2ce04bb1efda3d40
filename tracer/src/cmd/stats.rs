//! `tracer stats`: the daemon's counters, or a short in-process measurement.

use std::{process::ExitCode, time::Duration};

use anyhow::Result;
use serde_json::Value;

use crate::{
    cli::StatsArgs,
    daemon::{
        client::Client,
        protocol::Request,
        server::{Rates, stats_json},
    },
    engine::Update,
    escape,
    tracker::{self, Tracker},
};

pub async fn run(args: StatsArgs) -> Result<ExitCode> {
    let stats = if !args.client.standalone
        && let Some(mut client) = Client::connect(&args.client.socket).await?
    {
        client.request(&Request::Stats).await?.get("stats").cloned().unwrap_or(Value::Null)
    } else {
        // No daemon: run the engine for one second and report what it saw.
        let started = std::time::Instant::now();
        let mut updates = Vec::new();
        let mut tracker = Tracker::start(&args.kernel.options(), tracker::engine_config(), &mut updates).await?;
        let mut rates = Rates::default();
        let end = tokio::time::Instant::now() + Duration::from_secs(1);
        while tokio::time::Instant::now() < end {
            updates.clear();
            tokio::select! {
                input = tracker.next_input() => { tracker.handle(input, &mut updates).await?; }
                _ = tokio::time::sleep_until(end) => {}
            }
            rates.roll(std::time::Instant::now());
            for u in &updates {
                if let Update::Event(ev) = u {
                    rates.count(ev.body.kind(), 1);
                }
            }
        }
        stats_json(&tracker, &rates, started)
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else if let Value::Object(m) = &stats {
        // Values as JSON text, escaped as every text view is (no counter is the
        // traced world's today; this keeps it so if one ever is).
        for (k, v) in m {
            println!("{k:<14} {}", escape::text(&v.to_string()));
        }
    }
    Ok(ExitCode::SUCCESS)
}
