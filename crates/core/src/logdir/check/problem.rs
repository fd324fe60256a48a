//! What a check found: a [`Problem`] in a file, with its [`Severity`].

use std::path::{Path, PathBuf};

use serde::Serialize;

use segvault_format::FormatError;

/// How bad a problem is. Exit code 1 for `Corrupt` and `Partial`, 0 for `Note`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Information; no action needed.
    Note,
    /// An incomplete write at the end of a closed segment (recovery would truncate it).
    Partial,
    /// Data a broker would reject, truncate or serve wrongly.
    Corrupt,
}

impl Severity {
    /// True for severities that make the exit code 1.
    pub fn is_failure(self) -> bool {
        self != Severity::Note
    }
}

/// Serializes a path as text, replacing bytes that are not UTF-8 (serde's own `Path`
/// serializer fails on them, and a file name must never stop a report).
pub(crate) fn lossy_path<S: serde::Serializer>(
    p: &std::path::Path,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

/// A finding about a file, with where it is and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file.
    #[serde(serialize_with = "lossy_path")]
    pub file: PathBuf,
    /// Byte position in that file, when it applies.
    pub position: Option<u64>,
    /// Kafka offset involved, when known.
    pub offset: Option<i64>,
    /// Severity.
    pub severity: Severity,
    /// Machine-readable kind (e.g. `crc`, `partial_tail`, `index_mismatch`).
    pub kind: &'static str,
    /// What was expected and what was found.
    pub message: String,
}

impl Problem {
    /// A problem with a file, at no particular byte or offset (see [`Problem::at`]).
    pub(crate) fn new(
        file: &Path,
        severity: Severity,
        kind: &'static str,
        message: String,
    ) -> Problem {
        Problem {
            file: file.to_path_buf(),
            position: None,
            offset: None,
            severity,
            kind,
            message,
        }
    }
    pub(super) fn at(mut self, position: Option<u64>, offset: Option<i64>) -> Problem {
        self.position = position;
        self.offset = offset;
        self
    }
    /// From a format error: kind, position and offset come from the error.
    pub(crate) fn from_format(file: &Path, severity: Severity, e: &FormatError) -> Problem {
        Problem::new(file, severity, e.kind.code(), e.to_string()).at(Some(e.position()), e.offset)
    }
}

impl Problem {
    pub(super) fn with_kind(mut self, kind: &'static str) -> Problem {
        self.kind = kind;
        self
    }
}
