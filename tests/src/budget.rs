//! Time budgets of the end-to-end tests, tied to the nextest limits in
//! `.config/nextest.toml`, so that a slow test fails with its own message
//! (what it waited for) instead of being killed silently by the runner.
//!
//! Each test group's limit is `period × terminate-after` of its nextest
//! override (the default profile for the rest); [`Budget`] hands out waits
//! that end [`MARGIN`] before that limit. `limits_match_nextest_config`
//! (below) fails when the config and these constants drift apart.
//!
//! The harness's waits (`running`, `gcc::run`, `lcov_tool::run`) cap every
//! deadline with [`Budget::of_this_test`]: under nextest each test is its
//! own process, so the budget counts from the process's start and the limit
//! follows from the test's name on the command line.

use std::time::{Duration, Instant};

/// Limit of a test without an override (`[profile.default]`).
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(600);
/// Limit of `vm_network::*`.
pub const VM_NETWORK_LIMIT: Duration = Duration::from_secs(240);
/// Limit of `cleanup::*` and `isolation::*`.
pub const CLEANUP_LIMIT: Duration = Duration::from_secs(300);
/// Limit of `scale::*`.
pub const SCALE_LIMIT: Duration = Duration::from_secs(360);
/// Limit of `subversion::*`.
pub const SUBVERSION_LIMIT: Duration = Duration::from_secs(1200);

/// Time kept between the end of a test's own deadlines and the runner's
/// limit: enough to print what was waited for and tear down.
pub const MARGIN: Duration = Duration::from_secs(20);

/// The time a test has left, from its start to [`MARGIN`] before its
/// nextest limit.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    end: Instant,
}

impl Budget {
    /// What is left of the budget (zero once spent).
    pub fn left(&self) -> Duration {
        self.end.saturating_duration_since(Instant::now())
    }

    /// `wanted`, cut to what is left: a step's own deadline that can never
    /// outlast the test's limit.
    pub fn cap(&self, wanted: Duration) -> Duration {
        wanted.min(self.left())
    }

    /// The instant the budget ends.
    pub fn deadline(&self) -> Instant {
        self.end
    }
}

/// The nextest limit of the test named `name` (as nextest names it:
/// `cleanup::sigint_during_boot`), by the same groups as the config.
pub fn limit_for(name: &str) -> Duration {
    if name.starts_with("vm_network::") {
        VM_NETWORK_LIMIT
    } else if name.starts_with("cleanup::") || name.starts_with("isolation::") {
        CLEANUP_LIMIT
    } else if name.starts_with("scale::") {
        SCALE_LIMIT
    } else if name.starts_with("subversion::") {
        SUBVERSION_LIMIT
    } else {
        DEFAULT_LIMIT
    }
}

/// How long ago this process started (`/proc/self/stat` against
/// `/proc/uptime`), or `None` where that cannot be read.
fn process_age() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may
    // contain spaces; starttime is field 22, the 20th after it.
    let after = stat.rsplit_once(')')?.1;
    let start_ticks: f64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return None;
    }
    let age = uptime - start_ticks / ticks as f64;
    (age >= 0.0).then(|| Duration::from_secs_f64(age))
}

impl Budget {
    /// The budget of the test this process runs. Under nextest (one test
    /// per process, `NEXTEST` set) it ends [`MARGIN`] before that test's
    /// limit, counted from the process's start; under plain `cargo test`,
    /// where one process runs many tests, nothing is capped.
    pub fn of_this_test() -> Budget {
        let unlimited = Budget {
            end: Instant::now() + Duration::from_secs(365 * 24 * 3600),
        };
        if std::env::var_os("NEXTEST").is_none() {
            return unlimited;
        }
        // nextest runs `BINARY --exact NAME --nocapture`.
        let Some(name) = std::env::args().skip(1).find(|a| !a.starts_with('-')) else {
            return unlimited;
        };
        let Some(age) = process_age() else {
            return unlimited;
        };
        let start = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        Budget {
            end: start + limit_for(&name).saturating_sub(MARGIN),
        }
    }
}

/// `wanted`, capped by [`Budget::of_this_test`]; with a note for messages
/// when the cap applied.
pub fn capped(wanted: Duration) -> (Duration, &'static str) {
    let got = Budget::of_this_test().cap(wanted);
    if got < wanted {
        (
            got,
            " (all that was left of the test's time under its nextest limit)",
        )
    } else {
        (got, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `period × terminate-after` of the override whose filter mentions
    /// `group`, or of `[profile.default]`.
    fn limit_of(config: &toml::Table, group: Option<&str>) -> Duration {
        let default = config["profile"]["default"]
            .as_table()
            .expect("[profile.default]");
        let timeout = match group {
            None => default["slow-timeout"].clone(),
            Some(g) => default["overrides"]
                .as_array()
                .expect("overrides")
                .iter()
                .find(|o| o["filter"].as_str().is_some_and(|f| f.contains(g)))
                .unwrap_or_else(|| panic!("no nextest override for {g}"))["slow-timeout"]
                .clone(),
        };
        let period = timeout["period"].as_str().expect("period");
        let secs: u64 = period
            .strip_suffix('s')
            .and_then(|p| p.parse().ok())
            .expect("period in seconds");
        let after = timeout["terminate-after"]
            .as_integer()
            .expect("terminate-after");
        Duration::from_secs(secs * u64::try_from(after).expect("positive"))
    }

    #[test]
    fn limits_match_nextest_config() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../.config/nextest.toml");
        let text = std::fs::read_to_string(path).expect("read .config/nextest.toml");
        let config: toml::Table = text.parse().expect("parse .config/nextest.toml");
        assert_eq!(limit_of(&config, None), DEFAULT_LIMIT);
        assert_eq!(limit_of(&config, Some("^vm_network::")), VM_NETWORK_LIMIT);
        assert_eq!(limit_of(&config, Some("^cleanup::")), CLEANUP_LIMIT);
        assert_eq!(limit_of(&config, Some("^isolation::")), CLEANUP_LIMIT);
        assert_eq!(limit_of(&config, Some("^scale::")), SCALE_LIMIT);
        assert_eq!(limit_of(&config, Some("^subversion::")), SUBVERSION_LIMIT);
        assert_eq!(limit_for("vm_network::web"), VM_NETWORK_LIMIT);
        assert_eq!(
            limit_for("exactness::system_gcc_c_matches_gcov"),
            DEFAULT_LIMIT
        );
        assert!(
            config["profile"].get("ci").is_none(),
            ".ci/run uses the default profile: a [profile.ci] would be dead configuration"
        );
    }
}
