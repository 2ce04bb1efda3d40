//! Decoding the kernel's records into typed events, with tag and length checks.
//!
//! Decoding never panics: a record that is too short, has an unknown kind, or whose
//! lengths do not add up is a [`DecodeError`], counted and skipped by the reader.

use bytes::Bytes;
use tracer_abi as abi;

use super::types::*;

impl Record {
    /// Decodes one whole record.
    pub fn decode(buf: &[u8]) -> Result<Record, DecodeError> {
        let h = header(buf)?;
        if h.kind != abi::Kind::Cgroup as u32 {
            return Event::decode(buf).map(Record::Event);
        }
        if h.size as usize != buf.len() {
            return Err(DecodeError::SizeMismatch { said: h.size, got: buf.len() });
        }
        let need = size_of::<abi::CgroupEvent>();
        if buf.len() != need {
            return Err(DecodeError::TooShort { kind: abi::Kind::Cgroup, got: buf.len(), need });
        }
        let e = read::<abi::CgroupEvent>(buf);
        let depth = (e.depth as usize).min(abi::CGROUP_DEPTH);
        let mut path = String::new();
        for name in e.names[..depth].iter().rev() {
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            path.push('/');
            path.push_str(&String::from_utf8_lossy(&name[..end]));
        }
        if path.is_empty() {
            path.push('/');
        }
        Ok(Record::Cgroup(CgroupPath { id: e.cgroup_id, path, truncated: e.flags & abi::CGROUP_TRUNCATED != 0 }))
    }
}

/// Why a record was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("a cgroup record where an event was expected")]
    NotAnEvent,
    #[error("record of {0} bytes is shorter than a header")]
    Short(usize),
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("record says it is {said} bytes but {got} are there")]
    SizeMismatch { said: u32, got: usize },
    #[error("{kind:?} record of {got} bytes is shorter than its fixed part ({need})")]
    TooShort { kind: abi::Kind, got: usize, need: usize },
    #[error("{kind:?} record lengths do not add up ({fixed} + {vars} != {size})")]
    BadLengths { kind: abi::Kind, fixed: usize, vars: usize, size: usize },
}

/// Reads a `T` from the start of `buf`. `T` must be one of the ABI's integer-only structs.
fn read<T: Copy>(buf: &[u8]) -> T {
    assert!(buf.len() >= size_of::<T>());
    // SAFETY: length checked above; T is a #[repr(C)] struct of integers (and arrays of
    // them) for which every bit pattern is valid; read_unaligned copes with any alignment.
    unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<T>()) }
}

fn header(buf: &[u8]) -> Result<abi::Header, DecodeError> {
    if buf.len() < size_of::<abi::Header>() {
        return Err(DecodeError::Short(buf.len()));
    }
    Ok(read::<abi::Header>(buf))
}

impl Event {
    /// Decodes one whole record (a ring buffer entry: exactly one record).
    pub fn decode(buf: &[u8]) -> Result<Event, DecodeError> {
        let h = header(buf)?;
        let kind = abi::Kind::from_u32(h.kind).ok_or(DecodeError::UnknownKind(h.kind))?;
        if h.size as usize != buf.len() {
            return Err(DecodeError::SizeMismatch { said: h.size, got: buf.len() });
        }
        let need = kind.fixed_size();
        if buf.len() < need {
            return Err(DecodeError::TooShort { kind, got: buf.len(), need });
        }
        if kind == abi::Kind::Cgroup {
            return Err(DecodeError::NotAnEvent);
        }
        let task_of = |t: &abi::Task| TaskInfo::from_abi(t);
        let (task, body) = match kind {
            abi::Kind::Fork | abi::Kind::Clone => {
                let e = read::<abi::ForkEvent>(buf);
                let creator_tid = e.creator_tid;
                let body =
                    if kind == abi::Kind::Fork { Body::Fork { creator_tid } } else { Body::Clone { creator_tid } };
                (task_of(&e.task), body)
            }
            abi::Kind::Exec => {
                let e = read::<abi::ExecEvent>(buf);
                let (filename, argv) = split_vars(kind, buf, need, e.filename_len, e.argv_len)?;
                let body = Body::Exec {
                    old_tid: e.old_tid,
                    filename: String::from_utf8_lossy(filename).into_owned(),
                    filename_truncated: e.flags & abi::FILENAME_TRUNCATED != 0,
                    argv: Argv {
                        raw: Bytes::copy_from_slice(argv),
                        real_len: e.argv_real_len,
                        truncated: e.flags & abi::ARGV_TRUNCATED != 0,
                        unreadable: e.flags & abi::ARGV_UNREADABLE != 0,
                    },
                };
                (task_of(&e.task), body)
            }
            abi::Kind::ThreadExit | abi::Kind::ProcessExit => {
                let e = read::<abi::ExitEvent>(buf);
                let body = if kind == abi::Kind::ProcessExit {
                    let reaper =
                        (e.reaper_tgid != 0).then_some(ProcRef { pid: e.reaper_tgid, start_ns: e.reaper_start_ns });
                    Body::ProcessExit { status: ExitStatus { raw: e.status }, reaper }
                } else {
                    Body::ThreadExit { status: ExitStatus { raw: e.exit_code } }
                };
                (task_of(&e.task), body)
            }
            abi::Kind::Rename => {
                let e = read::<abi::RenameEvent>(buf);
                (task_of(&e.task), Body::Rename { new_comm: Comm(e.new_comm) })
            }
            abi::Kind::Cgroup => return Err(DecodeError::NotAnEvent),
            abi::Kind::CgroupAttach => {
                let e = read::<abi::CgroupAttachEvent>(buf);
                (task_of(&e.task), Body::CgroupAttach { threadgroup: e.threadgroup != 0, path: None })
            }
            abi::Kind::Snapshot => {
                let e = read::<abi::SnapshotEvent>(buf);
                let (exe, argv) = split_vars(kind, buf, need, e.filename_len, e.argv_len)?;
                let body = Body::Snapshot {
                    utime_ns: e.utime_ns,
                    stime_ns: e.stime_ns,
                    rss_pages: e.rss_pages,
                    exe: String::from_utf8_lossy(exe).into_owned(),
                    argv: Argv {
                        raw: Bytes::copy_from_slice(argv),
                        real_len: e.argv_real_len,
                        truncated: e.flags & abi::ARGV_TRUNCATED != 0,
                        unreadable: e.flags & abi::ARGV_UNREADABLE != 0,
                    },
                    zombie: e.exit_state != 0,
                };
                (task_of(&e.task), body)
            }
        };
        Ok(Event { ts_ns: h.ts_ns, cpu: h.cpu, task, body })
    }
}

