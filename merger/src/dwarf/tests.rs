//! The reader against the distribution's tools: shared libraries compiled
//! with `gcc -g` at test time (plain, `-gz` compressed, DWARF 4 and 5,
//! split into a `.gnu_debuglink` file), their executable lines per file
//! compared with `objdump --dwarf=decodedline`, and damaged files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

const UTIL_C: &str = r#"#include "util.h"

static int helper(int x)
{
    if (x > 3)
        return x * 2;
    return x + 1;
}

int util_twice(int x)
{
    int y = helper(x);
    for (int i = 0; i < 3; i++)
        y += i;
    return y;
}
"#;

const UTIL_H: &str =
    "int util_twice(int x);\nstatic inline int util_inline(int a) { return a * 3 + 1; }\n";

const OTHER_C: &str = r#"#include "util.h"
int other(int a)
{
    return util_inline(a) + util_twice(a);
}

int unused_other(int a)
{
    return a - 1;
}
"#;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (hint: bash scripts/setup.sh installs gcc and binutils)")
    });
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sources in `dir/src/lib`, and `libutil.so` built from `dir` with
/// relative names and `flags`.
fn build(dir: &Path, out: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join("src/lib");
    std::fs::create_dir_all(&src).expect("mkdir");
    for (name, text) in [("util.c", UTIL_C), ("util.h", UTIL_H), ("other.c", OTHER_C)] {
        std::fs::write(src.join(name), text).expect("write source");
    }
    let lib = dir.join(out);
    run(Command::new("gcc")
        .args(["-shared", "-fPIC", "-O1"])
        .args(flags)
        .args(["src/lib/util.c", "src/lib/other.c", "-o"])
        .arg(&lib)
        .current_dir(dir));
    lib
}

/// Executable lines per file name (the last path component) as `objdump
/// --dwarf=decodedline` lists them: every row but the end-of-sequence rows
/// (line `-`) and line 0.
fn objdump_lines(elf: &Path) -> BTreeMap<String, BTreeSet<u32>> {
    let text = run(Command::new("objdump").arg("--dwarf=decodedline").arg(elf));
    let mut out: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // name line 0xaddr [view] [x]
        let [name, number, addr, ..] = cols[..] else {
            continue;
        };
        if !addr.starts_with("0x") {
            continue;
        }
        let Ok(n) = number.parse::<u32>() else {
            continue;
        };
        if n != 0 {
            out.entry(name.to_owned()).or_default().insert(n);
        }
    }
    out
}

fn by_name(info: &DebugInfo) -> BTreeMap<String, BTreeSet<u32>> {
    let mut out: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for (path, file) in &info.files {
        if file.lines.is_empty() {
            continue;
        }
        let name = path.rsplit('/').next().unwrap_or(path).to_owned();
        assert!(
            out.insert(name, file.lines.clone()).is_none(),
            "{path}: names are unique here"
        );
    }
    out
}

fn found(b: &BinaryDebug) -> &DebugInfo {
    match &b.debug {
        Debug::Found { info, .. } => info,
        Debug::Missing { searched } => {
            panic!("{}: no debug info, searched {searched:?}", b.path.display())
        }
    }
}

