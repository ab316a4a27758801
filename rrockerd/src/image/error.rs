//! What can go wrong with base images: a name that is not one, an image that is not there, a
//! file of the image store that cannot be used.

use crate::io_context::IoError;

/// An image failure.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The name is not one an image may have, or no image has it, or what an import was given
    /// is not an image.
    #[error("{0}")]
    Invalid(String),
    /// A file or directory of the image store could not be used.
    #[error(transparent)]
    Io(#[from] IoError),
}
