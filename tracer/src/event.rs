//! Typed events, decoded from the kernel's records with tag and length checks.
//!
//! Decoding never panics: a record that is too short, has an unknown kind, or whose
//! lengths do not add up is a [`DecodeError`], counted and skipped by the reader.

use std::fmt;

use bytes::Bytes;
use serde::Serialize;
use tracer_abi as abi;

/// A thread's 16-byte comm, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Comm([u8; abi::COMM_LEN]);

impl Comm {
    pub fn new(raw: [u8; abi::COMM_LEN]) -> Comm {
        Comm(raw)
    }

    pub fn from_str_lossy(s: &str) -> Comm {
        let mut raw = [0u8; abi::COMM_LEN];
        let n = s.len().min(abi::COMM_LEN - 1);
        raw[..n].copy_from_slice(&s.as_bytes()[..n]);
        Comm(raw)
    }

    pub fn as_bytes(&self) -> &[u8] {
        abi::comm_bytes(&self.0)
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&String::from_utf8_lossy(self.as_bytes()))
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl Serialize for Comm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// The task an event is about, as the kernel had it at that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TaskInfo {
    /// Thread group id: the process id.
    pub pid: u32,
    pub tid: u32,
    /// Process id of the real parent.
    pub ppid: u32,
    /// pid and tid inside the task's own pid namespace.
    pub ns_pid: u32,
    pub ns_tid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Boot-clock start time (ns) of this thread, of its process, and of its parent process.
    pub start_ns: u64,
    pub proc_start_ns: u64,
    pub parent_start_ns: u64,
    pub cgroup_id: u64,
    pub pidns: u32,
    pub mntns: u32,
    pub comm: Comm,
    pub kthread: bool,
    /// The task was already exiting when read (only iterator snapshots show this).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub exiting: bool,
}

impl TaskInfo {
    fn from_abi(t: &abi::Task) -> TaskInfo {
        TaskInfo {
            pid: t.tgid,
            tid: t.tid,
            ppid: t.ppid,
            ns_pid: t.ns_tgid,
            ns_tid: t.ns_tid,
            uid: t.uid,
            gid: t.gid,
            start_ns: t.start_ns,
            proc_start_ns: t.leader_start_ns,
            parent_start_ns: t.parent_start_ns,
            cgroup_id: t.cgroup_id,
            pidns: t.pidns,
            mntns: t.mntns,
            comm: Comm(t.comm),
            kthread: t.flags & abi::TASK_KTHREAD != 0,
            exiting: t.flags & abi::TASK_EXITING != 0,
        }
    }

    /// Whether this task is its process's leader (tid == pid).
    pub fn is_leader(&self) -> bool {
        self.tid == self.pid
    }
}

/// A process by identity: its pid and the start time of its leader, so that a
/// reused pid never names an older process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ProcRef {
    pub pid: u32,
    pub start_ns: u64,
}

/// How a thread or process ended, decoded from a wait status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    pub raw: u32,
}

impl ExitStatus {
    /// The exit code when it ended by exit(), else None.
    pub fn code(&self) -> Option<u8> {
        (self.raw & 0x7f == 0).then_some(((self.raw >> 8) & 0xff) as u8)
    }

    /// The signal that killed it, if one did.
    pub fn signal(&self) -> Option<u8> {
        let s = (self.raw & 0x7f) as u8;
        (s != 0).then_some(s)
    }

    pub fn core_dumped(&self) -> bool {
        self.signal().is_some() && self.raw & 0x80 != 0
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code(), self.signal()) {
            (Some(c), _) => write!(f, "exit {c}"),
            (None, Some(s)) => {
                write!(f, "killed by {}", signal_name(s))?;
                if self.core_dumped() {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
            (None, None) => write!(f, "status {:#x}", self.raw),
        }
    }
}

impl Serialize for ExitStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ExitStatus", 4)?;
        st.serialize_field("code", &self.code())?;
        st.serialize_field("signal", &self.signal().map(signal_name))?;
        st.serialize_field("core_dumped", &self.core_dumped())?;
        st.serialize_field("raw", &self.raw)?;
        st.end()
    }
}

