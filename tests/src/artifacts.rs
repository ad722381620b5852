//! The artifact store from a test's side: files uploaded over gRPC (as any client would), jobs that
//! name them, and what the coordinator's local store holds on disk.

use std::path::{Path, PathBuf};

use reelay_proto::v1;
use sha2::{Digest, Sha256};

use crate::TestCluster;

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The upload id the CLI and the web UI derive for a file: a UUID v8 of
/// `SHA-256("reelay-upload\n{name}\n{size}\n{sha256}")`, computed here independently.
pub fn derived_upload_id(name: &str, data: &[u8]) -> String {
    let text = format!(
        "reelay-upload\n{name}\n{}\n{}",
        data.len(),
        sha256_hex(data)
    );
    let mut bytes = Sha256::digest(text.as_bytes())[..16].to_vec();
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// `size` bytes that differ from file to file (`seed`) and do not compress.
pub fn random_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut data = Vec::with_capacity(size);
    while data.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(size);
    data
}

/// The UploadInput messages of `data`: the header (with `id` and `offset` for a resume), then
/// 1 MiB chunks of the bytes from `offset`.
pub fn upload_messages(
    name: &str,
    data: &[u8],
    id: &str,
    offset: u64,
) -> Vec<v1::UploadInputRequest> {
    let header = v1::UploadHeader {
        name: name.to_owned(),
        size: data.len() as u64,
        sha256: sha256_hex(data),
        id: id.to_owned(),
        offset,
    };
    let mut messages = vec![v1::UploadInputRequest {
        part: Some(v1::upload_input_request::Part::Header(header)),
    }];
    messages.extend(
        data[offset as usize..]
            .chunks(1 << 20)
            .map(|chunk| v1::UploadInputRequest {
                part: Some(v1::upload_input_request::Part::Data(chunk.to_vec().into())),
            }),
    );
    messages
}

/// Uploads `data` as `name` and returns the complete upload.
pub async fn upload(cluster: &TestCluster, name: &str, data: &[u8]) -> v1::Upload {
    let messages = upload_messages(name, data, "", 0);
    let upload = cluster
        .jobs()
        .await
        .upload_input(futures::stream::iter(messages))
        .await
        .expect("UploadInput")
        .into_inner();
    assert!(upload.complete, "{upload:?}");
    upload
}

/// A spec of `pipeline` whose input is `uri` in the artifact store.
pub fn input_spec(pipeline: &str, params: &[(&str, &str)], uri: &str) -> v1::JobSpec {
    let mut spec = crate::spec(pipeline, params);
    spec.input_uri = uri.to_owned();
    spec
}

/// The coordinator's local artifact directory (the default store).
pub fn local_store(cluster: &TestCluster) -> PathBuf {
    cluster.path().join("coordinator").join("artifacts")
}

/// Every object in a local store (keys relative to it, `.multipart` left out), with its size.
pub fn local_objects(root: &Path) -> Vec<(String, u64)> {
    let mut objects = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|name| name == ".multipart") {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                dirs.push(path);
            } else {
                let key = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                objects.push((key, meta.len()));
            }
        }
    }
    objects.sort();
    objects
}

/// Multipart writes a local store has not finished (or dropped).
pub fn unfinished_writes(root: &Path) -> usize {
    std::fs::read_dir(root.join(".multipart"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// The bytes of output `name` of job `id`, downloaded through DownloadOutput.
pub async fn download(cluster: &TestCluster, id: &str, name: &str) -> Vec<u8> {
    let mut stream = cluster
        .jobs()
        .await
        .download_output(v1::DownloadOutputRequest {
            id: id.to_owned(),
            name: name.to_owned(),
            offset: 0,
        })
        .await
        .expect("DownloadOutput")
        .into_inner();
    let mut data = Vec::new();
    while let Some(chunk) = stream.message().await.expect("a chunk") {
        data.extend_from_slice(&chunk.data);
    }
    data
}
