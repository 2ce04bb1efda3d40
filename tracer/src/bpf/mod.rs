//! Everything that talks to the kernel: BTF offsets, loading and attaching the
//! programs, the ring buffer reader and the task iterator.

pub mod btf;
pub mod privileges;
pub mod reader;

use std::io::Read;

use anyhow::{Context, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, Iter},
};
use tracer_abi as abi;

use crate::event::{self, Event};

/// The kernel programs, built by build.rs for the bpf target.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ebpf.o"));

/// Which program attaches where: `(program name in the object, BTF tracepoint)`.
/// All are BTF tracepoints (tp_btf): no kprobes or fentry are needed.
const TRACEPOINTS: &[(&str, &str)] = &[
    (abi::prog::FORK, "sched_process_fork"),
    (abi::prog::EXIT, "sched_process_exit"),
    (abi::prog::EXEC, "sched_process_exec"),
    (abi::prog::RENAME, "task_rename"),
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
    btf: aya::Btf,
    lost: Option<PerCpuArray<MapData, u64>>,
    iter_loaded: bool,
}

impl Kernel {
    /// Checks the prerequisites, loads the programs with the running kernel's
    /// offsets and attaches them. Events flow into the ring buffer from here on.
    pub fn load(opts: &Options) -> Result<Kernel> {
        opts.validate()?;
        privileges::check()?;
        let kbtf = btf::KernelBtf::load()?;
        let offsets = kbtf.offsets()?;
        let config = abi::Config { argv_max: opts.argv_max, exit_has_group_dead: u32::from(kbtf.exit_has_group_dead()) };
        let btf = aya::Btf::from_sys_fs()
            .context("reading the kernel's BTF from /sys/kernel/btf/vmlinux (tracer needs CONFIG_DEBUG_INFO_BTF=y)")?;
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
            .context("loading tracer's eBPF object into the kernel")?;

        match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => reader::spawn_kernel_logger(logger),
            Err(e) => log::debug!("kernel-side logging is off: {e}"),
        }

        for (name, tp) in TRACEPOINTS {
            let prog: &mut BtfTracePoint = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("program {name} is missing from the eBPF object"))?
                .try_into()?;
            prog.load(tp, &btf).with_context(|| {
                format!("loading the {tp} program (the kernel's verifier refused it; run with RUST_LOG=debug for details)")
            })?;
            prog.attach().with_context(|| format!("attaching to the BTF tracepoint {tp}"))?;
        }
        let lost = PerCpuArray::try_from(ebpf.take_map(abi::MAP_LOST).ok_or_else(|| anyhow!("map LOST missing"))?)?;
        Ok(Kernel { ebpf, btf, lost: Some(lost), iter_loaded: false })
    }

    /// Takes the ring buffer (once).
    pub fn take_ring_buffer(&mut self) -> Result<RingBuf<MapData>> {
        let map = self.ebpf.take_map(abi::MAP_EVENTS).ok_or_else(|| anyhow!("the ring buffer was already taken"))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Takes the counter of records the kernel side could not write (once).
    pub fn take_lost_counter(&mut self) -> Result<LostCounter> {
        self.lost.take().map(LostCounter).ok_or_else(|| anyhow!("the lost counter was already taken"))
    }

    /// Walks every task of the system with the BPF task iterator and returns one
    /// snapshot event per task. Runs while the tracepoints are attached, so that
    /// the caller can merge it with the events that raced with the walk.
    pub fn snapshot(&mut self) -> Result<Snapshot> {
        let prog: &mut Iter = self
            .ebpf
            .program_mut(abi::prog::ITER_TASK)
            .ok_or_else(|| anyhow!("the task iterator is missing from the eBPF object"))?
            .try_into()?;
        if !self.iter_loaded {
            prog.load("task", &self.btf).context(
                "loading the task iterator (needs a kernel with BPF task iterators and sleepable programs, Linux 5.18+)",
            )?;
            self.iter_loaded = true;
        }
        let link_id = prog.attach().context("attaching the task iterator")?;
        let link = prog.take_link(link_id)?;
        let mut file = link.into_file().context("creating a task iterator instance")?;
        let mut data = Vec::with_capacity(1 << 20);
        file.read_to_end(&mut data).context("reading the task iterator")?;
        let mut snap = Snapshot::default();
        for rec in event::records(&data) {
            match rec.and_then(Event::decode) {
                Ok(ev) => snap.events.push(ev),
                Err(e) => {
                    snap.malformed += 1;
                    log::warn!("task iterator: malformed record skipped: {e}");
                }
            }
        }
        Ok(snap)
    }
}

/// The outcome of one task iterator walk.
#[derive(Default, Debug)]
pub struct Snapshot {
    pub events: Vec<Event>,
    pub malformed: u64,
}

/// Reads the kernel side's count of records it could not write.
pub struct LostCounter(PerCpuArray<MapData, u64>);

impl LostCounter {
    /// Records lost so far, summed over CPUs.
    pub fn get(&self) -> u64 {
        self.0.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }
}
