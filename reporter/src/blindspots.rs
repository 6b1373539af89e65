//! Blind spots in reports: per machine, the ELF files it ran, the source
//! files compiled into them that no capture covers (with executable-line
//! counts from the DWARF line tables and their functions), and the ELF
//! files without debug information. Always a separate "not instrumented"
//! total, never part of a line rate.
//!
//! [`write_text`] is `covnet blindspots`' listing, [`write_summary`] the
//! lines under the terminal table, [`to_json`] the serialize-only wire
//! types of the JSON outputs (`covnet blindspots --json` and the report's
//! `blind_spots` field).

use std::borrow::Cow;
use std::io::{self, Write};

use covnet_merger::blindspots::{BlindTotals, DebugSource, MachineBlindSpots};
use serde::{Deserialize, Serialize};

/// One machine's blind spots, as JSON.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineJson<'a> {
    machine: Cow<'a, str>,
    totals: TotalsJson,
    binaries: Vec<BinaryJson<'a>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TotalsJson {
    binaries: u64,
    binaries_without_debug: u64,
    files: u64,
    lines: u64,
    functions: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BinaryJson<'a> {
    path: Cow<'a, str>,
    /// `embedded`, `separate` or `missing`.
    debug: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    debug_file: Option<Cow<'a, str>>,
    covered_files: usize,
    files: Vec<FileJson<'a>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJson<'a> {
    path: Cow<'a, str>,
    lines: u64,
    functions: Vec<FunctionJson<'a>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionJson<'a> {
    name: Cow<'a, str>,
    line: u32,
}

impl TotalsJson {
    fn of(t: &BlindTotals) -> TotalsJson {
        TotalsJson {
            binaries: t.binaries,
            binaries_without_debug: t.binaries_without_debug,
            files: t.files,
            lines: t.lines,
            functions: t.functions,
        }
    }
}

/// The JSON form of machines' blind spots.
pub fn to_json(machines: &[MachineBlindSpots]) -> Vec<MachineJson<'_>> {
    machines
        .iter()
        .map(|m| MachineJson {
            machine: m.machine.as_str().into(),
            totals: TotalsJson::of(&m.blind.totals()),
            binaries: m
                .blind
                .binaries
                .iter()
                .map(|b| {
                    let (debug, debug_file) = match &b.debug {
                        DebugSource::Embedded => ("embedded", None),
                        DebugSource::Separate(f) => ("separate", Some(f.as_str().into())),
                        DebugSource::Missing => ("missing", None),
                    };
                    BinaryJson {
                        path: b.path.as_str().into(),
                        debug: debug.into(),
                        debug_file,
                        covered_files: b.covered_files,
                        files: b
                            .files
                            .iter()
                            .map(|f| FileJson {
                                path: f.path.as_str().into(),
                                lines: f.lines.len() as u64,
                                functions: f
                                    .functions
                                    .iter()
                                    .map(|g| FunctionJson {
                                        name: g.name.as_str().into(),
                                        line: g.line,
                                    })
                                    .collect(),
                            })
                            .collect(),
                    }
                })
                .collect(),
        })
        .collect()
}

/// One line of totals: `not instrumented: 3 source files, 40 executable
/// lines, 5 functions; 1 of 4 ELF files without debug information`.
pub fn totals_line(t: &BlindTotals) -> String {
    let mut s = format!(
        "not instrumented: {} source file(s), {} executable line(s), {} function(s)",
        t.files, t.lines, t.functions
    );
    if t.binaries_without_debug > 0 {
        s.push_str(&format!(
            "; {} of {} ELF file(s) without debug information",
            t.binaries_without_debug, t.binaries
        ));
    }
    s
}

