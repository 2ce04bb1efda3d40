//! One event as one JSON object, written straight into a byte buffer.
//!
//! Written by hand rather than through serde: the daemon writes one of these per
//! event per subscriber, and serde's map machinery (every key escaped at run
//! time, a formatter call per value) cost more than the rest of the daemon's work
//! on an event. The keys here are literals, numbers go through `itoa`, and only
//! strings from the traced world are escaped, in runs. The output is byte for
//! byte what `serde_json` writes for the same object; the tests hold it to that.

use crate::events::{Argv, Body, Comm, Event, ExitStatus, ProcRef, signal_name};

/// Appends `ev` as one JSON object (no newline). `time` is its RFC 3339 text,
/// `user` the name of `ev.task.uid`, `parent_comm` (execs only) the comm of the
/// exec'ing process's parent in the engine's tree at the exec, when it is there.
pub fn write_event(out: &mut Vec<u8>, ev: &Event, time: &str, user: &str, parent_comm: Option<&Comm>) {
    let t = &ev.task;
    out.extend_from_slice(b"{\"kind\":\"");
    out.extend_from_slice(ev.body.name().as_bytes());
    out.extend_from_slice(b"\",\"time\":");
    string(out, time.as_bytes());
    num(out, b",\"ts_ns\":", ev.ts_ns);
    num(out, b",\"cpu\":", ev.cpu);
    num(out, b",\"pid\":", t.pid);
    num(out, b",\"tid\":", t.tid);
    num(out, b",\"ppid\":", t.ppid);
    num(out, b",\"ns_pid\":", t.ns_pid);
    num(out, b",\"ns_tid\":", t.ns_tid);
    num(out, b",\"uid\":", t.uid);
    num(out, b",\"gid\":", t.gid);
    out.extend_from_slice(b",\"user\":");
    string(out, user.as_bytes());
    num(out, b",\"start_ns\":", t.start_ns);
    num(out, b",\"proc_start_ns\":", t.proc_start_ns);
    num(out, b",\"parent_start_ns\":", t.parent_start_ns);
    num(out, b",\"cgroup_id\":", t.cgroup_id);
    num(out, b",\"pidns\":", t.pidns);
    num(out, b",\"mntns\":", t.mntns);
    out.extend_from_slice(b",\"comm\":");
    comm(out, &t.comm);
    boolean(out, b",\"kthread\":", t.kthread);
    match &ev.body {
        Body::Fork { creator_tid } | Body::Clone { creator_tid } => num(out, b",\"creator_tid\":", *creator_tid),
        Body::Exec { old_tid, filename, filename_truncated, argv } => {
            num(out, b",\"old_tid\":", *old_tid);
            out.extend_from_slice(b",\"filename\":");
            string(out, filename.as_bytes());
            boolean(out, b",\"filename_truncated\":", *filename_truncated);
            argv_fields(out, argv);
            out.extend_from_slice(b",\"parent_comm\":");
            match parent_comm {
                Some(c) => comm(out, c),
                None => out.extend_from_slice(b"null"),
            }
        }
        Body::ThreadExit { status } => status_field(out, status),
        Body::ProcessExit { status, reaper } => {
            status_field(out, status);
            if let Some(r) = reaper {
                proc_ref(out, b",\"reaper\":", r);
            }
            num(out, b",\"lifetime_ns\":", ev.lifetime_ns());
        }
        Body::Rename { new_comm } => {
            out.extend_from_slice(b",\"new_comm\":");
            comm(out, new_comm);
        }
        Body::CgroupAttach { threadgroup, path } => {
            boolean(out, b",\"threadgroup\":", *threadgroup);
            out.extend_from_slice(b",\"cgroup_path\":");
            match path {
                Some(p) => string(out, p.as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
        }
        Body::Snapshot { utime_ns, stime_ns, rss_pages, exe, argv, zombie } => {
            num(out, b",\"utime_ns\":", *utime_ns);
            num(out, b",\"stime_ns\":", *stime_ns);
            num(out, b",\"rss_pages\":", *rss_pages);
            out.extend_from_slice(b",\"exe\":");
            string(out, exe.as_bytes());
            boolean(out, b",\"zombie\":", *zombie);
            argv_fields(out, argv);
        }
    }
    out.push(b'}');
}

fn num<N: itoa::Integer>(out: &mut Vec<u8>, key: &[u8], n: N) {
    out.extend_from_slice(key);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn boolean(out: &mut Vec<u8>, key: &[u8], b: bool) {
    out.extend_from_slice(key);
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

fn comm(out: &mut Vec<u8>, c: &Comm) {
    lossy(out, c.as_bytes());
}

fn proc_ref(out: &mut Vec<u8>, key: &[u8], r: &ProcRef) {
    out.extend_from_slice(key);
    num(out, b"{\"pid\":", r.pid);
    num(out, b",\"start_ns\":", r.start_ns);
    out.push(b'}');
}

fn status_field(out: &mut Vec<u8>, s: &ExitStatus) {
    out.extend_from_slice(b",\"status\":{\"code\":");
    match s.code() {
        Some(c) => out.extend_from_slice(itoa::Buffer::new().format(c).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"signal\":");
    match s.signal() {
        Some(sig) => string(out, signal_name(sig).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    boolean(out, b",\"core_dumped\":", s.core_dumped());
    num(out, b",\"raw\":", s.raw);
    out.push(b'}');
}

fn argv_fields(out: &mut Vec<u8>, argv: &Argv) {
    out.extend_from_slice(b",\"argv\":[");
    let raw = argv.raw.strip_suffix(b"\0").unwrap_or(&argv.raw);
    if !raw.is_empty() {
        for (i, arg) in raw.split(|&b| b == 0).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            lossy(out, arg);
        }
    }
    out.push(b']');
    num(out, b",\"argv_len\":", argv.raw.len());
    num(out, b",\"argv_real_len\":", argv.real_len);
    boolean(out, b",\"argv_truncated\":", argv.truncated);
    boolean(out, b",\"argv_unreadable\":", argv.unreadable);
}

/// Bytes that may not be valid UTF-8, as a JSON string of their lossy decoding
/// (each invalid sequence becomes U+FFFD, as `String::from_utf8_lossy` does).
fn lossy(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        escaped(out, chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{FFFD}".as_bytes());
        }
    }
    out.push(b'"');
}

/// Valid UTF-8 as a JSON string.
fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    escaped(out, s);
    out.push(b'"');
}

/// Escapes as JSON requires and as serde_json does: `"` and `\` with a
/// backslash, the usual short forms for \b \f \n \r \t, `\u00xx` for the other
/// bytes below 0x20; everything else is copied in runs.
fn escaped(out: &mut Vec<u8>, s: &[u8]) {
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..0x20 => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        start = i + 1;
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.extend_from_slice(short);
        }
    }
    out.extend_from_slice(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::TaskInfo;
    use bytes::Bytes;
    use serde::Serialize;

    /// The oracle: the serde form this module replaced.
    struct JsonEvent<'a> {
        ev: &'a Event,
        time: &'a str,
        user: &'a str,
        parent_comm: Option<Comm>,
    }

    impl Serialize for JsonEvent<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let ev = self.ev;
            let t = &ev.task;
            let mut m = s.serialize_map(None)?;
            m.serialize_entry("kind", ev.body.name())?;
            m.serialize_entry("time", &self.time)?;
            m.serialize_entry("ts_ns", &ev.ts_ns)?;
            m.serialize_entry("cpu", &ev.cpu)?;
            m.serialize_entry("pid", &t.pid)?;
            m.serialize_entry("tid", &t.tid)?;
            m.serialize_entry("ppid", &t.ppid)?;
            m.serialize_entry("ns_pid", &t.ns_pid)?;
            m.serialize_entry("ns_tid", &t.ns_tid)?;
            m.serialize_entry("uid", &t.uid)?;
            m.serialize_entry("gid", &t.gid)?;
            m.serialize_entry("user", self.user)?;
            m.serialize_entry("start_ns", &t.start_ns)?;
            m.serialize_entry("proc_start_ns", &t.proc_start_ns)?;
            m.serialize_entry("parent_start_ns", &t.parent_start_ns)?;
            m.serialize_entry("cgroup_id", &t.cgroup_id)?;
            m.serialize_entry("pidns", &t.pidns)?;
            m.serialize_entry("mntns", &t.mntns)?;
            m.serialize_entry("comm", &t.comm)?;
            m.serialize_entry("kthread", &t.kthread)?;
            match &ev.body {
                Body::Fork { creator_tid } | Body::Clone { creator_tid } => {
                    m.serialize_entry("creator_tid", creator_tid)?;
                }
                Body::Exec { old_tid, filename, filename_truncated, argv } => {
                    m.serialize_entry("old_tid", old_tid)?;
                    m.serialize_entry("filename", filename)?;
                    m.serialize_entry("filename_truncated", filename_truncated)?;
                    argv_entries(&mut m, argv)?;
                    m.serialize_entry("parent_comm", &self.parent_comm)?;
                }
                Body::ThreadExit { status } => m.serialize_entry("status", status)?,
                Body::ProcessExit { status, reaper } => {
                    m.serialize_entry("status", status)?;
                    if let Some(r) = reaper {
                        m.serialize_entry("reaper", r)?;
                    }
                    m.serialize_entry("lifetime_ns", &ev.ts_ns.saturating_sub(t.proc_start_ns))?;
                }
                Body::Rename { new_comm } => m.serialize_entry("new_comm", new_comm)?,
                Body::CgroupAttach { threadgroup, path } => {
                    m.serialize_entry("threadgroup", threadgroup)?;
                    m.serialize_entry("cgroup_path", &path.as_deref())?;
                }
                Body::Snapshot { utime_ns, stime_ns, rss_pages, exe, argv, zombie } => {
                    m.serialize_entry("utime_ns", utime_ns)?;
                    m.serialize_entry("stime_ns", stime_ns)?;
                    m.serialize_entry("rss_pages", rss_pages)?;
                    m.serialize_entry("exe", exe)?;
                    m.serialize_entry("zombie", zombie)?;
                    argv_entries(&mut m, argv)?;
                }
            }
            m.end()
        }
    }

    fn argv_entries<M: serde::ser::SerializeMap>(m: &mut M, argv: &Argv) -> Result<(), M::Error> {
        m.serialize_entry("argv", argv)?;
        m.serialize_entry("argv_len", &argv.raw.len())?;
        m.serialize_entry("argv_real_len", &argv.real_len)?;
        m.serialize_entry("argv_truncated", &argv.truncated)?;
        m.serialize_entry("argv_unreadable", &argv.unreadable)
    }

    fn event_json_via_serde(ev: &Event, time: &str, user: &str, parent_comm: Option<Comm>) -> Vec<u8> {
        serde_json::to_vec(&JsonEvent { ev, time, user, parent_comm }).unwrap()
    }

    fn task(comm: &[u8]) -> TaskInfo {
        let mut raw = [0u8; tracer_abi::COMM_LEN];
        raw[..comm.len()].copy_from_slice(comm);
        TaskInfo {
            pid: 4242,
            tid: 4243,
            ppid: 1,
            ns_pid: 7,
            ns_tid: 8,
            uid: 1000,
            gid: 100,
            start_ns: 123_456_789_012,
            proc_start_ns: 123_000_000_000,
            parent_start_ns: 5,
            cgroup_id: u64::MAX,
            pidns: 4_026_531_836,
            mntns: 4_026_531_832,
            comm: Comm::new(raw),
            kthread: false,
            exiting: false,
        }
    }

    fn argv(raw: &[u8]) -> Argv {
        Argv { raw: Bytes::copy_from_slice(raw), real_len: 9_999, truncated: true, unreadable: false }
    }

    /// Every kind, with hostile and invalid text where the traced world writes it.
    fn events() -> Vec<Event> {
        let hostile = b"\x1b[31mred\x07\x00";
        let bodies = vec![
            Body::Fork { creator_tid: 3 },
            Body::Clone { creator_tid: u32::MAX },
            Body::Exec {
                old_tid: 9,
                filename: "/usr/bin/\u{1b}]0;title\u{7}\"q\"\\x\u{7f}é".into(),
                filename_truncated: true,
                argv: argv(b"sh\0-c\0echo \x1b]52;c;aGk=\x07\0\xff\xfe bad \xc3\0\0"),
            },
            Body::Exec { old_tid: 0, filename: String::new(), filename_truncated: false, argv: argv(b"") },
            Body::Exec { old_tid: 0, filename: "x".into(), filename_truncated: false, argv: argv(b"\0") },
            Body::ThreadExit { status: ExitStatus { raw: 3 << 8 } },
            Body::ProcessExit { status: ExitStatus { raw: 9 | 0x80 }, reaper: Some(ProcRef { pid: 1, start_ns: 0 }) },
            Body::ProcessExit { status: ExitStatus { raw: 0x7f }, reaper: None },
            Body::Rename { new_comm: Comm::from_str_lossy("a\tb\u{1}\u{1f}") },
            Body::CgroupAttach { threadgroup: true, path: Some("/docker/\"id\"\n".into()) },
            Body::CgroupAttach { threadgroup: false, path: None },
            Body::Snapshot {
                utime_ns: 1,
                stime_ns: 2,
                rss_pages: 3,
                exe: "/bin/\u{8}\u{c}\r".into(),
                argv: argv(b"a\0b"),
                zombie: true,
            },
        ];
        let comms: [&[u8]; 4] = [b"bash", &hostile[..], b"\xff\xfe\xc3", b""];
        let mut v = Vec::new();
        for (i, body) in bodies.into_iter().enumerate() {
            let mut t = task(comms[i % comms.len()]);
            t.kthread = i % 3 == 0;
            v.push(Event { ts_ns: i as u64 * 1_000_000_007, cpu: i as u32, task: t, body });
        }
        v
    }

    #[test]
    fn byte_for_byte_what_serde_json_writes() {
        for ev in events() {
            let parents = [None, Some(Comm::from_str_lossy("sh")), Some(Comm::from_str_lossy("a\"\u{1b}\\"))];
            for (user, parent) in ["root", "we\"ird\u{1b}", "1000"].into_iter().zip(parents) {
                let time = "2026-12-02T14:51:08.464774392Z";
                let mut fast = Vec::new();
                write_event(&mut fast, &ev, time, user, parent.as_ref());
                let slow = event_json_via_serde(&ev, time, user, parent);
                assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&slow), "{ev:?}");
                let parsed: serde_json::Value = serde_json::from_slice(&fast).expect("valid JSON");
                assert_eq!(parsed["pid"], 4242);
                if let Body::ProcessExit { .. } = ev.body {
                    assert_eq!(parsed["lifetime_ns"], ev.ts_ns.saturating_sub(ev.task.proc_start_ns));
                }
                if let Body::Exec { .. } = ev.body {
                    assert_eq!(parsed["parent_comm"].as_str(), parent.map(|c| c.to_string()).as_deref());
                }
            }
        }
    }

    #[test]
    fn escapes_every_control_byte() {
        let s: Vec<u8> = (0u8..0x80).collect();
        let mut fast = Vec::new();
        string(&mut fast, &s);
        let slow = serde_json::to_vec(std::str::from_utf8(&s).unwrap()).unwrap();
        assert_eq!(fast, slow);
        assert!(fast[1..fast.len() - 1].iter().all(|&b| b >= 0x20));
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        for bytes in [&b"\xff"[..], b"a\xc3", b"\xe2\x82", b"ok\xf0\x9f\x98\x80ok", b"\xc3\x28"] {
            let mut fast = Vec::new();
            lossy(&mut fast, bytes);
            assert_eq!(fast, serde_json::to_vec(&String::from_utf8_lossy(bytes)).unwrap());
        }
    }
}
