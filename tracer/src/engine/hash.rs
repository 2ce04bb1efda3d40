//! A small, fast, non-cryptographic hasher for the engine's integer keys.
//!
//! The engine's maps are keyed by pids, tids and (pid, start time) pairs that come
//! from the kernel, not from an adversary, so the multiply-rotate hash of rustc's
//! `FxHasher` is enough and several times faster than SipHash.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// The multiply-rotate hasher of rustc (`rustc-hash` 2.x constants).
#[derive(Clone, Copy, Default)]
pub struct FxHasher {
    hash: u64,
}

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl FxHasher {
    #[inline]
    fn add(&mut self, v: u64) {
        self.hash = self.hash.wrapping_add(v).wrapping_mul(K);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(i as u64);
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // hashbrown takes the bucket from the low bits and the tag from the top 7:
        // a folded multiply mixes every input bit into both.
        let full = (self.hash as u128).wrapping_mul(K as u128 ^ 0x9e37_79b9_7f4a_7c15);
        (full as u64) ^ ((full >> 64) as u64)
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;
pub type FxHashMap<K, V> = HashMap<K, V, FxBuild>;
pub type FxHashSet<T> = HashSet<T, FxBuild>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn spreads_small_integers() {
        let b = FxBuild::default();
        let mut low = FxHashSet::default();
        for pid in 0u32..4096 {
            low.insert(b.hash_one(pid) & 0xfff);
        }
        // Consecutive pids must not collapse onto a few buckets.
        assert!(low.len() > 2400, "{} distinct buckets", low.len());
    }
}
