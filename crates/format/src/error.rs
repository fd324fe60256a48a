//! The one error type of the format layer.
//!
//! Every problem says what was expected, where (byte position in the file, or in the
//! decompressed stream of a batch), and, when known, which Kafka offset was involved.
//! Callers add the file name. Parsers never panic; anything that does not match the format
//! becomes a [`FormatError`].

use std::fmt;

/// What kind of problem was found. Lets callers tell a partial trailing batch (which a
/// broker's recovery silently truncates) from real corruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input ended before a structure did. For a segment's last batch this is the
    /// "partial tail" that recovery truncates; elsewhere it is corruption.
    Truncated,
    /// A stored checksum does not match the bytes it covers.
    Crc,
    /// A length, count or size field is impossible (negative, below the minimum, larger
    /// than what contains it, or the contents were not consumed exactly).
    BadLength,
    /// A magic byte or version this code does not know.
    BadVersion,
    /// Any other field whose value is invalid.
    BadValue,
    /// A compressed section could not be decompressed.
    Decompress,
    /// A limit set to bound memory use (decompressed size, record size) was exceeded.
    Limit,
    /// Text files: a line or property does not follow the format.
    Syntax,
}

impl ErrorKind {
    /// The kind's stable machine name, as `inspect` and `verify` print it in JSON
    /// (`"kind": "bad_length"`).
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Truncated => "truncated",
            ErrorKind::Crc => "crc",
            ErrorKind::BadLength => "bad_length",
            ErrorKind::BadVersion => "bad_version",
            ErrorKind::BadValue => "bad_value",
            ErrorKind::Decompress => "decompress",
            ErrorKind::Limit => "limit",
            ErrorKind::Syntax => "syntax",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Truncated => "truncated",
            ErrorKind::Crc => "checksum mismatch",
            ErrorKind::BadLength => "bad length",
            ErrorKind::BadVersion => "unknown version",
            ErrorKind::BadValue => "bad value",
            ErrorKind::Decompress => "decompression failed",
            ErrorKind::Limit => "limit exceeded",
            ErrorKind::Syntax => "syntax error",
        })
    }
}

/// Where a position points: into the file itself, or into the decompressed records of the
/// batch (or legacy wrapper) that starts at `batch_position` in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Location {
    /// Byte position in the file (or in the slice handed to the parser).
    File(u64),
    /// Byte position inside the decompressed records of a compressed batch.
    Decompressed {
        /// File position of the batch or wrapper message.
        batch_position: u64,
        /// Position within the decompressed stream.
        position: u64,
    },
}

impl Location {
    /// The file position: the position itself, or the start of the compressed batch.
    pub fn file_position(&self) -> u64 {
        match *self {
            Location::File(p) => p,
            Location::Decompressed { batch_position, .. } => batch_position,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(p) => write!(f, "byte {p}"),
            Location::Decompressed {
                batch_position,
                position,
            } => write!(
                f,
                "byte {position} of the decompressed records of the batch at byte {batch_position}"
            ),
        }
    }
}

/// A problem found while parsing or verifying an on-disk structure.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FormatError {
    /// Category, e.g. to tell a partial tail from corruption.
    pub kind: ErrorKind,
    /// What the format requires at this place (human readable).
    pub expected: String,
    /// What was found instead, when that adds information.
    pub found: Option<String>,
    /// Where.
    pub location: Location,
    /// The Kafka offset of the batch or record involved, when known.
    pub offset: Option<i64>,
}

impl std::error::Error for FormatError {}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.kind, self.location)?;
        if let Some(o) = self.offset {
            write!(f, " (offset {o})")?;
        }
        write!(f, ": expected {}", self.expected)?;
        if let Some(found) = &self.found {
            write!(f, ", found {found}")?;
        }
        Ok(())
    }
}

impl FormatError {
    /// A new error at a file position.
    pub fn new(kind: ErrorKind, position: u64, expected: impl Into<String>) -> Self {
        FormatError {
            kind,
            expected: expected.into(),
            found: None,
            location: Location::File(position),
            offset: None,
        }
    }

    /// Adds what was found.
    pub fn found(mut self, found: impl fmt::Display) -> Self {
        self.found = Some(found.to_string());
        self
    }

    /// Adds the Kafka offset, unless one is already set (the innermost is the most precise).
    pub fn at_offset(mut self, offset: i64) -> Self {
        if self.offset.is_none() {
            self.offset = Some(offset);
        }
        self
    }

    /// Shifts a file position by `base` (used when a parser ran on a sub-slice).
    pub fn shifted(mut self, base: u64) -> Self {
        match &mut self.location {
            Location::File(p) => *p = p.saturating_add(base),
            Location::Decompressed { batch_position, .. } => {
                *batch_position = batch_position.saturating_add(base)
            }
        }
        self
    }

    /// Reinterprets a position measured inside a decompressed stream.
    pub(crate) fn in_decompressed(mut self, batch_position: u64, stream_base: u64) -> Self {
        if let Location::File(p) = self.location {
            self.location = Location::Decompressed {
                batch_position,
                position: p.saturating_add(stream_base),
            };
        }
        self
    }

    /// The byte position in the file.
    pub fn position(&self) -> u64 {
        self.location.file_position()
    }

    /// True for [`ErrorKind::Truncated`].
    pub fn is_truncated(&self) -> bool {
        self.kind == ErrorKind::Truncated
    }
}

/// Result alias of the format layer.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;
