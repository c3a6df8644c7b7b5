//! The ids herald makes up: the `X-Request-Id` of a request that brought none, and the
//! `id` of every accepted notification.
//!
//! An id is 32 hex digits, unique within the process and, with overwhelming probability,
//! across processes. Every request and every item of a batch takes one, so they come
//! from a counter rather than the random number generator: the counter, mixed with two
//! keys drawn once per process by a bijection, gives an id that looks random and cannot
//! repeat until the counter wraps (2^64 ids).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Length of an id, in hex digits.
pub const LEN: usize = 32;

/// The process's keys and counter.
struct Source {
    keys: (u64, u64),
    next: AtomicU64,
}

fn source() -> &'static Source {
    static SOURCE: OnceLock<Source> = OnceLock::new();
    SOURCE.get_or_init(|| Source {
        keys: uuid::Uuid::new_v4().as_u64_pair(),
        next: AtomicU64::new(0),
    })
}

/// A fresh id, as ASCII hex digits.
pub fn next() -> [u8; LEN] {
    let source = source();
    let n = source.next.fetch_add(1, Ordering::Relaxed);
    // `mix` is a bijection, so distinct counters give distinct first halves; the second
    // half, keyed separately, makes ids of two processes differ in all 32 digits.
    let high = mix(n ^ source.keys.0);
    let low = mix(high ^ source.keys.1);
    let mut id = [0; LEN];
    hex(high, &mut id[..LEN / 2]);
    hex(low, &mut id[LEN / 2..]);
    id
}

/// A fresh id as a `String`.
pub fn next_string() -> String {
    next().iter().copied().map(char::from).collect()
}

/// The 16 bytes that `text` spells when it is exactly an id as herald writes them (32
/// lowercase hex digits, so that [`spell`] gives `text` back); `None` for anything else.
pub fn pack(text: &str) -> Option<[u8; LEN / 2]> {
    let lowercase_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if text.len() != LEN || !text.as_bytes().iter().all(lowercase_hex) {
        return None;
    }
    u128::from_str_radix(text, 16).ok().map(u128::to_be_bytes)
}

/// The 32 lowercase hex digits of an id [`pack`] made.
pub fn spell(bytes: &[u8; LEN / 2]) -> [u8; LEN] {
    let mut id = [0; LEN];
    write_hex(bytes, &mut id);
    id
}

/// splitmix64's finaliser: each step (xor with a shift, multiply by an odd number) can be
/// undone, so the whole is a bijection on `u64` that scatters nearby inputs.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Each byte's two lowercase hex digits, so an id is written a byte at a time.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0; 2]; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = [DIGITS[b >> 4], DIGITS[b & 0xf]];
        b += 1;
    }
    table
};

/// Writes `value` as 16 lowercase hex digits into `out`.
fn hex(value: u64, out: &mut [u8]) {
    write_hex(&value.to_be_bytes(), out);
}

/// Writes each of `bytes` as two lowercase hex digits into `out`.
fn write_hex(bytes: &[u8], out: &mut [u8]) {
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_32_hex_digits_and_do_not_repeat() {
        let ids: HashSet<String> = (0..10_000).map(|_| next_string()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            assert_eq!(id.len(), LEN);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
    }

    #[test]
    fn consecutive_ids_share_no_visible_pattern() {
        // Neighbouring counters must not give neighbouring ids (as a plain counter would):
        // compare the first halves digit by digit.
        let a = next();
        let b = next();
        let same = a[..LEN / 2]
            .iter()
            .zip(&b[..LEN / 2])
            .filter(|(x, y)| x == y)
            .count();
        assert!(same < LEN / 2 - 4, "{a:?} vs {b:?}");
    }

    #[test]
    fn an_id_packs_into_16_bytes_and_spells_back_the_same() {
        let id = next();
        let text = std::str::from_utf8(&id).unwrap();
        let bytes = pack(text).expect("an id herald made packs");
        assert_eq!(spell(&bytes), id);
        let upper = text.to_uppercase();
        let plus = format!("+{}", &text[1..]);
        for other in ["", "abc", &upper, &plus, "0123456789abcdef0123456789abcdeg"] {
            assert_eq!(pack(other), None, "{other:?}");
        }
    }

    #[test]
    fn hex_writes_every_digit() {
        let mut out = [0; 16];
        hex(0x0123_4567_89ab_cdef, &mut out);
        assert_eq!(&out, b"0123456789abcdef");
    }
}
