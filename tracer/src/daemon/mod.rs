//! The daemon (`tracer daemon`) and its clients: the commands use a running
//! daemon when there is one (no root needed then) and run the engine in-process
//! otherwise.

pub mod client;
pub mod latency;
pub mod listen;
pub mod outbox;
pub mod privileges;
pub mod protocol;
pub mod server;

#[cfg(test)]
mod listen_tests;
#[cfg(test)]
mod tests;
