//! A bounds-checked cursor over borrowed bytes with run-time byte order and
//! LEB128 numbers, reporting offsets from the start of the file.

use super::error::LlvmErrorKind;

/// A read position in a borrowed slice; every read checks bounds and
/// returns an error instead of panicking.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// File offset of `data[0]`.
    base: u64,
    big: bool,
}

impl<'a> Reader<'a> {
    /// A cursor over `data`, which starts at file offset `base`.
    pub(crate) fn new(data: &'a [u8], base: u64, big_endian: bool) -> Self {
        Reader {
            data,
            pos: 0,
            base,
            big: big_endian,
        }
    }

    /// File offset of the next byte.
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Position from the start of the slice.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub(crate) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// Whether every byte left is zero (trailing padding).
    pub(crate) fn rest_is_zero(&self) -> bool {
        self.data
            .get(self.pos..)
            .is_none_or(|r| r.iter().all(|&b| b == 0))
    }

    /// The next `n` bytes.
    pub(crate) fn bytes(&mut self, n: u64) -> Result<&'a [u8], LlvmErrorKind> {
        let short = LlvmErrorKind::Truncated {
            offset: self.offset(),
            needed: n,
            available: self.remaining() as u64,
        };
        let n = usize::try_from(n).map_err(|_| short)?;
        let end = self.pos.checked_add(n).ok_or(short)?;
        let out = self.data.get(self.pos..end).ok_or(short)?;
        self.pos = end;
        Ok(out)
    }

    /// Skips `n` bytes.
    pub(crate) fn skip(&mut self, n: u64) -> Result<(), LlvmErrorKind> {
        self.bytes(n).map(|_| ())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], LlvmErrorKind> {
        let b = self.bytes(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// A 16-bit number in the file's byte order.
    pub(crate) fn u16(&mut self) -> Result<u16, LlvmErrorKind> {
        let b = self.array::<2>()?;
        Ok(if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    /// A 32-bit number in the file's byte order.
    pub(crate) fn u32(&mut self) -> Result<u32, LlvmErrorKind> {
        let b = self.array::<4>()?;
        Ok(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    /// A 64-bit number in the file's byte order.
    pub(crate) fn u64(&mut self) -> Result<u64, LlvmErrorKind> {
        let b = self.array::<8>()?;
        Ok(if self.big {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }

    /// An unsigned LEB128 number of at most 64 bits.
    pub(crate) fn uleb(&mut self) -> Result<u64, LlvmErrorKind> {
        let start = self.offset();
        let mut value = 0u64;
        let mut shift = 0u32;
        loop {
            let [byte] = self.array::<1>()?;
            let low = u64::from(byte & 0x7f);
            if shift >= 64 || (shift == 63 && low > 1) {
                return Err(LlvmErrorKind::BadNumber { offset: start });
            }
            value |= low << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    /// A LEB128 number that must fit in 32 bits.
    pub(crate) fn uleb32(&mut self) -> Result<u32, LlvmErrorKind> {
        let start = self.offset();
        let v = self.uleb()?;
        u32::try_from(v).map_err(|_| LlvmErrorKind::BadNumber { offset: start })
    }

    /// A LEB128 count of items that each take at least one byte: at most
    /// the bytes left (as LLVM's `readSize` checks).
    pub(crate) fn uleb_size(&mut self) -> Result<u64, LlvmErrorKind> {
        let start = self.offset();
        let v = self.uleb()?;
        if v > self.remaining() as u64 {
            return Err(LlvmErrorKind::BadNumber { offset: start });
        }
        Ok(v)
    }

    /// Moves to the next multiple of 8 from the start of the slice (or the
    /// end, if that comes first).
    pub(crate) fn align8(&mut self) {
        let aligned = self.pos.div_ceil(8).saturating_mul(8);
        self.pos = aligned.min(self.data.len()).max(self.pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_and_bounds() {
        let data = [0xe5, 0x8e, 0x26, 0x01, 0x02];
        let mut r = Reader::new(&data, 100, false);
        assert_eq!(r.uleb(), Ok(624_485));
        assert_eq!(r.offset(), 103);
        assert_eq!(r.u16(), Ok(0x0201));
        assert!(matches!(
            r.u32(),
            Err(LlvmErrorKind::Truncated { offset: 105, .. })
        ));
        let long = [0xff; 11];
        assert!(matches!(
            Reader::new(&long, 0, false).uleb(),
            Err(LlvmErrorKind::BadNumber { offset: 0 })
        ));
        let big = [0, 0, 0, 1];
        assert_eq!(Reader::new(&big, 0, true).u32(), Ok(1));
    }
}
