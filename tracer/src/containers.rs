//! The old path of the attribution, the name lookups and the containers list:
//! they live in [`crate::container`] now (see its module doc). Kept so that the
//! files importing `crate::containers::…` need no change.

pub use crate::container::{Attribution, ContainerView, Enricher, STORAGE_ROOT, list};
