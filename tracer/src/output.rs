//! How `tracer events` prints an event: one aligned text line or one JSON line.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    clock,
    event::{Argv, Body, Comm, Event, ExitStatus, ProcRef, TaskInfo},
    users,
};

/// Something the event stream shows: a kernel event, or one the tracker derived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    Event(&'a Event),
    /// A process was moved to a new parent because its parent exited.
    Reparent {
        ts_ns: u64,
        child: ProcRef,
        comm: Comm,
        uid: u32,
        old_ppid: u32,
        new_ppid: u32,
    },
    /// The kernel side could not write `lost` records.
    Lost {
        ts_ns: u64,
        lost: u64,
        total: u64,
    },
}

/// The text header matching [`text`].
pub fn text_header() -> String {
    format!(
        "{:<12} {:<11} {:>7} {:>7} {:>7} {:<9} {:<16} {}",
        "TIME", "EVENT", "PID", "TID", "PPID", "USER", "COMM", "DETAILS"
    )
}

fn comm_shown(task: &TaskInfo) -> String {
    if task.kthread { format!("[{}]", task.comm) } else { task.comm.to_string() }
}

fn argv_text(out: &mut String, argv: &Argv) {
    out.push_str(&argv.joined());
    if argv.truncated {
        let _ = write!(out, " [argv truncated: {} of {} bytes]", argv.raw.len(), argv.real_len);
    }
    if argv.unreadable {
        out.push_str(" [argv unreadable]");
    }
}

/// One aligned text line.
pub fn text(line: &Line<'_>, boot_epoch_ns: i128) -> String {
    let mut out = String::with_capacity(128);
    match line {
        Line::Event(ev) => {
            let t = &ev.task;
            let _ = write!(
                out,
                "{:<12} {:<11} {:>7} {:>7} {:>7} {:<9} {:<16} ",
                clock::format_time_ms(boot_epoch_ns, ev.ts_ns),
                ev.body.name(),
                t.pid,
                t.tid,
                t.ppid,
                users::name(t.uid),
                comm_shown(t),
            );
            match &ev.body {
                Body::Fork { creator_tid } => {
                    let _ = write!(out, "new process, forked by tid {creator_tid}");
                }
                Body::Clone { creator_tid } => {
                    let _ = write!(out, "new thread, created by tid {creator_tid}");
                }
                Body::Exec { old_tid, filename, filename_truncated, argv } => {
                    out.push_str(filename);
                    if *filename_truncated {
                        out.push_str("[...]");
                    }
                    out.push_str(": ");
                    argv_text(&mut out, argv);
                    if *old_tid != t.tid {
                        let _ = write!(out, " (exec from thread {old_tid})");
                    }
                }
                Body::ThreadExit { status } | Body::ProcessExit { status, .. } => {
                    let _ = write!(out, "{status}");
                }
                Body::Rename { new_comm } => {
                    let _ = write!(out, "{} -> {}", t.comm, new_comm);
                }
                Body::Snapshot { argv, .. } => argv_text(&mut out, argv),
            }
            if t.ns_pid != t.pid && t.ns_pid != 0 {
                let _ = write!(out, " [ns pid {}]", t.ns_pid);
            }
        }
        Line::Reparent { ts_ns, child, comm, uid, old_ppid, new_ppid } => {
            let _ = write!(
                out,
                "{:<12} {:<11} {:>7} {:>7} {:>7} {:<9} {:<16} parent {} exited, adopted by {}",
                clock::format_time_ms(boot_epoch_ns, *ts_ns),
                "reparent",
                child.pid,
                child.pid,
                new_ppid,
                users::name(*uid),
                comm.to_string(),
                old_ppid,
                new_ppid
            );
        }
        Line::Lost { ts_ns, lost, total } => {
            let _ = write!(
                out,
                "{:<12} {:<11} {lost} events lost (ring buffer full; {total} in all): raise --ringbuf-size",
                clock::format_time_ms(boot_epoch_ns, *ts_ns),
                "LOST",
            );
        }
    }
    out
}

