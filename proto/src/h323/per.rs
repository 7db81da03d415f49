//! ASN.1 packed encoding rules, ALIGNED variant (ITU-T X.691), as far as
//! H.225.0 and H.245 use them: a bit reader and a bit writer with the
//! building blocks the typed codecs in [`super::h225`] and [`super::h245`]
//! are written with.
//!
//! Clause numbers are X.691 (02/2021). What is left out on purpose:
//! fragmented lengths (16K items or more: nothing in H.323-lite comes near,
//! and a TPKT packet holds at most 16K), REAL, and extension addition
//! groups (`[[ ]]`, which these modules do not use).
//!
//! Decoding never panics and is bounded whatever the input: every length is
//! checked against the bits that are actually there before anything is
//! allocated, a SEQUENCE OF holds at most [`MAX_ITEMS`] elements, one
//! message decodes at most [`MAX_ELEMENTS`] elements in all, and nesting is
//! at most [`MAX_DEPTH`] deep.

use std::fmt;

/// Most elements one SEQUENCE OF may have.
pub const MAX_ITEMS: usize = 1024;
/// Most elements (list items and opaque values) one message may hold.
pub const MAX_ELEMENTS: usize = 16_384;
/// Deepest nesting of open types and recursive types.
pub const MAX_DEPTH: usize = 24;

/// Why bytes did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PerError {
    #[error("message ends early")]
    Truncated,
    #[error("{0} outside its constraint")]
    Constraint(&'static str),
    #[error("fragmented length (16K or more) not supported")]
    Fragmented,
    #[error("too many elements")]
    TooMany,
    #[error("nested too deep")]
    TooDeep,
    #[error("malformed object identifier")]
    BadObjectIdentifier,
    #[error("character outside the permitted alphabet")]
    BadCharacter,
}

impl PerError {
    /// A short stable label for metrics (`malformed{kind=...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            PerError::Truncated => "truncated",
            PerError::Constraint(_) => "constraint",
            PerError::Fragmented => "fragmented",
            PerError::TooMany => "too_many",
            PerError::TooDeep => "too_deep",
            PerError::BadObjectIdentifier => "bad_object_identifier",
            PerError::BadCharacter => "bad_character",
        }
    }
}

pub type Result<T> = std::result::Result<T, PerError>;

/// A size constraint (of a string, or of a SEQUENCE OF's count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub lb: u32,
    pub ub: Option<u32>,
    /// `SIZE (lb..ub, ...)`.
    pub ext: bool,
}

impl Size {
    pub const UNBOUNDED: Size = Size {
        lb: 0,
        ub: None,
        ext: false,
    };

    pub const fn range(lb: u32, ub: u32) -> Size {
        Size {
            lb,
            ub: Some(ub),
            ext: false,
        }
    }

    pub const fn fixed(n: u32) -> Size {
        Size::range(n, n)
    }

    fn fixed_len(&self) -> Option<u32> {
        match self.ub {
            Some(ub) if ub == self.lb && !self.ext => Some(ub),
            _ => None,
        }
    }

    /// The upper bound if it is small enough for a constrained length
    /// (11.9.4.1: below 64K).
    fn small_ub(&self) -> Option<u32> {
        self.ub.filter(|&ub| ub < 65_536)
    }

    fn allows(&self, n: usize) -> bool {
        n >= self.lb as usize && self.ub.is_none_or(|ub| n <= ub as usize)
    }
}

/// Which alternative of a CHOICE (22.6–22.8): a root alternative, or an
/// extension alternative (its index counted from the first extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alt {
    Root(usize),
    Ext(usize),
}

/// The preamble of a SEQUENCE (19.1–19.3): the extension bit and which
/// optional root components are present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    pub extended: bool,
    present: u64,
    count: usize,
}

impl Preamble {
    /// Whether the `i`th optional root component (counting optional and
    /// DEFAULT components only) is present.
    pub fn has(&self, i: usize) -> bool {
        i < self.count && self.present & (1 << (self.count - 1 - i)) != 0
    }
}

/// The bits of a message from some point to its end, kept as they are so
/// that writing them at the same bit offset reproduces the message.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct BitTail {
    bytes: Vec<u8>,
    bits: usize,
}

impl BitTail {
    /// How many bits.
    pub fn len(&self) -> usize {
        self.bits
    }

    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }
}

