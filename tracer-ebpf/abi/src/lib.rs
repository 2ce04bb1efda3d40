//! The event ABI shared by tracer's kernel programs and its userspace.
//!
//! Every record written by the kernel side starts with a [`Header`] whose `kind`
//! says which fixed struct follows and whose `size` is the length of the whole
//! record, trailing variable data included. All structs are `#[repr(C)]`, carry
//! no `bool` and no implicit padding, and their sizes are pinned by assertions
//! below so that both sides agree or fail to build.
//!
//! Kernel struct field offsets are not compiled in: userspace reads them from the
//! running kernel's BTF and hands them to the programs as the load-time global
//! [`Offsets`] (every field the programs read is named there).
#![no_std]

#[cfg(test)]
extern crate std;

/// Name of the ring buffer map all events go through.
pub const MAP_EVENTS: &str = "EVENTS";
/// Name of the per-CPU counter map of records that could not be written.
pub const MAP_LOST: &str = "LOST";
/// `LOST` slot: records lost on this CPU.
pub const LOST_SLOT_COUNT: u32 = 0;
/// `LOST` slot: bytes waiting in the ring buffer when this CPU last wrote.
pub const LOST_SLOT_FILL: u32 = 1;
/// Name of the per-CPU scratch map exec records are built in.
pub const MAP_SCRATCH: &str = "SCRATCH";
/// Name of the scratch map the task iterator builds its records in.
pub const MAP_ITER_SCRATCH: &str = "ITER_SCRATCH";
/// Name of the array map (u64 values) saying what the next iterator walk does.
pub const MAP_ITER_MODE: &str = "ITER_MODE";
/// `ITER_MODE` slot holding the mode.
pub const ITER_SLOT_MODE: u32 = 0;
/// `ITER_MODE` slot holding the parent-group cursor: 0 to start, then where the
/// next walk goes on, [`ITER_CURSOR_DONE`] when the thread list is done.
pub const ITER_SLOT_CURSOR: u32 = 1;
pub const ITER_CURSOR_DONE: u64 = u64::MAX;
/// `ITER_MODE` value: one record per task visited.
pub const ITER_MODE_ALL: u32 = 0;
/// `ITER_MODE` value: on a walk filtered to one process, a record for the thread
/// at the cursor of that process's real parent (to reach a parent the kernel left
/// out of the full walk), advancing the cursor.
pub const ITER_MODE_PARENT_GROUP: u32 = 1;
/// Name of the LRU map of cgroup ids whose path was sent (userspace forgets ids
/// it dropped, so that their path is sent again if they show up again).
pub const MAP_CGROUP_SEEN: &str = "CGROUP_SEEN";
/// Name of the load-time global holding [`Config`].
pub const GLOBAL_CONFIG: &str = "CONFIG";
/// Name of the load-time global holding [`Offsets`].
pub const GLOBAL_OFFSETS: &str = "OFFSETS";

/// Program names, as the functions are called in the eBPF object.
pub mod prog {
    pub const FORK: &str = "sched_process_fork";
    pub const EXEC: &str = "sched_process_exec";
    pub const EXIT: &str = "sched_process_exit";
    pub const RENAME: &str = "task_rename";
    pub const CGROUP_ATTACH: &str = "cgroup_attach_task";
    /// The task iterator, sleepable: copies each process's argv
    /// (`bpf_copy_from_user_task`, Linux 5.18+).
    pub const ITER_TASK: &str = "iter_task";
    /// The same walk without sleeping, for older kernels: argv of the processes
    /// found is flagged unreadable.
    pub const ITER_TASK_NO_ARGV: &str = "iter_task_no_argv";
}