impl<'de> serde::Deserialize<'de> for ExitStatus {
    /// From the form [`Serialize`] writes: `raw` says it all.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Raw {
            raw: u32,
        }
        Raw::deserialize(d).map(|r| ExitStatus { raw: r.raw })
    }
}

/// The name of a signal number (`SIGKILL`), or `SIG<n>`.
pub fn signal_name(sig: u8) -> &'static str {
    const NAMES: [&str; 32] = [
        "SIG0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    NAMES.get(sig as usize).copied().unwrap_or("SIGRT")
}

/// A program's arguments as the kernel had them: NUL-separated bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Argv {
    /// The captured bytes (at most the configured limit).
    pub raw: Bytes,
    /// Length of the whole argv area in the process.
    pub real_len: u32,
    /// The capture was cut at the limit.
    pub truncated: bool,
    /// argv could not be read at all.
    pub unreadable: bool,
}

impl Argv {
    /// The arguments, each lossily decoded as UTF-8.
    pub fn args(&self) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
        let raw = self.raw.strip_suffix(b"\0").unwrap_or(&self.raw);
        raw.split(|&b| b == 0).filter(move |_| !raw.is_empty()).map(String::from_utf8_lossy)
    }

    /// Arguments joined with spaces, as `ps` shows them.
    pub fn joined(&self) -> String {
        let mut s = String::with_capacity(self.raw.len());
        for (i, a) in self.args().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(&a);
        }
        s
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

impl Serialize for Argv {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.args())
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// A new process (fork, vfork, clone without CLONE_THREAD). `task` is the child.
    Fork { creator_tid: u32 },
    /// A new thread. `task` is the thread.
    Clone { creator_tid: u32 },
    /// A successful exec. `task` is as after the exec.
    Exec { old_tid: u32, filename: String, filename_truncated: bool, argv: Argv },
    /// A thread ended while its process lives on.
    ThreadExit { status: ExitStatus },
    /// A process ended: its last thread is gone. `reaper` is the process (pid,
    /// start time) its children are reparented to, when it had any.
    ProcessExit { status: ExitStatus, reaper: Option<ProcRef> },
    /// A thread's comm changed; `task.comm` is the old name.
    Rename { new_comm: Comm },
    /// The process (or, when `threadgroup` is false, this one thread) was moved
    /// to another cgroup; `task.cgroup_id` is the new one. `path` is that
    /// cgroup's path, filled in by the tracker when known.
    CgroupAttach { threadgroup: bool, path: Option<std::sync::Arc<str>> },
    /// A task found by the task iterator.
    Snapshot { utime_ns: u64, stime_ns: u64, rss_pages: u64, exe: String, argv: Argv, zombie: bool },
}

impl Body {
    /// The record kind this body comes from.
    pub fn kind(&self) -> abi::Kind {
        match self {
            Body::Fork { .. } => abi::Kind::Fork,
            Body::Clone { .. } => abi::Kind::Clone,
            Body::Exec { .. } => abi::Kind::Exec,
            Body::ThreadExit { .. } => abi::Kind::ThreadExit,
            Body::ProcessExit { .. } => abi::Kind::ProcessExit,
            Body::Rename { .. } => abi::Kind::Rename,
            Body::CgroupAttach { .. } => abi::Kind::CgroupAttach,
            Body::Snapshot { .. } => abi::Kind::Snapshot,
        }
    }

    /// The short name of this kind, as shown in output (from the registry, `abi::KINDS`).
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// A task found by a walk, not a live event.
    pub fn is_snapshot(&self) -> bool {
        matches!(self, Body::Snapshot { .. })
    }
}

/// One decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Boot-clock time of the event, ns.
    pub ts_ns: u64,
    pub cpu: u32,
    pub task: TaskInfo,
    pub body: Body,
}

/// The path of a cgroup on the default hierarchy, as the kernel side read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CgroupPath {
    pub id: u64,
    /// `/`-separated, from the hierarchy's root: `/docker/<id>`.
    pub path: String,
    /// Deeper than the kernel side reads, or a component was cut.
    pub truncated: bool,
}

/// Any record of the kernel side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Event(Event),
    Cgroup(CgroupPath),
}

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
