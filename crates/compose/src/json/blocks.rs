//! The first pass of the vector JSON check: a body read 64 bytes at a time as bit masks (bit
//! `i` for byte `i` of the block). [`Masks::of`] finds the bytes that matter with SSE2, which
//! every x86_64 CPU has, and [`Masks::of_avx2`] with AVX2, which [`Avx2`] proves the CPU has
//! (with [`prefix_xor_clmul`], its carry-less multiplication); [`Strings::scan`] follows string
//! state across blocks (which quotes are escaped, which bytes are inside a string) and returns
//! where the tokens start.
//!
//! The bit arithmetic is simdjson's (Langdale and Lemire, "Parsing gigabytes of JSON per
//! second", 2019): escapes from the odd-length runs of backslashes, strings as the prefix XOR
//! of the unescaped quotes.

use std::arch::x86_64::{
    __m256i, _mm256_cmpeq_epi8, _mm256_min_epu8, _mm256_movemask_epi8, _mm256_or_si256, _mm256_set_m128i,
    _mm256_set1_epi8, _mm256_setr_epi8, _mm256_shuffle_epi8,
};
use std::sync::LazyLock;

use safe_arch::{
    add_saturating_u8_m128i, bitxor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, m128i, max_u8_m128i,
    min_u8_m128i, move_mask_i8_m128i, set_splat_i8_m128i,
};

/// Bytes per block: one bit per byte in a `u64`.
pub(super) const BLOCK: usize = 64;

/// The bytes of one block that the check looks at, as masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Masks {
    pub quote: u64,
    pub backslash: u64,
    /// Bytes below 0x20: invalid inside strings; outside, only tab, LF and CR are whitespace.
    pub control: u64,
    /// JSON whitespace: space, tab, LF, CR.
    pub whitespace: u64,
    /// Nonzero when some byte is from 0x80 up (zero: the block is ASCII, so valid UTF-8). A
    /// number to OR across blocks rather than a flag to AND: no conversion per block.
    pub beyond_ascii: u32,
}

impl Masks {
    /// Classifies the 64 bytes of `block`.
    #[inline(always)]
    pub fn of(block: &[u8; BLOCK]) -> Masks {
        let (chunks, _) = block.as_chunks::<16>();
        let lanes: [m128i; 4] = std::array::from_fn(|lane| load_unaligned_m128i(&chunks[lane]));
        let quote = equal(&lanes, b'"');
        // Most blocks have no control character, no backslash and no byte beyond ASCII: tests
        // on the byte-wise lowest and highest of the four lanes say so, in a few instructions.
        // A saturating add of 0x60 sets the high bit of the bytes from 0x20 up; of 0x7f, of the
        // bytes from 1 up (`\` is 0 once XORed with itself).
        let lowest = fold(min_u8_m128i, lanes);
        let lowest_unlike_backslash =
            fold(min_u8_m128i, lanes.map(|lane| bitxor_m128i(lane, set_splat_i8_m128i(b'\\' as i8))));
        let plain = min_u8_m128i(
            add_saturating_u8_m128i(lowest, set_splat_i8_m128i(0x60)),
            add_saturating_u8_m128i(lowest_unlike_backslash, set_splat_i8_m128i(0x7f)),
        );
        let beyond_ascii = move_mask_i8_m128i(fold(max_u8_m128i, lanes)) as u32;
        if move_mask_i8_m128i(plain) == 0xffff {
            // No control character: the bytes up to 0x20 are spaces (0x5f sets the high bit of
            // the bytes from 0x21 up).
            let whitespace = !bits(&lanes, |lane| add_saturating_u8_m128i(lane, set_splat_i8_m128i(0x5f)));
            return Masks { quote, backslash: 0, control: 0, whitespace, beyond_ascii };
        }
        let control = !bits(&lanes, |lane| add_saturating_u8_m128i(lane, set_splat_i8_m128i(0x60)));
        let mut whitespace = equal(&lanes, b' ');
        if control != 0 {
            whitespace |= equal(&lanes, b'\t') | equal(&lanes, b'\n') | equal(&lanes, b'\r');
        }
        Masks { quote, backslash: equal(&lanes, b'\\'), control, whitespace, beyond_ascii }
    }
}

/// Proof that the CPU has AVX2, BMI1, BMI2 and PCLMULQDQ (carry-less multiplication), which
/// the AVX2 build of the check uses: only [`Avx2::detect`] makes one, so holding one makes code
/// compiled for them safe to run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Avx2 {
    _detected: (),
}