/// Writes the full listing: per machine and ELF file, where its debug
/// information came from, its uncovered source files with their
/// executable-line counts and functions, and its totals.
pub fn write_text(machines: &[MachineBlindSpots], out: &mut impl Write) -> io::Result<()> {
    for m in machines {
        if machines.len() > 1 || !m.machine.is_empty() {
            writeln!(out, "{}:", m.machine)?;
        }
        for b in &m.blind.binaries {
            match &b.debug {
                DebugSource::Missing => {
                    writeln!(out, "  {}: no debug information", b.path)?;
                    continue;
                }
                DebugSource::Embedded => writeln!(
                    out,
                    "  {}: {} source file(s) covered, {} not instrumented",
                    b.path,
                    b.covered_files,
                    b.files.len()
                )?,
                DebugSource::Separate(f) => writeln!(
                    out,
                    "  {} (debug information from {f}): {} source file(s) covered, {} not instrumented",
                    b.path,
                    b.covered_files,
                    b.files.len()
                )?,
            }
            for f in &b.files {
                writeln!(out, "    {:>6} lines  {}", f.lines.len(), f.path)?;
                for g in &f.functions {
                    writeln!(out, "                  {}:{} {}", f.path, g.line, g.name)?;
                }
            }
        }
        writeln!(out, "  {}", totals_line(&m.blind.totals()))?;
    }
    Ok(())
}

/// Writes the lines the terminal summary shows under its table: each
/// machine's not-instrumented total and its ELF files without debug
/// information.
pub fn write_summary(machines: &[MachineBlindSpots], out: &mut impl Write) -> io::Result<()> {
    if machines.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "  blind spots: code installed on each machine (programs and the libraries they load) that none of its captures covers; not in the rates above"
    )?;
    for m in machines {
        writeln!(out, "  {}: {}", m.machine, totals_line(&m.blind.totals()))?;
        for b in m.blind.binaries.iter().filter(|b| !b.files.is_empty()) {
            let lines: usize = b.files.iter().map(|f| f.lines.len()).sum();
            writeln!(
                out,
                "    {}: {} source file(s), {lines} executable line(s)",
                b.path,
                b.files.len()
            )?;
        }
        let none: Vec<&str> = m.blind.without_debug().map(|b| b.path.as_str()).collect();
        if !none.is_empty() {
            writeln!(out, "    without debug information: {}", none.join(", "))?;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use covnet_merger::blindspots::{BinaryBlindSpots, BlindFile, BlindFunction, BlindSpots};

    use super::*;

    pub(crate) fn sample() -> Vec<MachineBlindSpots> {
        vec![MachineBlindSpots {
            machine: "server".into(),
            blind: BlindSpots {
                binaries: vec![
                    BinaryBlindSpots {
                        path: "/opt/lib/libutil.so".into(),
                        debug: DebugSource::Embedded,
                        files: vec![BlindFile {
                            path: "/src/lib/util.c".into(),
                            lines: BTreeSet::from([3, 5, 6]),
                            functions: vec![BlindFunction {
                                line: 10,
                                name: "util_twice".into(),
                            }],
                        }],
                        covered_files: 0,
                    },
                    BinaryBlindSpots {
                        path: "/lib/libc.so.6".into(),
                        debug: DebugSource::Missing,
                        files: vec![],
                        covered_files: 0,
                    },
                ],
            },
        }]
    }

    #[test]
    fn text_json_and_summary_say_the_same() {
        let m = sample();
        let mut text = Vec::new();
        write_text(&m, &mut text).expect("in memory");
        let text = String::from_utf8(text).expect("utf-8");
        for needle in [
            "server:",
            "/opt/lib/libutil.so: 0 source file(s) covered, 1 not instrumented",
            "     3 lines  /src/lib/util.c",
            "/src/lib/util.c:10 util_twice",
            "/lib/libc.so.6: no debug information",
            "not instrumented: 1 source file(s), 3 executable line(s), 1 function(s); 1 of 2 ELF file(s) without debug information",
        ] {
            assert!(text.contains(needle), "{needle:?} in\n{text}");
        }
        let json = serde_json::to_value(to_json(&m)).expect("serializes");
        assert_eq!(json[0]["totals"]["lines"], 3);
        assert_eq!(json[0]["binaries"][0]["files"][0]["lines"], 3);
        assert_eq!(json[0]["binaries"][1]["debug"], "missing");
        let mut s = Vec::new();
        write_summary(&m, &mut s).expect("in memory");
        let s = String::from_utf8(s).expect("utf-8");
        assert!(
            s.contains("server: not instrumented: 1 source file(s), 3 executable line(s)"),
            "{s}"
        );
        assert!(
            s.contains("without debug information: /lib/libc.so.6"),
            "{s}"
        );
    }
}