/// Length of `task_struct::comm`.
pub const COMM_LEN: usize = 16;
/// Longest file name an exec record carries (the kernel's PATH_MAX).
pub const FILENAME_MAX: usize = 4096;
/// Largest argv a record can carry; the configured limit is at most this.
pub const ARGV_CAPACITY: usize = 256 * 1024;
/// Default argv capture limit.
pub const ARGV_DEFAULT: u32 = 32 * 1024;
/// Size of one scratch buffer (per CPU) in which variable-length records are built.
pub const SCRATCH_SIZE: usize = size_of::<ExecEvent>() + FILENAME_MAX + ARGV_CAPACITY;
/// Largest argv the task iterator copies per task. A bpf_seq_write must fit the
/// iterator's 8-page seq buffer, so start-up argv is capped below that (and flagged).
pub const ITER_ARGV_MAX: usize = 16 * 1024;
/// Largest file name (executable's base name) the task iterator copies.
pub const ITER_FILENAME_MAX: usize = 256;
/// Size of the iterator's scratch buffer.
pub const ITER_SCRATCH_SIZE: usize = size_of::<SnapshotEvent>() + ITER_FILENAME_MAX + ITER_ARGV_MAX;

/// Value stored in an [`Offsets`] field the running kernel does not have.
pub const OFFSET_MISSING: u32 = u32::MAX;

/// Record kinds. The numbers are part of the ABI: never reuse one.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A new process: fork, vfork or clone without CLONE_THREAD.
    Fork = 1,
    /// A new thread in an existing process: clone with CLONE_THREAD.
    Clone = 2,
    /// A successful execve/execveat.
    Exec = 3,
    /// A thread ended; its process lives on.
    ThreadExit = 4,
    /// The last thread of a process ended: the process is gone.
    ProcessExit = 5,
    /// A thread's comm changed (prctl PR_SET_NAME, pthread_setname_np, exec).
    Rename = 6,
    /// One task as found by the task iterator.
    Snapshot = 7,
    /// The path of a cgroup (default hierarchy), sent the first time a cgroup id
    /// shows up (and once per iterator walk).
    Cgroup = 8,
    /// A process (or, in a threaded cgroup, one thread) was moved to another
    /// cgroup on the default hierarchy: `task.cgroup_id` is where it is now.
    CgroupAttach = 9,
}

/// One record kind, all in one place: its number (the [`Kind`]), the name users
/// see, its record type's fixed size, and the program that makes it.
#[derive(Clone, Copy, Debug)]
pub struct KindInfo {
    pub kind: Kind,
    /// The name in output: `tracer events`'s EVENT column, JSON's `kind`, counters.
    pub name: &'static str,
    /// Size of the fixed part of a record of this kind (its record type).
    pub fixed_size: usize,
    /// The program that writes it (a [`Tracepoint`]'s or an iterator's name).
    pub program: &'static str,
}

/// The registry of record kinds, in number order: kind `n` is `KINDS[n - 1]`.
/// Adding a kind means a new [`Kind`] number, its record type, an entry here, and,
/// for a new program, an entry in [`TRACEPOINTS`]; the tests below check that
/// they agree.
pub const KINDS: [KindInfo; 9] = [
    KindInfo { kind: Kind::Fork, name: "fork", fixed_size: size_of::<ForkEvent>(), program: prog::FORK },
    KindInfo { kind: Kind::Clone, name: "clone", fixed_size: size_of::<ForkEvent>(), program: prog::FORK },
    KindInfo { kind: Kind::Exec, name: "exec", fixed_size: size_of::<ExecEvent>(), program: prog::EXEC },
    KindInfo { kind: Kind::ThreadExit, name: "thread_exit", fixed_size: size_of::<ExitEvent>(), program: prog::EXIT },
    KindInfo { kind: Kind::ProcessExit, name: "exit", fixed_size: size_of::<ExitEvent>(), program: prog::EXIT },
    KindInfo { kind: Kind::Rename, name: "rename", fixed_size: size_of::<RenameEvent>(), program: prog::RENAME },
    KindInfo {
        kind: Kind::Snapshot,
        name: "snapshot",
        fixed_size: size_of::<SnapshotEvent>(),
        program: prog::ITER_TASK,
    },
    // Sent by every program that meets a new cgroup first; named after the first.
    KindInfo { kind: Kind::Cgroup, name: "cgroup_path", fixed_size: size_of::<CgroupEvent>(), program: prog::FORK },
    KindInfo {
        kind: Kind::CgroupAttach,
        name: "cgroup",
        fixed_size: size_of::<CgroupAttachEvent>(),
        program: prog::CGROUP_ATTACH,
    },
];

