//! SonarQube's generic test coverage XML (`sonar.coverageReportPaths`),
//! as its `sonar-generic-coverage.xsd` describes it:
//!
//! ```xml
//! <coverage version="1">
//!   <file path="/src/a.c">
//!     <lineToCover lineNumber="3" covered="true"/>
//!     <lineToCover lineNumber="4" covered="false" branchesToCover="2" coveredBranches="1"/>
//!   </file>
//! </coverage>
//! ```
//!
//! One `file` per source file, with the path as the model holds it
//! (SonarQube takes absolute paths or paths relative to the project's
//! base directory); one `lineToCover` per instrumented line, with the
//! branch counts where gcov listed branches. The format has no functions.

use std::io::{self, Write};
use std::path::Path;

use covnet_merger::model::Coverage;

use crate::cobertura::escape;
use crate::Error;

/// Writes the generic coverage document for `cov` to `out`.
pub fn write(cov: &Coverage, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(out, r#"<coverage version="1">"#)?;
    for (path, file) in &cov.files {
        writeln!(out, r#"<file path="{}">"#, escape(path))?;
        // The schema's lineNumber is a positiveInteger: line 0 (a
        // function without a real line) has no place in it.
        for (no, line) in file.lines.range(1..) {
            let covered = line.count > 0;
            if line.branches.is_empty() {
                writeln!(
                    out,
                    r#"<lineToCover lineNumber="{no}" covered="{covered}"/>"#
                )?;
                continue;
            }
            let taken = line
                .branches
                .iter()
                .filter(|b| b.taken.is_some_and(|t| t > 0))
                .count();
            writeln!(
                out,
                r#"<lineToCover lineNumber="{no}" covered="{covered}" branchesToCover="{}" coveredBranches="{taken}"/>"#,
                line.branches.len()
            )?;
        }
        writeln!(out, "</file>")?;
    }
    writeln!(out, "</coverage>")
}

/// Writes the generic coverage document for `cov` to the file `path`.
pub fn write_path(cov: &Coverage, path: &Path) -> Result<(), Error> {
    crate::output::write_file(path, |w| write(cov, w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    #[test]
    fn lines_and_branches_add_up_to_the_model() {
        let cov = sample::coverage();
        let mut out = Vec::new();
        write(&cov, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let s = cov.summary();
        let count = |needle: &str| text.matches(needle).count() as u64;
        assert_eq!(count("<lineToCover "), s.lines_found);
        assert_eq!(count(r#"covered="true""#), s.lines_hit);
        let sum = |attr: &str| -> u64 {
            text.split(&format!(r#"{attr}=""#))
                .skip(1)
                .map(|rest| rest.split('"').next().unwrap().parse::<u64>().unwrap())
                .sum()
        };
        assert_eq!(sum("branchesToCover"), s.branches_found);
        assert_eq!(sum("coveredBranches"), s.branches_hit);
        assert_eq!(count("<file "), cov.files.len() as u64);
        assert!(text.starts_with("<?xml") && text.ends_with("</coverage>\n"));
    }
}