#[test]
fn executable_lines_equal_objdump_in_every_dwarf_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let search = DebugSearch::default();
    for (out, flags) in [
        ("plain.so", &["-g"][..]),
        ("gz.so", &["-g", "-gz"]),
        ("dwarf4.so", &["-gdwarf-4"]),
        ("dwarf4gz.so", &["-gdwarf-4", "-gz=zlib-gnu"]),
        ("O0.so", &["-g", "-O0"]),
    ] {
        let lib = build(dir.path(), out, flags);
        let b = read_path(&lib, &search).expect("reads");
        let info = found(&b);
        let want = objdump_lines(&lib);
        assert!(
            want.contains_key("util.c") && want.contains_key("util.h"),
            "{out}: {want:?}"
        );
        assert_eq!(by_name(info), want, "{out}: lines per file");

        // Paths are absolute, against the compiler's directory.
        let root = std::fs::canonicalize(dir.path()).unwrap_or(dir.path().to_path_buf());
        let util = format!("{}/src/lib/util.c", dir.path().display());
        let util_real = format!("{}/src/lib/util.c", root.display());
        let file = info
            .files
            .get(&util)
            .or_else(|| info.files.get(&util_real))
            .unwrap_or_else(|| panic!("{out}: {:?}", info.files.keys()));
        let names: Vec<(&str, u32, bool)> = file
            .functions
            .iter()
            .map(|f| (f.name.as_str(), f.line, f.has_code))
            .collect();
        assert!(
            names.contains(&("util_twice", 10, true)),
            "{out}: {names:?}"
        );
        assert!(
            names.iter().any(|&(n, l, _)| n == "helper" && l == 3),
            "{out}: {names:?}"
        );
        assert_eq!(info.units.len(), 2, "{out}");
        assert!(info.units.iter().all(|u| u.name.ends_with(".c")), "{out}");
        let other = info
            .files
            .iter()
            .find(|(p, _)| p.ends_with("/other.c"))
            .expect("other.c");
        assert!(other
            .1
            .functions
            .iter()
            .any(|f| f.name == "unused_other" && f.has_code));
    }
}

#[test]
fn compressed_sections_read_the_same_as_plain_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = build(dir.path(), "plain.so", &["-g"]);
    let gz = build(dir.path(), "gz.so", &["-g", "-gz"]);
    let data = std::fs::read(&gz).expect("read");
    let header = run(Command::new("readelf").arg("-S").arg("-W").arg(&gz));
    assert!(
        header
            .lines()
            .any(|l| l.contains(".debug_info") && l.split_whitespace().any(|w| w.contains('C'))),
        "-gz compresses: {header}"
    );
    let a = read_slice(&std::fs::read(&plain).expect("read"))
        .expect("plain")
        .expect("dwarf");
    let b = read_slice(&data).expect("gz").expect("dwarf");
    // Everything but the producer string (which names -gz) is equal.
    assert_eq!(a.files, b.files);
    assert_eq!(a.units.len(), b.units.len());
}