impl Avx2 {
    /// `Some` when the CPU has all four (tested once, then a load and a branch).
    #[inline(always)]
    pub fn detect() -> Option<Avx2> {
        static FOUND: LazyLock<bool> = LazyLock::new(|| {
            use std::arch::is_x86_feature_detected as has;
            has!("avx2") && has!("bmi1") && has!("bmi2") && has!("pclmulqdq")
        });
        FOUND.then_some(Avx2 { _detected: () })
    }
}

impl Masks {
    /// [`Masks::of`] with AVX2: two 32-byte lanes instead of four 16-byte ones, three-operand
    /// instructions, and whitespace found exactly by one table lookup (`vpshufb` by the low
    /// four bits of each byte) rather than through the control characters.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub fn of_avx2(block: &[u8; BLOCK]) -> Masks {
        let (chunks, _) = block.as_chunks::<16>();
        let load = |index: usize| {
            _mm256_set_m128i(
                load_unaligned_m128i(&chunks[index + 1]).0,
                load_unaligned_m128i(&chunks[index]).0,
            )
        };
        let lanes = [load(0), load(2)];
        // Whitespace is the bytes equal to the entry at their low four bits: space at 0, tab,
        // LF and CR at 9, 10 and 13; 0xff elsewhere matches nothing below 0x80, and bytes from
        // 0x80 up look up 0.
        #[rustfmt::skip]
        let spaces = _mm256_setr_epi8(
            0x20, -1, -1, -1, -1, -1, -1, -1, -1, 0x09, 0x0a, -1, -1, 0x0d, -1, -1,
            0x20, -1, -1, -1, -1, -1, -1, -1, -1, 0x09, 0x0a, -1, -1, 0x0d, -1, -1,
        );
        let whitespace =
            bits_avx2(lanes.map(|lane| _mm256_cmpeq_epi8(_mm256_shuffle_epi8(spaces, lane), lane)));
        let quote = bits_avx2(lanes.map(|lane| _mm256_cmpeq_epi8(lane, _mm256_set1_epi8(b'"' as i8))));
        let beyond_ascii = _mm256_movemask_epi8(_mm256_or_si256(lanes[0], lanes[1])) as u32;
        // Control characters are the bytes that 0x1f as a floor does not change. (Both masks
        // cost less than the test for a block that has neither, which SSE2 makes.)
        let control = bits_avx2(
            lanes.map(|lane| _mm256_cmpeq_epi8(_mm256_min_epu8(lane, _mm256_set1_epi8(0x1f)), lane)),
        );
        let backslash = bits_avx2(lanes.map(|lane| _mm256_cmpeq_epi8(lane, _mm256_set1_epi8(b'\\' as i8))));
        Masks { quote, backslash, control, whitespace, beyond_ascii }
    }
}

/// The high bit of each byte of both lanes of a block.
#[target_feature(enable = "avx2")]
#[inline]
fn bits_avx2(lanes: [__m256i; 2]) -> u64 {
    // `movemask` sets all 32 bits of an `i32`: the cast keeps exactly those.
    u64::from(_mm256_movemask_epi8(lanes[0]) as u32) | u64::from(_mm256_movemask_epi8(lanes[1]) as u32) << 32
}

/// [`prefix_xor`] as one carry-less multiplication by all ones: bit `i` of the product is the
/// XOR of the bits `0..=i`.
#[target_feature(enable = "pclmulqdq")]
#[inline]
pub(super) fn prefix_xor_clmul(bits: u64) -> u64 {
    use std::arch::x86_64::{_mm_clmulepi64_si128, _mm_cvtsi64_si128, _mm_cvtsi128_si64, _mm_set1_epi8};
    let product = _mm_clmulepi64_si128(_mm_cvtsi64_si128(bits as i64), _mm_set1_epi8(-1), 0);
    _mm_cvtsi128_si64(product) as u64
}

/// `combine` applied across the four lanes of a block, byte by byte.
#[inline(always)]
fn fold(combine: fn(m128i, m128i) -> m128i, lanes: [m128i; 4]) -> m128i {
    combine(combine(lanes[0], lanes[1]), combine(lanes[2], lanes[3]))
}

/// The mask of the bytes of a block that equal `byte`.
#[inline(always)]
fn equal(lanes: &[m128i; 4], byte: u8) -> u64 {
    let splat = set_splat_i8_m128i(byte as i8);
    bits(lanes, |lane| cmp_eq_mask_i8_m128i(lane, splat))
}