/// A tracepoint program: its name in the eBPF object and where it attaches.
#[derive(Clone, Copy, Debug)]
pub struct Tracepoint {
    pub program: &'static str,
    /// The BTF tracepoint (`tp_btf/...`).
    pub attach: &'static str,
    /// `None` if tracer cannot work without it; otherwise what is not seen when
    /// the kernel refuses it.
    pub lost_without: Option<&'static str>,
}

/// Every tracepoint program, in the order they are attached: the exit program
/// before the fork program, so that no task is seen born and then missed dying.
pub const TRACEPOINTS: [Tracepoint; 5] = [
    Tracepoint { program: prog::EXIT, attach: "sched_process_exit", lost_without: None },
    Tracepoint { program: prog::EXEC, attach: "sched_process_exec", lost_without: None },
    Tracepoint { program: prog::RENAME, attach: "task_rename", lost_without: Some("renames") },
    Tracepoint { program: prog::CGROUP_ATTACH, attach: "cgroup_attach_task", lost_without: Some("cgroup moves") },
    Tracepoint { program: prog::FORK, attach: "sched_process_fork", lost_without: None },
];

impl Kind {
    /// Every kind, in number order.
    pub const ALL: [Kind; KINDS.len()] = {
        let mut all = [Kind::Fork; KINDS.len()];
        let mut i = 0;
        while i < KINDS.len() {
            all[i] = KINDS[i].kind;
            i += 1;
        }
        all
    };

    /// The kind for a raw tag, if it is one this build knows.
    pub const fn from_u32(v: u32) -> Option<Kind> {
        let i = (v as usize).wrapping_sub(1);
        if i < KINDS.len() { Some(KINDS[i].kind) } else { None }
    }

    /// Its entry in [`KINDS`].
    pub const fn info(self) -> &'static KindInfo {
        &KINDS[self as usize - 1]
    }

    /// Its index in [`KINDS`] (and in anything kept per kind).
    pub const fn index(self) -> usize {
        self as usize - 1
    }

    /// The name users see.
    pub const fn name(self) -> &'static str {
        self.info().name
    }

    /// Size of the fixed part of a record of this kind.
    pub const fn fixed_size(self) -> usize {
        self.info().fixed_size
    }
}

/// Starts every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Header {
    /// A [`Kind`] as u32.
    pub kind: u32,
    /// Size of the whole record in bytes, trailing data included.
    pub size: u32,
    /// `bpf_ktime_get_boot_ns()` when the record was made.
    pub ts_ns: u64,
    /// CPU the record was made on.
    pub cpu: u32,
    pub _pad: u32,
}

/// `Task::flags`: the task is a kernel thread (PF_KTHREAD).
pub const TASK_KTHREAD: u32 = 1;
/// `Task::flags`: the task was already exiting (PF_EXITING) when read.
pub const TASK_EXITING: u32 = 2;
/// `Task::flags`: the task is the leader of its thread group.
pub const TASK_LEADER: u32 = 4;

/// What every record says of the task it is about.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Task {
    /// `start_boottime` of this task (ns since boot). With `tid`, its identity.
    pub start_ns: u64,
    /// `start_boottime` of the thread group leader: with `tgid`, the process identity.
    pub leader_start_ns: u64,
    /// `start_boottime` of the real parent's thread group leader.
    pub parent_start_ns: u64,
    /// Id of the task's cgroup on the default (v2) hierarchy.
    pub cgroup_id: u64,
    pub tid: u32,
    pub tgid: u32,
    /// Thread group id of `real_parent`.
    pub ppid: u32,
    /// The tid as seen inside the task's own pid namespace.
    pub ns_tid: u32,
    /// The tgid as seen inside the task's own pid namespace.
    pub ns_tgid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Inode number of the task's pid namespace.
    pub pidns: u32,
    /// Inode number of the task's mount namespace (0 when it has none any more).
    pub mntns: u32,
    /// `TASK_*` bits.
    pub flags: u32,
    pub comm: [u8; COMM_LEN],
}