#[test]
fn stripped_files_have_none_and_debug_files_are_found_by_link_and_build_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lib = build(dir.path(), "libutil.so", &["-g"]);
    let whole = read_slice(&std::fs::read(&lib).expect("read"))
        .expect("ok")
        .expect("dwarf");

    // Stripped, no link: nothing to find.
    let stripped = dir.path().join("stripped.so");
    run(Command::new("strip").arg("-o").arg(&stripped).arg(&lib));
    assert_eq!(
        read_slice(&std::fs::read(&stripped).expect("read")).expect("ok"),
        None
    );
    let empty_root = DebugSearch {
        root: dir.path().join("no-debug-root"),
    };
    let b = read_path(&stripped, &empty_root).expect("reads");
    assert!(matches!(b.debug, Debug::Missing { .. }), "{b:?}");

    // Split: the debug file beside the program, named by .gnu_debuglink.
    let debug = dir.path().join("libutil.so.debug");
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&lib)
        .arg(&debug));
    let linked = dir.path().join("linked.so");
    run(Command::new("objcopy")
        .arg("--strip-debug")
        .arg("--add-gnu-debuglink=libutil.so.debug")
        .arg(&lib)
        .arg(&linked)
        .current_dir(dir.path()));
    let b = read_path(&linked, &empty_root).expect("reads");
    match &b.debug {
        Debug::Found { from, info } => {
            assert_eq!(from, &debug);
            assert_eq!(info, &whole);
        }
        other => panic!("{other:?}"),
    }

    // By build id: stripped without a link, the debug file under
    // <root>/.build-id/xx/rest.debug (a copy with another id is not taken).
    let with_id = build(dir.path(), "withid.so", &["-g", "-Wl,--build-id=sha1"]);
    let id = links(&std::fs::read(&with_id).expect("read"))
        .expect("links")
        .build_id
        .expect("a build id")
        .to_vec();
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let root = dir.path().join("debug-root");
    let by_id = root
        .join(".build-id")
        .join(&hex[..2])
        .join(format!("{}.debug", &hex[2..]));
    std::fs::create_dir_all(by_id.parent().expect("parent")).expect("mkdir");
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&with_id)
        .arg(&by_id));
    let no_link = dir.path().join("nolink.so");
    run(Command::new("strip").arg("-o").arg(&no_link).arg(&with_id));
    let search = DebugSearch { root: root.clone() };
    match read_path(&no_link, &search).expect("reads").debug {
        Debug::Found { from, info } => {
            assert_eq!(from, by_id);
            assert_eq!(info.files, whole.files);
        }
        other => panic!("{other:?}"),
    }
    let other_id = build(dir.path(), "otherid.so", &["-g", "-Wl,--build-id=0x0123"]);
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&other_id)
        .arg(&by_id));
    assert!(matches!(
        read_path(&no_link, &search).expect("reads").debug,
        Debug::Missing { .. }
    ));

    // A debug file of other bytes (CRC mismatch) is not taken.
    std::fs::write(&debug, b"\x7fELF not the debug file").expect("write");
    let b = read_path(&linked, &empty_root).expect("reads");
    match &b.debug {
        Debug::Missing { searched } => assert!(searched.contains(&debug), "{searched:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn damaged_files_are_typed_errors_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lib = build(dir.path(), "libutil.so", &["-g"]);
    let search = DebugSearch::default();

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "plain text").expect("write");
    let e = read_path(&text, &search).expect_err("not ELF");
    assert_eq!(e.path, text);
    assert!(matches!(e.kind, DwarfErrorKind::NotElf { .. }), "{e:?}");
    assert!(e.to_string().contains("notes.txt"), "{e}");

    let e = read_path(&dir.path().join("absent.so"), &search).expect_err("missing");
    assert!(matches!(e.kind, DwarfErrorKind::Read(_)), "{e:?}");

    // Overwrite the start of .debug_info (its first unit's header) and of
    // .debug_line with 0xff: gimli rejects them.
    let data = std::fs::read(&lib).expect("read");
    for section in [".debug_info", ".debug_line", ".debug_abbrev"] {
        let offset = section_offset(&lib, section);
        let mut bad = data.clone();
        for b in bad.iter_mut().skip(offset).take(16) {
            *b = 0xff;
        }
        let path = dir.path().join(format!("bad{section}.so"));
        std::fs::write(&path, &bad).expect("write");
        let e = read_path(&path, &search).expect_err(section);
        assert_eq!(e.path, path);
        assert!(
            matches!(e.kind, DwarfErrorKind::Dwarf { .. }),
            "{section}: {e:?}"
        );
        assert!(e.kind.hint().is_some());
    }

    // Truncated anywhere, or any byte flipped: an error or some result,
    // never a panic.
    for cut in (0..data.len()).step_by(97) {
        let _ = read_slice(data.get(..cut).unwrap_or(&[]));
    }
    for at in (0..data.len()).step_by(13) {
        let mut flipped = data.clone();
        if let Some(b) = flipped.get_mut(at) {
            *b ^= 0xff;
        }
        let _ = read_slice(&flipped);
    }
}

/// The file offset of `section` (from `readelf -S -W`).
fn section_offset(elf: &Path, section: &str) -> usize {
    let text = run(Command::new("readelf").arg("-S").arg("-W").arg(elf));
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = cols.iter().position(|c| *c == section) {
            if let Some(off) = cols.get(i + 3) {
                return usize::from_str_radix(off, 16).expect("hex offset");
            }
        }
    }
    panic!("{section} not in {}: {text}", elf.display());
}
