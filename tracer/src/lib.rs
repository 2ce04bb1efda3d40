//! tracer: the live process, thread and container tree of a Linux host, built from
//! eBPF lifecycle events alone.

pub mod bpf;
pub mod event;