/// Splits the trailing data of a record into its two variable parts.
fn split_vars(kind: abi::Kind, buf: &[u8], fixed: usize, a: u32, b: u32) -> Result<(&[u8], &[u8]), DecodeError> {
    let (a, b) = (a as usize, b as usize);
    let vars = a.saturating_add(b);
    if fixed.saturating_add(vars) != buf.len() {
        return Err(DecodeError::BadLengths { kind, fixed, vars, size: buf.len() });
    }
    Ok((&buf[fixed..fixed + a], &buf[fixed + a..]))
}

/// Splits a stream of concatenated records (the task iterator's output) into records.
/// Yields an error, then stops, at the first record whose header does not fit.
pub fn records(stream: &[u8]) -> impl Iterator<Item = Result<&[u8], DecodeError>> {
    let mut rest = stream;
    let mut failed = false;
    std::iter::from_fn(move || {
        if rest.is_empty() || failed {
            return None;
        }
        let h = match header(rest) {
            Ok(h) => h,
            Err(e) => {
                failed = true;
                return Some(Err(e));
            }
        };
        let size = h.size as usize;
        if size < size_of::<abi::Header>() || size > rest.len() {
            failed = true;
            return Some(Err(DecodeError::SizeMismatch { said: h.size, got: rest.len() }));
        }
        let (rec, tail) = rest.split_at(size);
        rest = tail;
        Some(Ok(rec))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_bytes<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: T is an ABI struct without padding; reading its bytes is sound.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()).to_vec() }
    }

    fn task(tid: u32, tgid: u32) -> abi::Task {
        let mut t = abi::Task { tid, tgid, ppid: 1, start_ns: 10, leader_start_ns: 10, ..Default::default() };
        t.comm[..2].copy_from_slice(b"sh");
        t
    }

    fn exec_record(filename: &[u8], argv: &[u8], flags: u32) -> Vec<u8> {
        let e = abi::ExecEvent {
            header: abi::Header {
                kind: abi::Kind::Exec as u32,
                size: (size_of::<abi::ExecEvent>() + filename.len() + argv.len()) as u32,
                ts_ns: 5,
                cpu: 1,
                _pad: 0,
            },
            task: task(7, 7),
            old_tid: 9,
            filename_len: filename.len() as u32,
            argv_len: argv.len() as u32,
            argv_real_len: 100_000,
            flags,
            _pad: 0,
        };
        let mut v = as_bytes(&e);
        v.extend_from_slice(filename);
        v.extend_from_slice(argv);
        v
    }

    #[test]
    fn decodes_exec_with_argv() {
        let rec = exec_record(b"/bin/sh", b"sh\0-c\0exit 3\0", abi::ARGV_TRUNCATED);
        let ev = Event::decode(&rec).expect("valid record");
        let Body::Exec { old_tid, filename, argv, .. } = &ev.body else { panic!("not an exec: {ev:?}") };
        assert_eq!(*old_tid, 9);
        assert_eq!(filename, "/bin/sh");
        assert_eq!(argv.args().collect::<Vec<_>>(), ["sh", "-c", "exit 3"]);
        assert!(argv.truncated);
        assert_eq!(argv.real_len, 100_000);
        assert_eq!(ev.task.comm.to_string(), "sh");
    }

    #[test]
    fn decodes_cgroup_attach() {
        let mut t = task(5, 5);
        t.cgroup_id = 4242;
        let e = abi::CgroupAttachEvent {
            header: abi::Header { kind: abi::Kind::CgroupAttach as u32, size: 120, ts_ns: 1, cpu: 0, _pad: 0 },
            task: t,
            threadgroup: 1,
            _pad: 0,
        };
        let ev = Event::decode(&as_bytes(&e)).expect("valid");
        assert_eq!(ev.body, Body::CgroupAttach { threadgroup: true, path: None });
        assert_eq!(ev.task.cgroup_id, 4242);
        // One byte short: refused, not misread.
        let short = as_bytes(&e);
        assert!(Event::decode(&short[..short.len() - 1]).is_err());
    }

    #[test]
    fn decodes_exit_status() {
        let e = abi::ExitEvent {
            header: abi::Header { kind: abi::Kind::ProcessExit as u32, size: 136, ts_ns: 1, cpu: 0, _pad: 0 },
            task: task(5, 5),
            exit_code: 9 | 0x80,
            status: 9 | 0x80,
            reaper_tgid: 1,
            _pad: 0,
            reaper_start_ns: 3,
        };
        let ev = Event::decode(&as_bytes(&e)).expect("valid");
        let Body::ProcessExit { status, reaper } = ev.body else { panic!("{ev:?}") };
        assert_eq!(reaper, Some(ProcRef { pid: 1, start_ns: 3 }));
        assert_eq!(status.signal(), Some(9));
        assert!(status.core_dumped());
        assert_eq!(status.to_string(), "killed by SIGKILL (core dumped)");
        assert_eq!(ExitStatus { raw: 3 << 8 }.to_string(), "exit 3");
    }

    #[test]
    fn rejects_truncated_records() {
        let rec = exec_record(b"/bin/true", b"true\0", 0);
        for cut in 0..rec.len() {
            assert!(Event::decode(&rec[..cut]).is_err(), "a record cut at {cut} bytes was accepted");
        }
    }

    #[test]
    fn rejects_oversized_and_inconsistent_lengths() {
        let mut rec = exec_record(b"/bin/true", b"true\0", 0);
        rec.extend_from_slice(&[0; 8]);
        assert!(matches!(Event::decode(&rec), Err(DecodeError::SizeMismatch { .. })));
        // Header size patched to match, but the inner lengths do not add up.
        let n = rec.len() as u32;
        rec[4..8].copy_from_slice(&n.to_ne_bytes());
        assert!(matches!(Event::decode(&rec), Err(DecodeError::BadLengths { .. })));
        // Inner lengths that overflow when added.
        let mut rec = exec_record(b"/x", b"x\0", 0);
        let off = size_of::<abi::Header>() + size_of::<abi::Task>() + 4;
        rec[off..off + 4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(Event::decode(&rec).is_err());
    }

    #[test]
    fn rejects_unknown_kind_and_garbage() {
        let mut rec = exec_record(b"/x", b"", 0);
        rec[0..4].copy_from_slice(&999u32.to_ne_bytes());
        assert_eq!(Event::decode(&rec), Err(DecodeError::UnknownKind(999)));
        // Deterministic pseudo-random garbage must never panic.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..2000usize {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = Event::decode(&buf);
            for r in records(&buf).flatten() {
                let _ = Event::decode(r);
            }
        }
    }

    #[test]
    fn splits_record_streams() {
        let a = exec_record(b"/a", b"a\0", 0);
        let b = exec_record(b"/bb", b"b\0c\0", 0);
        let mut s = a.clone();
        s.extend_from_slice(&b);
        let recs: Vec<_> = records(&s).collect::<Result<_, _>>().expect("two records");
        assert_eq!(recs, [&a[..], &b[..]]);
        s.extend_from_slice(&[1, 2, 3]);
        let out: Vec<_> = records(&s).collect();
        assert_eq!(out.len(), 3);
        assert!(out[2].is_err());
    }

    #[test]
    fn decodes_cgroup_paths() {
        let mut e = abi::CgroupEvent {
            header: abi::Header { kind: abi::Kind::Cgroup as u32, size: 1064, ts_ns: 1, cpu: 0, _pad: 0 },
            cgroup_id: 42,
            depth: 2,
            flags: 0,
            names: [[0; abi::CGROUP_NAME_MAX]; abi::CGROUP_DEPTH],
        };
        e.names[0][..4].copy_from_slice(b"abcd");
        e.names[1][..6].copy_from_slice(b"docker");
        let rec = as_bytes(&e);
        assert_eq!(
            Record::decode(&rec),
            Ok(Record::Cgroup(CgroupPath { id: 42, path: "/docker/abcd".into(), truncated: false }))
        );
        assert_eq!(Event::decode(&rec), Err(DecodeError::NotAnEvent));
        e.depth = 0;
        let Ok(Record::Cgroup(root)) = Record::decode(&as_bytes(&e)) else { panic!("root cgroup") };
        assert_eq!(root.path, "/");
        e.depth = 99;
        assert!(Record::decode(&as_bytes(&e)).is_ok(), "depth is clamped, never trusted");
        assert!(Record::decode(&rec[..100]).is_err());
    }

    #[test]
    fn empty_argv_has_no_args() {
        assert_eq!(Argv::default().args().count(), 0);
        assert_eq!(Argv::default().joined(), "");
    }
}
