//! Unified diffs (`diff -u`, `git diff`): which lines changed, and where an
//! unchanged line moved between the old and the new version of a file.

use std::collections::BTreeMap;

/// What happened to one line between the old and the new version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineChange {
    /// The line is in both versions; the number is its line in the other one.
    Equal(u32),
    /// The new-version line was added.
    Inserted,
    /// The old-version line was removed.
    Deleted,
}

/// One contiguous run of removed and added lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    old_start: u32,
    old_len: u32,
    new_start: u32,
    new_len: u32,
}

/// The changes of one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileChanges {
    /// Path of the old version (`None` for a new file).
    pub old_path: Option<String>,
    blocks: Vec<Block>,
    /// Sum of `old_len - new_len` over the blocks before each block.
    shifts: Vec<i64>,
    /// The whole file is new (`--- /dev/null`).
    pub added: bool,
}

impl FileChanges {
    /// What happened to line `line` of the new version.
    pub fn new_line(&self, line: u32) -> LineChange {
        if self.added {
            return LineChange::Inserted;
        }
        // The last block starting at or before `line`, and the shift
        // (old minus new line count) of every block before it.
        let i = self.blocks.partition_point(|b| b.new_start <= line);
        let Some(j) = i.checked_sub(1) else {
            return LineChange::Equal(line);
        };
        let b = self.blocks[j];
        if line < b.new_start + b.new_len {
            return LineChange::Inserted;
        }
        let shift = self.shifts[j] + i64::from(b.old_len) - i64::from(b.new_len);
        LineChange::Equal(u32::try_from(i64::from(line) + shift).unwrap_or(0))
    }

    /// What happened to line `line` of the old version.
    pub fn old_line(&self, line: u32) -> LineChange {
        if self.added {
            return LineChange::Deleted;
        }
        let i = self.blocks.partition_point(|b| b.old_start <= line);
        let Some(j) = i.checked_sub(1) else {
            return LineChange::Equal(line);
        };
        let b = self.blocks[j];
        if line < b.old_start + b.old_len {
            return LineChange::Deleted;
        }
        let shift = self.shifts[j] + i64::from(b.old_len) - i64::from(b.new_len);
        LineChange::Equal(u32::try_from(i64::from(line) - shift).unwrap_or(0))
    }

    /// Sorts the blocks (hunks may come in any order) and sums the shifts.
    fn finish(mut self) -> FileChanges {
        self.blocks.sort_by_key(|b| b.new_start);
        let mut acc = 0i64;
        self.shifts = self
            .blocks
            .iter()
            .map(|b| {
                let before = acc;
                acc += i64::from(b.old_len) - i64::from(b.new_len);
                before
            })
            .collect();
        self
    }
}

/// A parsed unified diff: the changes of every file, by new path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnifiedDiff {
    /// New path (as written in the `+++` header, `b/` stripped) → changes.
    pub files: BTreeMap<String, FileChanges>,
}

/// A line of a unified diff that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    /// 1-based line of the diff text.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

/// The path of a `---`/`+++` header: up to a tab (`diff -u` dates
/// follow one); `None` for `/dev/null`.
fn header_path(raw: &str) -> Option<&str> {
    let path = raw.split('\t').next().unwrap_or(raw).trim_end();
    (path != "/dev/null").then_some(path)
}

/// Drops git's `a/`/`b/` prefixes, only when the pair uses them (a
/// `--no-prefix` diff of a directory named `a` keeps its paths).
fn strip_prefixes<'a>(
    old: Option<&'a str>,
    new: Option<&'a str>,
) -> (Option<&'a str>, Option<&'a str>) {
    let prefixed =
        old.is_none_or(|o| o.starts_with("a/")) && new.is_none_or(|n| n.starts_with("b/"));
    if prefixed && (old.is_some() || new.is_some()) {
        (old.map(|o| &o[2..]), new.map(|n| &n[2..]))
    } else {
        (old, new)
    }
}

fn parse_range(s: &str) -> Option<(u32, u32)> {
    match s.split_once(',') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => Some((s.parse().ok()?, 1)),
    }
}

