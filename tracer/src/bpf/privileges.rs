//! Checks, before loading anything, that this process may load and attach BPF
//! programs, so that a missing privilege is one clear line rather than a verifier
//! or syscall error.

use anyhow::{Result, bail};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The effective capability set of this process, as a 64-bit mask.
fn effective_caps() -> Option<u64> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget with a v3 header and room for two data structs, as the ABI requires.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, data.as_mut_ptr()) };
    (r == 0).then(|| u64::from(data[0].effective) | (u64::from(data[1].effective) << 32))
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1u64 << cap) != 0
}

/// Fails with one line saying what is missing and what to do.
pub fn check() -> Result<()> {
    let btf = std::path::Path::new("/sys/kernel/btf/vmlinux");
    if !btf.exists() {
        bail!(
            "this kernel exposes no BTF at /sys/kernel/btf/vmlinux: tracer needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (Linux 5.8+)"
        );
    }
    let Some(caps) = effective_caps() else {
        bail!("could not read this process's capabilities (capget failed); run tracer as root");
    };
    let bpf = has(caps, CAP_BPF) || has(caps, CAP_SYS_ADMIN);
    let perfmon = has(caps, CAP_PERFMON) || has(caps, CAP_SYS_ADMIN);
    match (bpf, perfmon) {
        (true, true) => Ok(()),
        (false, false) => bail!(
            "tracer needs root (or CAP_BPF and CAP_PERFMON) to load its kernel programs: run it with sudo, or start `tracer daemon` as root"
        ),
        (false, true) => {
            bail!("tracer lacks CAP_BPF: run it as root, or grant CAP_BPF (e.g. setcap cap_bpf,cap_perfmon+ep)")
        }
        (true, false) => {
            bail!("tracer lacks CAP_PERFMON: run it as root, or grant CAP_PERFMON (e.g. setcap cap_bpf,cap_perfmon+ep)")
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_capabilities() {
        let caps = super::effective_caps().expect("capget works on Linux");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert!(super::has(caps, super::CAP_SYS_ADMIN), "root without CAP_SYS_ADMIN: {caps:#x}");
        }
    }
}
