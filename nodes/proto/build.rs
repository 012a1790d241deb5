//! Compiles `proto/relais/v1` into Rust, plus a file descriptor set that the
//! node serves through gRPC reflection, and the nodes' internal
//! `proto/relais/peer/v1`, which reflection does not serve.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let public =
        ["common", "gateway", "informant", "admin", "locator"].map(|name| root.join(format!("relais/v1/{name}.proto")));
    let peer = [root.join("relais/peer/v1/peer.proto")];
    // The .proto files live outside this package, where cargo does not look
    // for changes by itself.
    for file in public.iter().chain(&peer) {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("relais_v1_descriptor.bin"))
        .compile_protos(&public, std::slice::from_ref(&root))?;
    // A call of its own, so the public descriptor set stays the public API
    // alone.
    tonic_prost_build::configure().compile_protos(&peer, &[root])?;
    Ok(())
}
