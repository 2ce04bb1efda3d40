//! Everything that talks to the kernel: BTF offsets, loading and attaching the
//! programs, the ring buffer reader and the task iterator.

pub mod btf;
pub mod features;
pub mod iter;
pub mod privileges;
pub mod reader;

use std::os::fd::{AsFd, BorrowedFd};

use anyhow::{Context, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, Iter},
};
use tracer_abi as abi;

use crate::events::{self, Event};

/// The kernel programs, built by build.rs for the bpf target.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ebpf.o"));

/// The task iterator programs, best first.
const ITERATORS: &[(&str, features::Iterator)] = &[
    (abi::prog::ITER_TASK, features::Iterator::Sleepable),
    (abi::prog::ITER_TASK_NO_ARGV, features::Iterator::NoArgv),
];

/// Default ring buffer size: 8 MiB.
pub const DEFAULT_RINGBUF_BYTES: u32 = 8 << 20;

/// What can be set at load time.
#[derive(Clone, Debug)]
pub struct Options {
    /// Ring buffer size in bytes: a power of two, at least one page.
    pub ringbuf_bytes: u32,
    /// argv bytes captured per exec.
    pub argv_max: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options { ringbuf_bytes: DEFAULT_RINGBUF_BYTES, argv_max: abi::ARGV_DEFAULT }
    }
}

impl Options {
    /// Checks the values, with errors that say what is allowed.
    pub fn validate(&self) -> Result<()> {
        let page = 4096u32;
        if !self.ringbuf_bytes.is_power_of_two() || self.ringbuf_bytes < page {
            bail!(
                "--ringbuf-size {} is not a power of two of at least {page} bytes (try 8388608 for 8 MiB)",
                self.ringbuf_bytes
            );
        }
        if self.argv_max as usize > abi::ARGV_CAPACITY {
            bail!("--argv-max {} is over the most tracer can capture ({} bytes)", self.argv_max, abi::ARGV_CAPACITY);
        }
        Ok(())
    }
}

/// The loaded and attached kernel programs.
pub struct Kernel {
    ebpf: Ebpf,
    lost: Option<PerCpuArray<MapData, u64>>,
    iter_mode: Array<MapData, u64>,
    /// The iterator program that loaded, if any.
    iter: Option<&'static str>,
    walks: u64,
    /// What this kernel let the programs do.
    pub features: features::Features,
}

impl Kernel {
    /// Checks the prerequisites, loads the programs with the running kernel's
    /// offsets and attaches them. Events flow into the ring buffer from here on.
    pub fn load(opts: &Options) -> Result<Kernel> {
        opts.validate()?;
        privileges::check()?;
        let t0 = std::time::Instant::now();
        let kbtf = btf::KernelBtf::load()?;
        log::debug!("kernel BTF parsed in {:?}", t0.elapsed());
        let offsets = kbtf.offsets()?;
        let config = abi::Config {
            argv_max: opts.argv_max,
            exit_has_group_dead: u32::from(kbtf.exit_has_group_dead()),
            // A quarter of the ring buffer, at most 256 KiB: big batches, never a full buffer unread.
            wakeup_bytes: (opts.ringbuf_bytes / 4).min(256 * 1024),
            _pad: 0,
        };
        let btf = aya::Btf::from_sys_fs()
            .context("reading the kernel's BTF from /sys/kernel/btf/vmlinux (tracer needs CONFIG_DEBUG_INFO_BTF=y)")?;
        log::debug!("offsets and aya BTF ready at {:?}", t0.elapsed());
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow!("reading {what}: {e}"))? as u32;

