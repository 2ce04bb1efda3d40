//! How `tracer events` prints an event: one aligned text line or one JSON line.

use std::{borrow::Cow, fmt::Write as _};

use serde::Serialize;

use crate::{
    clock, escape,
    events::{Argv, Body, Comm, Event, ProcRef, TaskInfo},
    users,
};

/// Something the event stream shows: a kernel event, or one the tracker derived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A kernel event, and for an exec the comm of the process's parent in the
    /// engine's tree at the exec (when the engine has it).
    Event(&'a Event, Option<Comm>),
    /// A process was moved to a new parent because its parent exited.
    Reparent { ts_ns: u64, child: ProcRef, comm: Comm, uid: u32, old_ppid: u32, new_ppid: u32 },
    /// The kernel side could not write `lost` records.
    Lost { ts_ns: u64, lost: u64, total: u64 },
    /// A repair walk after lost records changed a process: `what` says how.
    Repaired { ts_ns: u64, proc: ProcRef, comm: Comm, uid: u32, ppid: u32, what: &'static str },
}

impl Line<'_> {
    /// The kind shown in the EVENT column and the JSON `kind` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Line::Event(ev, _) => ev.body.name(),
            Line::Reparent { .. } => "reparent",
            Line::Lost { .. } => "lost",
            Line::Repaired { .. } => "repair",
        }
    }
}

/// The text header matching [`text`].
pub fn text_header() -> String {
    format!(
        "{:<12} {:<11} {:>7} {:>7} {:>7} {:<9} {:<16} {}",
        "TIME", "EVENT", "PID", "TID", "PPID", "USER", "COMM", "DETAILS"
    )
}

/// The comm as the COMM column shows it, escaped (see [`escape`]).
fn comm_shown(task: &TaskInfo) -> Cow<'_, str> {
    let comm = escape::bytes(task.comm.as_bytes());
    if task.kthread { Cow::Owned(format!("[{comm}]")) } else { comm }
}

