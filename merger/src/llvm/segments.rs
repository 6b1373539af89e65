//! From counted regions to line counts, with llvm-cov's semantics.
//!
//! The regions of one file (from every function that has code in it) are
//! sorted (by start; a region before the regions it contains; at equal
//! extent code before expansion before skipped) and regions of equal extent
//! are combined (counts of the same kind as the first one added). A sweep
//! then cuts the file into *segments*: at each position where the innermost
//! active region changes, a segment starts with that region's count, marked
//! as a region entry when a (non-gap) region begins there, and "no count"
//! where skipped code or no region at all follows.
//!
//! A line's count is then what llvm-cov shows: the line is mapped unless it
//! starts with a skipped region, and either a non-gap region with a count
//! starts on it or the segment running into it has a count; its count is
//! the largest of the count running into it and those of the regions
//! starting on it.

use super::covmap::RegionKind;

/// A region with its evaluated count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountedRegion {
    /// Start (line, column).
    pub start: (u32, u32),
    /// End (line, column).
    pub end: (u32, u32),
    /// Kind.
    pub kind: RegionKind,
    /// Count (LLVM keeps counts unsigned; a negative expression wraps).
    pub count: u64,
}

/// A segment: from its position to the next segment's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Line.
    pub line: u32,
    /// Column.
    pub col: u32,
    /// Count, when the code here has one.
    pub count: Option<u64>,
    /// A region starts here (not a gap region).
    pub entry: bool,
    /// The count comes from a gap region.
    pub gap: bool,
}

struct Builder<'r> {
    segments: Vec<Segment>,
    active: Vec<&'r CountedRegion>,
}

impl<'r> Builder<'r> {
    fn start(&mut self, region: &CountedRegion, at: (u32, u32), entry: bool, skipped: bool) {
        let has_count = !skipped && region.kind != RegionKind::Skipped;
        let count = has_count.then_some(region.count);
        if !entry && !skipped {
            if let Some(last) = self.segments.last() {
                if last.count.is_some() == has_count
                    && last.count.unwrap_or(0) == region.count
                    && !last.entry
                {
                    return;
                }
            }
        }
        self.segments.push(Segment {
            line: at.0,
            col: at.1,
            count,
            entry,
            gap: has_count && region.kind == RegionKind::Gap,
        });
    }

    /// Closes the active regions from index `first` on (they end at or
    /// before `next`, the start of the next region, if any).
    fn complete(&mut self, next: Option<(u32, u32)>, first: usize) {
        let mut done: Vec<&'r CountedRegion> = self.active.split_off(first);
        done.sort_by_key(|r| r.end);
        let mut all: Vec<&'r CountedRegion> = self.active.clone();
        all.extend(done.iter().copied());
        for i in first + 1..all.len() {
            let (Some(&prev), Some(&cur)) = (all.get(i - 1), all.get(i)) else {
                continue;
            };
            let at = prev.end;
            if next == Some(at) {
                break;
            }
            if at == cur.end {
                continue;
            }
            // The last region that ends where this one does gives the count.
            let mut chosen = cur;
            for &later in all.get(i + 1..).unwrap_or_default() {
                if later.end == cur.end {
                    chosen = later;
                }
            }
            self.start(chosen, at, false, false);
        }
        if let Some(&last) = all.last() {
            if first > 0 && Some(last.end) != next {
                if let Some(&outer) = all.get(first - 1) {
                    self.start(outer, last.end, false, false);
                }
            } else if first == 0 && next != Some(last.end) {
                self.start(last, last.end, false, true);
            }
        }
    }