        // Kernels without memcg accounting need RLIMIT_MEMLOCK raised; failing is harmless elsewhere.
        let rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
        // SAFETY: plain syscall with a valid struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
            log::debug!("could not raise RLIMIT_MEMLOCK (fine on kernels with memcg accounting)");
        }

        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global(abi::GLOBAL_OFFSETS, &offsets, true)
            .override_global(abi::GLOBAL_CONFIG, &config, true)
            .map_max_entries(abi::MAP_EVENTS, opts.ringbuf_bytes)
            .map_max_entries(abi::MAP_SCRATCH, cpus)
            .load(EBPF_OBJECT)
            .map_err(|e| {
                log::debug!("loading the eBPF object: {e:?}");
                anyhow!(
                    "the kernel refused tracer's maps or BTF ({}): tracer needs BPF ring buffers and BTF (Linux 5.8+); RUST_LOG=debug shows more",
                    one_line(&e.to_string())
                )
            })?;

        match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => reader::spawn_kernel_logger(logger),
            Err(e) => log::debug!("kernel-side logging is off: {e}"),
        }

        let mut features = features::Features {
            kernel: kbtf.release().unwrap_or_default(),
            iterator: features::Iterator::None,
            iter_pid_filter: false,
            rename: false,
            cgroup_moves: false,
            exit_group_dead_arg: config.exit_has_group_dead != 0,
            rss: offsets.mm_struct_rss_stat != abi::OFFSET_MISSING,
            subreapers: offsets.signal_struct_is_child_subreaper_bit != abi::OFFSET_MISSING
                && offsets.signal_struct_has_child_subreaper_bit != abi::OFFSET_MISSING,
            refused: Vec::new(),
        };

        // Load (verify) every program first, then attach them back to back.
        let mut loaded = Vec::new();
        // Every tracepoint program of the registry (abi::TRACEPOINTS), in its order:
        // all BTF tracepoints (tp_btf, Linux 5.5+), fork last, so that a task
        // created once fork is attached has its exit seen too.
        for &abi::Tracepoint { program: name, attach: tp, lost_without: lost } in &abi::TRACEPOINTS {
            let prog: &mut BtfTracePoint = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} is missing from the eBPF object"))?
                .try_into()?;
            match prog.load(tp, &btf) {
                Ok(()) => loaded.push((name, tp)),
                Err(e) => {
                    let why = refusal(name, &e);
                    let Some(lost) = lost else {
                        bail!(
                            "the kernel refused the {tp} program ({why}): tracer cannot follow processes on this kernel; `tracer check` tells what it supports"
                        );
                    };
                    log::warn!("the kernel refused the {tp} program ({why}): {lost} will not be seen");
                    features.refused.push((name.to_string(), why));
                }
            }
            log::debug!("{name} loaded at {:?}", t0.elapsed());
        }
        features.rename = loaded.iter().any(|(n, _)| *n == abi::prog::RENAME);
        features.cgroup_moves = loaded.iter().any(|(n, _)| *n == abi::prog::CGROUP_ATTACH);

        let iter = load_iterator(&mut ebpf, &btf, &mut features)?;
        for (name, tp) in loaded {
            let prog: &mut BtfTracePoint = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} is missing from the eBPF object"))?
                .try_into()?;
            prog.attach().map_err(|e| {
                anyhow!(
                    "attaching to the BTF tracepoint {tp} failed ({}); `tracer check` tells what this kernel supports",
                    one_line(&e.to_string())
                )
            })?;
        }
        log::debug!("programs loaded and attached at {:?}", t0.elapsed());
        let lost = PerCpuArray::try_from(ebpf.take_map(abi::MAP_LOST).ok_or_else(|| anyhow!("map LOST missing"))?)?;
        let iter_mode = Array::try_from(
            ebpf.take_map(abi::MAP_ITER_MODE).ok_or_else(|| anyhow!("map {} missing", abi::MAP_ITER_MODE))?,
        )?;
        let mut kernel = Kernel { ebpf, lost: Some(lost), iter_mode, iter, walks: 0, features };
        kernel.features.iter_pid_filter = kernel.probe_pid_filter();
        log::info!("kernel {}: mode {}", kernel.features.kernel, kernel.features.mode());
        Ok(kernel)
    }

    /// Whether the kernel takes a task iterator walk filtered to one process
    /// (Linux 6.1+): tried on this process itself.
    fn probe_pid_filter(&mut self) -> bool {
        let Some(fd) = iter_fd(&self.ebpf, self.iter) else { return false };
        if self.iter_mode.set(abi::ITER_SLOT_MODE, u64::from(abi::ITER_MODE_ALL), 0).is_err() {
            return false;
        }
        iter::walk(fd, Some(std::process::id())).is_ok()
    }

    /// Takes the ring buffer (once).
    pub fn take_ring_buffer(&mut self) -> Result<RingBuf<MapData>> {
        let map = self.ebpf.take_map(abi::MAP_EVENTS).ok_or_else(|| anyhow!("the ring buffer was already taken"))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Makes the kernel side send the path of these cgroups again the next time
    /// they show up (userspace dropped them). Ids the LRU map already evicted are
    /// fine. Returns how many were removed.
    pub fn forget_cgroups(&mut self, ids: &[u64]) -> Result<usize> {
        let map =
            self.ebpf.map_mut(abi::MAP_CGROUP_SEEN).ok_or_else(|| anyhow!("map {} missing", abi::MAP_CGROUP_SEEN))?;
        let mut seen: aya::maps::HashMap<&mut MapData, u64, u64> = aya::maps::HashMap::try_from(map)?;
        Ok(ids.iter().filter(|id| seen.remove(id).is_ok()).count())
    }

    /// Takes the counter of records the kernel side could not write (once).
    pub fn take_lost_counter(&mut self) -> Result<LostCounter> {
        self.lost.take().map(LostCounter).ok_or_else(|| anyhow!("the lost counter was already taken"))
    }

    /// Walks every task of the system with the BPF task iterator and returns one
    /// snapshot event per task. Runs while the tracepoints are attached, so that
    /// the caller can merge it with the events that raced with the walk.
    pub fn snapshot(&mut self) -> Result<TaskWalk> {
        let Some(prog_fd) = iter_fd(&self.ebpf, self.iter) else {
            // No iterator on this kernel (see `features`): the tree is built from events alone.
            return Ok(TaskWalk::default());
        };
        let filter = self.features.iter_pid_filter;
        let mode = &mut self.iter_mode;
        mode.set(abi::ITER_SLOT_MODE, u64::from(abi::ITER_MODE_ALL), 0)?;
        // A new generation: the walk sends every cgroup's path again.
        self.walks += 1;
        mode.set(abi::ITER_SLOT_GEN, self.walks, 0)?;
        let mut snap = TaskWalk::default();
        let data = iter::walk(prog_fd, None).context("running the task iterator")?;
        snap.decode(&data);

        // Some kernels leave tasks out of iterator walks (on this project's VMs, PID 1
        // and its threads: a protected sandbox agent). Every such process that has
        // children is still reachable through their real_parent pointers: ask the
        // kernel for the parent's thread group through one child, round by round
        // (a filled-in parent may itself have a missing parent).
        let mut asked = std::collections::HashSet::new();
        for _ in 0..MAX_FILL_ROUNDS {
            let missing = snap.missing_parents();
            let todo: Vec<(u32, u32)> = missing.into_iter().filter(|(ppid, _)| asked.insert(*ppid)).collect();
            if todo.is_empty() {
                break;
            }
            mode.set(abi::ITER_SLOT_MODE, u64::from(abi::ITER_MODE_PARENT_GROUP), 0)?;
            for (ppid, child) in todo {
                match fill_in_parent(mode, prog_fd, child, filter, &mut snap) {
                    Ok(n) => log::info!(
                        "the task iterator left out process {ppid}; filled in {n} tasks through its child {child}"
                    ),
                    Err(e) => log::warn!("could not fill in process {ppid} through its child {child}: {e}"),
                }
            }
            mode.set(abi::ITER_SLOT_MODE, u64::from(abi::ITER_MODE_ALL), 0)?;
            mode.set(abi::ITER_SLOT_PID, 0, 0)?;
        }
        Ok(snap)
    }
}

