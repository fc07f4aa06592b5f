//! The strict JSON check of backend bodies ([`check_json`]): a body is spliced raw into the
//! answer only when it is exactly what `serde_json` parses into a `Value`, nested at most
//! [`MAX_BODY_NESTING`] containers deep.
//!
//! Two readings of the same grammar, neither recursive nor building anything:
//! - **The vector check** (x86_64; `json/vector.rs`, over `json/tokens.rs` and
//!   `json/blocks.rs`), which answers yes or no. A first stage classifies each 64-byte block
//!   into bit masks of quotes, backslashes, control characters and whitespace; finds the escaped
//!   bytes from the odd runs of backslashes and the strings as the prefix XOR of the real quotes
//!   (simdjson's arithmetic); checks the control characters and escapes inside strings; and
//!   keeps where each token starts. A second stage walks the grammar over those token starts
//!   (`trailing_zeros` on the masks), never visiting string contents. A body of ASCII needs no
//!   UTF-8 pass; one with other bytes gets `simdutf8`'s. Two builds of it: with **AVX2**, BMI1,
//!   BMI2 and PCLMULQDQ where the CPU has all four, tested once per process, and with **SSE2**
//!   (every x86_64 CPU has it; `safe_arch` wraps the intrinsics) elsewhere. Running code compiled for features the CPU may lack is the one
//!   `unsafe` thing here: both calls take a `blocks::Avx2`, which only the detection makes
//!   (the intrinsics themselves are safe inside `#[target_feature]` functions).
//! - **The byte walk** (`walk`), which says why a body is refused (the vector check only
//!   says that it is) and is the whole check on other CPUs: the UTF-8 of the whole body with
//!   `simdutf8` (outside strings JSON is ASCII, so this is the same as validating every
//!   string), then a state machine over the bytes with string contents skipped eight bytes at a
//!   time (a word compared against `"`, `\` and control characters at once).
//!
//! Both keep, per open container, the byte that closes the one around it, and share the
//! readings of numbers, literals and escapes. Numbers follow the JSON grammar, most read as one
//! word (an integer or decimal that ends within eight bytes, its digits found with SSE2); one
//! too large for an `f64` is an error in `serde_json`, so a number that might be (more than 300
//! digits before the point, exponent included) is read by `serde_json` itself, which keeps its
//! exact rules. The case tables below run every body through both readings, and the vector
//! check with both classifiers, against `serde_json`; in debug builds (tests, fuzzing) `check`
//! asserts that the byte walk finds a fault in every body that the vector check refuses.
//!
//! Measured on the 1,009-byte body of the demo's `/bench` backends: instructions by `make
//! json-cost` (callgrind over the `check_json_cost` example, which checks the body 1 and 1,001
//! times: the difference over 1,000), time by `cargo bench -p compose --bench composition --
//! check_json` on this shared 2-core machine (noisy: the ratios are what holds). Rows before
//! "AVX2" were measured with Rust 1.89 (the SSE2 check then: 5.66); with Rust 1.95 the same
//! code counts 5.91, the start of the rows below it.
//!
//! | variant | instructions per byte | time per body |
//! |---|---|---|
//! | `serde_json` `Deserializer` driven by a depth-counting visitor (the baseline kept in `benches/composition.rs`) | ~23.9 | ~1.7 µs |
//! | the byte walk, first version (stop byte loaded again, `token` after every string) | ~9.1 | ~0.61 µs |
//! | the byte walk now (with `simdutf8`) | ~8.0 | ~0.65 µs |
//! | the vector check, first version (a call per block, tokens read back from the body) | ~7.2 | |
//! | the vector check with SSE2 (Rust 1.89 / 1.95) | 5.66 / 5.91 | ~0.48 µs |
//! | + AVX2 classifier, carry-less multiply for the prefix XOR | 5.27 | |
//! | + the whole check compiled for AVX2 + BMI (`blsr`, `shrx` in the walk); AVX2 makes the backslash and control masks outright (cheaper than SSE2's test for neither); ASCII ORed per block, not ANDed | 4.45 | |
//! | + numbers tested first among scalars, read from their block's word | 4.34 | |
//! | + a number's sign handled apart, its fraction's end found by clearing the point's bit | 4.23 | |
//! | + the block refill marked cold (`std::hint::cold_path`): the walk keeps its depth in a register | 4.18 | |
//! | + 2 KiB per fill (a 1 KB body's end needs no second fill); features tested once per process | 4.11 | |
//! | + a number's digits found with four SSE2 instructions, one bit per byte | 4.05 | |
//! | + a short number's other tokens dropped by bit position; the fill dispatch inlined | **3.99** | **~0.30 µs** (the `serde_json` baseline: 1.70 µs in the same run) |
//! | sonic-rs 0.5 `from_slice::<IgnoredAny>` (SSE2 build) | ~11.8 | ~0.97 µs |
//! | jiter 0.19 `next_skip` + `finish` | ~14.4 | ~1.0 µs |
//! | simd-json 0.19 `to_tape` on a copy | ~16.5 | ~1.7 µs |
//!
//! Of the 3.99 per byte, the first stage is ~1.07 (~62 instructions per 64-byte block: two
//! 32-byte loads; per mask two compares, two `movemask`s, a shift and an OR; the string scan
//! with one `pclmulqdq`) and the second ~2.9 (~15 instructions per token over the body's 196:
//! ~7 for a string, a `:` or a `,`, ~17 for a bracket, ~45 for a number). Measured and dropped
//! (each against the build it was tried on): the grammar as a table of moves indexed by state
//! and token byte (+1.2 per byte: the table's address arithmetic and a spilled state cost more
//! than the branches it replaces), the open containers as bits of a `u128` (+0.39: two
//! registers more, and the walk's hot values went to the stack), numbers read a byte at a time
//! (+0.19), the masks of a block with a backslash or control character made in a cold function
//! (+0.34: the call stopped the classifier from being inlined).
//! The JSON crates measured above are slower on bodies of this size (their setup per document
//! counts for much at 1 KB), add 13 to 30 crates to the build, and none has `serde_json`'s
//! exact acceptance out of the box: sonic-rs takes lone surrogates and `1e400`, jiter's skip
//! takes `1e400` and invalid UTF-8 in strings, and none of the three stops at 125 levels (all
//! took 200). The case tables below and the differential fuzz target (`fuzz/`, target `body`)
//! hold both readings to that acceptance.

