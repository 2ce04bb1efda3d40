//! The bytes a terminal sends to `tracer watch` (`KeyParser::feed`), in reads cut
//! anywhere. Nothing panics; no read yields more keys than bytes came in, and
//! what an unfinished escape sequence keeps waiting stays bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::watch::keys::KeyParser;

fuzz_target!(|data: &[u8]| {
    // The first byte cuts the rest into reads of 1..=16 bytes.
    let Some((&cut, rest)) = data.split_first() else { return };
    let step = usize::from(cut % 16) + 1;
    let mut p = KeyParser::default();
    let mut fed = 0;
    let mut keys = 0;
    for chunk in rest.chunks(step) {
        fed += chunk.len();
        keys += p.feed(chunk).len();
        assert!(keys <= fed, "{keys} keys from {fed} bytes");
    }
    // Whole at once: no more keys than bytes either.
    assert!(KeyParser::default().feed(rest).len() <= rest.len());
});