/// Loads the best task iterator this kernel takes (see [`ITERATORS`]) and notes
/// it, and the refusals of better ones, in `features`. `None`: none loaded.
fn load_iterator(ebpf: &mut Ebpf, btf: &aya::Btf, features: &mut features::Features) -> Result<Option<&'static str>> {
    for &(name, kind) in ITERATORS {
        let prog: &mut Iter = ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("the task iterator {name} is missing from the eBPF object"))?
            .try_into()?;
        match prog.load("task", btf) {
            Ok(()) => {
                features.iterator = kind;
                return Ok(Some(name));
            }
            Err(e) => {
                let why = refusal(name, &e);
                log::info!("the kernel refused the task iterator {name} ({why}); trying the next");
                features.refused.push((name.to_string(), why));
            }
        }
    }
    log::warn!(
        "no task iterator loaded: processes that existed before tracer started will not be seen (`tracer check` tells why)"
    );
    Ok(None)
}

/// The fd of the loaded iterator program `name`.
fn iter_fd<'a>(ebpf: &'a Ebpf, name: Option<&str>) -> Option<BorrowedFd<'a>> {
    let prog: &Iter = ebpf.program(name?)?.try_into().ok()?;
    prog.fd().ok().map(|fd| fd.as_fd())
}

/// The kernel's reason for refusing program `name`, in one line. The verifier's
/// log is long: it goes to the debug log and to a file named in the reason.
fn refusal(name: &str, e: &aya::programs::ProgramError) -> String {
    let aya::programs::ProgramError::LoadError { io_error, verifier_log } = e else {
        return one_line(&e.to_string());
    };
    let log = verifier_log.to_string();
    log::debug!("the verifier's log for {name}:\n{log}");
    // The last line that is not a statistic says what the verifier objected to.
    let last = log
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
        })
        .unwrap_or("");
    let saved = save_verifier_log(name, &log);
    let mut why = format!("{io_error}");
    if !last.is_empty() {
        why.push_str(&format!(": {}", one_line(last)));
    }
    match saved {
        Some(path) => why.push_str(&format!("; the verifier's log is in {}", path.display())),
        None => why.push_str("; RUST_LOG=debug prints the verifier's log"),
    }
    why
}

