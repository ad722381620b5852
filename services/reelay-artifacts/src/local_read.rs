//! Reads of a local file in big chunks, read ahead.
//!
//! `object_store`'s `LocalFileSystem` streams a file in 8 KiB chunks, one blocking task each: a
//! staging through the coordinator, or a download, then moved ~100 MB/s on a machine whose disk
//! and loopback do several times that, and each chunk became a gRPC message of its own. Here a
//! file is read in [`CHUNK`] pieces (the size of one message on the way to a worker or a client)
//! by one blocking task that stays [`READ_AHEAD`] chunks ahead of the consumer: the next reads
//! overlap with whatever the consumer does with the last (hashing, sending). A worker reads its
//! outputs the same way on their way to the store.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::blobs::ByteStream;
use crate::error::ArtifactError;

/// Bytes read at a time.
pub(crate) const CHUNK: usize = 1 << 20;
/// Chunks read and not yet taken, at most: what the read-ahead costs in memory.
const READ_AHEAD: usize = 2;

/// The bytes of `range` of `file` (`what` names it in errors), [`CHUNK`] at a time, read ahead
/// by a blocking task (which stops when the stream is dropped). A file shorter than `range` is
/// an error, not a short stream.
pub fn file_stream(file: File, range: Range<u64>, what: String) -> ByteStream {
    let (sender, receiver) = mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        if let Err(err) = read_range(file, range, &sender) {
            let _ =
                sender.blocking_send(Err(ArtifactError::disk(&format!("reading {what}"), &err)));
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver).boxed()
}

/// Reads `range` of `file` into `sender` chunk by chunk; stops early, without error, once the
/// receiver is gone.
fn read_range(
    mut file: impl Read + Seek,
    range: Range<u64>,
    sender: &mpsc::Sender<Result<Bytes, ArtifactError>>,
) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(range.start))?;
    let mut at = range.start;
    while at < range.end {
        let len = usize::try_from(range.end - at).unwrap_or(CHUNK).min(CHUNK);
        // Read into spare capacity: no zeroing of the buffer first.
        let mut buffer = Vec::with_capacity(len);
        (&mut file).take(len as u64).read_to_end(&mut buffer)?;
        if buffer.len() < len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        at += len as u64;
        if sender.blocking_send(Ok(Bytes::from(buffer))).is_err() {
            return Ok(());
        }
    }
    Ok(())
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

    #[test]
    fn stops_reading_once_the_stream_is_dropped() {
        /// Counts the bytes read through it.
        struct Counting(std::io::Cursor<Vec<u8>>, u64);
        impl Read for Counting {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.read(buf)?;
                self.1 += n as u64;
                Ok(n)
            }
        }
        impl Seek for Counting {
            fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
                self.0.seek(pos)
            }
        }
        let mut file = Counting(std::io::Cursor::new(vec![7u8; CHUNK * 8]), 0);
        let (sender, receiver) = mpsc::channel(READ_AHEAD);
        drop(receiver);
        read_range(&mut file, 0..(CHUNK * 8) as u64, &sender).unwrap();
        assert_eq!(
            file.1, CHUNK as u64,
            "one chunk read, then the reader saw nobody takes them"
        );
    }
}
