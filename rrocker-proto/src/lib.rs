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

/// gRPC's framing of a message on the wire, for the code that writes or reads a call's body
/// without tonic's codec (the Stream response, both ends): a compression flag byte and the
/// message's length (big-endian u32), then the message.
pub mod frame {
    use prost::bytes::BufMut;

    /// Bytes of a message's prefix.
    pub const PREFIX: usize = 5;

    /// The prefix of an uncompressed message of `length` bytes.
    pub fn prefix(length: usize) -> [u8; PREFIX] {
        let length = u32::try_from(length).expect("a gRPC message is below 4 GiB");
        let [a, b, c, d] = length.to_be_bytes();
        [0, a, b, c, d]
    }

    /// Appends `message` to `out`, framed (uncompressed).
    pub fn encode(message: &impl prost::Message, out: &mut impl BufMut) {
        let length = message.encoded_len();
        out.put_slice(&prefix(length));
        message.encode_raw(out);
    }

    /// Whether the message a prefix starts is compressed, and its length; `None` if `bytes`
    /// is shorter than a prefix.
    pub fn parse(bytes: &[u8]) -> Option<(bool, usize)> {
        let [flag, a, b, c, d, ..] = *bytes else { return None };
        Some((flag != 0, u32::from_be_bytes([a, b, c, d]) as usize))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_framed_message_parses_back_to_its_length() {
            let message = String::from("hello");
            let mut out = Vec::new();
            encode(&message, &mut out);
            assert_eq!(out[..PREFIX], [0, 0, 0, 0, 7]);
            assert_eq!(parse(&out), Some((false, 7)));
            assert_eq!(parse(&[1, 0, 1, 0, 0]), Some((true, 65536)));
            assert_eq!(parse(&out[..4]), None);
        }
    }
}
