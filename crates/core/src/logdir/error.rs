//! The error of the log directory layer: listing a log dir ([`scan`](super::scan)) or
//! reading a file to check it ([`check`](super::check)). Every variant names the path.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use segvault_format::FormatError;

/// An error of the log directory layer: names the path and what was expected there.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file system operation failed.
    #[error("{}: {}", path.display(), self.detail())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// What we were doing / expecting.
        expected: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The path exists but is not what it must be.
    #[error("{}: {}", path.display(), self.detail())]
    NotALogDir {
        /// The path.
        path: PathBuf,
        /// What was expected and found.
        message: &'static str,
    },
    /// A small file under a fixed name is not what the broker writes there (not a regular
    /// file, or too large to be one).
    #[error("{}: {}", path.display(), self.detail())]
    Unexpected {
        /// The file.
        path: PathBuf,
        /// What was expected and found.
        #[source]
        source: io::Error,
    },
    /// A small metadata file does not parse.
    #[error("{}: {}", path.display(), self.detail())]
    Format {
        /// The file.
        path: PathBuf,
        /// The parser's error (position and expectation).
        #[source]
        source: FormatError,
    },
    /// A file to check cannot be opened and mapped (`NotFound`: it vanished, e.g. renamed by
    /// the broker's retention or log cleaner after it was listed).
    #[error("{}: {}", path.display(), self.detail())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file was truncated while it was checked: what was checked was not the file.
    #[error("{}: {}", path.display(), self.detail())]
    Changed {
        /// The file.
        path: PathBuf,
        /// What the mapping found.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The file or directory the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Error::Io { path, .. }
            | Error::NotALogDir { path, .. }
            | Error::Unexpected { path, .. }
            | Error::Format { path, .. }
            | Error::Unreadable { path, .. }
            | Error::Changed { path, .. } => path,
        }
    }

    /// What went wrong, without the path (the error's text is `<path>: <detail>`).
    pub fn detail(&self) -> impl fmt::Display + '_ {
        Detail(self)
    }

    /// The file to check does not exist (any more): on a live broker, retention or the log
    /// cleaner renamed it after it was listed.
    pub(crate) fn vanished(&self) -> bool {
        matches!(self, Error::Unreadable { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// [`Error::detail`].
struct Detail<'a>(&'a Error);

impl fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Error::Io {
                expected, source, ..
            } => write!(f, "{expected}: {source}"),
            Error::NotALogDir { message, .. } => f.write_str(message),
            Error::Unexpected { source, .. } | Error::Changed { source, .. } => {
                write!(f, "{source}")
            }
            Error::Format { source, .. } => write!(f, "{source}"),
            Error::Unreadable { source, .. } => write!(f, "cannot read: {source}"),
        }
    }
}

/// Result alias of this layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps an I/O error on `path` to [`Error::Io`], saying what was expected.
pub(crate) fn io_err<'a>(
    path: &'a Path,
    expected: &'static str,
) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        path: path.to_path_buf(),
        expected,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_path_then_detail_and_sources_are_kept() {
        let e = Error::Unreadable {
            path: "/d/x.log".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert_eq!(e.to_string(), format!("/d/x.log: {}", e.detail()));
        assert!(e.detail().to_string().starts_with("cannot read: "));
        assert!(e.vanished());
        assert!(std::error::Error::source(&e).is_some());
        let e = io_err(Path::new("/d"), "a readable directory")(io::Error::other("boom"));
        assert_eq!(e.to_string(), "/d: a readable directory: boom");
        assert!(!e.vanished());
        let e = Error::NotALogDir {
            path: "/d".into(),
            message: "expected a broker log directory, found a file",
        };
        assert_eq!(
            e.to_string(),
            "/d: expected a broker log directory, found a file"
        );
        assert!(std::error::Error::source(&e).is_none());
    }
}