#[derive(Serialize)]
struct JsonEvent<'a> {
    kind: &'static str,
    time: String,
    ts_ns: u64,
    cpu: u32,
    #[serde(flatten)]
    task: &'a TaskInfo,
    user: std::borrow::Cow<'static, str>,
    #[serde(flatten)]
    body: JsonBody<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonBody<'a> {
    Creator {
        creator_tid: u32,
    },
    Exec {
        old_tid: u32,
        filename: &'a str,
        filename_truncated: bool,
        argv: &'a Argv,
        argv_len: usize,
        argv_real_len: u32,
        argv_truncated: bool,
        argv_unreadable: bool,
    },
    Exit {
        status: ExitStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        reaper: Option<ProcRef>,
    },
    Rename {
        new_comm: Comm,
    },
    Snapshot {
        utime_ns: u64,
        stime_ns: u64,
        rss_pages: u64,
        exe: &'a str,
        argv: &'a Argv,
        zombie: bool,
    },
}

#[derive(Serialize)]
struct JsonReparent {
    kind: &'static str,
    time: String,
    ts_ns: u64,
    pid: u32,
    proc_start_ns: u64,
    comm: Comm,
    uid: u32,
    old_ppid: u32,
    ppid: u32,
}

#[derive(Serialize)]
struct JsonLost {
    kind: &'static str,
    time: String,
    ts_ns: u64,
    lost: u64,
    total: u64,
}

/// One JSON object (no newline).
pub fn json(line: &Line<'_>, boot_epoch_ns: i128) -> String {
    let r = match line {
        Line::Event(ev) => {
            let body = match &ev.body {
                Body::Fork { creator_tid } | Body::Clone { creator_tid } => {
                    JsonBody::Creator { creator_tid: *creator_tid }
                }
                Body::Exec { old_tid, filename, filename_truncated, argv } => JsonBody::Exec {
                    old_tid: *old_tid,
                    filename,
                    filename_truncated: *filename_truncated,
                    argv,
                    argv_len: argv.raw.len(),
                    argv_real_len: argv.real_len,
                    argv_truncated: argv.truncated,
                    argv_unreadable: argv.unreadable,
                },
                Body::ThreadExit { status } => JsonBody::Exit { status: *status, reaper: None },
                Body::ProcessExit { status, reaper } => JsonBody::Exit { status: *status, reaper: *reaper },
                Body::Rename { new_comm } => JsonBody::Rename { new_comm: *new_comm },
                Body::Snapshot { utime_ns, stime_ns, rss_pages, exe, argv, zombie } => JsonBody::Snapshot {
                    utime_ns: *utime_ns,
                    stime_ns: *stime_ns,
                    rss_pages: *rss_pages,
                    exe,
                    argv,
                    zombie: *zombie,
                },
            };
            serde_json::to_string(&JsonEvent {
                kind: ev.body.name(),
                time: clock::format_rfc3339(boot_epoch_ns, ev.ts_ns),
                ts_ns: ev.ts_ns,
                cpu: ev.cpu,
                task: &ev.task,
                user: users::name(ev.task.uid),
                body,
            })
        }
        Line::Reparent { ts_ns, child, comm, uid, old_ppid, new_ppid } => serde_json::to_string(&JsonReparent {
            kind: "reparent",
            time: clock::format_rfc3339(boot_epoch_ns, *ts_ns),
            ts_ns: *ts_ns,
            pid: child.pid,
            proc_start_ns: child.start_ns,
            comm: *comm,
            uid: *uid,
            old_ppid: *old_ppid,
            ppid: *new_ppid,
        }),
        Line::Lost { ts_ns, lost, total } => serde_json::to_string(&JsonLost {
            kind: "lost",
            time: clock::format_rfc3339(boot_epoch_ns, *ts_ns),
            ts_ns: *ts_ns,
            lost: *lost,
            total: *total,
        }),
    };
    r.unwrap_or_else(|e| format!("{{\"kind\":\"error\",\"error\":\"{e}\"}}"))
}