/// The most containers a backend body may nest. `serde_json` reads at most 127; an answer wraps
/// a body in its own object and, for a call over a list, in a list too, so bodies stop two
/// levels short: every answer fanout composes still parses with a default `serde_json` (and
/// with the limits of most other parsers, e.g. 128 in several JavaScript and Go decoders).
pub const MAX_BODY_NESTING: usize = 125;

/// Checks that `bytes` is one JSON document that may be spliced raw: exactly what
/// `serde_json::from_slice::<serde_json::Value>` accepts (RFC 8259 with no byte-order mark;
/// whitespace is space, tab, CR and LF; valid UTF-8 everywhere; `\u` escapes with no lone
/// surrogate; numbers that fit an `f64`), nested at most [`MAX_BODY_NESTING`] containers deep.
/// The error is a short reason with the byte offset, e.g. `expected ',' or '}' at byte 40`.
pub fn check_json(bytes: &[u8]) -> Result<(), String> {
    check(bytes).map_err(|invalid| invalid.to_string())
}

/// Why a body is not JSON fanout splices. Every offset is in bytes from the start of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Invalid {
    #[error("invalid UTF-8 at byte {0}")]
    Utf8(usize),
    #[error("nested deeper than {MAX_BODY_NESTING} levels at byte {0}")]
    TooDeep(usize),
    #[error("expected a value at byte {0}")]
    Value(usize),
    #[error("expected ',' or ']' at byte {0}")]
    ArrayNext(usize),
    #[error("expected ',' or '}}' at byte {0}")]
    ObjectNext(usize),
    #[error("expected a string key at byte {0}")]
    Key(usize),
    #[error("expected ':' at byte {0}")]
    Colon(usize),
    #[error("invalid literal at byte {0}")]
    Literal(usize),
    #[error("invalid number at byte {0}")]
    Number(usize),
    #[error("number out of range at byte {0}")]
    OutOfRange(usize),
    #[error("unterminated string at byte {0}")]
    Unterminated(usize),
    #[error("control character in a string at byte {0}")]
    Control(usize),
    #[error("invalid escape at byte {0}")]
    Escape(usize),
    #[error("lone surrogate in a \\u escape at byte {0}")]
    Surrogate(usize),
    #[error("trailing characters at byte {0}")]
    Trailing(usize),
}

#[cfg(target_arch = "x86_64")]
mod blocks;
#[cfg(target_arch = "x86_64")]
mod tokens;
#[cfg(target_arch = "x86_64")]
mod vector;

/// [`check_json`], with the reason typed.
fn check(bytes: &[u8]) -> Result<(), Invalid> {
    #[cfg(target_arch = "x86_64")]
    if vector::is_valid(bytes) {
        return Ok(());
    }
    // Refused by the vector check, or no vector check on this CPU: the byte walk says why.
    let walked = walk(bytes);
    debug_assert!(
        walked.is_err() || cfg!(not(target_arch = "x86_64")),
        "the vector check refused a body that the byte walk accepts"
    );
    walked
}

/// The byte walk: the UTF-8 of the whole body, then its grammar a byte at a time.
fn walk(bytes: &[u8]) -> Result<(), Invalid> {
    if simdutf8::basic::from_utf8(bytes).is_err() {
        // Only on failure: the slower variant that says where.
        let at = simdutf8::compat::from_utf8(bytes).err().map_or(0, |error| error.valid_up_to());
        return Err(Invalid::Utf8(at));
    }
    document(bytes)
}