/// [`Kind::Fork`] and [`Kind::Clone`]: `task` is the new task.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ForkEvent {
    pub header: Header,
    pub task: Task,
    /// The thread that called fork/clone.
    pub creator_tid: u32,
    pub _pad: u32,
}

/// `ExecEvent::flags` / `SnapshotEvent::flags`: argv was cut at the limit.
pub const ARGV_TRUNCATED: u32 = 1;
/// The file name was cut at its limit.
pub const FILENAME_TRUNCATED: u32 = 2;
/// argv could not be read at all (its length fields are 0).
pub const ARGV_UNREADABLE: u32 = 4;

/// [`Kind::Exec`]: `task` as it is after the exec. Followed by `filename_len`
/// bytes of file name (no NUL) and `argv_len` bytes of argv (NUL separated).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecEvent {
    pub header: Header,
    pub task: Task,
    /// The tid that called exec. Differs from `task.tid` when a non-leader thread exec'd.
    pub old_tid: u32,
    pub filename_len: u32,
    pub argv_len: u32,
    /// Length of the whole argv area in the new program's memory.
    pub argv_real_len: u32,
    /// `ARGV_*` / `FILENAME_*` bits.
    pub flags: u32,
    pub _pad: u32,
}

/// [`Kind::ThreadExit`] and [`Kind::ProcessExit`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitEvent {
    pub header: Header,
    pub task: Task,
    /// The exiting thread's own exit code, wait-status encoded.
    pub exit_code: u32,
    /// For a process exit: the status its parent's wait() sees (wait-status encoded:
    /// `(status << 8) | signal | 0x80 if core dumped`). Equal to `exit_code` otherwise.
    pub status: u32,
    /// For a process exit with children: the tgid of the process its children are
    /// being reparented to (nearest child-subreaper ancestor in the same pid
    /// namespace, else that namespace's init), computed as the kernel does. 0 otherwise.
    pub reaper_tgid: u32,
    /// `start_boottime` of that reaper's thread group leader.
    pub _pad: u32,
    pub reaper_start_ns: u64,
}

/// [`Kind::Rename`]: `task.comm` is the old name.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RenameEvent {
    pub header: Header,
    pub task: Task,
    pub new_comm: [u8; COMM_LEN],
}

/// [`Kind::Snapshot`]: one task found by the task iterator. Followed by
/// `filename_len` bytes of the executable's base name and `argv_len` bytes of argv.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SnapshotEvent {
    pub header: Header,
    pub task: Task,
    /// User and system CPU time of the task, ns.
    pub utime_ns: u64,
    pub stime_ns: u64,
    /// Resident pages of the task's mm (file + anon + shmem), 0 for kernel threads.
    pub rss_pages: u64,
    pub filename_len: u32,
    pub argv_len: u32,
    pub argv_real_len: u32,
    pub flags: u32,
    /// `exit_state` of the task (non-zero: zombie or dead).
    pub exit_state: u32,
    pub _pad: u32,
}

/// Deepest cgroup path captured (components, leaf first).
pub const CGROUP_DEPTH: usize = 8;
/// Longest cgroup path component captured (with its NUL).
pub const CGROUP_NAME_MAX: usize = 128;
/// `CgroupEvent::flags`: the path is deeper than [`CGROUP_DEPTH`] or a name was cut.
pub const CGROUP_TRUNCATED: u32 = 1;

/// [`Kind::Cgroup`]: the path of cgroup `cgroup_id` on the default hierarchy.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CgroupEvent {
    pub header: Header,
    pub cgroup_id: u64,
    /// Components captured in `names` (0 for the root cgroup).
    pub depth: u32,
    pub flags: u32,
    /// Path components, leaf first, each NUL-terminated.
    pub names: [[u8; CGROUP_NAME_MAX]; CGROUP_DEPTH],
}

