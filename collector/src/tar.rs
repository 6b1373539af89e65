//! A reader for the tar streams guests send: ustar, GNU long names and pax
//! `path` records, regular files and directories only.
//!
//! Works on borrowed bytes and never panics: every size read from a header
//! is checked against the bytes that remain.

/// A regular file in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Path as written by the archiver (`./a/b.gcda`, `a/b.gcda`).
    pub path: String,
    /// The file's bytes.
    pub data: &'a [u8],
}

/// Why a tar stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TarError {
    /// A header or its data runs past the end of the stream.
    #[error("tar stream truncated at offset {offset}: needs {needed} more bytes")]
    Truncated {
        /// Where the missing part starts.
        offset: usize,
        /// How many bytes were expected.
        needed: u64,
    },
    /// A header's checksum does not match its bytes.
    #[error("bad tar header checksum at offset {offset}")]
    Checksum {
        /// Offset of the header.
        offset: usize,
    },
    /// A numeric header field is not octal.
    #[error("bad number in tar header field `{field}` at offset {offset}")]
    Number {
        /// Offset of the header.
        offset: usize,
        /// Name of the field.
        field: &'static str,
    },
}

const BLOCK: usize = 512;

/// What could be read of a tar stream that may be cut short or damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial<'a> {
    /// The regular files read whole before the stream ended or broke.
    pub entries: Vec<Entry<'a>>,
    /// Why reading stopped early, if it did.
    pub broken: Option<Broken>,
}

/// Where and why a tar stream broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// What was wrong.
    pub error: TarError,
    /// The entry whose header was read but whose data broke off, if the
    /// stream broke inside a file's data (as written by the archiver).
    pub path: Option<String>,
}

/// Reads every regular file of a tar stream (or of several concatenated
/// ones). Directories, links and other entry types are skipped.
pub fn entries(bytes: &[u8]) -> Result<Vec<Entry<'_>>, TarError> {
    let partial = read_partial(bytes);
    match partial.broken {
        Some(broken) => Err(broken.error),
        None => Ok(partial.entries),
    }
}

/// Like [`entries`], but keeps the files read before a break and says
/// where it happened, so a damaged transfer can be reported by file.
pub fn read_partial(bytes: &[u8]) -> Partial<'_> {
    let mut out = Vec::new();
    let broken = read_into(bytes, &mut out).err();
    Partial {
        entries: out,
        broken,
    }
}

fn read_into<'a>(bytes: &'a [u8], out: &mut Vec<Entry<'a>>) -> Result<(), Broken> {
    let plain = |error| Broken { error, path: None };
    let mut offset = 0usize;
    let mut long_name: Option<String> = None;
    loop {
        let Some(header) = bytes.get(offset..offset + BLOCK) else {
            if offset == bytes.len() {
                // A stream without the two zero blocks: tolerated.
                return Ok(());
            }
            return Err(plain(TarError::Truncated {
                offset,
                needed: (offset + BLOCK - bytes.len()) as u64,
            }));
        };
        if header.iter().all(|&b| b == 0) {
            // End-of-archive blocks; `find -exec tar {} +` may concatenate
            // several archives, so keep reading until the bytes run out.
            offset += BLOCK;
            continue;
        }
        verify_checksum(header, offset).map_err(plain)?;
        let size = octal(field(header, 124, 12), offset, "size").map_err(plain)?;
        let kind = header.get(156).copied().unwrap_or(0);
        let data_start = offset + BLOCK;
        let available = bytes.len().saturating_sub(data_start) as u64;
        if size > available {
            let path = matches!(kind, b'0' | 0 | b'7')
                .then(|| long_name.take().unwrap_or_else(|| header_path(header)));
            return Err(Broken {
                error: TarError::Truncated {
                    offset: data_start,
                    needed: size - available,
                },
                path,
            });
        }
        // size <= available <= usize::MAX, so these conversions hold.
        let size = size as usize;
        let data = bytes.get(data_start..data_start + size).unwrap_or(&[]);
        let padded = size.div_ceil(BLOCK) * BLOCK;
        let next = data_start + padded;
        match kind {
            b'L' => long_name = Some(c_string(data)),
            b'x' => {
                if let Some(path) = pax_path(data) {
                    long_name = Some(path);
                }
            }
            b'0' | 0 | b'7' => {
                let path = long_name.take().unwrap_or_else(|| header_path(header));
                out.push(Entry { path, data });
            }
            _ => long_name = None,
        }
        if next > bytes.len() {
            // The padding of the last entry is missing: accept what we have.
            return Ok(());
        }
        offset = next;
    }
}

fn field(header: &[u8], start: usize, len: usize) -> &[u8] {
    header.get(start..start + len).unwrap_or(&[])
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(bytes.get(..end).unwrap_or(&[])).into_owned()
}