    fn build(&mut self, regions: &'r [CountedRegion]) {
        for (i, region) in regions.iter().enumerate() {
            let here = region.start;
            // Regions that end at or before this one's start are done;
            // the others stay active, in order.
            let (open, closed): (Vec<&CountedRegion>, Vec<&CountedRegion>) =
                self.active.iter().partition(|r| r.end > here);
            if !closed.is_empty() {
                let first = open.len();
                self.active = open;
                self.active.extend(closed);
                self.complete(Some(here), first);
            }
            let gap = region.kind == RegionKind::Gap;
            let is_last = i + 1 == regions.len();
            if here == region.end {
                // Empty regions never become active.
                let skipped = is_last || region.kind == RegionKind::Skipped;
                let source = self.active.last().copied().unwrap_or(region);
                self.start(source, here, !gap, skipped);
                if skipped {
                    if let Some(&outer) = self.active.last() {
                        self.start(outer, here, false, false);
                    }
                }
                continue;
            }
            let next_starts_here = regions.get(i + 1).is_some_and(|n| n.start == here);
            if !next_starts_here {
                self.start(region, here, !gap, false);
            }
            self.active.push(region);
        }
        if !self.active.is_empty() {
            self.complete(None, 0);
        }
    }
}

/// Sorts and combines `regions` and cuts them into segments.
pub fn build_segments(mut regions: Vec<CountedRegion>) -> Vec<Segment> {
    regions.sort_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(b.end.cmp(&a.end))
            .then(a.kind.cmp(&b.kind))
    });
    let mut combined: Vec<CountedRegion> = Vec::with_capacity(regions.len());
    for r in regions {
        match combined.last_mut() {
            Some(active) if active.start == r.start && active.end == r.end => {
                if active.kind == r.kind {
                    active.count = active.count.wrapping_add(r.count);
                }
            }
            _ => combined.push(r),
        }
    }
    let mut b = Builder {
        segments: Vec::new(),
        active: Vec::new(),
    };
    b.build(&combined);
    b.segments
}

/// Count of every mapped line, as llvm-cov computes it from the segments.
pub fn line_counts(segments: &[Segment]) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let Some(first) = segments.first() else {
        return out;
    };
    let mut line = first.line;
    let mut next = 0usize;
    let mut wrapped: Option<&Segment> = None;
    let mut on_line: Vec<&Segment> = Vec::new();
    while next < segments.len() {
        if let Some(&last) = on_line.last() {
            wrapped = Some(last);
        }
        on_line.clear();
        while let Some(s) = segments.get(next).filter(|s| s.line == line) {
            on_line.push(s);
            next += 1;
        }
        let starts = |s: &Segment| !s.gap && s.count.is_some() && s.entry;
        let region_starts = on_line.iter().filter(|s| starts(s)).count();
        let skipped_start = on_line
            .first()
            .is_some_and(|s| s.count.is_none() && s.entry);
        let mapped =
            !skipped_start && (wrapped.is_some_and(|w| w.count.is_some()) || region_starts > 0);
        if mapped {
            let mut count = wrapped.and_then(|w| w.count).unwrap_or(0);
            for s in on_line.iter().filter(|s| starts(s)) {
                count = count.max(s.count.unwrap_or(0));
            }
            out.push((line, count));
        }
        line = match line.checked_add(1) {
            Some(l) => l,
            None => break,
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(start: (u32, u32), end: (u32, u32), count: u64) -> CountedRegion {
        CountedRegion {
            start,
            end,
            kind: RegionKind::Code,
            count,
        }
    }

    #[test]
    fn nested_regions_and_wrapped_lines() {
        // A function 1:10-6:2 run 3 times, an if-body 3:5-4:6 run once.
        let segs = build_segments(vec![code((1, 10), (6, 2), 3), code((3, 5), (4, 6), 1)]);
        let lines = line_counts(&segs);
        assert_eq!(lines, vec![(1, 3), (2, 3), (3, 3), (4, 1), (5, 3), (6, 3)]);
    }

    /// Lines starting in skipped code are unmapped, and so is the line
    /// where it ends when nothing starts there (the count running into it
    /// is the skipped code's, which has none).
    #[test]
    fn skipped_lines_are_not_mapped() {
        let mut skipped = code((3, 1), (4, 1), 0);
        skipped.kind = RegionKind::Skipped;
        let segs = build_segments(vec![code((1, 1), (6, 2), 2), skipped]);
        let lines: Vec<u32> = line_counts(&segs).iter().map(|l| l.0).collect();
        assert_eq!(lines, vec![1, 2, 5, 6]);
    }
}
