//! Base images: the default one built from the host's binaries ([`build`]), named ones
//! imported from archives ([`import`]), and the views of them each uid slice's tasks see
//! ([`registry`]): idmapped mounts ([`idmap`]), or shifted copies where those cannot be made.

pub mod build;
pub mod error;
pub mod idmap;
pub mod import;
pub mod registry;

pub use self::error::ImageError;
