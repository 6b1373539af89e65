//! Hit-of-found ratios as every output prints them.

use std::fmt;

/// `hit` of `found` items, displayed as a percentage rounded *down* to one
/// decimal, so that 100.0% always means everything was hit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Percent {
    /// Items hit.
    pub hit: u64,
    /// Items found.
    pub found: u64,
}

impl Percent {
    /// `hit` of `found`.
    pub fn new(hit: u64, found: u64) -> Percent {
        Percent { hit, found }
    }

    /// The ratio in `0.0..=1.0`, or `None` when nothing was found.
    pub fn ratio(self) -> Option<f64> {
        (self.found > 0).then(|| self.hit as f64 / self.found as f64)
    }

    /// Tenths of a percent, rounded down (`None` when nothing was found).
    pub fn tenths(self) -> Option<u64> {
        (self.found > 0).then(|| {
            let t = u128::from(self.hit) * 1000 / u128::from(self.found);
            u64::try_from(t).unwrap_or(u64::MAX)
        })
    }

    /// Width of a 0–100 bar (0 when nothing was found).
    pub fn bar(self) -> u64 {
        self.tenths().map_or(0, |t| t / 10)
    }

    /// A coarse level for styling: `hi` (≥ 90%), `med` (≥ 75%), `lo`, or
    /// `none` when nothing was found.
    pub fn level(self) -> &'static str {
        match self.tenths() {
            None => "none",
            Some(t) if t >= 900 => "hi",
            Some(t) if t >= 750 => "med",
            Some(_) => "lo",
        }
    }

    /// Whether the ratio is at least `required` percent (nothing found
    /// counts as met).
    pub fn meets(self, required: f64) -> bool {
        self.found == 0 || self.hit as f64 * 100.0 >= required * self.found as f64
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tenths() {
            Some(t) => f.pad(&format!("{}.{}%", t / 10, t % 10)),
            None => f.pad("n/a"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_down() {
        assert_eq!(Percent::new(1, 3).to_string(), "33.3%");
        assert_eq!(Percent::new(2, 3).to_string(), "66.6%");
        assert_eq!(Percent::new(9999, 10000).to_string(), "99.9%");
        assert_eq!(Percent::new(5, 5).to_string(), "100.0%");
        assert_eq!(Percent::new(0, 0).to_string(), "n/a");
        assert_eq!(format!("{:>7}", Percent::new(1, 2)), "  50.0%");
    }

    #[test]
    fn levels_and_thresholds() {
        assert_eq!(Percent::new(9, 10).level(), "hi");
        assert_eq!(Percent::new(3, 4).level(), "med");
        assert_eq!(Percent::new(1, 4).level(), "lo");
        assert_eq!(Percent::new(0, 0).level(), "none");
        assert!(Percent::new(4, 5).meets(80.0));
        assert!(!Percent::new(79, 100).meets(80.0));
        assert!(Percent::new(0, 0).meets(100.0));
        assert_eq!(Percent::new(2, 3).bar(), 66);
    }
}
