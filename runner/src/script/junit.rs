//! JUnit XML output of a test run: one `<testsuite>` per spec, one
//! `<testcase>` per subtest plus one for the script as a whole, so CI
//! systems show which part of a network test failed.

use std::io::{self, Write};
use std::time::Duration;

/// How one test case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It passed.
    Passed,
    /// An assertion in it failed (a step's command, a wait).
    Failed {
        /// One-line summary.
        message: String,
        /// Full report (command output, console lines, script position).
        detail: String,
    },
    /// It could not run (a machine did not boot, the channel broke).
    Error {
        /// One-line summary.
        message: String,
        /// Full report.
        detail: String,
    },
}

/// One test case: a subtest or the whole script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCase {
    /// Its name (the subtest name, or `script`).
    pub name: String,
    /// Time it took.
    pub elapsed: Duration,
    /// How it ended.
    pub outcome: Outcome,
    /// What it printed, kept as `<system-out>`.
    pub output: String,
}

/// A test suite: the test cases of one spec's run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestSuite {
    /// Suite name (the spec's file stem).
    pub name: String,
    /// Test cases in the order they ran.
    pub cases: Vec<TestCase>,
    /// Wall time of the whole suite (zero: the sum of the cases).
    pub elapsed: Duration,
}

impl TestSuite {
    /// Number of failed cases.
    pub fn failures(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed { .. }))
            .count()
    }

    /// Number of errored cases.
    pub fn errors(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Error { .. }))
            .count()
    }

    /// Wall time of the suite: its own, or the sum of its cases.
    fn total(&self) -> Duration {
        if self.elapsed.is_zero() {
            self.cases.iter().map(|c| c.elapsed).sum()
        } else {
            self.elapsed
        }
    }

    /// Writes the suite as a JUnit XML document.
    pub fn write_xml<W: Write>(&self, out: W) -> io::Result<()> {
        write_xml(std::slice::from_ref(self), out)
    }

    fn write_suite<W: Write>(&self, out: &mut W) -> io::Result<()> {
        let total = self.total();
        writeln!(
            out,
            r#"  <testsuite name="{}" tests="{}" failures="{}" errors="{}" skipped="0" time="{:.3}">"#,
            Escaped(&self.name),
            self.cases.len(),
            self.failures(),
            self.errors(),
            total.as_secs_f64()
        )?;
        for case in &self.cases {
            write!(
                out,
                r#"    <testcase name="{}" classname="{}" time="{:.3}""#,
                Escaped(&case.name),
                Escaped(&self.name),
                case.elapsed.as_secs_f64()
            )?;
            if case.outcome == Outcome::Passed && case.output.is_empty() {
                writeln!(out, "/>")?;
                continue;
            }
            writeln!(out, ">")?;
            match &case.outcome {
                Outcome::Passed => {}
                Outcome::Failed { message, detail } => writeln!(
                    out,
                    r#"      <failure message="{}" type="StepFailed">{}</failure>"#,
                    Escaped(message),
                    Escaped(detail)
                )?,
                Outcome::Error { message, detail } => writeln!(
                    out,
                    r#"      <error message="{}" type="InfrastructureError">{}</error>"#,
                    Escaped(message),
                    Escaped(detail)
                )?,
            }
            if !case.output.is_empty() {
                writeln!(
                    out,
                    "      <system-out>{}</system-out>",
                    Escaped(&case.output)
                )?;
            }
            writeln!(out, "    </testcase>")?;
        }
        writeln!(out, "  </testsuite>")
    }
}

/// Writes `suites` (one per spec of a suite of specs) as one JUnit XML
/// document, totals in `<testsuites>`.
pub fn write_xml<W: Write>(suites: &[TestSuite], mut out: W) -> io::Result<()> {
    let tests: usize = suites.iter().map(|s| s.cases.len()).sum();
    let failures: usize = suites.iter().map(TestSuite::failures).sum();
    let errors: usize = suites.iter().map(TestSuite::errors).sum();
    let time: Duration = suites.iter().map(TestSuite::total).sum();
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuites name="covnet" tests="{tests}" failures="{failures}" errors="{errors}" time="{:.3}">"#,
        time.as_secs_f64()
    )?;
    for s in suites {
        s.write_suite(&mut out)?;
    }
    writeln!(out, "</testsuites>")?;
    out.flush()
}

/// Text escaped for XML attribute values and character data; characters
/// XML 1.0 cannot carry at all (most C0 controls) become `?`.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&apos;")?,
                '\n' => f.write_str("&#10;")?,
                '\t' | '\r' => write!(f, "&#{};", c as u32)?,
                c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                    f.write_char('?')?
                }
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_counts_and_escapes() {
        let suite = TestSuite {
            name: "httpd".into(),
            elapsed: Duration::ZERO,
            cases: vec![
                TestCase {
                    name: "fetch <page>".into(),
                    elapsed: Duration::from_millis(1250),
                    outcome: Outcome::Passed,
                    output: String::new(),
                },
                TestCase {
                    name: "block".into(),
                    elapsed: Duration::from_millis(500),
                    outcome: Outcome::Failed {
                        message: "command `wget \"x\"` exited 1".into(),
                        detail: "a & b\u{1}".into(),
                    },
                    output: "printed".into(),
                },
                TestCase {
                    name: "script".into(),
                    elapsed: Duration::ZERO,
                    outcome: Outcome::Error {
                        message: "boot".into(),
                        detail: String::new(),
                    },
                    output: String::new(),
                },
            ],
        };
        let mut buf = Vec::new();
        suite.write_xml(&mut buf).expect("write");
        let xml = String::from_utf8(buf).expect("utf-8");
        assert!(
            xml.contains(r#"<testsuite name="httpd" tests="3" failures="1" errors="1""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testcase name="fetch &lt;page&gt;" classname="httpd" time="1.250"/>"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"message="command `wget &quot;x&quot;` exited 1""#),
            "{xml}"
        );
        assert!(xml.contains(">a &amp; b?</failure>"), "{xml}");
        assert!(xml.contains("<system-out>printed</system-out>"), "{xml}");
        assert!(xml.contains(r#"<error message="boot""#), "{xml}");
    }
}
