//! The manifest a split step leaves (`manifest.json`): its pieces, in order, with the seconds of
//! the input each covers, and the input's frame rate. The engine makes a map job per piece from
//! it; it is read from the artifact store outside the engine's task.
//!
//! The file is the pipeline's (`deploy/pipeline/reelay-chunk split`); of it the coordinator reads
//! only `frame_rate` and `pieces[].name`, `pieces[].duration` (seconds).

use std::time::Duration;

use futures::StreamExt;
use reelay_artifacts::{Blobs, ObjectRef};

/// Largest manifest read.
const MAX_BYTES: usize = 4 << 20;
/// Tries of a read the store did not answer.
const TRIES: u32 = 5;

/// What the coordinator takes of a split's manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub pieces: Vec<ManifestPiece>,
    /// Frames per second of the input (0 when the manifest does not say).
    pub frame_rate: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ManifestPiece {
    /// An output of the split step.
    pub name: String,
    /// Seconds of the input it covers.
    pub seconds: f64,
}

/// Parses a manifest; the error says what is wrong with it.
pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|err| format!("the split's manifest is not JSON: {err}"))?;
    let number = |value: &serde_json::Value| {
        value
            .as_f64()
            .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
    };
    let frame_rate = value.get("frame_rate").and_then(number).unwrap_or(0.0);
    let pieces = value
        .get("pieces")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| "the split's manifest has no \"pieces\" list".to_owned())?;
    let pieces = pieces
        .iter()
        .enumerate()
        .map(|(index, piece)| {
            let name = piece
                .get("name")
                .and_then(serde_json::Value::as_str)
                .filter(|name| !name.is_empty())
                .ok_or_else(|| format!("piece {index} of the split's manifest has no name"))?;
            let seconds = piece
                .get("duration")
                .and_then(number)
                .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
                .ok_or_else(|| format!("piece {name:?} of the split's manifest has no duration"))?;
            Ok(ManifestPiece {
                name: name.to_owned(),
                seconds,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Manifest { pieces, frame_rate })
}

/// Reads and parses the manifest at `key`, waiting out a store that does not answer for a while.
pub async fn read(blobs: &dyn Blobs, key: &str) -> Result<Manifest, String> {
    let object = ObjectRef::stored(key);
    let mut delay = Duration::from_millis(500);
    let mut tries = 0;
    loop {
        tries += 1;
        match read_bytes(blobs, &object).await {
            Ok(bytes) => return parse(&bytes),
            Err(err) if err.is_retryable() && tries < TRIES => {
                tracing::warn!(%key, error = %err, "cannot read a split's manifest yet; trying again");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(err) => return Err(format!("cannot read the split's manifest: {err}")),
        }
    }
}

async fn read_bytes(
    blobs: &dyn Blobs,
    object: &ObjectRef,
) -> Result<Vec<u8>, reelay_artifacts::ArtifactError> {
    let mut stream = blobs.read(object, 0).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk?);
        if bytes.len() > MAX_BYTES {
            return Err(reelay_artifacts::ArtifactError::Invalid(format!(
                "the split's manifest is larger than {MAX_BYTES} bytes"
            )));
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pieces_and_frame_rate() {
        let manifest = parse(
            br#"{"input": {"name": "a b.mkv"}, "frame_rate": "30000/1001x", "pieces": [
                {"name": "piece-0000.mkv", "index": 0, "duration": 10.01, "frames": 300},
                {"name": "piece-0001.mkv", "duration": "4.5"}]}"#,
        )
        .unwrap();
        assert_eq!(
            manifest.frame_rate, 0.0,
            "a frame rate that is no number is unknown"
        );
        assert_eq!(manifest.pieces.len(), 2);
        assert_eq!(manifest.pieces[1].seconds, 4.5);
        let manifest = parse(br#"{"frame_rate": 29.97, "pieces": []}"#).unwrap();
        assert_eq!(manifest.frame_rate, 29.97);
        for bad in [
            &b"not json"[..],
            br#"{"frame_rate": 30}"#,
            br#"{"pieces": [{"duration": 1}]}"#,
            br#"{"pieces": [{"name": "a", "duration": -1}]}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