/// Reads one value and the whitespace around it, to the end of `bytes` (valid UTF-8).
fn document(bytes: &[u8]) -> Result<(), Invalid> {
    // The open containers, as the byte that closes each: `close` for the innermost (0 at the
    // top level), `outer_close[depth - 1]` for the one around it, and so on.
    let mut outer_close = [0; MAX_BODY_NESTING];
    let mut depth = 0;
    let mut close = 0;
    // The first byte of the value to read next, and its offset.
    let (mut start, mut byte) = token(bytes, 0);
    'value: loop {
        // The first byte after the value, and its offset.
        let (mut next, mut after) = match byte {
            b'"' => {
                let (end, rest) = string_end(bytes, start)?;
                token_in(bytes, end, rest)
            }
            b'-' | b'0'..=b'9' => token(bytes, number_end(bytes, start)?),
            b't' => token(bytes, literal_end(bytes, start, b"true")?),
            b'f' => token(bytes, literal_end(bytes, start, b"false")?),
            b'n' => token(bytes, literal_end(bytes, start, b"null")?),
            b'[' | b'{' => {
                let Some(outer) = outer_close.get_mut(depth) else {
                    return Err(Invalid::TooDeep(start));
                };
                *outer = close;
                depth += 1;
                // `[` + 2 is `]`, `{` + 2 is `}`.
                close = byte + 2;
                let (inner, first) = token(bytes, start + 1);
                if first != close {
                    (start, byte) = if close == b'}' { member(bytes, inner)? } else { (inner, first) };
                    continue 'value;
                }
                // Empty: the loop below closes it.
                (inner, first)
            }
            _ => return Err(Invalid::Value(start)),
        };
        // A value ended: close containers until one goes on with a `,`.
        loop {
            if after == b',' && close != 0 {
                (start, byte) = if close == b'}' { member(bytes, next + 1)? } else { token(bytes, next + 1) };
                continue 'value;
            }
            if after != close || close == 0 {
                return Err(match close {
                    b'}' => Invalid::ObjectNext(next),
                    b']' => Invalid::ArrayNext(next),
                    _ if next == bytes.len() => return Ok(()),
                    _ => Invalid::Trailing(next),
                });
            }
            depth -= 1;
            close = outer_close.get(depth).copied().unwrap_or(0);
            (next, after) = token(bytes, next + 1);
        }
    }
}

/// Skips JSON whitespace from `at`: the offset and value of the next byte, 0 at the end of the
/// input (as a NUL byte there, which no rule accepts either).
#[inline(always)]
fn token(bytes: &[u8], at: usize) -> (usize, u8) {
    match bytes.get(at) {
        Some(&byte) if byte > b' ' => (at, byte),
        _ => after_whitespace(bytes, at),
    }
}

/// [`token`] where there is whitespace to skip (or the end, or a control character).
fn after_whitespace(bytes: &[u8], mut at: usize) -> (usize, u8) {
    while let Some(&byte) = bytes.get(at) {
        if !matches!(byte, b' ' | b'\n' | b'\t' | b'\r') {
            return (at, byte);
        }
        at += 1;
    }
    (at, 0)
}

/// Reads an object member up to its value: `"key"` and `:`, whitespace allowed before both and
/// after, from `at`. Returns the offset and first byte of the value, as [`token`] does.
#[inline(always)]
fn member(bytes: &[u8], at: usize) -> Result<(usize, u8), Invalid> {
    let (start, byte) = token(bytes, at);
    if byte != b'"' {
        return Err(Invalid::Key(start));
    }
    let (end, rest) = string_end(bytes, start)?;
    let (colon, byte) = token_in(bytes, end, rest);
    if byte != b':' {
        return Err(Invalid::Colon(colon));
    }
    // The bytes after the colon are in `rest` only when it was.
    Ok(token_in(bytes, colon + 1, if colon == end { rest >> 8 } else { 0 }))
}

/// [`token`] at `at`, where `rest` holds the bytes from `at` on that the caller has already
/// loaded (as many as it has, zeros after them): the first of them is used when it is not
/// whitespace, saving a load.
#[inline(always)]
fn token_in(bytes: &[u8], at: usize, rest: u64) -> (usize, u8) {
    match rest as u8 {
        byte if byte > b' ' => (at, byte),
        _ => token(bytes, at),
    }
}

/// Reads the string whose opening quote is at `start`. Returns the offset after its closing
/// quote and the bytes after that quote in the last word read (see [`token_in`]). Eight bytes
/// at a time: a word without [`string_stops`] is all plain content.
#[inline(always)]
fn string_end(bytes: &[u8], start: usize) -> Result<(usize, u64), Invalid> {
    let mut at = start + 1;
    loop {
        let word = word_at(bytes, at);
        let stops = string_stops(word);
        if stops == 0 {
            at += 8;
            continue;
        }
        // The high bit of the first stop byte (little-endian: the lowest byte comes first).
        let bit = stops.trailing_zeros();
        at += (bit / 8) as usize;
        if (word >> (bit - 7)) as u8 == b'"' {
            return Ok((at + 1, word.checked_shr(bit + 1).unwrap_or(0)));
        }
        at = escape_end(bytes, start, at)?;
    }
}

/// The eight bytes from `at` as a little-endian word, zero bytes past the end of `bytes` (a
/// stop for [`string_stops`], like the control characters).
#[inline(always)]
fn word_at(bytes: &[u8], at: usize) -> u64 {
    match bytes.get(at..at.wrapping_add(8)).and_then(<[u8]>::first_chunk::<8>) {
        Some(chunk) => u64::from_le_bytes(*chunk),
        None => last_word(bytes, at),
    }
}