/// Where verifier logs are kept: one file per program, replaced at each start,
/// so that a kernel that refuses a program at every start leaves one file, not
/// one per run.
const VERIFIER_LOG_DIR: &str = "/run/tracer";

/// Writes a verifier log to `VERIFIER_LOG_DIR/verifier-<program>.log`. The
/// directory is root's (created 0750 if missing) and the file is opened without
/// following a link, so nothing outside it is ever written.
fn save_verifier_log(name: &str, log: &str) -> Option<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = std::path::Path::new(VERIFIER_LOG_DIR);
    if !dir.is_dir() {
        std::fs::DirBuilder::new().recursive(true).mode(0o750).create(dir).ok()?;
    }
    let path = dir.join(format!("verifier-{name}.log"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .ok()?;
    f.write_all(log.as_bytes()).ok()?;
    Some(path)
}

/// The first line of a message, for one-line errors.
fn one_line(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or("").trim();
    // aya appends the verifier's whole log to load errors: keep what comes before it.
    first.split(". Verifier output:").next().unwrap_or(first).to_string()
}

/// Reads the threads of `child`'s real parent, one walk per thread (see the
/// iterator program's parent-group mode). Returns how many were added.
/// Without the kernel's filter (`filter` false, before 6.1) each walk visits
/// every task and the program acts on `child`'s alone.
fn fill_in_parent(
    mode: &mut Array<MapData, u64>,
    prog: BorrowedFd<'_>,
    child: u32,
    filter: bool,
    snap: &mut TaskWalk,
) -> Result<u64> {
    mode.set(abi::ITER_SLOT_CURSOR, 0, 0)?;
    mode.set(abi::ITER_SLOT_PID, if filter { 0 } else { u64::from(child) }, 0)?;
    let mut seen = std::collections::HashSet::new();
    let mut added = 0;
    for _ in 0..MAX_GROUP_THREADS {
        let data = iter::walk(prog, filter.then_some(child))?;
        let before = snap.events.len();
        snap.decode(&data);
        // A thread list that changed under the cursor could lead back to a thread
        // already read: stop there.
        let fresh = snap.events[before..].iter().all(|e| seen.insert(e.task.tid));
        added += (snap.events.len() - before) as u64;
        if !fresh || snap.events.len() == before || mode.get(&abi::ITER_SLOT_CURSOR, 0)? == abi::ITER_CURSOR_DONE {
            break;
        }
    }
    snap.filled_in += added;
    Ok(added)
}

/// Most threads read from one left-out process.
const MAX_GROUP_THREADS: usize = 1 << 16;

/// Rounds of filling in parents the walk left out.
const MAX_FILL_ROUNDS: usize = 8;

/// The outcome of one task iterator walk.
#[derive(Default, Debug)]
pub struct TaskWalk {
    pub events: Vec<Event>,
    /// Paths of the cgroups the walked tasks are in.
    pub cgroups: Vec<events::CgroupPath>,
    /// Malformed records skipped.
    pub malformed: u64,
    /// Tasks the full walk left out, found through their children.
    pub filled_in: u64,
}

impl TaskWalk {
    fn decode(&mut self, data: &[u8]) {
        for rec in events::records(data) {
            match rec.and_then(events::Record::decode) {
                Ok(events::Record::Event(ev)) => self.events.push(ev),
                Ok(events::Record::Cgroup(c)) => self.cgroups.push(c),
                Err(e) => {
                    self.malformed += 1;
                    log::warn!("task iterator: malformed record skipped: {e}");
                }
            }
        }
    }

    /// Parent pids that tasks name but the walk did not return, each with one child pid.
    fn missing_parents(&self) -> Vec<(u32, u32)> {
        let present: std::collections::HashSet<u32> = self.events.iter().map(|e| e.task.pid).collect();
        let mut missing = std::collections::BTreeMap::new();
        for e in &self.events {
            let ppid = e.task.ppid;
            if ppid != 0 && !present.contains(&ppid) {
                missing.entry(ppid).or_insert(e.task.pid);
            }
        }
        missing.into_iter().collect()
    }
}

/// Reads the kernel side's count of records it could not write.
pub struct LostCounter(PerCpuArray<MapData, u64>);

impl LostCounter {
    /// Records lost so far, summed over CPUs.
    pub fn get(&self) -> u64 {
        self.0.get(&abi::LOST_SLOT_COUNT, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }

    /// Bytes waiting in the ring buffer as the last record was written (the
    /// largest of the CPUs' last readings).
    pub fn fill(&self) -> u64 {
        self.0.get(&abi::LOST_SLOT_FILL, 0).map(|v| v.iter().copied().max().unwrap_or(0)).unwrap_or(0)
    }
}