impl fmt::Debug for BitTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BitTail({} bits: ", self.bits)?;
        for b in &self.bytes {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// Reads aligned PER. Alignment is relative to the start of `buf`, which is
/// where the outermost value (or an open type's contents) begins.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: usize,
    elements: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            depth: 0,
            elements: 0,
        }
    }

    /// Bits left to read.
    pub fn remaining(&self) -> usize {
        (self.buf.len() * 8).saturating_sub(self.pos)
    }

    /// Bits read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn bit(&mut self) -> Result<bool> {
        let byte = *self.buf.get(self.pos / 8).ok_or(PerError::Truncated)?;
        let b = byte & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Ok(b)
    }

    /// `n` bits (at most 64) as an unsigned number, first bit most significant.
    pub fn bits(&mut self, n: u32) -> Result<u64> {
        if n > 64 {
            return Err(PerError::Constraint("bit field"));
        }
        if self.remaining() < n as usize {
            return Err(PerError::Truncated);
        }
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Ok(v)
    }

    /// Skips to the next octet boundary (the padding bits are not checked:
    /// X.691 says they are zero, peers do not always agree).
    pub fn align(&mut self) {
        self.pos = self.pos.div_ceil(8) * 8;
    }

    /// `n` whole octets, after aligning.
    pub fn octets(&mut self, n: usize) -> Result<&'a [u8]> {
        self.align();
        let start = self.pos / 8;
        let end = start.checked_add(n).ok_or(PerError::Truncated)?;
        let s = self.buf.get(start..end).ok_or(PerError::Truncated)?;
        self.pos = end * 8;
        Ok(s)
    }

    pub fn boolean(&mut self) -> Result<bool> {
        self.bit()
    }

    /// A constrained whole number in `lb..=ub` (11.5.7, ALIGNED).
    pub fn constrained(&mut self, lb: i64, ub: i64) -> Result<i64> {
        let range = range_of(lb, ub)?;
        let v = if range == 1 {
            0
        } else if range <= 255 {
            self.bits(bits_for(range - 1))?
        } else if range == 256 {
            self.align();
            self.bits(8)?
        } else if range <= 65_536 {
            self.align();
            self.bits(16)?
        } else {
            // 11.5.7.4: the octet count as a constrained number, then the
            // octets.
            let max = octets_for(range - 1);
            let n = self.constrained(1, i64::from(max))?;
            self.align();
            self.bits(8 * n as u32)?
        };
        let value = i128::from(lb) + i128::from(v);
        if value > i128::from(ub) {
            return Err(PerError::Constraint("integer"));
        }
        Ok(value as i64)
    }

    /// `INTEGER (lb..ub, ...)` (13.1): a value outside the root is encoded
    /// as an unconstrained number.
    pub fn constrained_ext(&mut self, lb: i64, ub: i64) -> Result<i64> {
        if self.bit()? {
            self.unconstrained()
        } else {
            self.constrained(lb, ub)
        }
    }

    /// A constrained number that must fit `T` (the constraint's bounds do).
    pub fn number<T: TryFrom<i64>>(&mut self, lb: i64, ub: i64) -> Result<T> {
        T::try_from(self.constrained(lb, ub)?).map_err(|_| PerError::Constraint("integer"))
    }

    /// A semi-constrained whole number `lb..` (11.7).
    pub fn semi_constrained(&mut self, lb: i64) -> Result<i64> {
        let n = self.general_length()?;
        if n == 0 || n > 8 {
            return Err(PerError::Constraint("integer"));
        }
        let bytes = self.octets(n)?;
        let v = bytes.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
        let value = i128::from(lb) + i128::from(v);
        i64::try_from(value).map_err(|_| PerError::Constraint("integer"))
    }

    /// An unconstrained whole number (11.8): two's complement octets.
    pub fn unconstrained(&mut self) -> Result<i64> {
        let n = self.general_length()?;
        if n == 0 || n > 8 {
            return Err(PerError::Constraint("integer"));
        }
        let bytes = self.octets(n)?;
        let first = bytes.first().copied().unwrap_or(0);
        let init: i64 = if first & 0x80 != 0 { -1 } else { 0 };
        Ok(bytes.iter().fold(init, |a, b| (a << 8) | i64::from(*b)))
    }

    /// A normally small non-negative whole number (11.6).
    pub fn normally_small(&mut self) -> Result<u32> {
        if self.bit()? {
            let v = self.semi_constrained(0)?;
            u32::try_from(v).map_err(|_| PerError::Constraint("normally small number"))
        } else {
            Ok(self.bits(6)? as u32)
        }
    }

    /// An unconstrained length determinant (11.9.4.2, ALIGNED); a
    /// fragmented one is refused.
    pub fn general_length(&mut self) -> Result<usize> {
        self.align();
        let first = self.bits(8)? as usize;
        if first & 0x80 == 0 {
            Ok(first)
        } else if first & 0x40 == 0 {
            let second = self.bits(8)? as usize;
            Ok(((first & 0x3f) << 8) | second)
        } else {
            Err(PerError::Fragmented)
        }
    }

    /// A length determinant for `size` (11.9), without the extension bit.
    fn length_in(&mut self, size: Size) -> Result<usize> {
        let n = match size.small_ub() {
            Some(ub) => self.constrained(i64::from(size.lb), i64::from(ub))? as usize,
            None => self.general_length()?,
        };
        if !size.allows(n) {
            return Err(PerError::Constraint("length"));
        }
        Ok(n)
    }

    /// The count of a SEQUENCE OF (20.6), with its size constraint's
    /// extension bit if it has one. At most [`MAX_ITEMS`].
    pub fn count(&mut self, size: Size) -> Result<usize> {
        let n = if size.ext && self.bit()? {
            self.general_length()?
        } else if let Some(n) = size.fixed_len().filter(|&n| n < 65_536) {
            n as usize
        } else {
            self.length_in(size)?
        };
        if n > MAX_ITEMS {
            return Err(PerError::TooMany);
        }
        self.spend(n)?;
        Ok(n)
    }

    /// Counts `n` elements against the message's budget.
    pub fn spend(&mut self, n: usize) -> Result<()> {
        self.elements = self.elements.saturating_add(n);
        if self.elements > MAX_ELEMENTS {
            return Err(PerError::TooMany);
        }
        Ok(())
    }

    /// The index of a CHOICE with `root` root alternatives (22).
    pub fn choice(&mut self, root: usize, ext: bool) -> Result<Alt> {
        if ext && self.bit()? {
            return Ok(Alt::Ext(self.normally_small()? as usize));
        }
        let i = self.constrained(0, root as i64 - 1)? as usize;
        Ok(Alt::Root(i))
    }

    /// The index of an ENUMERATED with `root` root values (14).
    pub fn enumerated(&mut self, root: usize, ext: bool) -> Result<Alt> {
        if ext && self.bit()? {
            return Ok(Alt::Ext(self.normally_small()? as usize));
        }
        Ok(Alt::Root(self.constrained(0, root as i64 - 1)? as usize))
    }

    /// A SEQUENCE's preamble: the extension bit if `ext`, then one bit per
    /// optional root component (at most 64 here).
    pub fn preamble(&mut self, ext: bool, optional: usize) -> Result<Preamble> {
        let extended = ext && self.bit()?;
        if optional > 64 {
            return Err(PerError::Constraint("optional components"));
        }
        let present = self.bits(optional as u32)?;
        Ok(Preamble {
            extended,
            present,
            count: optional,
        })
    }

    /// The extension additions of a SEQUENCE whose preamble said it has
    /// some (19.7–19.9): the bitmap, then each present addition's open
    /// type, in order. Index `i` is the `i`th addition after the `...`.
    pub fn extensions(&mut self) -> Result<Extensions<'a>> {
        let n = if self.bit()? {
            self.general_length()?
        } else {
            self.bits(6)? as usize + 1
        };
        if n == 0 || n > 4096 {
            return Err(PerError::Constraint("extension bitmap"));
        }
        let mut present = Vec::new();
        for i in 0..n {
            if self.bit()? {
                present.push(i);
            }
        }
        let mut fields = Vec::with_capacity(present.len());
        for i in present {
            fields.push((i, self.open_type()?));
        }
        Ok(Extensions { fields, count: n })
    }

    /// An open type's contents (11.2, 10.2.2): a length, then the octets.
    pub fn open_type(&mut self) -> Result<&'a [u8]> {
        let n = self.general_length()?;
        self.octets(n)
    }

    /// Decodes `f` from an open type's contents (alignment restarts there),
    /// sharing this reader's element budget and depth.
    pub fn nested<T>(
        &mut self,
        contents: &'a [u8],
        f: impl FnOnce(&mut Reader<'a>) -> Result<T>,
    ) -> Result<T> {
        if self.depth >= MAX_DEPTH {
            return Err(PerError::TooDeep);
        }
        let mut sub = Reader {
            buf: contents,
            pos: 0,
            depth: self.depth + 1,
            elements: self.elements,
        };
        let r = f(&mut sub);
        self.elements = sub.elements;
        r
    }

    /// Runs `f` one level deeper (for recursive types).
    pub fn deeper<T>(&mut self, f: impl FnOnce(&mut Reader<'a>) -> Result<T>) -> Result<T> {
        if self.depth >= MAX_DEPTH {
            return Err(PerError::TooDeep);
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    /// OCTET STRING with a size constraint (17).
    pub fn octet_string(&mut self, size: Size) -> Result<Vec<u8>> {
        if size.ext && self.bit()? {
            let n = self.general_length()?;
            return Ok(self.octets(n)?.to_vec());
        }
        match size.fixed_len() {
            Some(0) => Ok(Vec::new()),
            // 17.6: up to two octets are not aligned.
            Some(n @ 1..=2) => {
                let mut out = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    out.push(self.bits(8)? as u8);
                }
                Ok(out)
            }
            Some(n) if n < 65_536 => Ok(self.octets(n as usize)?.to_vec()),
            _ => {
                let n = self.length_in(size)?;
                if n == 0 {
                    return Ok(Vec::new());
                }
                Ok(self.octets(n)?.to_vec())
            }
        }
    }

    /// An octet string of exactly `N` octets.
    pub fn fixed_octets<const N: usize>(&mut self) -> Result<[u8; N]> {
        let v = self.octet_string(Size::fixed(N as u32))?;
        v.try_into()
            .map_err(|_| PerError::Constraint("octet string"))
    }

    /// BIT STRING with a size constraint (16): the bits (first bit is the
    /// most significant bit of the first octet) and their number.
    pub fn bit_string(&mut self, size: Size) -> Result<(Vec<u8>, usize)> {
        let n = if size.ext && self.bit()? {
            self.general_length()?
        } else {
            match size.fixed_len() {
                Some(n) if n <= 16 => return self.unaligned_bits(n as usize),
                Some(n) if n < 65_536 => {
                    self.align();
                    return self.unaligned_bits(n as usize);
                }
                _ => self.length_in(size)?,
            }
        };
        if n > 0 {
            self.align();
        }
        self.unaligned_bits(n)
    }

    fn unaligned_bits(&mut self, n: usize) -> Result<(Vec<u8>, usize)> {
        if self.remaining() < n {
            return Err(PerError::Truncated);
        }
        let mut out = vec![0u8; n.div_ceil(8)];
        for i in 0..n {
            if self.bit()? {
                out[i / 8] |= 0x80 >> (i % 8);
            }
        }
        Ok((out, n))
    }

    /// OBJECT IDENTIFIER (24): a length, then the BER contents octets.
    pub fn object_identifier(&mut self) -> Result<Oid> {
        let n = self.general_length()?;
        Oid::from_ber(self.octets(n)?)
    }

    /// The code units of a known-multiplier character string (30.5) whose
    /// characters take `bits` bits each (already rounded for ALIGNED).
    pub fn string_units(&mut self, size: Size, bits: u32) -> Result<Vec<u32>> {
        let (n, aligned) = if size.ext && self.bit()? {
            (self.general_length()?, true)
        } else {
            match size.fixed_len() {
                Some(n) if n as usize * bits as usize <= 16 => (n as usize, false),
                Some(n) if n < 65_536 => (n as usize, true),
                _ => {
                    let aligned = size
                        .small_ub()
                        .is_none_or(|ub| ub as usize * bits as usize > 16);
                    (self.length_in(size)?, aligned)
                }
            }
        };
        if self.remaining() < n.saturating_mul(bits as usize) {
            return Err(PerError::Truncated);
        }
        if aligned && n > 0 {
            self.align();
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.bits(bits)? as u32);
        }
        Ok(out)
    }

    /// BMPString (UCS-2; a lone surrogate becomes U+FFFD).
    pub fn bmp_string(&mut self, size: Size) -> Result<String> {
        let units = self.string_units(size, 16)?;
        Ok(units
            .into_iter()
            .map(|u| char::from_u32(u).unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect())
    }

    /// IA5String without a permitted-alphabet constraint (8 bits a
    /// character in ALIGNED).
    pub fn ia5_string(&mut self, size: Size) -> Result<String> {
        let units = self.string_units(size, 8)?;
        units
            .into_iter()
            .map(|u| {
                u8::try_from(u)
                    .ok()
                    .filter(u8::is_ascii)
                    .map(char::from)
                    .ok_or(PerError::BadCharacter)
            })
            .collect()
    }

    /// An IA5String whose permitted alphabet `alphabet` (sorted by code)
    /// takes `bits` bits a character and is sent as indexes into it
    /// (30.5.4 b: its largest code does not fit in `bits`).
    pub fn indexed_string(&mut self, size: Size, alphabet: &[u8], bits: u32) -> Result<String> {
        let units = self.string_units(size, bits)?;
        units
            .into_iter()
            .map(|u| {
                alphabet
                    .get(u as usize)
                    .map(|&c| char::from(c))
                    .ok_or(PerError::BadCharacter)
            })
            .collect()
    }

    /// A character string type that is not known-multiplier (GeneralString):
    /// like an unconstrained OCTET STRING (30.6).
    pub fn general_string(&mut self) -> Result<String> {
        let bytes = self.octet_string(Size::UNBOUNDED)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The rest of the buffer, from here.
    pub fn tail(&mut self) -> BitTail {
        let start = self.pos;
        let total = self.buf.len() * 8;
        let bits = total.saturating_sub(start);
        let mut bytes = vec![0u8; bits.div_ceil(8)];
        for i in 0..bits {
            let p = start + i;
            if self.buf[p / 8] & (0x80 >> (p % 8)) != 0 {
                bytes[i / 8] |= 0x80 >> (i % 8);
            }
        }
        self.pos = total;
        BitTail { bytes, bits }
    }
}

/// The extension additions present in a SEQUENCE: each one's index after
/// the `...` and its open type contents.
#[derive(Debug, Clone, Default)]
pub struct Extensions<'a> {
    fields: Vec<(usize, &'a [u8])>,
    count: usize,
}

impl<'a> Extensions<'a> {
    /// The contents of addition `i`, if present.
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.fields.iter().find(|(j, _)| *j == i).map(|(_, c)| *c)
    }

    /// How many additions the bitmap had room for.
    pub fn count(&self) -> usize {
        self.count
    }
}

/// Writes aligned PER.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
    bits: usize,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    /// The encoding: padded to whole octets, and never empty (a complete
    /// encoding of nothing is one zero octet, 11.1).
    pub fn finish(self) -> Vec<u8> {
        if self.buf.is_empty() {
            vec![0]
        } else {
            self.buf
        }
    }

    /// Bits written so far.
    pub fn position(&self) -> usize {
        self.bits
    }

    pub fn bit(&mut self, b: bool) {
        if self.bits.is_multiple_of(8) {
            self.buf.push(0);
        }
        if let (true, Some(last)) = (b, self.buf.last_mut()) {
            *last |= 0x80 >> (self.bits % 8);
        }
        self.bits += 1;
    }

    /// The low `n` bits of `v`, most significant first.
    pub fn bits(&mut self, v: u64, n: u32) {
        for i in (0..n.min(64)).rev() {
            self.bit(v >> i & 1 != 0);
        }
    }

    pub fn align(&mut self) {
        self.bits = self.buf.len() * 8;
    }

    /// Whole octets, after aligning.
    pub fn octets(&mut self, bytes: &[u8]) {
        self.align();
        self.buf.extend_from_slice(bytes);
        self.bits = self.buf.len() * 8;
    }

    pub fn boolean(&mut self, b: bool) {
        self.bit(b)
    }

    /// A constrained whole number; `v` is clamped into `lb..=ub`.
    pub fn constrained(&mut self, v: i64, lb: i64, ub: i64) {
        let ub = ub.max(lb);
        let v = (i128::from(v.clamp(lb, ub)) - i128::from(lb)) as u64;
        let range = range_of(lb, ub).unwrap_or(1);
        if range == 1 {
        } else if range <= 255 {
            self.bits(v, bits_for(range - 1));
        } else if range == 256 {
            self.align();
            self.bits(v, 8);
        } else if range <= 65_536 {
            self.align();
            self.bits(v, 16);
        } else {
            let max = octets_for(range - 1);
            let n = octets_for(v).max(1);
            self.constrained(i64::from(n), 1, i64::from(max));
            self.align();
            self.bits(v, 8 * n);
        }
    }

    /// `INTEGER (lb..ub, ...)` with `v` in the root.
    pub fn constrained_ext(&mut self, v: i64, lb: i64, ub: i64) {
        if (lb..=ub).contains(&v) {
            self.bit(false);
            self.constrained(v, lb, ub);
        } else {
            self.bit(true);
            self.unconstrained(v);
        }
    }

    pub fn semi_constrained(&mut self, v: i64, lb: i64) {
        let v = (i128::from(v.max(lb)) - i128::from(lb)) as u64;
        let n = octets_for(v).max(1);
        self.general_length(n as usize);
        self.align();
        self.bits(v, 8 * n);
    }

    pub fn unconstrained(&mut self, v: i64) {
        let bytes = v.to_be_bytes();
        // The fewest octets that keep the sign.
        let mut start = 0;
        while start < 7 {
            let (a, b) = (bytes[start], bytes[start + 1]);
            if (a == 0 && b & 0x80 == 0) || (a == 0xff && b & 0x80 != 0) {
                start += 1;
            } else {
                break;
            }
        }
        self.general_length(8 - start);
        self.octets(&bytes[start..]);
    }

    pub fn normally_small(&mut self, v: u32) {
        if v < 64 {
            self.bit(false);
            self.bits(u64::from(v), 6);
        } else {
            self.bit(true);
            self.semi_constrained(i64::from(v), 0);
        }
    }

    /// An unconstrained length determinant; lengths of 16K or more are
    /// cut to 16383 (callers keep below that: see `MAX_ITEMS`).
    pub fn general_length(&mut self, n: usize) {
        self.align();
        let n = n.min(16_383);
        if n < 128 {
            self.bits(n as u64, 8);
        } else {
            self.bits(0x8000 | n as u64, 16);
        }
    }

    fn length_in(&mut self, n: usize, size: Size) {
        match size.small_ub() {
            Some(ub) => self.constrained(n as i64, i64::from(size.lb), i64::from(ub)),
            None => self.general_length(n),
        }
    }

    /// The count of a SEQUENCE OF; returns how many elements the caller
    /// must then write: `n` brought into the size constraint and below
    /// [`MAX_ITEMS`] (a caller with fewer elements than the lower bound
    /// pads; typed encoders leave an OPTIONAL list out when it is empty).
    pub fn count(&mut self, n: usize, size: Size) -> usize {
        let mut n = n.min(MAX_ITEMS);
        if size.ext {
            let in_root = size.allows(n);
            self.bit(!in_root);
            if !in_root {
                self.general_length(n);
                return n;
            }
        }
        n = n.max(size.lb as usize);
        if let Some(ub) = size.ub {
            n = n.min(ub as usize);
        }
        if size.fixed_len().is_none_or(|f| f >= 65_536) {
            self.length_in(n, size);
        }
        n
    }

    pub fn choice(&mut self, alt: Alt, root: usize, ext: bool) {
        match alt {
            Alt::Root(i) => {
                if ext {
                    self.bit(false);
                }
                self.constrained(i as i64, 0, root as i64 - 1);
            }
            Alt::Ext(i) => {
                // An extension alternative of a type that has none written
                // as the last root one is a caller's mistake; keep the
                // output decodable.
                if ext {
                    self.bit(true);
                    self.normally_small(i as u32);
                } else {
                    self.constrained(root as i64 - 1, 0, root as i64 - 1);
                }
            }
        }
    }

    pub fn enumerated(&mut self, alt: Alt, root: usize, ext: bool) {
        self.choice(alt, root, ext)
    }

    /// A SEQUENCE's preamble: the extension bit if `ext`, then the
    /// presence bits of the optional root components in order.
    pub fn preamble(&mut self, ext: Option<bool>, present: &[bool]) {
        if let Some(e) = ext {
            self.bit(e);
        }
        for &p in present {
            self.bit(p);
        }
    }

    /// A SEQUENCE's extension additions: `count` is how many additions the
    /// type has; `present` holds each present addition's index and complete
    /// encoding (sorted by index).
    pub fn extensions(&mut self, count: usize, present: &[(usize, Vec<u8>)]) {
        let count = present
            .iter()
            .map(|(i, _)| i + 1)
            .max()
            .unwrap_or(0)
            .max(count)
            .max(1);
        if count <= 64 {
            self.bit(false);
            self.bits(count as u64 - 1, 6);
        } else {
            self.bit(true);
            self.general_length(count);
        }
        for i in 0..count {
            self.bit(present.iter().any(|(j, _)| *j == i));
        }
        for i in 0..count {
            if let Some((_, enc)) = present.iter().find(|(j, _)| *j == i) {
                self.open_type(enc);
            }
        }
    }

    /// An open type: `contents` must be a complete encoding.
    pub fn open_type(&mut self, contents: &[u8]) {
        self.general_length(contents.len());
        self.octets(&contents[..contents.len().min(16_383)]);
    }

    /// OCTET STRING; too long a value is cut, too short a fixed-size one is
    /// padded with zeros.
    pub fn octet_string(&mut self, v: &[u8], size: Size) {
        if size.ext {
            let in_root = size.allows(v.len());
            self.bit(!in_root);
            if !in_root {
                self.general_length(v.len());
                self.octets(&v[..v.len().min(16_383)]);
                return;
            }
        }
        match size.fixed_len() {
            Some(0) => {}
            Some(n) if n <= 2 || n < 65_536 => {
                let mut fixed = v.to_vec();
                fixed.resize(n as usize, 0);
                if n <= 2 {
                    for b in fixed {
                        self.bits(u64::from(b), 8);
                    }
                } else {
                    self.octets(&fixed);
                }
            }
            _ => {
                let max = size.ub.map_or(16_383, |ub| ub.min(16_383)) as usize;
                let mut v = &v[..v.len().min(max)];
                let padded;
                if v.len() < size.lb as usize {
                    let mut p = v.to_vec();
                    p.resize(size.lb as usize, 0);
                    padded = p;
                    v = &padded;
                }
                self.length_in(v.len(), size);
                if !v.is_empty() {
                    self.octets(v);
                }
            }
        }
    }

    pub fn bit_string(&mut self, bytes: &[u8], nbits: usize, size: Size) {
        let nbits = nbits.min(bytes.len() * 8);
        if size.ext {
            let in_root = size.allows(nbits);
            self.bit(!in_root);
            if !in_root {
                self.general_length(nbits);
                self.align();
                self.raw_bits(bytes, nbits);
                return;
            }
        }
        match size.fixed_len() {
            Some(n) if n <= 16 => self.padded_bits(bytes, nbits, n as usize),
            Some(n) if n < 65_536 => {
                self.align();
                self.padded_bits(bytes, nbits, n as usize);
            }
            _ => {
                let n = nbits.clamp(
                    size.lb as usize,
                    size.ub.map_or(16_383, |u| u.min(16_383)) as usize,
                );
                self.length_in(n, size);
                if n > 0 {
                    self.align();
                }
                self.padded_bits(bytes, nbits, n);
            }
        }
    }

    fn padded_bits(&mut self, bytes: &[u8], nbits: usize, n: usize) {
        for i in 0..n {
            let b = i < nbits && bytes.get(i / 8).is_some_and(|x| x & (0x80 >> (i % 8)) != 0);
            self.bit(b);
        }
    }

    fn raw_bits(&mut self, bytes: &[u8], nbits: usize) {
        self.padded_bits(bytes, nbits, nbits)
    }

    pub fn object_identifier(&mut self, oid: &Oid) {
        let ber = oid.to_ber();
        self.general_length(ber.len());
        self.octets(&ber);
    }

    /// Known-multiplier string code units (the counterpart of
    /// [`Reader::string_units`]); too many are cut.
    pub fn string_units(&mut self, units: &[u32], size: Size, bits: u32) {
        let mut units: Vec<u32> = units.to_vec();
        if size.ext {
            let in_root = size.allows(units.len());
            self.bit(!in_root);
            if !in_root {
                units.truncate(16_383);
                self.general_length(units.len());
                self.align();
                for u in units {
                    self.bits(u64::from(u), bits);
                }
                return;
            }
        }
        let aligned = match size.fixed_len() {
            Some(n) => {
                units.resize(n as usize, 0);
                n as usize * bits as usize > 16
            }
            None => {
                if let Some(ub) = size.ub {
                    units.truncate(ub as usize);
                }
                units.truncate(16_383);
                while units.len() < size.lb as usize {
                    units.push(0);
                }
                self.length_in(units.len(), size);
                size.small_ub()
                    .is_none_or(|ub| ub as usize * bits as usize > 16)
            }
        };
        if aligned && !units.is_empty() {
            self.align();
        }
        for u in units {
            self.bits(u64::from(u), bits);
        }
    }

    /// BMPString: characters outside the BMP become U+FFFD.
    pub fn bmp_string(&mut self, s: &str, size: Size) {
        let units: Vec<u32> = s
            .chars()
            .map(|c| {
                let c = u32::from(c);
                if c > 0xffff { 0xfffd } else { c }
            })
            .collect();
        self.string_units(&units, size, 16)
    }

    /// IA5String: characters outside ASCII become `?`.
    pub fn ia5_string(&mut self, s: &str, size: Size) {
        let units: Vec<u32> = s
            .chars()
            .map(|c| {
                if c.is_ascii() {
                    u32::from(c)
                } else {
                    u32::from(b'?')
                }
            })
            .collect();
        self.string_units(&units, size, 8)
    }

    /// An IA5String sent as indexes into `alphabet`; characters outside it
    /// are dropped.
    pub fn indexed_string(&mut self, s: &str, size: Size, alphabet: &[u8], bits: u32) {
        let units: Vec<u32> = s
            .bytes()
            .filter_map(|c| alphabet.iter().position(|&a| a == c).map(|i| i as u32))
            .collect();
        self.string_units(&units, size, bits)
    }

    pub fn general_string(&mut self, s: &str) {
        self.octet_string(s.as_bytes(), Size::UNBOUNDED)
    }

    /// Bits kept by [`Reader::tail`].
    pub fn tail(&mut self, t: &BitTail) {
        self.raw_bits(&t.bytes, t.bits)
    }

    /// Encodes `f` on its own (as an open type's contents or an extension
    /// addition's): a complete encoding, at least one octet.
    pub fn complete(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::new();
        f(&mut w);
        w.finish()
    }
}

/// An OBJECT IDENTIFIER as its arcs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Oid(pub Vec<u32>);

impl Oid {
    /// Most arcs we accept.
    pub const MAX_ARCS: usize = 32;

    pub fn new(arcs: &[u32]) -> Oid {
        Oid(arcs.to_vec())
    }

    pub fn arcs(&self) -> &[u32] {
        &self.0
    }

    /// Whether `self` starts with `prefix`.
    pub fn starts_with(&self, prefix: &[u32]) -> bool {
        self.0.starts_with(prefix)
    }

    fn from_ber(bytes: &[u8]) -> Result<Oid> {
        if bytes.is_empty() || bytes.last().is_some_and(|b| b & 0x80 != 0) {
            return Err(PerError::BadObjectIdentifier);
        }
        let mut subs = Vec::new();
        let mut v: u64 = 0;
        for &b in bytes {
            v = (v << 7) | u64::from(b & 0x7f);
            if v > u64::from(u32::MAX) + 80 {
                return Err(PerError::BadObjectIdentifier);
            }
            if b & 0x80 == 0 {
                subs.push(v);
                v = 0;
                if subs.len() > Oid::MAX_ARCS {
                    return Err(PerError::BadObjectIdentifier);
                }
            }
        }
        let mut arcs = Vec::with_capacity(subs.len() + 1);
        let first = subs.first().copied().unwrap_or(0);
        let (a, b) = match first {
            0..40 => (0, first),
            40..80 => (1, first - 40),
            _ => (2, first - 80),
        };
        arcs.push(a as u32);
        arcs.push(u32::try_from(b).map_err(|_| PerError::BadObjectIdentifier)?);
        for s in subs.into_iter().skip(1) {
            arcs.push(u32::try_from(s).map_err(|_| PerError::BadObjectIdentifier)?);
        }
        Ok(Oid(arcs))
    }

    fn to_ber(&self) -> Vec<u8> {
        let a = u64::from(self.0.first().copied().unwrap_or(0).min(2));
        let b = u64::from(self.0.get(1).copied().unwrap_or(0));
        let b = if a < 2 { b.min(39) } else { b };
        let mut out = Vec::new();
        let mut push = |v: u64| {
            let mut groups = vec![(v & 0x7f) as u8];
            let mut v = v >> 7;
            while v > 0 {
                groups.push(0x80 | (v & 0x7f) as u8);
                v >>= 7;
            }
            out.extend(groups.into_iter().rev());
        };
        push(a * 40 + b);
        for &arc in self.0.iter().skip(2).take(Oid::MAX_ARCS - 1) {
            push(u64::from(arc));
        }
        out
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

fn range_of(lb: i64, ub: i64) -> Result<u64> {
    if ub < lb {
        return Err(PerError::Constraint("integer"));
    }
    let r = i128::from(ub) - i128::from(lb) + 1;
    u64::try_from(r).map_err(|_| PerError::Constraint("integer"))
}

/// Bits needed for values `0..=max`.
fn bits_for(max: u64) -> u32 {
    64 - max.leading_zeros()
}

/// Octets needed for `v` (0 for 0).
fn octets_for(v: u64) -> u32 {
    bits_for(v).div_ceil(8)
}

#[cfg(test)]
pub(crate) mod testing {
    /// Bytes from hex digits (whitespace ignored).
    pub(crate) fn unhex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap_or("0"), 16).unwrap_or(0))
            .collect()
    }

    pub(crate) fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn enc(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::new();
        f(&mut w);
        w.finish()
    }

    #[test]
    fn constrained_whole_numbers_follow_the_aligned_rules() {
        // range 2..255: a minimal bit-field, not aligned
        assert_eq!(enc(|w| w.constrained(5, 0, 7)), [0b1010_0000]);
        assert_eq!(enc(|w| w.constrained(2, 1, 256)), [0x01]);
        // range 65536: two aligned octets
        assert_eq!(
            enc(|w| {
                w.bit(true);
                w.constrained(1720, 0, 65535)
            }),
            [0x80, 0x06, 0xb8]
        );
        // range > 64K: an octet count (1..=4 in 2 bits), aligned octets
        assert_eq!(
            enc(|w| w.constrained(256, 0, u32::MAX.into())),
            [0x40, 1, 0]
        );
        assert_eq!(enc(|w| w.constrained(0, 0, u32::MAX.into())), [0x00, 0]);
        for (v, lb, ub) in [
            (0, 0, 0),
            (9, 0, 16_777_215),
            (16_777_215, 0, 16_777_215),
            (127, 96, 127),
            (40_000, 1, 65_535),
            (255, 0, 255),
            (-3, -10, 10),
        ] {
            let b = enc(|w| w.constrained(v, lb, ub));
            assert_eq!(
                Reader::new(&b).constrained(lb, ub).unwrap(),
                v,
                "{v} in {lb}..{ub}"
            );
        }
    }

    #[test]
    fn lengths_small_numbers_and_extension_bitmaps() {
        assert_eq!(enc(|w| w.general_length(5)), [5]);
        assert_eq!(enc(|w| w.general_length(300)), [0x81, 0x2c]);
        assert_eq!(
            Reader::new(&[0xc1, 0]).general_length(),
            Err(PerError::Fragmented)
        );
        assert_eq!(enc(|w| w.normally_small(5)), [0b0000_1010]);
        let b = enc(|w| w.normally_small(300));
        assert_eq!(Reader::new(&b).normally_small().unwrap(), 300);
        // an extension bitmap of 3 with additions 0 and 2 present
        let b = enc(|w| w.extensions(3, &[(0, vec![0x80]), (2, vec![0x00])]));
        assert_eq!(b, [0b0000_0101, 0b0100_0000, 1, 0x80, 1, 0]);
        let mut r = Reader::new(&b);
        let e = r.extensions().unwrap();
        assert_eq!(e.count(), 3);
        assert_eq!(e.get(0), Some(&[0x80][..]));
        assert_eq!(e.get(1), None);
        assert_eq!(e.get(2), Some(&[0][..]));
    }

    #[test]
    fn strings_and_object_identifiers_round_trip() {
        let oid = Oid::new(&[0, 0, 8, 2250, 0, 4]);
        let b = enc(|w| w.object_identifier(&oid));
        assert_eq!(b, [6, 0, 8, 0x91, 0x4a, 0, 4]);
        assert_eq!(Reader::new(&b).object_identifier().unwrap(), oid);
        assert_eq!(oid.to_string(), "0.0.8.2250.0.4");
        let size = Size::range(1, 256);
        let b = enc(|w| w.bmp_string("Jon", size));
        assert_eq!(b, [2, 0, b'J', 0, b'o', 0, b'n']);
        assert_eq!(Reader::new(&b).bmp_string(size).unwrap(), "Jon");
        // dialedDigits: 4-bit indexes into "#*,0123456789"
        let digits = b"#*,0123456789";
        let b = enc(|w| w.indexed_string("4711", Size::range(1, 128), digits, 4));
        assert_eq!(b, [3 << 1, 0x7a, 0x44]);
        assert_eq!(
            Reader::new(&b)
                .indexed_string(Size::range(1, 128), digits, 4)
                .unwrap(),
            "4711"
        );
        let b = enc(|w| w.octet_string(&[1, 2, 3, 4], Size::fixed(4)));
        assert_eq!(b, [1, 2, 3, 4]);
        let b = enc(|w| {
            w.bit(true);
            w.octet_string(&[9], Size::UNBOUNDED)
        });
        assert_eq!(b, [0x80, 1, 9]);
    }

    #[test]
    fn hostile_lengths_fail_without_allocating() {
        // a count of 1000 items with nothing behind it
        let b = enc(|w| w.general_length(1000));
        let mut r = Reader::new(&b);
        let n = r.count(Size::UNBOUNDED).unwrap();
        assert_eq!(n, 1000);
        assert_eq!(r.bit(), Err(PerError::Truncated));
        let b = enc(|w| w.general_length(5000));
        assert_eq!(
            Reader::new(&b).count(Size::UNBOUNDED),
            Err(PerError::TooMany)
        );
        // an octet string longer than the message
        let b = enc(|w| w.general_length(9000));
        assert_eq!(
            Reader::new(&b).octet_string(Size::UNBOUNDED),
            Err(PerError::Truncated)
        );
        assert_eq!(
            Reader::new(&[0x06, 0x80]).object_identifier(),
            Err(PerError::Truncated)
        );
        assert_eq!(
            Reader::new(&[0x01, 0x80]).object_identifier(),
            Err(PerError::BadObjectIdentifier)
        );
    }

    #[test]
    fn tails_replay_bit_exact() {
        let b = [0b1011_0000, 0xff, 0x01];
        let mut r = Reader::new(&b);
        r.bits(3).unwrap();
        let t = r.tail();
        assert_eq!(t.len(), 21);
        let mut w = Writer::new();
        w.bits(0b101, 3);
        w.tail(&t);
        assert_eq!(w.finish(), b);
    }
}
