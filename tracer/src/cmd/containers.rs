//! `tracer containers`: `docker ps` seen from the kernel.

use std::{fmt::Write as _, process::ExitCode};

use anyhow::Result;
use serde_json::Value;

use crate::{
    cli::ContainersArgs,
    clock, containers,
    daemon::{client::Client, protocol::Request},
    escape,
    tracker::{self, Tracker},
};

pub async fn run(args: ContainersArgs) -> Result<ExitCode> {
    let list = if !args.client.standalone
        && let Some(mut client) = Client::connect(&args.client.socket).await?
    {
        client.request(&Request::Containers).await?.get("containers").cloned().unwrap_or(Value::Null)
    } else {
        let mut updates = Vec::new();
        let tracker = Tracker::start(&args.kernel.options(), tracker::engine_config(), &mut updates).await?;
        let enrich = args.state.enricher();
        serde_json::to_value(containers::list(&tracker.engine, &tracker.cgroups, &enrich))?
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        print!("{}", table(&list, args.no_trunc));
    }
    Ok(ExitCode::SUCCESS)
}

/// The text table, from the JSON list (the same whether a daemon made it or not).
/// Every string is escaped (see [`escape`]): ids, names and images are the
/// traced world's.
pub fn table(list: &Value, no_trunc: bool) -> String {
    let boot = clock::boot_epoch_ns();
    let s = |v: &Value, k: &str| escape::text(v.get(k).and_then(Value::as_str).unwrap_or("-")).into_owned();
    let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let rows: Vec<[String; 9]> = list
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let id = if no_trunc { s(c, "id") } else { s(c, "short_id") };
            let pod =
                c.pointer("/pod/uid").and_then(Value::as_str).map_or("-".to_string(), |u| escape::text(u).into_owned());
            [
                id,
                s(c, "runtime"),
                s(c, "name"),
                s(c, "image"),
                pod,
                format!("{}/{}", n(c, "init_pid"), n(c, "init_ns_pid")),
                clock::format_start(boot, n(c, "started_ns")),
                format!("{}/{}", n(c, "processes"), n(c, "threads")),
                s(c, "state"),
            ]
        })
        .collect();
    let head = ["CONTAINER ID", "RUNTIME", "NAME", "IMAGE", "POD", "INIT PID/NS", "STARTED", "PROCS/THR", "STATE"];
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                let _ = write!(out, "{c}");
            } else {
                let _ = write!(out, "{c:<width$}  ", width = w[i]);
            }
        }
        out.push('\n');
    };
    line(&mut out, &head);
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        line(&mut out, &cells);
    }
    out
}