/// [`Kind::CgroupAttach`]: `task` as it is after the move.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CgroupAttachEvent {
    pub header: Header,
    pub task: Task,
    /// 1 when the whole thread group moved (a write to `cgroup.procs`), 0 when
    /// only this thread did (`cgroup.threads`).
    pub threadgroup: u32,
    pub _pad: u32,
}

/// `ITER_MODE` slot holding the walk generation: the iterator sends each
/// cgroup's path once per generation.
pub const ITER_SLOT_GEN: u32 = 2;
/// `ITER_MODE` slot holding the process a parent-group walk is about (0: the
/// walk is filtered by the kernel instead, Linux 6.1+).
pub const ITER_SLOT_PID: u32 = 3;
/// Entries of `ITER_MODE`.
pub const ITER_SLOTS: u32 = 4;

const _: () = assert!(size_of::<Header>() == 24);
const _: () = assert!(size_of::<CgroupEvent>() == 1064);
const _: () = assert!(size_of::<Task>() == 88);
const _: () = assert!(size_of::<ForkEvent>() == 120);
const _: () = assert!(size_of::<ExecEvent>() == 136);
const _: () = assert!(size_of::<ExitEvent>() == 136);
const _: () = assert!(size_of::<RenameEvent>() == 128);
const _: () = assert!(size_of::<SnapshotEvent>() == 160);
const _: () = assert!(size_of::<CgroupAttachEvent>() == 120);
const _: () = assert!(ARGV_CAPACITY.is_power_of_two() && ITER_ARGV_MAX.is_power_of_two());
const _: () = assert!(FILENAME_MAX.is_power_of_two() && ITER_FILENAME_MAX.is_power_of_two());

/// Settings handed to the kernel programs at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// argv bytes to capture per exec (at most [`ARGV_CAPACITY`]).
    pub argv_max: u32,
    /// 1 when `sched_process_exit` passes `group_dead` as its second argument
    /// (Linux 6.16+); otherwise the programs read `signal->live`.
    pub exit_has_group_dead: u32,
    /// Wake the reader once this many bytes wait in the ring buffer (it also
    /// drains on a timer): batching instead of a wake-up per event.
    pub wakeup_bytes: u32,
    pub _pad: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config { argv_max: ARGV_DEFAULT, exit_has_group_dead: 1, wakeup_bytes: 256 * 1024, _pad: 0 }
    }
}

