//! Seeded randomness. Every random choice comes from a ChaCha8 stream keyed by
//! `(seed, purpose, a, b)`, so one household's routine on one day does not depend on
//! how many other households or days there are, or on what happened elsewhere.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Millis;

pub(crate) type SimRng = ChaCha8Rng;

/// What a stream is used for (the `tag` of [`rng_for`]).
pub(crate) mod tag {
    pub const HOUSEHOLD: u64 = 1;
    pub const PROFILE: u64 = 2;
    pub const DAY: u64 = 3;
    pub const DEVICE: u64 = 4;
    pub const PLAN: u64 = 5;
    pub const INCIDENT: u64 = 6;
    pub const FEATURES: u64 = 7;
    pub const METER: u64 = 8;
    pub const STEPS: u64 = 9;
    pub const CARER: u64 = 10;
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An independent stream for `(seed, tag, a, b)`.
pub(crate) fn rng_for(seed: u64, tag: u64, a: u64, b: u64) -> SimRng {
    let mut key = [0u8; 32];
    for (i, (word, chunk)) in [seed, tag, a, b]
        .into_iter()
        .zip(key.chunks_exact_mut(8))
        .enumerate()
    {
        let salt = (i as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
        chunk.copy_from_slice(&splitmix64(word ^ salt).to_le_bytes());
    }
    SimRng::from_seed(key)
}

/// Uniform in `[lo, hi)`; `lo` when the range is empty.
pub(crate) fn uni(rng: &mut SimRng, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        rng.gen_range(lo..hi)
    } else {
        lo
    }
}

/// Uniform integer in `[lo, hi]`; `lo` when the range is empty.
pub(crate) fn int(rng: &mut SimRng, lo: i64, hi: i64) -> i64 {
    if hi > lo {
        rng.gen_range(lo..=hi)
    } else {
        lo
    }
}

/// Uniform index in `0..n` (0 when `n` is 0 or 1).
pub(crate) fn pick(rng: &mut SimRng, n: usize) -> usize {
    if n <= 1 {
        0
    } else {
        rng.gen_range(0..n as u64) as usize
    }
}

pub(crate) fn chance(rng: &mut SimRng, p: f64) -> bool {
    rng.gen_bool(p.clamp(0.0, 1.0))
}

/// A uniformly random duration between `lo` and `hi` minutes, in milliseconds.
pub(crate) fn mins(rng: &mut SimRng, lo: f64, hi: f64) -> Millis {
    (uni(rng, lo, hi) * 60_000.0).round() as Millis
}

/// A uniformly random duration between `lo` and `hi` seconds, in milliseconds.
pub(crate) fn secs(rng: &mut SimRng, lo: f64, hi: f64) -> Millis {
    (uni(rng, lo, hi) * 1_000.0).round() as Millis
}

/// A uniformly random instant in `[from, to)` (`from` when empty).
pub(crate) fn between(rng: &mut SimRng, from: Millis, to: Millis) -> Millis {
    if to > from {
        rng.gen_range(from..to)
    } else {
        from
    }
}