fn header_path(header: &[u8]) -> String {
    let name = c_string(field(header, 0, 100));
    let is_ustar = field(header, 257, 5) == b"ustar";
    let prefix = if is_ustar {
        c_string(field(header, 345, 155))
    } else {
        String::new()
    };
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

fn octal(bytes: &[u8], offset: usize, name: &'static str) -> Result<u64, TarError> {
    // GNU base-256 for large sizes: high bit of the first byte set.
    if bytes.first().is_some_and(|&b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(bytes.first().copied().unwrap_or(0) & 0x7f);
        for &b in bytes.get(1..).unwrap_or(&[]) {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or(TarError::Number {
                    offset,
                    field: name,
                })?;
        }
        return Ok(v);
    }
    let mut v: u64 = 0;
    let mut seen = false;
    for &b in bytes {
        match b {
            b'0'..=b'7' => {
                v = v
                    .checked_mul(8)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .ok_or(TarError::Number {
                        offset,
                        field: name,
                    })?;
                seen = true;
            }
            b' ' if !seen => {}
            0 | b' ' => break,
            _ => {
                return Err(TarError::Number {
                    offset,
                    field: name,
                })
            }
        }
    }
    Ok(v)
}

fn verify_checksum(header: &[u8], offset: usize) -> Result<(), TarError> {
    let stored = octal(field(header, 148, 8), offset, "chksum")?;
    let sum: u64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum();
    if sum == stored {
        Ok(())
    } else {
        Err(TarError::Checksum { offset })
    }
}

/// Finds the `path` record of a pax extended header (`"<len> path=<p>\n"`).
fn pax_path(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    text.lines().find_map(|line| {
        let (_, rest) = line.split_once(' ')?;
        rest.strip_prefix("path=").map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn tar_of(dir: &std::path::Path, tool: &[&str]) -> Vec<u8> {
        let out = Command::new(tool[0])
            .args(&tool[1..])
            .arg("-cf")
            .arg("-")
            .arg("-C")
            .arg(dir)
            .arg(".")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn sample_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("a".repeat(70)).join("b".repeat(70));
        std::fs::create_dir_all(&long).unwrap();
        std::fs::write(long.join("x.gcda"), (0..=255u8).collect::<Vec<_>>()).unwrap();
        std::fs::write(dir.path().join("empty.gcda"), b"").unwrap();
        dir
    }

    fn check(bytes: &[u8]) {
        let mut got = entries(bytes).unwrap();
        got.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0]
                .path
                .ends_with(&format!("{}/{}/x.gcda", "a".repeat(70), "b".repeat(70))),
            "{}",
            got[0].path
        );
        assert_eq!(got[0].data, (0..=255u8).collect::<Vec<_>>().as_slice());
        assert!(got[1].path.ends_with("empty.gcda"));
        assert!(got[1].data.is_empty());
    }

    #[test]
    fn reads_busybox_gnu_and_pax_archives() {
        let dir = sample_tree();
        check(&tar_of(dir.path(), &["busybox", "tar"]));
        check(&tar_of(dir.path(), &["tar"]));
        check(&tar_of(dir.path(), &["tar", "--format=pax"]));
        check(&tar_of(dir.path(), &["tar", "--format=ustar"]));
    }

    #[test]
    fn truncation_anywhere_is_an_error_or_a_prefix_never_a_panic() {
        let dir = sample_tree();
        let bytes = tar_of(dir.path(), &["busybox", "tar"]);
        for cut in 0..bytes.len() {
            if let Ok(got) = entries(&bytes[..cut]) {
                // Only whole entries may come back from a cut stream.
                for e in got {
                    assert!(e.data.is_empty() || e.data.len() == 256);
                }
            }
        }
    }

    #[test]
    fn a_stream_cut_inside_a_file_names_that_file() {
        let dir = sample_tree();
        let bytes = tar_of(dir.path(), &["busybox", "tar"]);
        let whole = entries(&bytes).unwrap();
        let mut named = 0;
        for cut in 0..bytes.len() {
            let partial = read_partial(&bytes[..cut]);
            // Whatever came back whole is exactly what was sent.
            for e in &partial.entries {
                assert!(whole.contains(e), "{cut}: {e:?}");
            }
            if let Some(Broken {
                path: Some(path), ..
            }) = &partial.broken
            {
                let file = whole.iter().find(|e| &e.path == path);
                assert!(
                    file.is_some_and(|e| !partial.entries.contains(e)),
                    "{cut}: {path}"
                );
                named += 1;
            }
        }
        assert!(named > 0, "no cut named the file it broke in");
    }

    #[test]
    fn corrupt_header_is_reported_with_its_offset() {
        let dir = sample_tree();
        let mut bytes = tar_of(dir.path(), &["busybox", "tar"]);
        bytes[5] ^= 0x40;
        assert_eq!(entries(&bytes), Err(TarError::Checksum { offset: 0 }));
    }
}
