//! Integration tests (root and BPF): see each module.
