//! gcov as the oracle of end-to-end runs: what GCC's own `gcov` says about
//! the `.gcda` files covnet pulled, object by object, and the comparison of
//! a covnet tracefile (or one of its `TN` sections) with it.
//!
//! Objects are given as (notes, data files): no data is "never run", one
//! data file is used as it is, several are merged with `gcov-tool merge`
//! first (what covnet's sum-then-solve must equal). Each object is solved
//! in its own temporary directory, so notes from any number of build trees
//! can be compared in one go; results of distinct objects add up per line
//! (as `lcov -a` and covnet merge distinct objects).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::lcov_tool::{self, Tracefile};

/// Per (file, line): a count.
pub type LineCounts = BTreeMap<(String, u32), i64>;

/// What gcov says: per-line counts (summed over entries and objects),
/// branch counts per line in gcov's order, and function entry counts.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Gcov {
    /// Line counts.
    pub lines: LineCounts,
    /// Branch counts per line, in order (objects appended in turn).
    pub branches: BTreeMap<(String, u32), Vec<i64>>,
    /// Function entry counts by (file, mangled name).
    pub functions: BTreeMap<(String, String), i64>,
}

/// One object: its notes file and the data files of the captures that ran
/// it.
pub type Object = (PathBuf, Vec<PathBuf>);

