//! The ELF side of the reader: parsing the container with `object`, the
//! debug sections' bytes (borrowed, or inflated with `flate2` when they are
//! `SHF_COMPRESSED` or GNU `.zdebug_*` with zlib), and the two links to a
//! separate debug file (the GNU build id note and `.gnu_debuglink`).

use std::borrow::Cow;
use std::io::Read;

use object::{CompressionFormat, Object, ObjectSection};

use super::error::DwarfErrorKind;

/// An ELF file parsed by `object`, borrowing its bytes.
pub(crate) struct Elf<'data> {
    file: object::File<'data>,
}

/// Where a separate debug file may be found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DebugLinks<'data> {
    /// The GNU build id (`NT_GNU_BUILD_ID`), if the file has one.
    pub build_id: Option<&'data [u8]>,
    /// `.gnu_debuglink`: the debug file's name and the CRC-32 of its bytes.
    pub debuglink: Option<(&'data [u8], u32)>,
}

impl<'data> Elf<'data> {
    /// Parses `data` as an ELF file (of any class and byte order).
    pub(crate) fn parse(data: &'data [u8]) -> Result<Elf<'data>, DwarfErrorKind> {
        if data.get(..4) != Some(&object::elf::ELFMAG[..]) {
            return Err(DwarfErrorKind::NotElf {
                found: data.iter().take(4).copied().collect(),
            });
        }
        let file = object::File::parse(data).map_err(DwarfErrorKind::Elf)?;
        Ok(Elf { file })
    }

    /// The byte order of the file, for gimli.
    pub(crate) fn endian(&self) -> gimli::RunTimeEndian {
        if self.file.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        }
    }

    /// Whether the file holds DWARF that says what it was compiled from:
    /// a non-empty `.debug_info` or `.debug_line` (possibly compressed).
    pub(crate) fn has_dwarf(&self) -> bool {
        [".debug_info", ".debug_line"].iter().any(|name| {
            self.find(name)
                .is_some_and(|s| s.compressed_data().is_ok_and(|c| !c.data.is_empty()))
        })
    }

    fn find(&self, name: &str) -> Option<object::Section<'data, '_>> {
        self.file.section_by_name(name).or_else(|| {
            let rest = name.strip_prefix(".debug_")?;
            self.file.section_by_name(&format!(".zdebug_{rest}"))
        })
    }

    /// The contents of section `name` (`.debug_*`), inflated if
    /// compressed; empty when the file has no such section.
    pub(crate) fn section(&self, name: &'static str) -> Result<Cow<'data, [u8]>, DwarfErrorKind> {
        let Some(section) = self.find(name) else {
            return Ok(Cow::Borrowed(&[]));
        };
        let compressed = section.compressed_data().map_err(DwarfErrorKind::Elf)?;
        match compressed.format {
            CompressionFormat::None => Ok(Cow::Borrowed(compressed.data)),
            CompressionFormat::Zlib => {
                inflate(name, compressed.data, compressed.uncompressed_size).map(Cow::Owned)
            }
            CompressionFormat::Zstandard => Err(DwarfErrorKind::UnsupportedCompression {
                section: name,
                format: "zstd",
            }),
            _ => Err(DwarfErrorKind::UnsupportedCompression {
                section: name,
                format: "an unknown format",
            }),
        }
    }

    /// The build id and `.gnu_debuglink` of the file.
    pub(crate) fn links(&self) -> Result<DebugLinks<'data>, DwarfErrorKind> {
        Ok(DebugLinks {
            build_id: self.file.build_id().map_err(DwarfErrorKind::Elf)?,
            debuglink: self.file.gnu_debuglink().map_err(DwarfErrorKind::Elf)?,
        })
    }
}

/// Inflates zlib `data` that the section header says is `size` bytes
/// long. Reads at most `size + 1` bytes, so a lying header cannot make it
/// allocate more than the data inflates to.
fn inflate(section: &'static str, data: &[u8], size: u64) -> Result<Vec<u8>, DwarfErrorKind> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(size.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|source| DwarfErrorKind::Inflate { section, source })?;
    let found = out.len() as u64;
    if found != size {
        return Err(DwarfErrorKind::InflatedSize {
            section,
            expected: size,
            found,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("in memory");
        e.finish().expect("in memory")
    }

    #[test]
    fn inflate_checks_the_declared_size() {
        let z = zlib(b"hello dwarf");
        assert_eq!(
            inflate(".debug_line", &z, 11).expect("inflates"),
            b"hello dwarf"
        );
        for size in [10, 12, u64::MAX] {
            match inflate(".debug_line", &z, size) {
                Err(DwarfErrorKind::InflatedSize {
                    expected, found, ..
                }) => {
                    assert_eq!(expected, size);
                    assert_eq!(found, 11.min(size.saturating_add(1)));
                }
                other => panic!("{size}: {other:?}"),
            }
        }
        assert!(matches!(
            inflate(".debug_info", b"not zlib at all", 5),
            Err(DwarfErrorKind::Inflate {
                section: ".debug_info",
                ..
            })
        ));
    }

    #[test]
    fn non_elf_bytes_are_named_by_their_magic() {
        match Elf::parse(b"\x7fEL") {
            Err(DwarfErrorKind::NotElf { found }) => assert_eq!(found, b"\x7fEL"),
            other => panic!("{:?}", other.err()),
        }
        assert!(matches!(
            Elf::parse(b"\x7fELF\x02\x01\x01\0garbage"),
            Err(DwarfErrorKind::Elf(_))
        ));
    }
}
