//! The tokens of a body, in order, from the block masks of [`super::blocks`]: blocks are
//! classified [`CHUNK`] at a time as the reader reaches them, their escapes checked and their
//! strings followed, so a body of any size is read in one pass with constant memory.

use super::blocks::{Avx2, BLOCK, Masks, Strings, prefix_xor, prefix_xor_clmul};
use super::escape_end;

/// Blocks classified per fill of [`Blocks`]: 2 KiB of body, so that the common body up to that
/// size is classified in one pass and its end found without another fill (measured: 53 fewer
/// instructions on the 1 KB body than with 1 KiB chunks).
const CHUNK: usize = 32;

/// A body as 64-byte blocks, the last one padded with spaces (whitespace: no token).
pub(super) struct Body<'a> {
    bytes: &'a [u8],
    full: &'a [[u8; BLOCK]],
    last: [u8; BLOCK],
}

impl<'a> Body<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        let (full, rest) = bytes.as_chunks::<BLOCK>();
        let mut last = [b' '; BLOCK];
        last[..rest.len()].copy_from_slice(rest);
        Body { bytes, full, last }
    }

    /// The block at `index`, `None` past the end.
    fn block(&self, index: usize) -> Option<&[u8; BLOCK]> {
        match self.full.get(index) {
            Some(block) => Some(block),
            None if index == self.full.len() && !self.bytes.len().is_multiple_of(BLOCK) => Some(&self.last),
            None => None,
        }
    }
}

/// Reads the tokens of a body, in order, from the masks in [`Blocks`]; see
/// [`super::blocks::Scanned::tokens`]. A small value of its own, apart from the blocks, so that
/// it lives in registers while the grammar walks.
pub(super) struct Tokens<'a> {
    /// The bytes of the block in `bits`.
    block: &'a [u8; BLOCK],
    /// Index of that block in the body.
    index: usize,
    /// The tokens of that block not read yet.
    bits: u64,
}

impl<'a> Tokens<'a> {
    pub fn new(body: &'a Body<'a>) -> Self {
        // On a block before the first, with no tokens, so that the first `next` moves on.
        Tokens { block: &body.last, index: usize::MAX, bits: 0 }
    }

    /// The first byte of the next token and where it is in its block (see [`Tokens::offset`]),
    /// `None` at the end of the body or at an invalid string.
    #[inline(always)]
    pub fn next(&mut self, blocks: &mut Blocks<'a>) -> Option<(u8, usize)> {
        while self.bits == 0 {
            // Once a block: the walk's other paths come first.
            std::hint::cold_path();
            self.step(blocks)?;
        }
        let bit = self.bits.trailing_zeros() as usize % BLOCK;
        self.bits &= self.bits - 1;
        Some((self.block[bit], bit))
    }

    /// The first byte of the next token, as [`Tokens::next`].
    #[inline(always)]
    pub fn byte(&mut self, blocks: &mut Blocks<'a>) -> Option<u8> {
        self.next(blocks).map(|(byte, _)| byte)
    }

    /// The offset in the body of the token at `bit` of the current block (the last one read).
    #[inline(always)]
    pub fn offset(&self, bit: usize) -> usize {
        self.index * BLOCK + bit
    }

    /// The eight bytes from `bit` of the current block, the first lowest, when the block holds
    /// them all (its padding included: spaces, which end any number).
    #[inline(always)]
    pub fn word(&self, bit: usize) -> Option<u64> {
        let bytes = self.block.get(bit..bit + 8)?.first_chunk::<8>()?;
        Some(u64::from_le_bytes(*bytes))
    }

    /// Drops the tokens of the current block before `bit`, which is in the block.
    #[inline(always)]
    pub fn skip_in_block(&mut self, bit: usize) {
        debug_assert!(bit < BLOCK, "bit {bit} is past the block");
        self.bits &= u64::MAX << (bit % BLOCK);
    }

    /// Drops the tokens before `end`: the bytes after the first of a number or literal.
    #[inline(always)]
    pub fn skip_to(&mut self, blocks: &mut Blocks<'a>, end: usize) {
        while end / BLOCK != self.index {
            if self.step(blocks).is_none() {
                self.bits = 0;
                return;
            }
        }
        self.bits &= u64::MAX << (end % BLOCK);
    }

    /// Moves to the next block.
    #[inline(always)]
    fn step(&mut self, blocks: &mut Blocks<'a>) -> Option<()> {
        self.index = self.index.wrapping_add(1);
        let slot = self.index % CHUNK;
        if slot == 0 {
            blocks.fill(self.index)?;
        }
        self.bits = *blocks.masks.get(slot)?;
        self.block = blocks.body.block(self.index)?;
        Some(())
    }
}

