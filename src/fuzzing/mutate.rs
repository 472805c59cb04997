//! Deterministic byte-level mutations of valid files: bit flips, interesting bytes and header
//! words, truncations, insertions, deletions, duplicated chunks and large decimal numbers
//! spliced into text. Half of all positions fall into the first 512 bytes, where the headers
//! that readers trust live.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Positions before this are "the header" and drawn more often.
const HEADER_REGION: usize = 512;
/// Most mutations an input gets at once.
const MAX_STACKED: usize = 4;

const INTERESTING_BYTES: [u8; 8] = [0x00, 0x01, 0x07, 0x7f, 0x80, 0xfe, 0xff, b'9'];
const INTERESTING_WORDS: [i64; 14] = [
    0,
    1,
    -1,
    -35,
    3,
    255,
    32767,
    -32768,
    65535,
    100_000,
    i32::MAX as i64,
    i32::MIN as i64,
    u32::MAX as i64,
    i64::MAX,
];
const LARGE_NUMBERS: [&str; 5] = [
    "100000",
    "4294967296",
    "-1",
    "1e308",
    "99999999999999999999",
];

/// A seeded source of mutated inputs.
pub struct Mutator {
    rng: ChaCha8Rng,
}

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Index of one of `count` items.
    pub fn pick(&mut self, count: usize) -> usize {
        self.rng.gen_range(0..count.max(1))
    }

    /// `input` with one to four mutations applied.
    pub fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut data = input.to_vec();
        let stacked = self.rng.gen_range(1..=MAX_STACKED);
        for _ in 0..stacked {
            self.mutate_once(&mut data);
        }
        data
    }

    fn position(&mut self, len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        if self.rng.gen_bool(0.5) {
            self.rng.gen_range(0..len.min(HEADER_REGION))
        } else {
            self.rng.gen_range(0..len)
        }
    }

    fn mutate_once(&mut self, data: &mut Vec<u8>) {
        match self.rng.gen_range(0..8) {
            0 if !data.is_empty() => {
                let at = self.position(data.len());
                data[at] ^= 1 << self.rng.gen_range(0..8);
            }
            1 if !data.is_empty() => {
                let at = self.position(data.len());
                data[at] = INTERESTING_BYTES[self.pick(INTERESTING_BYTES.len())];
            }
            2 => self.overwrite_word(data),
            3 => {
                let keep = self.position(data.len());
                data.truncate(keep);
            }
            4 => {
                let at = self.position(data.len());
                let count = self.rng.gen_range(1..=16);
                let bytes: Vec<u8> = if self.rng.gen_bool(0.5) {
                    (0..count).map(|_| self.rng.r#gen()).collect()
                } else {
                    vec![INTERESTING_BYTES[self.pick(INTERESTING_BYTES.len())]; count]
                };
                data.splice(at..at, bytes);
            }
            5 if !data.is_empty() => {
                let at = self.position(data.len());
                let count = self.rng.gen_range(1..=16).min(data.len() - at);
                data.drain(at..at + count);
            }
            6 if !data.is_empty() => {
                let from = self.position(data.len());
                let count = self.rng.gen_range(1..=64).min(data.len() - from);
                let chunk = data[from..from + count].to_vec();
                let at = self.position(data.len());
                data.splice(at..at, chunk);
            }
            7 => self.splice_number(data),
            _ => {}
        }
    }

    /// A 2-, 4- or 8-byte field set to a boundary value, in either byte order.
    fn overwrite_word(&mut self, data: &mut [u8]) {
        let width = [2, 4, 8][self.pick(3)];
        if data.len() < width {
            return;
        }
        let mut at = self.position(data.len() - width + 1);
        if self.rng.gen_bool(0.5) {
            at -= at % width;
        }
        let value = INTERESTING_WORDS[self.pick(INTERESTING_WORDS.len())];
        // The low `width` bytes of the value: the first ones little-endian, the last big-endian.
        if self.rng.gen_bool(0.5) {
            data[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
        } else {
            data[at..at + width].copy_from_slice(&value.to_be_bytes()[8 - width..]);
        }
    }

    /// A run of ASCII digits (a size in a text header, JSON or TOML) replaced by a large or
    /// negative number.
    fn splice_number(&mut self, data: &mut Vec<u8>) {
        let digits: Vec<usize> = data
            .iter()
            .enumerate()
            .filter(|(i, b)| b.is_ascii_digit() && (*i == 0 || !data[i - 1].is_ascii_digit()))
            .map(|(i, _)| i)
            .collect();
        if digits.is_empty() {
            return;
        }
        let start = digits[self.pick(digits.len())];
        let end = data[start..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .map_or(data.len(), |n| start + n);
        let number = LARGE_NUMBERS[self.pick(LARGE_NUMBERS.len())];
        data.splice(start..end, number.bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_and_change_the_input() {
        let input: Vec<u8> = (0..=255).collect();
        let first: Vec<Vec<u8>> = {
            let mut m = Mutator::new(7);
            (0..50).map(|_| m.mutate(&input)).collect()
        };
        let again: Vec<Vec<u8>> = {
            let mut m = Mutator::new(7);
            (0..50).map(|_| m.mutate(&input)).collect()
        };
        assert_eq!(first, again);
        let changed = first.iter().filter(|m| **m != input).count();
        assert!(changed >= 45, "only {changed} of 50 inputs changed");
        assert!(first.iter().any(|m| m.len() < input.len()));
        assert!(first.iter().any(|m| m.len() > input.len()));
    }

    #[test]
    fn numbers_in_text_are_replaced_whole() {
        let mut m = Mutator::new(1);
        let mut text = b"shape = [12, 34]".to_vec();
        m.splice_number(&mut text);
        let text = String::from_utf8(text).unwrap();
        assert!(
            LARGE_NUMBERS.iter().any(|n| text.contains(n)),
            "no large number in {text}"
        );
        assert!(
            !text.contains("[1,") && !text.contains(" 3]"),
            "a number was cut: {text}"
        );
    }
}