/// [`word_at`] less than eight bytes from the end.
#[cold]
fn last_word(bytes: &[u8], at: usize) -> u64 {
    let mut chunk = [0; 8];
    for (byte, &found) in chunk.iter_mut().zip(bytes.get(at..).unwrap_or_default()) {
        *byte = found;
    }
    u64::from_le_bytes(chunk)
}

/// A byte value repeated in the eight bytes of a word.
const fn repeated(byte: u8) -> u64 {
    u64::from_le_bytes([byte; 8])
}

/// The high bit of each byte of `word` that stops a run of plain string content: a `"`, a `\`
/// or a control character (below 0x20). Exact: with the high bit of every byte cleared (`low`,
/// each byte at most 0x7f), no sum below carries into the next byte; `x ^ 0x02` maps `"` to
/// 0x20 and the control characters onto themselves, so adding 0x5f sets the high bit of the
/// bytes that are neither, and adding 0x7f to `x ^ 0x5c` that of the bytes that are not `\`.
/// Bytes from 0x80 up (UTF-8 beyond ASCII) are plain.
#[inline(always)]
fn string_stops(word: u64) -> u64 {
    let low = word & repeated(0x7f);
    let not_quote_or_control = (low ^ repeated(0x02)) + repeated(0x5f);
    let not_backslash = (low ^ repeated(b'\\')) + repeated(0x7f);
    !(not_quote_or_control & not_backslash | word) & repeated(0x80)
}

/// Reads past the stop at `at` inside the string opened at `start` that is not its closing
/// quote: an escape, whose `\` is there, or else an error. Returns the offset after the escape.
/// As in `serde_json`, a `\u` escape of a high surrogate must be followed at once by one of a
/// low surrogate, and a low surrogate may not come alone.
fn escape_end(bytes: &[u8], start: usize, at: usize) -> Result<usize, Invalid> {
    match bytes.get(at) {
        Some(b'\\') => {}
        Some(_) => return Err(Invalid::Control(at)),
        None => return Err(Invalid::Unterminated(start)),
    }
    match bytes.get(at + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 2),
        Some(b'u') => match hex4(bytes, at + 2)? {
            0xD800..=0xDBFF => {
                let low = match bytes.get(at + 6..at + 8) {
                    Some(b"\\u") => hex4(bytes, at + 8)?,
                    _ => return Err(Invalid::Surrogate(at)),
                };
                match low {
                    0xDC00..=0xDFFF => Ok(at + 12),
                    _ => Err(Invalid::Surrogate(at)),
                }
            }
            0xDC00..=0xDFFF => Err(Invalid::Surrogate(at)),
            _ => Ok(at + 6),
        },
        _ => Err(Invalid::Escape(at)),
    }
}

/// The four hexadecimal digits at `at`, as a UTF-16 code unit.
fn hex4(bytes: &[u8], at: usize) -> Result<u32, Invalid> {
    let digits = bytes.get(at..at + 4).ok_or(Invalid::Escape(at))?;
    digits.iter().enumerate().try_fold(0, |unit, (index, &digit)| {
        let value = char::from(digit).to_digit(16).ok_or(Invalid::Escape(at + index))?;
        Ok((unit << 4) | value)
    })
}

/// Reads the number that starts at `start`: `-`? then `0` or digits not starting with `0`,
/// then `.digits`? and `(e|E)(+|-)?digits`?, no larger than an `f64` holds. Returns the offset
/// after it.
#[inline(always)]
fn number_end(bytes: &[u8], start: usize) -> Result<usize, Invalid> {
    match short_number_length(word_at(bytes, start)) {
        Some(length) => Ok(start + length as usize),
        None => long_number_end(bytes, start),
    }
}

/// The length of the number at the start of `word` (eight bytes, the first lowest) for most
/// numbers: an integer or a decimal, with no exponent, that ends within the word. `None` when
/// the number needs the full reading of [`long_number_end`], which also says what is wrong
/// with one that is invalid.
#[inline(always)]
fn short_number_length(word: u64) -> Option<u32> {
    if word as u8 == b'-' {
        // The byte shifted in at the top is not the body's: the number must end before it.
        return unsigned_length::<7>(word >> 8).map(|length| length + 1);
    }
    unsigned_length::<8>(word)
}

/// [`short_number_length`] for a number with no sign, of which only the first `SEEN` bytes of
/// `word` may be part (the others are not the body's).
#[inline(always)]
fn unsigned_length<const SEEN: u32>(word: u64) -> Option<u32> {
    let other = non_digits(word);
    // The index of the first byte that is not a digit (8 when all are).
    let mut end = other.trailing_zeros();
    if end == 0 || end >= SEEN || (word as u8 == b'0' && end > 1) {
        return None;
    }
    if (word >> (8 * end)) as u8 == b'.' {
        // The next byte that is not a digit: the lowest bit of `other` once the point's is cleared.
        let fraction_end = (other & (other - 1)).trailing_zeros();
        if fraction_end == end + 1 || fraction_end >= SEEN {
            return None;
        }
        end = fraction_end;
    }
    if (word >> (8 * end)) as u8 | 0x20 == b'e' {
        return None;
    }
    Some(end)
}

