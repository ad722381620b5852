//! Reads of a local file in big chunks, one chunk ahead.
//!
//! `object_store`'s `LocalFileSystem` streams a file in 8 KiB chunks, one blocking task each: a
//! staging through the coordinator, or a download, then moved ~100 MB/s on a machine whose disk
//! and loopback do several times that, and each chunk became a gRPC message of its own. Here a
//! file is read in [`CHUNK`] pieces (the size of one message on the way to a worker or a client),
//! each in a short blocking task started as soon as the previous piece is handed over: the next read
//! overlaps with whatever the consumer does with the last (hashing, sending). No thread is held
//! while the consumer waits (a slow client keeps no thread of the blocking pool). A worker reads its
//! outputs the same way on their way to the store.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;

use bytes::Bytes;
use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::blobs::ByteStream;
use crate::error::ArtifactError;

/// Bytes read at a time.
pub(crate) const CHUNK: usize = 1 << 20;

/// A chunk being read: the bytes, the file (for the next read) and where the next read starts.
type Reading<F> = JoinHandle<std::io::Result<(Bytes, F, u64)>>;

/// The bytes of `range` of `file` (`what` names it in errors), [`CHUNK`] at a time, each read
/// while the one before is consumed. A file shorter than `range` is an error, not a short stream.
pub fn file_stream<F>(file: F, range: Range<u64>, what: String) -> ByteStream
where
    F: Read + Seek + Send + 'static,
{
    let end = range.end;
    let first = (range.start < end).then(|| read_chunk(file, range.start, end));
    futures::stream::try_unfold((first, what), move |(reading, what)| async move {
        let Some(reading) = reading else {
            return Ok(None);
        };
        let (chunk, file, next) = reading
            .await
            .map_err(|err| ArtifactError::Unavailable(format!("file task failed: {err}")))?
            .map_err(|err| ArtifactError::disk(&format!("reading {what}"), &err))?;
        let ahead = (next < end).then(|| read_chunk(file, next, end));
        Ok(Some((chunk, (ahead, what))))
    })
    .boxed()
}

/// Reads the chunk of `file` at `at` (up to `end`) in a blocking task.
fn read_chunk<F>(mut file: F, at: u64, end: u64) -> Reading<F>
where
    F: Read + Seek + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let len = usize::try_from(end - at).unwrap_or(CHUNK).min(CHUNK);
        // Read into spare capacity: no zeroing of the buffer first.
        let mut buffer = Vec::with_capacity(len);
        file.seek(SeekFrom::Start(at))?;
        (&mut file).take(len as u64).read_to_end(&mut buffer)?;
        if buffer.len() < len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok((Bytes::from(buffer), file, at + len as u64))
    })
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

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

    #[tokio::test]
    async fn reads_one_chunk_ahead_and_no_more() {
        /// Counts the bytes read through it.
        struct Counting(std::io::Cursor<Vec<u8>>, Arc<AtomicU64>);
        impl Read for Counting {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.read(buf)?;
                self.1.fetch_add(n as u64, Ordering::SeqCst);
                Ok(n)
            }
        }
        impl Seek for Counting {
            fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
                self.0.seek(pos)
            }
        }
        let read = Arc::new(AtomicU64::new(0));
        let file = Counting(
            std::io::Cursor::new(vec![7u8; CHUNK * 8]),
            Arc::clone(&read),
        );
        let mut stream = file_stream(file, 0..(CHUNK * 8) as u64, "f".into());
        assert_eq!(stream.next().await.unwrap().unwrap().len(), CHUNK);
        // The next chunk is being read meanwhile; then nothing more until it is taken.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(read.load(Ordering::SeqCst), 2 * CHUNK as u64);
        drop(stream);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(
            read.load(Ordering::SeqCst),
            2 * CHUNK as u64,
            "a dropped stream reads no more"
        );
    }
}
