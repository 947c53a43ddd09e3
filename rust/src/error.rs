//! The one error type of the core. The bindings map each variant onto a Python exception
//! under `rtrec.errors.RtrecError`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Input that cannot be used as given. `field` names what was wrong.
    InvalidInput { field: String, reason: String },
    /// A serialised blob that is damaged or was not written by this code.
    Corrupt(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidInput { field, reason } => write!(f, "invalid {field}: {reason}"),
            Error::Corrupt(reason) => write!(f, "corrupt data: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
