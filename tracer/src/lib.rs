//! tracer: the live process, thread and container tree of a Linux host, built from
//! eBPF lifecycle events alone.

pub mod alloc;
pub mod bpf;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod container;
pub mod containers;
pub mod daemon;
pub mod engine;
pub mod escape;
pub mod events;
pub mod render;
pub mod shutdown;
pub mod story;
pub mod users;
pub mod watch;

pub mod tracker;
