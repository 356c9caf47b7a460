//! The crate's error type. Untrusted input never panics: every failure is one of these.

use std::fmt;

/// Errors of ddpm-codec. New variants may be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a valid ddpm-codec stream (bad magic, bad field, checksum, ...).
    #[error("invalid bitstream: {0}")]
    Format(String),
    /// A caller-supplied parameter is out of range or inconsistent.
    #[error("invalid parameter: {0}")]
    Parameter(String),
    /// Input asks for more than the configured limits allow (size, steps, memory).
    #[error("limit exceeded: {0}")]
    LimitsExceeded(String),
    /// The stream was made with another model than the one loaded.
    #[error("model mismatch: {0}")]
    ModelMismatch(String),
    /// A checksum did not match: wrong platform, wrong model or corrupted data.
    #[error("checksum mismatch: {0}")]
    Checksum(String),
    /// Image decoding or encoding failed (unsupported or corrupt image).
    #[error("image error: {0}")]
    Image(String),
    /// The neural network failed (candle error).
    #[error("model error: {0}")]
    Model(String),
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Model(e.to_string())
    }
}

impl From<image::ImageError> for Error {
    fn from(e: image::ImageError) -> Self {
        Error::Image(e.to_string())
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Helper to build a [`Error::Format`] from anything displayable.
pub fn format_err(msg: impl fmt::Display) -> Error {
    Error::Format(msg.to_string())
}
