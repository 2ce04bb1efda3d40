//! Typed events: what a kernel record tells, once decoded (see `decode.rs`).

use std::fmt;

use bytes::Bytes;
use serde::Serialize;
use tracer_abi as abi;

/// A thread's 16-byte comm, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Comm(pub(super) [u8; abi::COMM_LEN]);

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
    pub(super) fn from_abi(t: &abi::Task) -> TaskInfo {
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

impl Event {
    /// How long the event's process had lived at the event (its time minus the
    /// process's start time), ns: a process exit's lifetime.
    pub fn lifetime_ns(&self) -> u64 {
        self.ts_ns.saturating_sub(self.task.proc_start_ns)
    }
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
