//! Events from the kernel's records to what a reader sees.
//!
//! - [`types`]: what an event tells ([`Event`], [`Body`], [`TaskInfo`], ...);
//! - [`decode`]: ring buffer records into events, with tag and length checks;
//! - [`kinds`]: every kind of line the stream carries, and counts by kind;
//! - [`select`]: which events a subscriber or `tracer events` filter takes;
//! - [`format`]: the text and JSON lines of `tracer events` and subscriptions
//!   ([`json`]: one event as JSON, written by hand).

pub mod decode;
pub mod format;
pub mod json;
pub mod kinds;
pub mod select;
pub mod types;

pub use decode::{DecodeError, records};
pub use types::*;
