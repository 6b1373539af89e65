//! Test-only builder of gcno/gcda files, for both layouts and byte orders.

use crate::bytes::{
    Endian, DATA_MAGIC, NOTES_MAGIC, TAG_ARCS, TAG_BLOCKS, TAG_FUNCTION, TAG_LINES,
};
use crate::bytes::{TAG_COUNTER_ARCS, TAG_OBJECT_SUMMARY};

/// Which GCC layout to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gcc {
    /// GCC 12: byte lengths, unpadded strings, checksum word.
    V12,
    /// GCC 11: word lengths, padded strings, no checksum.
    V11,
    /// GCC 8: like 11, no cwd, no end column.
    V8,
}

impl Gcc {
    pub fn version(self) -> [u8; 4] {
        match self {
            Gcc::V12 => *b"B22*",
            Gcc::V11 => *b"B13*",
            Gcc::V8 => *b"A85*",
        }
    }
    fn unit(self) -> usize {
        if self == Gcc::V12 {
            1
        } else {
            4
        }
    }
}

/// Appends words, counters, strings and records with patched lengths.
pub struct Builder {
    pub gcc: Gcc,
    pub endian: Endian,
    pub buf: Vec<u8>,
    open: Vec<usize>,
}

impl Builder {
    pub fn new(gcc: Gcc, endian: Endian) -> Self {
        Builder {
            gcc,
            endian,
            buf: Vec::new(),
            open: Vec::new(),
        }
    }
    pub fn word(&mut self, w: u32) -> &mut Self {
        let b = self.endian.bytes(w);
        self.buf.extend_from_slice(&b);
        self
    }
    pub fn counter(&mut self, c: i64) -> &mut Self {
        self.word(c as u64 as u32).word((c as u64 >> 32) as u32)
    }
    pub fn string(&mut self, s: &str) -> &mut Self {
        if s.is_empty() {
            return self.word(0);
        }
        let mut bytes = s.as_bytes().to_vec();
        bytes.push(0);
        if self.gcc == Gcc::V12 {
            self.word(bytes.len() as u32);
        } else {
            while bytes.len() % 4 != 0 {
                bytes.push(0);
            }
            self.word((bytes.len() / 4) as u32);
        }
        self.buf.extend_from_slice(&bytes);
        self
    }
    /// Opens a record; its length is patched by [`Builder::end`].
    pub fn begin(&mut self, tag: u32) -> &mut Self {
        self.word(tag);
        self.open.push(self.buf.len());
        self.word(0)
    }
    pub fn end(&mut self) -> &mut Self {
        if let Some(pos) = self.open.pop() {
            let len = ((self.buf.len() - pos - 4) / self.gcc.unit()) as u32;
            let b = self.endian.bytes(len);
            self.buf[pos..pos + 4].copy_from_slice(&b);
        }
        self
    }
    fn version_word(&self) -> u32 {
        u32::from_be_bytes(self.gcc.version())
    }

    pub fn notes_header(gcc: Gcc, endian: Endian, stamp: u32) -> Self {
        let mut b = Builder::new(gcc, endian);
        let v = b.version_word();
        b.word(NOTES_MAGIC).word(v).word(stamp);
        if gcc == Gcc::V12 {
            b.word(0);
        }
        if gcc != Gcc::V8 {
            b.string("/src");
        }
        b.word(1);
        b
    }

    pub fn data_header(gcc: Gcc, endian: Endian, stamp: u32, checksum: u32) -> Self {
        let mut b = Builder::new(gcc, endian);
        let v = b.version_word();
        b.word(DATA_MAGIC).word(v).word(stamp);
        if gcc == Gcc::V12 {
            b.word(checksum);
        }
        b
    }

    /// A notes FUNCTION record.
    pub fn function(&mut self, ident: u32, name: &str, file: &str, lines: (u32, u32)) -> &mut Self {
        self.begin(TAG_FUNCTION)
            .word(ident)
            .word(0x1111)
            .word(0x2222)
            .string(name)
            .word(0)
            .string(file)
            .word(lines.0)
            .word(1)
            .word(lines.1);
        if self.gcc != Gcc::V8 {
            self.word(2);
        }
        self.end()
    }

    pub fn blocks(&mut self, n: u32) -> &mut Self {
        self.begin(TAG_BLOCKS).word(n).end()
    }

    pub fn arcs(&mut self, src: u32, arcs: &[(u32, u32)]) -> &mut Self {
        self.begin(TAG_ARCS).word(src);
        for &(dst, flags) in arcs {
            self.word(dst).word(flags);
        }
        self.end()
    }

    pub fn lines(&mut self, block: u32, file: &str, lines: &[u32]) -> &mut Self {
        self.begin(TAG_LINES).word(block).word(0).string(file);
        for &l in lines {
            self.word(l);
        }
        self.word(0).string("").end()
    }

    /// The run summary: OBJECT_SUMMARY from GCC 9 on, GCC 8's
    /// PROGRAM_SUMMARY (checksum, counters, runs, ..., histogram) before.
    pub fn summary(&mut self, runs: u32) -> &mut Self {
        if self.gcc == Gcc::V8 {
            self.begin(0xa300_0000).word(0).word(1).word(runs);
            for _ in 0..5 {
                self.word(7);
            }
            return self.end();
        }
        self.begin(TAG_OBJECT_SUMMARY).word(runs).word(9).end()
    }

    /// A data FUNCTION record with matching checksums and its counters
    /// (`None`: the all-zero negative-length form with `n` counters).
    pub fn data_function(&mut self, ident: u32, counters: Result<&[i64], u32>) -> &mut Self {
        self.begin(TAG_FUNCTION)
            .word(ident)
            .word(0x1111)
            .word(0x2222)
            .end();
        match counters {
            Ok(c) => {
                self.begin(TAG_COUNTER_ARCS);
                for &x in c {
                    self.counter(x);
                }
                self.end()
            }
            Err(n) => {
                let units = n as usize * 8 / self.gcc.unit();
                self.word(TAG_COUNTER_ARCS).word((-(units as i32)) as u32)
            }
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.buf.clone()
    }
}

/// §7.5's `classify` (if/else, GCC 12 -O0 shape): notes.
pub fn classify_notes(gcc: Gcc, endian: Endian) -> Vec<u8> {
    let mut b = Builder::notes_header(gcc, endian, 0xabcd);
    b.function(7, "classify", "ifelse.c", (4, 12))
        .blocks(7)
        .arcs(0, &[(2, 4)])
        .arcs(2, &[(3, 4), (4, 1)])
        .arcs(3, &[(5, 5)])
        .arcs(4, &[(5, 5)])
        .arcs(5, &[(6, 5)])
        .arcs(6, &[(1, 1)])
        .lines(2, "ifelse.c", &[4, 7])
        .lines(3, "ifelse.c", &[8])
        .lines(4, "ifelse.c", &[10])
        .lines(5, "ifelse.c", &[11])
        .lines(6, "ifelse.c", &[11]);
    b.bytes()
}

/// Data for [`classify_notes`] with the given counters.
pub fn classify_data(gcc: Gcc, endian: Endian, counters: &[i64]) -> Vec<u8> {
    let mut b = Builder::data_header(gcc, endian, 0xabcd, 0x5555);
    b.summary(1).data_function(7, Ok(counters)).word(0);
    b.bytes()
}
