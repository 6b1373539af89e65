//! `covnet blindspots`: the source files and functions compiled into ELF
//! files (read from their DWARF) that a machine's coverage does not cover,
//! with executable-line counts from the line tables, and the ELF files
//! without debug information. A thin layer over
//! `covnet_merger::blindspots`; the listing is the reporter's.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use covnet_merger::blindspots::{self, MachineBlindSpots};
use covnet_merger::dwarf::{self, DebugSearch};
use covnet_merger::paths::PathMap;
use covnet_runner::coverage::blind;
use covnet_runner::image::closure::{self, SearchPaths};

use super::exit;

/// Arguments of `covnet blindspots`.
#[derive(Args, Debug)]
pub struct BlindspotsArgs {
    /// ELF programs and shared libraries installed on the machine.
    #[arg(required = true, value_name = "ELF")]
    pub elf: Vec<PathBuf>,
    /// The machine's coverage: an lcov tracefile or covnet JSON (a report or
    /// coverage), as `covnet report` reads them.
    #[arg(long, value_name = "FILE")]
    pub coverage: PathBuf,
    /// Also examine the shared libraries the ELF files load, found as the
    /// dynamic loader finds them on this host.
    #[arg(long)]
    pub with_libraries: bool,
    /// Rewrite DWARF source paths before matching them with the coverage's
    /// (`FROM=TO`, repeatable; as `covnet merge --path-map`).
    #[arg(long, value_name = "FROM=TO")]
    pub path_map: Vec<String>,
    /// Where separate debug files are looked for (by build id and
    /// `.gnu_debuglink`).
    #[arg(long, value_name = "DIR", default_value = "/usr/lib/debug")]
    pub debug_dir: PathBuf,
    /// Print JSON instead of the listing.
    #[arg(long)]
    pub json: bool,
}

/// Runs `covnet blindspots`: exit 0 when every ELF file was read, 2 when
/// some could not be (they are named), 1 when none could.
pub fn blindspots(args: BlindspotsArgs) -> anyhow::Result<ExitCode> {
    let map = PathMap::parse(&args.path_map).context("invalid --path-map")?;
    let cov = covnet_runner::coverage::inputs::read_file(&args.coverage)
        .map_err(super::report::input_error)?;
    let elf = if args.with_libraries {
        blind::distinct_elf_files(closure::closure(&args.elf, &SearchPaths::host())?)
    } else {
        args.elf.clone()
    };
    let search = DebugSearch {
        root: args.debug_dir.clone(),
    };
    let mut binaries = Vec::new();
    let mut failed = 0usize;
    for path in &elf {
        match dwarf::read_path(path, &search) {
            Ok(b) => binaries.push(b),
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}\n  caused by: {}", e.kind);
                if let Some(hint) = e.kind.hint() {
                    eprintln!("  (hint: {hint})");
                }
            }
        }
    }
    if binaries.is_empty() {
        eprintln!("error: no ELF file could be read; nothing to report");
        return Ok(ExitCode::from(exit::FAILURE));
    }
    let covered = blindspots::covered_files(&cov, |_, _| true);
    let machine = MachineBlindSpots {
        machine: args
            .coverage
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
        blind: blindspots::blind_spots(&binaries, &covered, |p| Some(map.map(p))),
    };
    let machines = [machine];
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &covnet_reporter::blindspots::to_json(&machines))?;
        writeln!(out)?;
    } else {
        covnet_reporter::blindspots::write_text(&machines, &mut out)?;
    }
    out.flush()?;
    Ok(ExitCode::from(if failed > 0 {
        exit::PARTIAL
    } else {
        exit::SUCCESS
    }))
}
