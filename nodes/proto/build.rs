//! Compiles `proto/relais/v1` into Rust, plus a file descriptor set that the
//! node serves through gRPC reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["common", "gateway", "informant", "admin"].map(|name| root.join(format!("relais/v1/{name}.proto")));
    // The .proto files live outside this package, where cargo does not look
    // for changes by itself.
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("relais_v1_descriptor.bin"))
        .compile_protos(&files, &[root])?;
    Ok(())
}
