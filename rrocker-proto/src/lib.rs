//! The rrocker gRPC API, package `rrocker.v1`, generated from `proto/rrocker.proto` at build
//! time with protox (no system `protoc` needed). The `.proto` file is the API documentation.

#![allow(missing_debug_implementations, clippy::all, clippy::pedantic)]

/// Messages and the `TaskService` client and server of `rrocker.v1`.
pub mod v1 {
    tonic::include_proto!("rrocker.v1");

    /// The encoded `FileDescriptorSet` of `rrocker.proto`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/rrocker_descriptor.bin"));
}
