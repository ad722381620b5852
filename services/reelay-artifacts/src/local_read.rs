//! Reads of a local artifact directory in big chunks.
//!
//! `object_store`'s `LocalFileSystem` streams a file in 8 KiB chunks, one blocking task each: a
//! staging through the coordinator, or a download, then moved ~100 MB/s on a machine whose disk
//! and loopback do several times that, and each chunk became a gRPC message of its own. Here a
//! file is read in [`CHUNK`] pieces (the size of one message on the way to a worker or a client).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;

use bytes::Bytes;
use futures::StreamExt;

use crate::blobs::ByteStream;
use crate::error::ArtifactError;

/// Bytes read at a time.
pub(crate) const CHUNK: usize = 1 << 20;

/// The bytes of `range` of `file` (`what` names it in errors), [`CHUNK`] at a time, each read in
/// a blocking task.
pub(crate) fn file_stream(file: File, range: Range<u64>, what: String) -> ByteStream {
    let state = (Some(file), range.start, range.end);
    futures::stream::try_unfold(state, move |(file, at, end)| {
        let what = what.clone();
        async move {
            let Some(mut file) = file else {
                return Ok(None);
            };
            if at >= end {
                return Ok(None);
            }
            let len = usize::try_from(end - at).unwrap_or(CHUNK).min(CHUNK);
            let read = tokio::task::spawn_blocking(move || {
                // Read into spare capacity: no zeroing of the buffer first.
                let mut buffer = Vec::with_capacity(len);
                file.seek(SeekFrom::Start(at))?;
                (&mut file).take(len as u64).read_to_end(&mut buffer)?;
                if buffer.len() < len {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                Ok::<_, std::io::Error>((Bytes::from(buffer), file))
            })
            .await
            .map_err(|err| ArtifactError::Unavailable(format!("file task failed: {err}")))?;
            let (chunk, file): (Bytes, File) =
                read.map_err(|err| ArtifactError::disk(&format!("reading {what}"), &err))?;
            let next = at + chunk.len() as u64;
            Ok(Some((chunk, (Some(file), next, end))))
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_range_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(CHUNK * 2 + 100)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let stream = file_stream(
            File::open(&path).unwrap(),
            10..data.len() as u64,
            "f".into(),
        );
        let chunks: Vec<Bytes> = stream.map(|chunk| chunk.unwrap()).collect().await;
        assert_eq!(
            chunks.iter().map(Bytes::len).collect::<Vec<_>>(),
            [CHUNK, CHUNK, 90]
        );
        assert_eq!(chunks.concat(), &data[10..]);

        // A file shorter than the range (it changed under the reader) is an error, not a short read.
        let stream = file_stream(
            File::open(&path).unwrap(),
            0..data.len() as u64 + 5,
            "f".into(),
        );
        let results: Vec<_> = stream.collect().await;
        assert!(results.last().unwrap().is_err());
    }
}
