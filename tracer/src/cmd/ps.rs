//! `tracer ps`.

use std::process::ExitCode;

use anyhow::Result;

use crate::{cli::PsArgs, event::Body, session::Session};

pub async fn run(args: PsArgs) -> Result<ExitCode> {
    let mut session = Session::start(&args.kernel.options())?;
    let walk = session.walk().await?;
    for ev in &walk.snapshot {
        if let Body::Snapshot { argv, exe, .. } = &ev.body {
            println!("{} {} {} {} {} {}", ev.task.pid, ev.task.tid, ev.task.ppid, ev.task.comm, exe, argv.joined());
        }
    }
    eprintln!("{} tasks, {} live events, malformed {}", walk.snapshot.len(), walk.live.len(), walk.malformed);
    Ok(ExitCode::SUCCESS)
}
