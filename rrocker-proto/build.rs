//! Compiles `proto/rrocker.proto` with protox (pure Rust) so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/rrocker.proto");
    let descriptors = protox::compile(["rrocker.proto"], ["proto"])?;
    // The encoded descriptors too, for the daemon's server reflection.
    let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").ok_or("no OUT_DIR")?);
    std::fs::write(
        out_dir.join("rrocker_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    // Output and stdin as `Bytes`: slices of the buffers they were decoded from, not copies.
    tonic_prost_build::configure()
        .bytes(".rrocker.v1.Output.data")
        .bytes(".rrocker.v1.InteractRequest.stdin")
        .compile_fds(descriptors)?;
    Ok(())
}
