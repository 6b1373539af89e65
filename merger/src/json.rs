//! The coverage model as JSON (`covnet merge --json`), for other tools and
//! for reading back into covnet.
//!
//! The document is `{"covnet_coverage": 1, "coverage": <Coverage>}`: a
//! version tag, then the model exactly as [`crate::model`] defines it.
//!
//! ```
//! use covnet_merger::{json, model::Coverage};
//! let cov = Coverage::default();
//! let text = json::to_string(&cov).unwrap();
//! assert_eq!(json::from_slice(text.as_bytes()).unwrap(), cov);
//! ```

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::model::Coverage;

/// The format version this module writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Reading or writing the JSON form failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// Malformed JSON or a document that is not a covnet coverage.
    #[error("not a covnet coverage JSON document")]
    Syntax(#[source] serde_json::Error),
    /// A document of another format version.
    #[error(
        "covnet coverage JSON version {0} is not supported (this covnet reads {FORMAT_VERSION})"
    )]
    Version(u32),
    /// Writing failed.
    #[error("failed to write JSON")]
    Write(#[source] serde_json::Error),
}

#[derive(Serialize)]
struct DocRef<'a> {
    covnet_coverage: u32,
    coverage: &'a Coverage,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[serde(rename = "covnet_coverage")]
    _version: u32,
    coverage: Coverage,
}

/// Writes `cov` as a compact JSON document to `out`.
pub fn write<W: Write>(cov: &Coverage, out: W) -> Result<(), JsonError> {
    let doc = DocRef {
        covnet_coverage: FORMAT_VERSION,
        coverage: cov,
    };
    serde_json::to_writer(out, &doc).map_err(JsonError::Write)
}

/// `cov` as a JSON string.
pub fn to_string(cov: &Coverage) -> Result<String, JsonError> {
    let mut out = Vec::new();
    write(cov, &mut out)?;
    String::from_utf8(out).map_err(|e| {
        JsonError::Write(serde::ser::Error::custom(format!(
            "serde_json produced invalid UTF-8: {e}"
        )))
    })
}

/// Reads a coverage document from a byte slice.
pub fn from_slice(bytes: &[u8]) -> Result<Coverage, JsonError> {
    // Check the version first so an old/new document gets a precise error.
    #[derive(Deserialize)]
    struct Version {
        covnet_coverage: u32,
    }
    let v: Version = serde_json::from_slice(bytes).map_err(JsonError::Syntax)?;
    if v.covnet_coverage != FORMAT_VERSION {
        return Err(JsonError::Version(v.covnet_coverage));
    }
    let doc: Doc = serde_json::from_slice(bytes).map_err(JsonError::Syntax)?;
    Ok(doc.coverage)
}

/// Reads a coverage document from a reader.
pub fn read<R: Read>(mut input: R) -> Result<Coverage, JsonError> {
    let mut bytes = Vec::new();
    input
        .read_to_end(&mut bytes)
        .map_err(|e| JsonError::Syntax(serde_json::Error::io(e)))?;
    from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Branch, FileCoverage, FunctionCoverage, LineCoverage};

    fn sample() -> Coverage {
        let mut file = FileCoverage::default();
        file.lines.insert(
            4,
            LineCoverage {
                count: -3,
                by_capture: vec![1, -4],
                unexecuted_block: true,
                branches: vec![Branch {
                    block: 0,
                    branch: 1,
                    taken: None,
                    throw: true,
                    fallthrough: false,
                    by_capture: vec![None, Some(0)],
                }],
            },
        );
        file.functions.push(FunctionCoverage {
            name: "_ZN1A1fEv".into(),
            demangled: "A::f()".into(),
            start_line: 3,
            start_column: 5,
            end_line: 9,
            end_column: 1,
            count: 7,
            blocks: 4,
            blocks_executed: 3,
            by_capture: vec![3, 4],
        });
        let mut cov = Coverage {
            captures: vec!["m1".into(), "m 2".into()],
            ..Default::default()
        };
        cov.files.insert("/src/a.cc".into(), file);
        cov
    }

    #[test]
    fn round_trip() {
        let cov = sample();
        let text = to_string(&cov).expect("serialize");
        assert!(text.starts_with("{\"covnet_coverage\":1,"), "{text}");
        assert_eq!(from_slice(text.as_bytes()).expect("parse"), cov);
        assert_eq!(read(text.as_bytes()).expect("parse"), cov);
    }

    #[test]
    fn rejects_other_documents() {
        assert!(matches!(from_slice(b"[1,2]"), Err(JsonError::Syntax(_))));
        assert!(matches!(
            from_slice(b"{\"covnet_coverage\":9,\"coverage\":{}}"),
            Err(JsonError::Version(9))
        ));
        let err = from_slice(b"{\"covnet_coverage\":1,\"coverage\":{\"files\":{},\"x\":1}}")
            .expect_err("unknown field");
        assert!(matches!(err, JsonError::Syntax(_)));
    }
}