macro_rules! offsets {
    ($( $(#[$m:meta])* $field:ident ),* $(,)?) => {
        /// Byte offsets of every kernel struct field the programs read, taken from
        /// the running kernel's BTF at load time. Field names are `<struct>_<path>`.
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct Offsets {
            $( $(#[$m])* pub $field: u32, )*
        }

        impl Offsets {
            /// All offsets unknown.
            pub const MISSING: Offsets = Offsets { $( $field: OFFSET_MISSING, )* };

            /// Every field by name, for diagnostics and for the resolver.
            pub fn fields_mut(&mut self) -> [(&'static str, &mut u32); Offsets::COUNT] {
                [$( (stringify!($field), &mut self.$field), )*]
            }

            /// Every field by name.
            pub fn fields(&self) -> [(&'static str, u32); Offsets::COUNT] {
                [$( (stringify!($field), self.$field), )*]
            }

            pub const COUNT: usize = [$( stringify!($field), )*].len();
        }
    };
}

offsets! {
    task_struct_pid,
    task_struct_tgid,
    task_struct_real_parent,
    task_struct_group_leader,
    task_struct_comm,
    task_struct_flags,
    task_struct_start_boottime,
    task_struct_real_cred,
    task_struct_cgroups,
    task_struct_thread_pid,
    task_struct_nsproxy,
    task_struct_signal,
    task_struct_exit_code,
    task_struct_exit_state,
    task_struct_mm,
    task_struct_utime,
    /// `task_struct.children` (a list_head): empty when it points at itself.
    task_struct_children,
    /// `task_struct.thread_node`, linked on `signal_struct.thread_head` (Linux 6.7+).
    task_struct_thread_node,
    task_struct_stime,
    cred_uid,
    cred_gid,
    css_set_dfl_cgrp,
    cgroup_kn,
    kernfs_node_id,
    kernfs_node_name,
    /// `kernfs_node.__parent` (called `parent` before Linux 6.15).
    kernfs_node_parent,
    pid_level,
    pid_numbers,
    /// `sizeof(struct upid)`.
    upid_size,
    upid_nr,
    upid_ns,
    pid_namespace_ns_inum,
    nsproxy_mnt_ns,
    mnt_namespace_ns_inum,
    signal_struct_live,
    signal_struct_flags,
    signal_struct_group_exit_code,
    /// Bit offset (from the start of signal_struct) of the bitfield `is_child_subreaper`.
    signal_struct_is_child_subreaper_bit,
    /// Bit offset of the bitfield `has_child_subreaper`.
    signal_struct_has_child_subreaper_bit,
    signal_struct_thread_head,
    pid_namespace_child_reaper,
    mm_struct_arg_start,
    mm_struct_arg_end,
    mm_struct_exe_file,
    mm_struct_rss_stat,
    percpu_counter_count,
    /// `sizeof(struct percpu_counter)`.
    percpu_counter_size,
    file_f_path_dentry,
    dentry_d_name_name,
    linux_binprm_filename,
}

const _: () = assert!(size_of::<Offsets>() == Offsets::COUNT * 4);

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain #[repr(C)] structs of integers with no padding (sizes asserted above).
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as above: only u32 fields.
    unsafe impl aya::Pod for super::Offsets {}
}

/// Turns a NUL-padded comm into its text bytes.
pub fn comm_bytes(comm: &[u8; COMM_LEN]) -> &[u8] {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    &comm[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for (i, k) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(k as usize, i + 1, "KINDS is in number order, numbered 1.. without gaps");
            assert_eq!(Kind::from_u32(k as u32), Some(k));
            assert_eq!(k.index(), i);
        }
        assert_eq!(Kind::from_u32(0), None);
        assert_eq!(Kind::from_u32(Kind::ALL.len() as u32 + 1), None);
        // An enum variant left out of KINDS would make ALL miss it: match them all.
        for k in Kind::ALL {
            match k {
                Kind::Fork
                | Kind::Clone
                | Kind::Exec
                | Kind::ThreadExit
                | Kind::ProcessExit
                | Kind::Rename
                | Kind::Snapshot
                | Kind::Cgroup
                | Kind::CgroupAttach => {}
            }
        }
    }

    #[test]
    fn registry_is_consistent() {
        let names: std::vec::Vec<_> = KINDS.iter().map(|k| k.name).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "kind names are unique: {names:?}");
        for k in KINDS {
            let known = TRACEPOINTS.iter().any(|t| t.program == k.program)
                || [prog::ITER_TASK, prog::ITER_TASK_NO_ARGV].contains(&k.program);
            assert!(known, "{}: program {} is neither a tracepoint nor an iterator", k.name, k.program);
            assert!(k.fixed_size >= size_of::<Header>(), "{}: a record starts with a header", k.name);
        }
        for t in TRACEPOINTS {
            assert!(KINDS.iter().any(|k| k.program == t.program), "{} makes no kind", t.program);
        }
    }

    #[test]
    fn offsets_fields_are_named() {
        let o = Offsets::MISSING;
        let names: std::vec::Vec<_> = o.fields().iter().map(|(n, _)| *n).collect();
        assert!(names.contains(&"task_struct_pid"));
        assert_eq!(names.len(), Offsets::COUNT);
    }

    #[test]
    fn comm_stops_at_nul() {
        let mut c = [0u8; COMM_LEN];
        c[..3].copy_from_slice(b"abc");
        assert_eq!(comm_bytes(&c), b"abc");
        assert_eq!(comm_bytes(&[b'x'; COMM_LEN]).len(), COMM_LEN);
    }
}