/// Gathers the high bit of every byte of `test(lane)` for the four lanes of a block.
#[inline(always)]
fn bits(lanes: &[m128i; 4], test: impl Fn(m128i) -> m128i) -> u64 {
    lanes.iter().enumerate().fold(0, |mask, (index, &lane)| {
        // `movemask` sets the low 16 bits of an `i32`: the cast keeps exactly those.
        mask | u64::from(move_mask_i8_m128i(test(lane)) as u16) << (16 * index)
    })
}

/// String state from one block to the next.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Strings {
    /// 1 when the first byte of the next block is escaped (the block ended in an escape's `\`).
    next_escaped: u64,
    /// All ones when the next block starts inside a string.
    inside: u64,
}

/// What [`Strings::scan`] finds in one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Scanned {
    /// The first byte of every token: each non-whitespace byte outside strings, and each string's
    /// opening quote. (A number or literal longer than one byte starts a token at every byte;
    /// the reader skips the rest.)
    pub tokens: u64,
    /// The `\` that starts each escape, for the reader to check what follows.
    pub escapes: u64,
    /// Control characters inside strings: any makes the body invalid.
    pub control_in_string: u64,
}

impl Strings {
    /// Whether the input ended inside a string (an unterminated one).
    pub fn inside(&self) -> bool {
        self.inside != 0
    }

    /// Follows the strings through the block that `masks` describe.
    #[inline(always)]
    pub fn scan(&mut self, masks: &Masks, prefix_xor: impl Fn(u64) -> u64) -> Scanned {
        let (escaped, escapes) = self.escaped(masks.backslash);
        let quotes = masks.quote & !escaped;
        // From each opening quote (included) to its closing quote (excluded).
        let inside = prefix_xor(quotes) ^ self.inside;
        self.inside = ((inside as i64) >> 63) as u64;
        Scanned {
            // `inside ^ quotes` is the string contents with their closing quotes, not the opening.
            tokens: !(masks.whitespace | (inside ^ quotes)),
            escapes,
            control_in_string: masks.control & inside,
        }
    }

    /// The escaped bytes (each just after an escaping `\`) and the escaping `\`s themselves. In a
    /// run of backslashes the first escapes the second, the third the fourth, and so on.
    #[inline(always)]
    fn escaped(&mut self, backslash: u64) -> (u64, u64) {
        if backslash == 0 {
            return (std::mem::take(&mut self.next_escaped), 0);
        }
        const ODD_BITS: u64 = 0xAAAA_AAAA_AAAA_AAAA;
        // A backslash that is itself escaped starts nothing.
        let starts = backslash & !self.next_escaped;
        // After the subtraction, each bit just past a run of `starts` says whether the run, counted
        // from its first backslash, had odd length (escaping that byte).
        let follows = (starts << 1 | ODD_BITS).wrapping_sub(starts) ^ ODD_BITS;
        let escaped = follows ^ (backslash | self.next_escaped);
        let escapes = follows & backslash;
        self.next_escaped = escapes >> 63;
        (escaped, escapes)
    }
}