/// Bit `i` set when byte `i` of `word` (the first lowest) is not an ASCII digit, and bit 8 set:
/// its `trailing_zeros` is the length of the word's leading digits. With SSE2 (every x86_64
/// CPU has it): five instructions, where the word-wide arithmetic of [`non_digits_in_word`]
/// takes twelve.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn non_digits(word: u64) -> u32 {
    use safe_arch::{
        cmp_eq_mask_i8_m128i, min_u8_m128i, move_mask_i8_m128i, set_i64_m128i_s, set_splat_i8_m128i,
        sub_i8_m128i,
    };
    // The upper eight bytes of the vector are zero, which is not a digit: bit 8 is set.
    let offsets = sub_i8_m128i(set_i64_m128i_s(word as i64), set_splat_i8_m128i(b'0' as i8));
    let digits = cmp_eq_mask_i8_m128i(min_u8_m128i(offsets, set_splat_i8_m128i(9)), offsets);
    !(move_mask_i8_m128i(digits) as u32)
}

/// [`non_digits`] on other CPUs.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn non_digits(word: u64) -> u32 {
    non_digits_in_word(word)
}

/// [`non_digits`] with word-wide arithmetic: the high bit of each byte that is not a digit
/// (`x & 0x7f` + 0x76 carries into the high bit from 10 up; `| x` adds the bytes from 0x80
/// up), gathered into the top byte by one multiplication (bit `8i + 7` times `2^(7(7 - i))`
/// lands on bit `56 + i`, and no two products share a bit).
#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
fn non_digits_in_word(word: u64) -> u32 {
    let x = word ^ repeated(b'0');
    let other = (((x & repeated(0x7f)) + repeated(0x76)) | x) & repeated(0x80);
    ((other >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32 | 0x100
}

/// [`number_end`] for any number, a byte at a time.
#[cold]
fn long_number_end(bytes: &[u8], start: usize) -> Result<usize, Invalid> {
    let integer = start + usize::from(bytes.get(start) == Some(&b'-'));
    let mut at = match bytes.get(integer) {
        Some(b'0') => integer + 1,
        Some(b'1'..=b'9') => digits_end(bytes, integer + 1),
        _ => return Err(Invalid::Number(integer)),
    };
    // A bound on the number of digits before the point, exponent included.
    let mut magnitude = at - integer;
    if bytes.get(at) == Some(&b'.') {
        at = some_digits_end(bytes, at + 1)?;
    }
    if let Some(b'e' | b'E') = bytes.get(at) {
        let (digits, positive) = match bytes.get(at + 1) {
            Some(b'-') => (at + 2, false),
            Some(b'+') => (at + 2, true),
            _ => (at + 1, true),
        };
        at = some_digits_end(bytes, digits)?;
        if positive {
            magnitude = bytes[digits..at].iter().fold(magnitude, |sum, digit| {
                sum.saturating_mul(10).saturating_add(usize::from(digit - b'0'))
            });
        }
    }
    // Below 10^300 a number is well inside an `f64`; above, `serde_json` decides with its own
    // rules (a zero with any exponent is fine, e.g.).
    if magnitude > 300 && serde_json::from_slice::<f64>(&bytes[start..at]).is_err() {
        return Err(Invalid::OutOfRange(start));
    }
    Ok(at)
}

/// The offset of the first byte at or after `at` that is not a digit.
#[inline(always)]
fn digits_end(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_digit) {
        at += 1;
    }
    at
}

/// Like [`digits_end`], but at least one digit must be there.
fn some_digits_end(bytes: &[u8], at: usize) -> Result<usize, Invalid> {
    match digits_end(bytes, at) {
        end if end == at => Err(Invalid::Number(at)),
        end => Ok(end),
    }
}

/// Reads the literal `word` (`true`, `false` or `null`) at `at`; returns the offset after it.
fn literal_end(bytes: &[u8], at: usize, word: &[u8]) -> Result<usize, Invalid> {
    match bytes.get(at..at + word.len()) {
        Some(found) if found == word => Ok(at + word.len()),
        _ => Err(Invalid::Literal(at)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{BodyBuilder, json_key};
    use serde_json::Value;

    /// The oracle: `serde_json` parses a `Value`, which nests at most `MAX_BODY_NESTING` deep.
    fn serde_accepts(bytes: &[u8]) -> bool {
        fn nesting(value: &Value) -> usize {
            match value {
                Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
                Value::Object(map) => 1 + map.values().map(nesting).max().unwrap_or(0),
                _ => 0,
            }
        }
        serde_json::from_slice::<Value>(bytes).is_ok_and(|value| nesting(&value) <= MAX_BODY_NESTING)
    }

    /// The vector check's answer, the same with either classifier: SSE2, and AVX2 where the
    /// CPU has it.
    #[cfg(target_arch = "x86_64")]
    fn vector_check(bytes: &[u8]) -> bool {
        let sse2 = vector::is_valid_with(bytes, None);
        let shown = String::from_utf8_lossy(bytes);
        assert_eq!(vector::is_valid(bytes), sse2, "AVX2 (where the CPU has it) and SSE2 on {shown:?}");
        sse2
    }

    /// The next of a sequence of pseudo-random numbers (xorshift64) from `state`, nonzero.
    pub(super) fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Asserts that the check says `accepted` for each body, as the oracle does.
    fn assert_cases(accepted: bool, cases: &[&[u8]]) {
        for bytes in cases {
            let shown = String::from_utf8_lossy(bytes);
            assert_eq!(serde_accepts(bytes), accepted, "the oracle on {shown:?}");
            assert_eq!(walk(bytes).is_ok(), accepted, "the byte walk on {shown:?}");
            #[cfg(target_arch = "x86_64")]
            assert_eq!(vector_check(bytes), accepted, "the vector check on {shown:?}");
            assert_eq!(
                check_json(bytes).is_ok(),
                accepted,
                "check_json on {shown:?}: {:?}",
                check_json(bytes)
            );
        }
    }

    fn nested(open: &str, inner: &str, close: &str, depth: usize) -> Vec<u8> {
        format!("{}{inner}{}", open.repeat(depth), close.repeat(depth)).into_bytes()
    }

    #[test]
    fn numbers_follow_the_grammar_and_fit_an_f64() {
        assert_cases(
            true,
            &[
                b"0",
                b"-0",
                b"1",
                b"-1",
                b"10",
                b"0.5",
                b"-0.0",
                b"1.25",
                b"1e2",
                b"1E2",
                b"1e+2",
                b"1E-2",
                b"0e0",
                b"1.5e308",
                b"-1.7976931348623157e308",
                b"18446744073709551616",
                b"-9223372036854775809",
                b"1e-400",
                b"0e400",
                b"0.0e99999999999999999999",
                b"1e-99999999999999999999",
                b"0.000000001e305",
                &[b'9'; 300],
                b"[1,-2.5e3,0]",
                b" 7 ",
            ],
        );
        assert_cases(
            false,
            &[
                b"-",
                b"+1",
                b"01",
                b"-01",
                b"00",
                b"1.",
                b".1",
                b"1.e2",
                b"1e",
                b"1e+",
                b"1E-",
                b"-.5",
                b"0x10",
                b"1_000",
                b"--1",
                b"1e400",
                b"-1e400",
                b"1.8e308",
                b"1e99999999999999999999",
                b"0.1e99999999999999999999",
                &[b'9'; 400],
                b"NaN",
                b"Infinity",
                b"-Infinity",
                b"[1.]",
                b"[01]",
                b"1 2",
            ],
        );
    }

    #[test]
    fn every_short_number_is_read_as_serde_json_reads_it() {
        // All strings of number characters up to six long, and of `1`, `.` and `-` up to nine
        // (past the eight bytes that the short reading looks at), alone, in a list and
        // followed by more: the word-at-a-time reading and the full one agree with the oracle.
        fn strings(alphabet: &[u8], longest: usize) -> Vec<Vec<u8>> {
            let mut all = vec![Vec::new()];
            let mut last = vec![Vec::new()];
            for _ in 0..longest {
                last = last
                    .iter()
                    .flat_map(|s: &Vec<u8>| alphabet.iter().map(move |&c| [&s[..], &[c]].concat()))
                    .collect();
                all.extend(last.iter().cloned());
            }
            all
        }
        let mut numbers = strings(b"-01.e5", 6);
        numbers.extend(strings(b"1.-", 9).into_iter().filter(|s| s.len() > 6));
        for number in numbers.iter().filter(|n| !n.is_empty()) {
            for body in
                [number.clone(), [b"[", &number[..], b"]"].concat(), [b"[ ", &number[..], b",1]"].concat()]
            {
                let accepted = serde_accepts(&body);
                let shown = String::from_utf8_lossy(&body);
                assert_eq!(walk(&body).is_ok(), accepted, "the byte walk on {shown:?}");
                #[cfg(target_arch = "x86_64")]
                assert_eq!(vector_check(&body), accepted, "the vector check on {shown:?}");
            }
        }
    }

    #[test]
    fn strings_take_every_escape_and_no_control_character() {
        assert_cases(
            true,
            &[
                br#""""#,
                br#""\"\\\/\b\f\n\r\t""#,
                br#""\u0000\u001f\u00e9\uFFFF\uabcD""#,
                br#""\ud83d\ude00""#,
                br#""\uDBFF\uDFFF""#,
                "\"é ü € 😀\"".as_bytes(),
                b"\"\x7f\"",
                br#"{"\u0041":"a long enough string to use whole words, with a \"quote\" inside"}"#,
            ],
        );
        assert_cases(
            false,
            &[
                b"\"",
                b"\"abc",
                br#""\""#,
                br#""\x""#,
                br#""\a""#,
                br#""\U0041""#,
                br#""\u12""#,
                br#""\u12g4""#,
                br#""\u""#,
                b"\"\x00\"",
                b"\"a\x1fb\"",
                b"\"tab\tinside\"",
                b"\"new\nline in a string long enough for words\"",
                br#""\ud800""#,
                br#""\udc00""#,
                br#""\ud800\u0041""#,
                br#""\ud800\ud800""#,
                br#""\ud800x""#,
                br#""\ud800\n""#,
                br#""\udfff\ud800""#,
                br#"'single'"#,
                br#"{"a\":1}"#,
            ],
        );
    }

    #[test]
    fn invalid_utf8_is_refused_inside_and_outside_strings() {
        assert_cases(true, &["\"\u{10FFFF}\"".as_bytes(), "[\"\u{7FF}\", \"\u{800}\"]".as_bytes()]);
        assert_cases(
            false,
            &[
                b"\"\xff\"",
                b"\"\xc3\"",
                b"{\"\xc3\":1}",
                b"\"\xc0\xaf\"",
                b"\"\xe0\x80\xaf\"",
                b"\"\xed\xa0\x80\"",
                b"\"\xf4\x90\x80\x80\"",
                b"\"\xe2\x82\"",
                b"\"\xf0\x9f\x98\"",
                b"\"\x80\"",
                b"[1]\xff",
                b"\xff[1]",
                b"[\xc3\xa9]",
            ],
        );
        assert_eq!(check_json(b"[\"ok\", \"\xe2\x82\"]").unwrap_err(), "invalid UTF-8 at byte 8");
    }

    #[test]
    fn literals_and_structure_are_exact() {
        assert_cases(
            true,
            &[
                b"true",
                b"false",
                b"null",
                b"[]",
                b"{}",
                b" \t\r\n[ ] \n",
                br#"{"a":1,"a":2}"#,
                br#"{ "a" : [ 1 , { } , [ ] ] , "" : null }"#,
                br#""top-level string""#,
            ],
        );
        assert_cases(
            false,
            &[
                b"",
                b" ",
                b"\n\t",
                b"tru",
                b"nul",
                b"fals",
                b"True",
                b"true1",
                b"nullx",
                b"[true false]",
                b"[1,]",
                b"[,1]",
                b"[1,,2]",
                br#"{"a":1,}"#,
                br#"{"a"}"#,
                br#"{"a" 1}"#,
                br#"{"a":}"#,
                br#"{a:1}"#,
                br#"{1:1}"#,
                b"{,}",
                b"[]]",
                b"[",
                b"]",
                b"{",
                b"[}",
                b"{]",
                br#"{"a":1}x"#,
                b"{} {}",
                b"[1] [2]",
                b"\x0c[]",
                b"[]\x0b",
                b"\x00",
                "\u{a0}[]".as_bytes(),
                b"\xef\xbb\xbf{}",
            ],
        );
        assert_eq!(check_json(b"[1,]").unwrap_err(), "expected a value at byte 3");
        assert_eq!(check_json(b"{\"a\":1]").unwrap_err(), "expected ',' or '}' at byte 6");
        assert_eq!(check_json(b"[1}").unwrap_err(), "expected ',' or ']' at byte 2");
        assert_eq!(check_json(b"{\"a\" 1}").unwrap_err(), "expected ':' at byte 5");
        assert_eq!(check_json(b"{1:1}").unwrap_err(), "expected a string key at byte 1");
        assert_eq!(check_json(b"{\"a\":1} x").unwrap_err(), "trailing characters at byte 8");
        assert_eq!(check_json(b"\"ab\ncd\"").unwrap_err(), "control character in a string at byte 3");
        assert_eq!(check_json(b"[\"\\ud800\"]").unwrap_err(), "lone surrogate in a \\u escape at byte 2");
        assert_eq!(check_json(b"1e400").unwrap_err(), "number out of range at byte 0");
        assert_eq!(check_json(b"[tru]").unwrap_err(), "invalid literal at byte 1");
        assert_eq!(check_json(b"").unwrap_err(), "expected a value at byte 0");
    }

    #[test]
    fn nesting_stops_at_the_limit_for_arrays_objects_and_both() {
        let limit = MAX_BODY_NESTING;
        let mixed = |depth: usize| {
            let mut body = String::new();
            (0..depth).for_each(|level| body.push_str(if level % 2 == 0 { "[" } else { "{\"k\":" }));
            body.push('1');
            (0..depth).rev().for_each(|level| body.push(if level % 2 == 0 { ']' } else { '}' }));
            body.into_bytes()
        };
        // Deep containers that close and reopen count only while they are open.
        let siblings = format!("[{0},{0}]", String::from_utf8(nested("[", "", "]", limit - 1)).unwrap());
        assert_cases(
            true,
            &[
                &nested("[", "", "]", limit),
                &nested("{\"a\":", "{}", "}", limit - 1),
                &nested("[", "{}", "]", limit - 1),
                &mixed(limit),
                siblings.as_bytes(),
            ],
        );
        assert_cases(
            false,
            &[
                &nested("[", "", "]", limit + 1),
                &nested("{\"a\":", "1", "}", limit + 1),
                &nested("[", "{}", "]", limit),
                &mixed(limit + 1),
                &nested("[", "", "]", 10_000),
                &nested("[", "", "", limit + 1),
            ],
        );
        let error = check_json(&nested("[", "", "]", limit + 1)).unwrap_err();
        assert_eq!(error, "nested deeper than 125 levels at byte 125");
        // The deepest body, in a list call's answer ({"items":[body]}), still parses.
        let mut answer = BodyBuilder::with_capacity(0);
        answer.push_list(&json_key("items"), &[nested("[", "", "]", limit)]);
        assert!(serde_json::from_slice::<Value>(&answer.finish()).is_ok());
    }

    #[test]
    fn both_readings_agree_with_serde_json_on_mutated_bodies() {
        // A body with every kind of token, escapes, pretty-printing and text beyond ASCII, over
        // several blocks, mutated a byte at a time (replaced, inserted or removed, from bytes
        // that matter to the grammar): each mutant is accepted exactly when serde_json takes it.
        let seed = "{\n  \"id\": \"a-1\",\t\"tags\": [\"x\", \"\\\"quoted\\\"\", \"\\u00e9t\u{e9} \\ud83d\\ude00\"],\n  \"n\": [0, -1.5, 2e10, 1E-3, 123456789, 0.25],\n  \"ok\": true, \"no\": false, \"nil\": null,\n  \"deep\": {\"a\": [[{}], []], \"b\": {\"c\": \"\\\\\\/\\b\\f\\n\\r\\t\"}},\n  \"text\": \"a string long enough to cross a 64-byte block edge or two, with spaces\"\n}\n";
        assert!(serde_accepts(seed.as_bytes()));
        const BYTES: &[u8] = b"{}[],:\"\\ \n\t\x01-0123456789.eE+tfnu\xc3\xa9\xff";
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut random = |below: usize| (xorshift(&mut state) % below as u64) as usize;
        for _ in 0..20_000 {
            let mut body = seed.as_bytes().to_vec();
            for _ in 0..1 + random(3) {
                let at = random(body.len());
                let byte = BYTES[random(BYTES.len())];
                match random(3) {
                    0 => body[at] = byte,
                    1 => body.insert(at, byte),
                    _ => {
                        body.remove(at);
                    }
                }
            }
            let accepted = serde_accepts(&body);
            let shown = String::from_utf8_lossy(&body);
            assert_eq!(walk(&body).is_ok(), accepted, "the byte walk on {shown:?}");
            #[cfg(target_arch = "x86_64")]
            assert_eq!(vector_check(&body), accepted, "the vector check on {shown:?}");
        }
    }

    #[test]
    fn both_digit_readings_find_the_same_bytes() {
        // Each byte value at each position of a word of digits, then random words: the bits
        // must say exactly which bytes are not digits, as the byte-wise reference does.
        let reference = |word: u64| {
            (0..8)
                .filter(|index| !((word >> (8 * index)) as u8).is_ascii_digit())
                .fold(0x100, |bits, index| bits | 1 << index)
        };
        let mut words: Vec<u64> = (0..8)
            .flat_map(|index| {
                (0..=u8::MAX).map(move |byte| {
                    u64::from_le_bytes(*b"01234567") & !(0xff << (8 * index)) | u64::from(byte) << (8 * index)
                })
            })
            .collect();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        words.extend((0..100_000).map(|_| {
            let state = xorshift(&mut state);
            // Mostly digits, so that long runs of them occur.
            state & 0x0f0f_0f0f_0f0f_0f0f
                | if state.is_multiple_of(3) { state & 0xf0f0_f0f0_f0f0_f0f0 } else { repeated(0x30) }
        }));
        for word in words {
            assert_eq!(non_digits(word) & 0x1ff, reference(word), "{word:#018x}");
            assert_eq!(non_digits_in_word(word), reference(word), "{word:#018x}");
        }
    }

    #[test]
    fn long_bodies_are_read_across_every_block_and_fill() {
        // An element with a string holding escapes and text beyond ASCII, numbers and nested
        // containers, repeated past several fills of the vector check (2 KiB each) and shifted
        // by 0 to 63 bytes, so that every kind of token, escape and string edge falls across
        // block and fill edges; then a fault in the last element, far from the start.
        let element = r#"{"s":"a \"quoted\" é \\ ","n":-12.5,"b":[true,null,{}],"e":1e3}"#;
        for shift in 0..64 {
            let elements = vec![element; 90].join(",");
            let body = format!("{}[{elements}]", " ".repeat(shift));
            let last_text = body.rfind('é').unwrap();
            let control = format!("{}\u{1}{}", &body[..last_text], &body[last_text..]);
            let unclosed = &body[..body.len() - 1];
            assert_cases(true, &[body.as_bytes()]);
            assert_cases(false, &[control.as_bytes(), unclosed.as_bytes()]);
        }
    }

    #[test]
    fn whole_word_string_scanning_finds_every_special_byte_at_every_position() {
        // Each special byte at each offset of a long string, with plain bytes (ASCII and
        // multi-byte) around it: the word-at-a-time scan must see it wherever it falls.
        for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for position in 0..24 {
                let mut body = b"\"".to_vec();
                body.extend(std::iter::repeat_n(b'a', position));
                body.push(special);
                body.extend_from_slice("éé".as_bytes());
                body.extend(std::iter::repeat_n(b'z', 20));
                body.push(b'"');
                let accepted = serde_accepts(&body);
                assert_eq!(check_json(&body).is_ok(), accepted, "{special:#x} at {position}");
                assert!(!accepted, "{special:#x} at {position} makes it invalid");
            }
        }
        for length in 0..40 {
            let body = format!("[\"{}\",\"{}\"]", "x".repeat(length), "ü".repeat(length));
            assert!(check_json(body.as_bytes()).is_ok(), "{length}");
        }
    }
}
