//! The spec as written: serde types that mirror the TOML, with spans for
//! error locations. [`super::validate`] turns them into the model.

use std::collections::BTreeMap;
use std::fmt;
use std::num::{NonZeroU16, NonZeroU32, NonZeroU8};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{coverage, Accel, Backend};

pub(super) type Span = Range<usize>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpec {
    #[serde(default)]
    pub(super) defaults: RawDefaults,
    pub(super) machines: Option<Spanned<BTreeMap<Spanned<String>, RawMachine>>>,
    pub(super) test: Option<Spanned<RawTest>>,
    #[serde(default)]
    pub(super) coverage: coverage::RawCoverage,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub(super) accel: Option<Accel>,
    pub(super) memory_mib: Option<NonZeroU32>,
    pub(super) cpus: Option<NonZeroU8>,
    pub(super) kernel: Option<Spanned<PathBuf>>,
    pub(super) boot_timeout: Option<Spanned<String>>,
    pub(super) command_timeout: Option<Spanned<humantime_serde::Serde<Duration>>>,
    pub(super) backend: Option<Backend>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMachine {
    pub(super) backend: Option<Backend>,
    pub(super) memory_mib: Option<NonZeroU32>,
    pub(super) cpus: Option<NonZeroU8>,
    pub(super) kernel: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub(super) kernel_params: Vec<Spanned<String>>,
    pub(super) accel: Option<Accel>,
    #[serde(default)]
    pub(super) programs: Vec<Spanned<PathBuf>>,
    pub(super) vlans: Option<Spanned<Vec<Spanned<i64>>>>,
    #[serde(default)]
    pub(super) forward: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) files: Vec<Spanned<RawFile>>,
    #[serde(default)]
    pub(super) services: Vec<Spanned<RawService>>,
    pub(super) link: Option<Spanned<RawLink>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLink {
    pub(super) loss: Option<Spanned<f64>>,
    pub(super) delay: Option<Spanned<String>>,
    pub(super) jitter: Option<Spanned<String>>,
    pub(super) rate: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) source: Option<Spanned<PathBuf>>,
    pub(super) content: Option<String>,
    pub(super) target: Spanned<String>,
    pub(super) mode: Option<Spanned<RawMode>>,
}

/// A mode as written: `"0644"` (octal text) or `0o644` (a TOML integer).
pub(super) enum RawMode {
    Text(String),
    Int(i64),
}

impl<'de> Deserialize<'de> for RawMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an octal mode like \"0644\" or 0o644")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawMode, E> {
                Ok(RawMode::Text(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawMode, E> {
                Ok(RawMode::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawMode, E> {
                Ok(RawMode::Int(i64::try_from(v).unwrap_or(i64::MAX)))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) name: Spanned<String>,
    pub(super) command: String,
    #[serde(default)]
    pub(super) env: BTreeMap<Spanned<String>, String>,
    pub(super) ready: Option<Spanned<RawReady>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReady {
    pub(super) port: Option<NonZeroU16>,
    pub(super) file: Option<String>,
    pub(super) command: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTest {
    pub(super) script: Option<String>,
    pub(super) script_file: Option<Spanned<PathBuf>>,
    pub(super) language: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<humantime_serde::Serde<Duration>>>,
}
