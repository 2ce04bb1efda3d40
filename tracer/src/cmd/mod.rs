//! The commands.

pub mod events;
pub mod ps;
pub mod stats;
