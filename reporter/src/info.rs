//! What every report says about the run that produced it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Title, date and inputs of a report run, shown on every output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunInfo {
    /// Title given with `--title` (or a default).
    pub title: String,
    /// Seconds since the Unix epoch when the report was made.
    pub timestamp: u64,
    /// The inputs (tracefiles, capture directories) as the user named them.
    pub inputs: Vec<String>,
    /// Problems that cost coverage (a machine that crashed, a bad file),
    /// shown prominently so a partial report is never mistaken for a whole
    /// one.
    pub notes: Vec<String>,
    /// Per machine, the code it ran that no capture covers (empty when not
    /// computed); shown beside the covered figures, never in them.
    pub blind_spots: Vec<covnet_merger::blindspots::MachineBlindSpots>,
}

impl RunInfo {
    /// Describes a run happening now.
    pub fn now(title: impl Into<String>, inputs: Vec<String>) -> RunInfo {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        RunInfo {
            title: title.into(),
            timestamp,
            inputs,
            notes: Vec::new(),
            blind_spots: Vec::new(),
        }
    }

    /// The run's date as `YYYY-MM-DD HH:MM:SS UTC`.
    pub fn date(&self) -> String {
        let days = self.timestamp / 86_400;
        let secs = self.timestamp % 86_400;
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }

    /// The run's date as RFC 3339 (`YYYY-MM-DDTHH:MM:SSZ`).
    pub fn date_rfc3339(&self) -> String {
        let d = self.date();
        // "YYYY-MM-DD HH:MM:SS UTC" -> "YYYY-MM-DDTHH:MM:SSZ"
        format!("{}Z", d.replacen(' ', "T", 1).trim_end_matches(" UTC"))
    }
}

/// Proleptic Gregorian calendar date of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let at = |timestamp| RunInfo {
            title: String::new(),
            timestamp,
            inputs: vec![],
            notes: vec![],
            blind_spots: vec![],
        };
        assert_eq!(at(0).date(), "1970-01-01 00:00:00 UTC");
        assert_eq!(at(951_782_400).date(), "2000-02-29 00:00:00 UTC");
        assert_eq!(at(1_795_615_148).date(), "2026-11-25 13:59:08 UTC");
        assert_eq!(at(1_795_615_148).date_rfc3339(), "2026-11-25T13:59:08Z");
    }
}
