//! Integration tests (root and BPF): see each module.
//!
//! They spawn `tracer` (the binary of this package) and known workloads, and check the
//! events against what was spawned. Without root they skip, except under `CI=true`
//! where they fail.

mod support;

mod check;
mod containers;
mod daemon;
mod events;
mod faults;
mod filters;
mod hardening;
mod hostile;
mod tree;
mod users;
mod watch;
