//! Compiles every contract in `proto/` in pure Rust (protox), so the build needs no
//! system `protoc`, and writes the descriptor set that server reflection serves.

use std::path::PathBuf;

use prost::Message;

const PROTO_FILES: &[&str] = &[
    "banktransfer/money/v1/money.proto",
    "banktransfer/reservation/v1/reservation.proto",
    "banktransfer/gateway/v1/gateway.proto",
    "banktransfer/external/v1/external.proto",
    "banktransfer/balance_store/v1/balance_store.proto",
    "banktransfer/reconciler/v1/reconciler.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let files: Vec<PathBuf> = PROTO_FILES.iter().map(|f| root.join(f)).collect();
    let descriptors = protox::compile(&files, [&root])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("banktransfer_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // prost's codec, except that an undecodable body is INVALID_ARGUMENT (src/codec.rs).
        .codec_path("crate::codec::ProtobufCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
