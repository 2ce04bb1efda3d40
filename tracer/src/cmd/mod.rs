//! The commands.

pub mod check;
pub mod containers;
pub mod events;
pub mod generate;
pub mod ps;
pub mod stats;