/// Bit `i` of the result is the XOR of bits `0..=i` of `bits`.
#[inline(always)]
pub(super) fn prefix_xor(mut bits: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        bits ^= bits << shift;
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::tests::xorshift;

    /// What `Strings::scan` must find, byte by byte: `(tokens, escapes, control in strings)`
    /// for each block of `body` (a whole number of blocks).
    fn reference(body: &[u8]) -> Vec<(u64, u64, u64)> {
        let (mut inside, mut escaped) = (false, false);
        body.chunks(BLOCK)
            .map(|block| {
                let mut found = (0, 0, 0);
                for (index, &byte) in block.iter().enumerate() {
                    let bit = 1u64 << index;
                    if escaped {
                        escaped = false;
                    } else if byte == b'\\' {
                        escaped = true;
                        found.1 |= bit;
                    } else if byte == b'"' {
                        inside = !inside;
                        if inside {
                            found.0 |= bit;
                        }
                        continue;
                    }
                    if inside {
                        found.2 |= if byte < 0x20 { bit } else { 0 };
                    } else if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
                        found.0 |= bit;
                    }
                }
                found
            })
            .collect()
    }

    fn scanned(body: &[u8]) -> Vec<(u64, u64, u64)> {
        let mut strings = Strings::default();
        body.chunks(BLOCK)
            .map(|block| {
                let block = block.first_chunk::<BLOCK>().unwrap();
                let found = strings.scan(&Masks::of(block), prefix_xor);
                (found.tokens, found.escapes, found.control_in_string)
            })
            .collect()
    }

    /// [`Masks::of_avx2`] and [`prefix_xor_clmul`] of `bits`, on a CPU that has them.
    #[expect(unsafe_code, reason = "AVX2 code runs only with the proof that the CPU has it")]
    fn with_avx2(_: Avx2, block: &[u8; BLOCK], bits: u64) -> (Masks, u64) {
        // SAFETY: an `Avx2` exists only where `Avx2::detect` found AVX2 and PCLMULQDQ.
        unsafe { (Masks::of_avx2(block), prefix_xor_clmul(bits)) }
    }

    /// Masks as far as they must agree: `beyond_ascii` only in being zero or not.
    fn same(masks: Masks) -> Masks {
        Masks { beyond_ascii: u32::from(masks.beyond_ascii != 0), ..masks }
    }

    /// A way to classify a block, by name.
    type Classifier = (&'static str, Box<dyn Fn(&[u8; BLOCK]) -> Masks>);

    /// The classifiers this CPU can run: SSE2, and AVX2 where it has it.
    fn classifiers() -> Vec<Classifier> {
        let mut found: Vec<Classifier> = vec![("SSE2", Box::new(Masks::of))];
        if let Some(avx2) = Avx2::detect() {
            found.push(("AVX2", Box::new(move |block| with_avx2(avx2, block, 0).0)));
        }
        found
    }

    #[test]
    fn masks_find_each_kind_of_byte() {
        for (name, classify) in classifiers() {
            let mut block = [b'a'; BLOCK];
            block[..9].copy_from_slice(b"\" \t\n\r\x01\x1fa\\");
            block[63] = b'"';
            block[40] = 0xff;
            let masks = classify(&block);
            assert_eq!(masks.quote, 1 | 1 << 63, "{name}");
            assert_eq!(masks.backslash, 1 << 8, "{name}");
            assert_eq!(masks.control, 0b1111100, "{name}");
            assert_eq!(masks.whitespace, 0b11110, "{name}");
            assert_ne!(masks.beyond_ascii, 0, "{name}");
            // A block with no control character and no backslash takes the short way.
            let mut block = [b'a'; BLOCK];
            block[..4].copy_from_slice(b"\" {\x7f");
            block[62] = b' ';
            assert_eq!(
                classify(&block),
                Masks { quote: 1, backslash: 0, control: 0, whitespace: 0b10 | 1 << 62, beyond_ascii: 0 },
                "{name}"
            );
        }
    }

    #[test]
    fn the_classifiers_agree_on_every_byte_at_every_position() {
        let Some(avx2) = Avx2::detect() else {
            eprintln!("no AVX2 on this CPU: only SSE2 runs");
            return;
        };
        // Each byte value at each position, over a plain and over a whitespace-and-quote
        // background, then random blocks of any bytes.
        for background in [b'a', b' ', b'"'] {
            for position in 0..BLOCK {
                for byte in 0..=u8::MAX {
                    let mut block = [background; BLOCK];
                    block[position] = byte;
                    assert_eq!(
                        same(with_avx2(avx2, &block, 0).0),
                        same(Masks::of(&block)),
                        "{byte:#x} at {position} over {background}"
                    );
                }
            }
        }
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..50_000 {
            let block: [u8; BLOCK] = std::array::from_fn(|_| {
                let state = xorshift(&mut state);
                // Mostly the bytes that matter, some of any value.
                let bytes = b" \t\n\r\"\\\x00\x1fa{";
                if state.is_multiple_of(4) {
                    (state >> 8) as u8
                } else {
                    bytes[(state >> 8) as usize % bytes.len()]
                }
            });
            let bits = state.rotate_left(17) ^ state;
            let (masks, xor) = with_avx2(avx2, &block, bits);
            assert_eq!(same(masks), same(Masks::of(&block)), "{block:?}");
            assert_eq!(xor, prefix_xor(bits), "{bits:#x}");
        }
    }

    #[test]
    fn scan_agrees_with_a_byte_by_byte_reading_across_blocks() {
        // Bodies of three blocks from small alphabets, so that runs of backslashes, quotes and
        // control characters fall on every position and across block edges; the second
        // alphabet has no control character and no backslash (the short way).
        for alphabet in [&b"\\\\\"\"a \n\x01"[..], &b"\"\"a  {\xc3\xa9"[..]] {
            let mut state = 0x9e37_79b9_7f4a_7c15_u64;
            for _ in 0..20_000 {
                let body: Vec<u8> = (0..3 * BLOCK)
                    .map(|_| alphabet[(xorshift(&mut state) % alphabet.len() as u64) as usize])
                    .collect();
                assert_eq!(scanned(&body), reference(&body), "{}", String::from_utf8_lossy(&body));
            }
        }
    }
}