impl UnifiedDiff {
    /// Parses unified diff text (any number of files; `git diff` headers,
    /// binary notices and `\ No newline` markers are skipped).
    pub fn parse(text: &str) -> Result<UnifiedDiff, ParseError> {
        let mut files = BTreeMap::new();
        let mut old_path: Option<Option<&str>> = None;
        let mut current: Option<(String, FileChanges)> = None;
        // Remaining old/new lines of the hunk being read, and positions.
        let (mut old_left, mut new_left, mut old_at, mut new_at) = (0u32, 0u32, 0u32, 0u32);
        let mut open: Option<Block> = None;
        let close = |open: &mut Option<Block>, cur: &mut Option<(String, FileChanges)>| {
            if let (Some(b), Some((_, fc))) = (open.take(), cur.as_mut()) {
                fc.blocks.push(b);
            }
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let err = |problem: &str| ParseError {
                line: i + 1,
                problem: problem.to_owned(),
            };
            if old_left > 0 || new_left > 0 {
                let (tag, _) = line.split_at(line.len().min(1));
                match tag {
                    " " | "" => {
                        close(&mut open, &mut current);
                        old_left = old_left
                            .checked_sub(1)
                            .ok_or_else(|| err("hunk longer than its header"))?;
                        new_left = new_left
                            .checked_sub(1)
                            .ok_or_else(|| err("hunk longer than its header"))?;
                        old_at += 1;
                        new_at += 1;
                    }
                    "-" => {
                        let b = open.get_or_insert(Block {
                            old_start: old_at,
                            old_len: 0,
                            new_start: new_at,
                            new_len: 0,
                        });
                        b.old_len += 1;
                        old_at += 1;
                        old_left = old_left
                            .checked_sub(1)
                            .ok_or_else(|| err("more removed lines than the hunk header says"))?;
                    }
                    "+" => {
                        let b = open.get_or_insert(Block {
                            old_start: old_at,
                            old_len: 0,
                            new_start: new_at,
                            new_len: 0,
                        });
                        b.new_len += 1;
                        new_at += 1;
                        new_left = new_left
                            .checked_sub(1)
                            .ok_or_else(|| err("more added lines than the hunk header says"))?;
                    }
                    "\\" => {}
                    _ => return Err(err("hunk ends before its header's line counts")),
                }
                if old_left == 0 && new_left == 0 {
                    close(&mut open, &mut current);
                }
                continue;
            }
            if line.starts_with('\\') {
                continue;
            }
            if let Some(rest) = line.strip_prefix("--- ") {
                if let Some((name, fc)) = current.take() {
                    files.insert(name, fc.finish());
                }
                old_path = Some(header_path(rest));
            } else if let Some(rest) = line.strip_prefix("+++ ") {
                let old = old_path.take().ok_or_else(|| err("`+++` without `---`"))?;
                let (old, new) = strip_prefixes(old, header_path(rest));
                current = new.map(|new| {
                    (
                        new.to_owned(),
                        FileChanges {
                            added: old.is_none(),
                            old_path: old.map(str::to_owned),
                            blocks: Vec::new(),
                            shifts: Vec::new(),
                        },
                    )
                });
            } else if let Some(rest) = line.strip_prefix("@@ ") {
                let mut parts = rest.split_whitespace();
                let old = parts
                    .next()
                    .and_then(|p| p.strip_prefix('-'))
                    .and_then(parse_range);
                let new = parts
                    .next()
                    .and_then(|p| p.strip_prefix('+'))
                    .and_then(parse_range);
                let ((os, ol), (ns, nl)) =
                    old.zip(new).ok_or_else(|| err("malformed hunk header"))?;
                // A zero-length side starts after the line it names.
                old_at = if ol == 0 { os + 1 } else { os };
                new_at = if nl == 0 { ns + 1 } else { ns };
                old_left = ol;
                new_left = nl;
            }
            // Anything else (diff --git, index, mode lines, Binary files …)
            // carries no line changes.
        }
        if old_left > 0 || new_left > 0 {
            return Err(ParseError {
                line: text.lines().count(),
                problem: "the diff ends inside a hunk".to_owned(),
            });
        }
        close(&mut open, &mut current);
        if let Some((name, fc)) = current.take() {
            files.insert(name, fc.finish());
        }
        Ok(UnifiedDiff { files })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIFF: &str = "diff --git a/m.c b/m.c\nindex 1..2 100644\n--- a/m.c\n+++ b/m.c\n@@ -1,6 +1,7 @@\n a\n-b\n+B1\n+B2\n c\n-d\n e\n+f2\n f\n--- /dev/null\n+++ b/n.c\n@@ -0,0 +1,2 @@\n+x\n+y\n";

    #[test]
    fn lines_follow_the_diff() {
        let d = UnifiedDiff::parse(DIFF).unwrap();
        let m = &d.files["m.c"];
        assert_eq!(m.old_path.as_deref(), Some("m.c"));
        // old: a b c d e f      new: a B1 B2 c e f2 f
        assert_eq!(m.new_line(1), LineChange::Equal(1));
        assert_eq!(m.new_line(2), LineChange::Inserted);
        assert_eq!(m.new_line(3), LineChange::Inserted);
        assert_eq!(m.new_line(4), LineChange::Equal(3));
        assert_eq!(m.new_line(5), LineChange::Equal(5));
        assert_eq!(m.new_line(6), LineChange::Inserted);
        assert_eq!(m.new_line(7), LineChange::Equal(6));
        assert_eq!(m.new_line(20), LineChange::Equal(19));
        assert_eq!(m.old_line(2), LineChange::Deleted);
        assert_eq!(m.old_line(4), LineChange::Deleted);
        assert_eq!(m.old_line(3), LineChange::Equal(4));
        assert_eq!(m.old_line(6), LineChange::Equal(7));
        assert!(d.files["n.c"].added);
        assert_eq!(d.files["n.c"].new_line(1), LineChange::Inserted);
    }

    #[test]
    fn prefixes_are_dropped_only_in_pairs() {
        let d = UnifiedDiff::parse("--- a/x.c\n+++ a/x.c\n@@ -1 +1 @@\n-p\n+q\n").unwrap();
        assert!(d.files.contains_key("a/x.c"), "{d:?}");
        let d = UnifiedDiff::parse("--- /dev/null\n+++ b/src/y.c\n@@ -0,0 +1 @@\n+q\n").unwrap();
        assert!(d.files["src/y.c"].added);
        let d = UnifiedDiff::parse(
            "--- x.c\t2024-01-01 10:00:00\n+++ x.c\t2024-01-02 10:00:00\n@@ -2,0 +3,2 @@\n+q\n+r\n",
        )
        .unwrap();
        let x = &d.files["x.c"];
        assert_eq!(x.new_line(2), LineChange::Equal(2));
        assert_eq!(x.new_line(3), LineChange::Inserted);
        assert_eq!(x.new_line(4), LineChange::Inserted);
        assert_eq!(x.new_line(5), LineChange::Equal(3));
    }

    #[test]
    fn truncated_hunks_are_refused() {
        let e = UnifiedDiff::parse("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n").unwrap_err();
        assert!(e.problem.contains("ends inside a hunk"), "{e}");
    }
}
