//! Events on their way out: how each one is written for a reader.

pub mod json;
pub mod kinds;