/// The objects of a flat build directory whose `.gcda` files were copied
/// next to their notes (the notes without one are "never run").
pub fn objects_of_build(build: &Path) -> Result<Vec<Object>> {
    let mut notes: Vec<PathBuf> = std::fs::read_dir(build)
        .with_context(|| format!("read {}", build.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gcno"))
        .collect();
    notes.sort();
    Ok(notes
        .into_iter()
        .map(|n| {
            let d = n.with_extension("gcda");
            let data = if d.is_file() { vec![d] } else { Vec::new() };
            (n, data)
        })
        .collect())
}

/// Every `.gcda` below `dir`, sorted.
pub fn gcda_below(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("read {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "gcda") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The objects of captures that mirror absolute build paths
/// (`<capture>/<abs path>/x.gcda` for `/<abs path>/x.gcno`, as
/// `GCOV_PREFIX` writes them), each with its data from every capture.
pub fn mirrored(captures: &[&Path]) -> Result<Vec<Object>> {
    let mut by_notes: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for cap in captures {
        for gcda in gcda_below(cap)? {
            let rel = gcda.strip_prefix(cap).context("below the capture")?;
            let notes = Path::new("/").join(rel).with_extension("gcno");
            ensure!(
                notes.is_file(),
                "{} has no notes at {}",
                gcda.display(),
                notes.display()
            );
            by_notes.entry(notes).or_default().push(gcda);
        }
    }
    Ok(by_notes.into_iter().collect())
}

/// Runs gcov on every object (its data merged with `gcov-tool merge` when
/// several captures ran it) and sums the results.
pub fn gcov_over(objects: &[Object]) -> Result<Gcov> {
    let mut g = Gcov::default();
    for (notes, data) in objects {
        let work = tempfile::Builder::new()
            .prefix("covnet-oracle-")
            .tempdir()?;
        let stem = notes
            .file_stem()
            .and_then(|s| s.to_str())
            .context("notes without a stem")?;
        std::fs::copy(notes, work.path().join(format!("{stem}.gcno")))
            .with_context(|| format!("copy {}", notes.display()))?;
        let gcda = work.path().join(format!("{stem}.gcda"));
        match data.as_slice() {
            [] => {}
            [one] => {
                std::fs::copy(one, &gcda).with_context(|| format!("copy {}", one.display()))?;
            }
            several => {
                let mut acc: Option<PathBuf> = None;
                for (i, d) in several.iter().enumerate() {
                    let dir = work.path().join(format!("in{i}"));
                    std::fs::create_dir_all(&dir)?;
                    std::fs::copy(d, dir.join(format!("{stem}.gcda")))?;
                    acc = Some(match acc {
                        None => dir,
                        Some(prev) => {
                            let out = work.path().join(format!("merged{i}"));
                            lcov_tool::run_ok(
                                Command::new("gcov-tool")
                                    .arg("merge")
                                    .arg(&prev)
                                    .arg(&dir)
                                    .arg("-o")
                                    .arg(&out),
                            )?;
                            out
                        }
                    });
                }
                let merged = acc.context("no data")?.join(format!("{stem}.gcda"));
                std::fs::copy(&merged, &gcda)?;
            }
        }
        let o = lcov_tool::run_ok(
            Command::new("gcov")
                .args(["-b", "-t", "--json-format"])
                .arg(format!("{stem}.gcno"))
                .current_dir(work.path()),
        )?;
        add_json(&mut g, &o.stdout)?;
    }
    g.branches.retain(|_, v| !v.is_empty());
    Ok(g)
}

fn add_json(g: &mut Gcov, stdout: &str) -> Result<()> {
    for doc in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(doc)?;
        let cwd = v["current_working_directory"].as_str().unwrap_or("");
        for f in v["files"].as_array().context("files")? {
            let name = f["file"].as_str().context("file")?;
            let path = if name.starts_with('/') {
                PathBuf::from(name)
            } else {
                Path::new(cwd).join(name)
            };
            let file = normalize(&path);
            for l in f["lines"].as_array().context("lines")? {
                let no = u32::try_from(l["line_number"].as_u64().context("line_number")?)?;
                *g.lines.entry((file.clone(), no)).or_default() +=
                    l["count"].as_i64().context("count")?;
                let mut these = Vec::new();
                for br in l["branches"].as_array().context("branches")? {
                    these.push(br["count"].as_i64().context("branch count")?);
                }
                let b = g.branches.entry((file.clone(), no)).or_default();
                if b.len() == these.len() {
                    // The same line in another object: branches add up by
                    // position, as merging distinct objects does.
                    for (x, y) in b.iter_mut().zip(these) {
                        *x += y;
                    }
                } else {
                    b.extend(these);
                }
            }
            for func in f["functions"].as_array().context("functions")? {
                let name = func["name"].as_str().context("name")?.to_owned();
                *g.functions.entry((file.clone(), name)).or_default() += func["execution_count"]
                    .as_i64()
                    .context("execution_count")?;
            }
        }
    }
    Ok(())
}

/// Lexically resolves `.` and `..`.
pub fn normalize(p: &Path) -> String {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out.to_string_lossy().into_owned()
}

/// Fails, listing the differences, unless `covnet`'s lines, branches and
/// functions equal `oracle`'s.
pub fn compare(what: &str, covnet: &Tracefile, oracle: &Gcov) -> Result<()> {
    if oracle.lines.is_empty() {
        bail!("{what}: the oracle has no lines: nothing would be compared");
    }
    let lines = lcov_tool::diff_maps("gcov", &oracle.lines, "covnet", &covnet.lines);
    ensure!(
        lines.is_empty(),
        "{what}: line counts differ from gcov:\n{lines}"
    );
    let mut branches: BTreeMap<(String, u32), Vec<i64>> = BTreeMap::new();
    for (k, m) in &covnet.branches {
        // BRDA keys sort as (block, "block/branch"): gcov's order.
        let mut v: Vec<((u32, u32), i64)> = m
            .iter()
            .map(|((_, bb), t)| {
                let (b, r) = bb.split_once('/').unwrap_or(("0", "0"));
                (
                    (b.parse().unwrap_or(0), r.parse().unwrap_or(0)),
                    t.unwrap_or(0),
                )
            })
            .collect();
        v.sort();
        branches.insert(k.clone(), v.into_iter().map(|(_, t)| t).collect());
    }
    let b = lcov_tool::diff_maps("gcov", &oracle.branches, "covnet", &branches);
    ensure!(b.is_empty(), "{what}: branch counts differ from gcov:\n{b}");
    let funcs: BTreeMap<(String, String), i64> = covnet
        .functions
        .iter()
        .map(|(k, (_, c))| (k.clone(), *c))
        .collect();
    let f = lcov_tool::diff_maps("gcov", &oracle.functions, "covnet", &funcs);
    ensure!(
        f.is_empty(),
        "{what}: function counts differ from gcov:\n{f}"
    );
    eprintln!(
        "{what}: {} lines, {} branch lines, {} functions agree with gcov",
        oracle.lines.len(),
        oracle.branches.len(),
        oracle.functions.len()
    );
    Ok(())
}
