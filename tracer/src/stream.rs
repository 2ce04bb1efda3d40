//! Which engine updates an event stream shows, and as what line. Shared by
//! `tracer events` in-process and the daemon's subscriptions.

use crate::{
    daemon::protocol::Filter,
    engine::{Engine, GoneReason, Origin, Update},
    event::Body,
    output::Line,
};

/// The line `u` shows as under `filter`, if any.
pub fn line_for<'a>(engine: &Engine, filter: &Filter, u: &'a Update) -> Option<Line<'a>> {
    match u {
        Update::Event(ev) => {
            if matches!(ev.body, Body::Snapshot { .. }) {
                return None;
            }
            if filter.no_threads && matches!(ev.body, Body::Clone { .. } | Body::ThreadExit { .. }) {
                return None;
            }
            if filter.no_kthreads && ev.task.kthread {
                return None;
            }
            if let Some(comm) = &filter.comm {
                let now = ev.task.comm.as_bytes() == comm.as_bytes();
                let renamed = matches!(&ev.body, Body::Rename { new_comm } if new_comm.as_bytes() == comm.as_bytes());
                if !now && !renamed {
                    return None;
                }
            }
            in_scope(filter, engine, ev.task.pid).then_some(Line::Event(ev))
        }
        Update::Reparent { child, old_ppid, new_ppid, ts_ns } => {
            let p = engine.get(*child)?;
            if !in_scope(filter, engine, child.pid) && !in_scope(filter, engine, *old_ppid) {
                return None;
            }
            if filter.comm.as_ref().is_some_and(|c| p.comm.as_bytes() != c.as_bytes()) {
                return None;
            }
            Some(Line::Reparent {
                ts_ns: *ts_ns,
                child: *child,
                comm: p.comm,
                uid: p.uid,
                old_ppid: *old_ppid,
                new_ppid: *new_ppid,
            })
        }
        Update::Added { proc, ts_ns, origin } => {
            let p = engine.get(*proc)?;
            if !in_scope(filter, engine, proc.pid)
                || filter.comm.as_ref().is_some_and(|c| p.comm.as_bytes() != c.as_bytes())
            {
                return None;
            }
            let what = match origin {
                // Its first event was not its fork: the fork was lost, or made by a
                // process the kernel hides from BPF programs (on some sandboxes, PID 1).
                Origin::Inferred => "added: first seen after its fork (the fork was not visible)",
                _ => "added: found alive by a repair walk, its fork was not seen",
            };
            Some(Line::Repaired { ts_ns: *ts_ns, proc: *proc, comm: p.comm, uid: p.uid, ppid: p.ppid, what })
        }
        Update::Gone { proc, ts_ns, reason } => {
            let p = engine.get(*proc)?;
            if !in_scope(filter, engine, proc.pid)
                || filter.comm.as_ref().is_some_and(|c| p.comm.as_bytes() != c.as_bytes())
            {
                return None;
            }
            let what = match reason {
                GoneReason::PidReused => "ended: its pid now belongs to a newer process, its exit was not seen",
                GoneReason::NotInWalk => "ended: gone from the task list, its exit was not seen",
            };
            Some(Line::Repaired { ts_ns: *ts_ns, proc: *proc, comm: p.comm, uid: p.uid, ppid: p.ppid, what })
        }
        Update::ThreadGone { .. } | Update::Dropped { .. } => None,
    }
}

/// Whether `pid` is the filter's process or one of its descendants (always, without one).
pub fn in_scope(filter: &Filter, engine: &Engine, pid: u32) -> bool {
    match filter.pid {
        None => true,
        Some(root) => pid == root || engine.is_descendant(pid, root),
    }
}