/// The blocks of a body, classified [`CHUNK`] at a time.
pub(super) struct Blocks<'a> {
    body: &'a Body<'a>,
    /// The token masks of the blocks classified last.
    masks: [u64; CHUNK],
    strings: Strings,
    /// False once a block was found invalid.
    valid: bool,
    /// The end of the last escape checked: a surrogate pair is checked at its first `\`.
    escaped_to: usize,
    /// Nonzero when a block read had a byte from 0x80 up.
    beyond_ascii: u32,
    /// Whether blocks are classified with AVX2.
    avx2: Option<Avx2>,
}

impl<'a> Blocks<'a> {
    /// The blocks of `body`, classified with AVX2 when `avx2` is given.
    pub fn new(body: &'a Body<'a>, avx2: Option<Avx2>) -> Self {
        Blocks {
            body,
            masks: [0; CHUNK],
            strings: Strings::default(),
            valid: true,
            escaped_to: 0,
            beyond_ascii: 0,
            avx2,
        }
    }

    /// Whether every block read was valid and the body did not end inside a string. Meant
    /// for when [`Tokens::next`] has returned `None`.
    pub fn complete(&self) -> bool {
        self.valid && !self.strings.inside()
    }

    /// Whether the blocks read were all ASCII (so valid UTF-8).
    pub fn ascii(&self) -> bool {
        self.beyond_ascii == 0
    }

    /// Classifies up to [`CHUNK`] blocks from block `first`: `None` at the end of the body or
    /// (for good) when a block has a control character in a string or an invalid escape.
    #[inline(always)]
    #[expect(unsafe_code, reason = "AVX2 code runs only with the proof that the CPU has it")]
    fn fill(&mut self, first: usize) -> Option<()> {
        match self.avx2 {
            // SAFETY: an `Avx2` exists only where `Avx2::detect` found AVX2 and PCLMULQDQ.
            Some(avx2) => unsafe { self.fill_avx2(first, avx2) },
            None => self.fill_sse2(first),
        }
    }

    /// [`Blocks::fill`] with [`Masks::of`] and [`prefix_xor`].
    #[inline(never)]
    fn fill_sse2(&mut self, first: usize) -> Option<()> {
        self.fill_with(first, Masks::of, prefix_xor)
    }

    /// [`Blocks::fill`] with [`Masks::of_avx2`] and [`prefix_xor_clmul`], on a CPU that has
    /// them (the proof is taken where this is called).
    #[target_feature(enable = "avx2,pclmulqdq")]
    #[inline(never)]
    fn fill_avx2(&mut self, first: usize, _: Avx2) -> Option<()> {
        self.fill_with(first, |block| Masks::of_avx2(block), |bits| prefix_xor_clmul(bits))
    }

    /// [`Blocks::fill`] with `classify` making the masks of each block, and `prefix_xor` for
    /// [`Strings::scan`].
    #[inline(always)]
    fn fill_with(
        &mut self,
        first: usize,
        classify: impl Fn(&[u8; BLOCK]) -> Masks,
        prefix_xor: impl Fn(u64) -> u64 + Copy,
    ) -> Option<()> {
        if !self.valid {
            return None;
        }
        // The state in locals for the loop (registers), written back after it.
        let (mut strings, mut beyond_ascii) = (self.strings, self.beyond_ascii);
        let mut filled = 0;
        while filled < CHUNK {
            let Some(block) = self.body.block(first + filled) else { break };
            let masks = classify(block);
            beyond_ascii |= masks.beyond_ascii;
            let scanned = strings.scan(&masks, prefix_xor);
            let start = (first + filled) * BLOCK;
            if scanned.control_in_string != 0
                || (scanned.escapes != 0
                    && !escapes_valid(self.body.bytes, start, scanned.escapes, &mut self.escaped_to))
            {
                // The tokens before this block stand: the walk stops here, where the masks
                // are zero (none may stay from an earlier fill).
                self.valid = false;
                self.masks[filled..].fill(0);
                break;
            }
            self.masks[filled] = scanned.tokens;
            filled += 1;
        }
        (self.strings, self.beyond_ascii) = (strings, beyond_ascii);
        (filled > 0).then_some(())
    }
}

/// Checks the escape that each bit of `escapes` (of the block at `start` in `bytes`) starts.
/// `escaped_to` is the end of the last escape checked: a surrogate pair is checked whole at its
/// first `\`, and its second is skipped.
#[cold]
fn escapes_valid(bytes: &[u8], start: usize, mut escapes: u64, escaped_to: &mut usize) -> bool {
    while escapes != 0 {
        let at = start + escapes.trailing_zeros() as usize;
        escapes &= escapes - 1;
        if at < *escaped_to {
            continue;
        }
        match escape_end(bytes, at, at) {
            Ok(end) => *escaped_to = end,
            Err(_) => return false,
        }
    }
    true
}