fn argv_text(out: &mut String, argv: &Argv) {
    escape::push_argv(out, argv);
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
        Line::Event(ev, parent) => {
            let t = &ev.task;
            let _ = write!(
                out,
                "{:<12} {:<11} {:>7} {:>7} {:>7} {:<9} {:<16} ",
                clock::format_time_ms(boot_epoch_ns, ev.ts_ns),
                ev.body.name(),
                t.pid,
                t.tid,
                t.ppid,
                escape::text(&users::name(t.uid).to_string()),
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
                    escape::push(&mut out, filename);
                    if *filename_truncated {
                        out.push_str("[...]");
                    }
                    out.push_str(": ");
                    argv_text(&mut out, argv);
                    if *old_tid != t.tid {
                        let _ = write!(out, " (exec from thread {old_tid})");
                    }
                    if let Some(p) = parent {
                        out.push_str(" parent ");
                        escape::push_bytes(&mut out, p.as_bytes());
                        let _ = write!(out, "[{}]", t.ppid);
                    }
                }
                Body::ThreadExit { status } => {
                    let _ = write!(out, "{status}");
                }
                Body::ProcessExit { status, .. } => {
                    let _ = write!(out, "{status} after {}", duration_text(ev.lifetime_ns()));
                }
                Body::Rename { new_comm } => {
                    escape::push_bytes(&mut out, t.comm.as_bytes());
                    out.push_str(" -> ");
                    escape::push_bytes(&mut out, new_comm.as_bytes());
                }
                Body::CgroupAttach { threadgroup, path } => {
                    match path {
                        Some(p) => escape::push(&mut out, p),
                        None => {
                            let _ = write!(out, "cgroup id {}", t.cgroup_id);
                        }
                    }
                    if !threadgroup {
                        out.push_str(" (this thread only)");
                    }
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
                escape::text(&users::name(*uid).to_string()),
                escape::bytes(comm.as_bytes()),
                old_ppid,
                new_ppid
            );
        }
        Line::Repaired { ts_ns, proc, comm, uid, ppid, what } => {
            let _ = write!(
                out,
                "{:<12} {:<11} {:>7} {:>7} {:>7} {:<9} {:<16} {what}",
                clock::format_time_ms(boot_epoch_ns, *ts_ns),
                "repair",
                proc.pid,
                proc.pid,
                ppid,
                escape::text(&users::name(*uid).to_string()),
                escape::bytes(comm.as_bytes()),
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

/// A duration for people: `850 us`, `12.3 ms`, `1.23 s`, `12 min 05 s`, `3 h 02 min`.
pub fn duration_text(ns: u64) -> String {
    const S: u64 = 1_000_000_000;
    match ns {
        0..1_000_000 => format!("{} us", ns / 1_000),
        1_000_000..S => format!("{:.1} ms", ns as f64 / 1e6),
        S..60_000_000_000 => format!("{:.2} s", ns as f64 / 1e9),
        60_000_000_000..3_600_000_000_000 => format!("{} min {:02} s", ns / (60 * S), ns / S % 60),
        _ => format!("{} h {:02} min", ns / (3600 * S), ns / (60 * S) % 60),
    }
}

/// Writes JSON lines, one object per [`Line`], with every field at top level.
///
/// Serializes straight into the output buffer (no intermediate maps) and formats
/// the wall-clock prefix of `time` once per second: it runs for every event.
pub struct JsonWriter {
    wall: clock::WallMap,
    cached_sec: i128,
    cached_prefix: String,
    /// User names of this second's events: the user table reads the clock and
    /// takes a lock per look-up, which every event line would pay. Forgotten when
    /// the second changes, so a renamed user shows within a second.
    users: crate::engine::FxHashMap<u32, users::UserName>,
}

impl JsonWriter {
    pub fn new(wall: clock::WallMap) -> JsonWriter {
        JsonWriter { wall, cached_sec: i128::MIN, cached_prefix: String::new(), users: Default::default() }
    }

    /// RFC 3339 UTC time of a boot-clock timestamp, with ns, on the stack: the
    /// date and time to the second come from the cache, the nanoseconds are
    /// written digit by digit (formatting machinery and a heap string per event
    /// cost more than the rest of the line).
    fn time(&mut self, ts_ns: u64) -> TimeText {
        let boot_epoch_ns = self.wall.offset();
        let t = boot_epoch_ns + i128::from(ts_ns);
        let sec = t.div_euclid(1_000_000_000);
        if sec != self.cached_sec {
            let full = clock::format_rfc3339(boot_epoch_ns, ts_ns);
            self.cached_prefix = full[..full.len() - 11].to_string();
            self.cached_sec = sec;
            self.users.clear();
        }
        let mut out = TimeText { buf: [0; TIME_TEXT_MAX], len: 0 };
        let prefix = self.cached_prefix.as_bytes();
        let n = prefix.len().min(TIME_TEXT_MAX - 11);
        out.buf[..n].copy_from_slice(&prefix[..n]);
        out.buf[n] = b'.';
        let mut nanos = t.rem_euclid(1_000_000_000) as u32;
        for i in (n + 1..n + 10).rev() {
            out.buf[i] = b'0' + (nanos % 10) as u8;
            nanos /= 10;
        }
        out.buf[n + 10] = b'Z';
        out.len = n + 11;
        out
    }

    /// Appends one JSON object and a newline to `out`.
    pub fn write(&mut self, line: &Line<'_>, out: &mut Vec<u8>) {
        let r = match line {
            Line::Event(ev, parent) => {
                let time = self.time(ev.ts_ns);
                let uid = ev.task.uid;
                self.users
                    .entry(uid)
                    .or_insert_with(|| users::name(uid))
                    .with_str(|user| crate::events::json::write_event(out, ev, time.as_str(), user, parent.as_ref()));
                Ok(())
            }
            Line::Reparent { ts_ns, child, comm, uid, old_ppid, new_ppid } => serde_json::to_writer(
                &mut *out,
                &JsonReparent {
                    kind: "reparent",
                    time: self.time(*ts_ns),
                    ts_ns: *ts_ns,
                    pid: child.pid,
                    proc_start_ns: child.start_ns,
                    comm: *comm,
                    uid: *uid,
                    user: users::name(*uid),
                    old_ppid: *old_ppid,
                    ppid: *new_ppid,
                },
            ),
            Line::Repaired { ts_ns, proc, comm, uid, ppid, what } => serde_json::to_writer(
                &mut *out,
                &JsonRepaired {
                    kind: "repair",
                    time: self.time(*ts_ns),
                    ts_ns: *ts_ns,
                    pid: proc.pid,
                    proc_start_ns: proc.start_ns,
                    ppid: *ppid,
                    comm: *comm,
                    uid: *uid,
                    user: users::name(*uid),
                    what,
                },
            ),
            Line::Lost { ts_ns, lost, total } => serde_json::to_writer(
                &mut *out,
                &JsonLost { kind: "lost", time: self.time(*ts_ns), ts_ns: *ts_ns, lost: *lost, total: *total },
            ),
        };
        if let Err(e) = r {
            // Only non-string map keys can fail, and there are none; say so rather than panic.
            out.extend_from_slice(format!("{{\"kind\":\"error\",\"error\":\"{e}\"}}").as_bytes());
        }
        out.push(b'\n');
    }
}

/// Longest RFC 3339 text `time` makes (years up to 9999: 30 bytes).
const TIME_TEXT_MAX: usize = 40;

/// An RFC 3339 time, kept on the stack.
struct TimeText {
    buf: [u8; TIME_TEXT_MAX],
    len: usize,
}

impl TimeText {
    fn as_str(&self) -> &str {
        // Only ASCII digits and punctuation are ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl Serialize for TimeText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Serialize)]
struct JsonReparent {
    kind: &'static str,
    time: TimeText,
    ts_ns: u64,
    pid: u32,
    proc_start_ns: u64,
    comm: Comm,
    uid: u32,
    user: users::UserName,
    old_ppid: u32,
    ppid: u32,
}

#[derive(Serialize)]
struct JsonRepaired {
    kind: &'static str,
    time: TimeText,
    ts_ns: u64,
    pid: u32,
    proc_start_ns: u64,
    ppid: u32,
    comm: Comm,
    uid: u32,
    user: users::UserName,
    what: &'static str,
}

#[derive(Serialize)]
struct JsonLost {
    kind: &'static str,
    time: TimeText,
    ts_ns: u64,
    lost: u64,
    total: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testkit::{exec, rename, tk};

    /// Comm, new comm, file name and argv are the traced process's: escaped, one line.
    #[test]
    fn the_traced_worlds_strings_are_escaped() {
        let mut t = tk(5, 5, 1);
        t.comm = Comm::from_str_lossy("a\u{1b}[2J\u{7}");
        let lines = [
            text(&Line::Event(&rename(1, t, "b\u{9b}1m\\"), None), 0),
            text(&Line::Event(&exec(2, t, 5, "/tmp/x\ny", &["x", "\u{1b}]52;c;aGk=\u{7}"]), None), 0),
        ];
        for l in &lines {
            assert!(!l.chars().any(char::is_control), "{l:?}");
        }
        assert!(lines[0].contains("a\\x1b[2J\\x07 -> b\\xc2\\x9b1m\\\\"), "{}", lines[0]);
        assert!(lines[1].ends_with("/tmp/x\\ny: x \\x1b]52;c;aGk=\\x07"), "{}", lines[1]);
    }

    #[test]
    fn exec_names_its_parent_and_exit_its_lifetime() {
        let mut t = tk(5, 5, 4);
        t.comm = Comm::from_str_lossy("sleep");
        let e = exec(2, t, 5, "/bin/sleep", &["sleep", "1"]);
        let line = text(&Line::Event(&e, Some(Comm::from_str_lossy("s\u{1b}h"))), 0);
        assert!(line.ends_with("/bin/sleep: sleep 1 parent s\\x1bh[4]"), "{line}");
        t.proc_start_ns = 1_000_000_000;
        let e = crate::engine::testkit::pexit(3_340_000_000, t, 0, None);
        let line = text(&Line::Event(&e, None), 0);
        assert!(line.ends_with("exit 0 after 2.34 s"), "{line}");
        let cases = [(850_000, "850 us"), (12_345_678, "12.3 ms"), (61_000_000_000, "1 min 01 s")];
        for (ns, want) in cases.into_iter().chain([(3_720_000_000_000, "1 h 02 min")]) {
            assert_eq!(duration_text(ns), want);
        }
    }

    #[test]
    fn time_cache_matches_full_format() {
        let boot = 1_700_000_000_123_456_789i128;
        let mut w = JsonWriter::new(clock::WallMap::fixed(boot));
        for ts in [0u64, 5, 999_999_999, 1_000_000_000, 86_400_000_000_123] {
            assert_eq!(w.time(ts).as_str(), clock::format_rfc3339(boot, ts), "ts {ts}");
        }
    }
}
