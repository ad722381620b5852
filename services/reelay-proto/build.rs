//! Generates the Rust code for `proto/reelay/v1` and a file descriptor set for gRPC reflection.
//!
//! protoc comes from the `PROTOC` environment variable when set, else from `protoc-bin-vendored`,
//! so `cargo build` works on a machine with no protoc installed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "artifact.proto",
        "job.proto",
        "node.proto",
        "pipeline.proto",
        "worker.proto",
    ]
    .map(|name| proto_root.join("reelay/v1").join(name));
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    println!("cargo:rerun-if-env-changed=PROTOC");

    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let well_known_types = protoc_bin_vendored::include_path()?;
    let descriptor_path = PathBuf::from(std::env::var("OUT_DIR")?).join("reelay_descriptor.bin");

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    // File bytes as `bytes::Bytes`: decoded without a copy, sliced without one.
    tonic_prost_build::configure()
        .bytes(".reelay.v1.DataChunk.data")
        .bytes(".reelay.v1.PutPartRequest.data")
        .bytes(".reelay.v1.UploadInputRequest.data")
        .codec_path("crate::codec::Codec")
        .file_descriptor_set_path(&descriptor_path)
        .compile_with_config(config, &files, &[proto_root, well_known_types])?;
    Ok(())
}
