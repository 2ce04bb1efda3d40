//! tracer's kernel programs: the process and thread lifecycle, streamed through one
//! BPF ring buffer, plus a task iterator for the start-up state.
//!
//! Each program is a thin wrapper over a builder that fills a record of
//! `tracer_abi`. Records that cannot be written are counted in `LOST` (per CPU),
//! never dropped silently.
//!
//! The crate also compiles (never links) for the host, so that `cargo clippy
//! --workspace` checks it with the same lints as the rest.
#![no_std]
#![no_main]

mod kernel;
mod programs;

// On the host a dependency links std, which brings its own.
#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
