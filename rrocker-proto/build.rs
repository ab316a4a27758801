//! Compiles `proto/rrocker.proto` with protox (pure Rust) so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/rrocker.proto");
    let descriptors = protox::compile(["rrocker.proto"], ["proto"])?;
    tonic_prost_build::configure().bytes(".rrocker.v1.Output.data").compile_fds(descriptors)?;
    Ok(())
}
