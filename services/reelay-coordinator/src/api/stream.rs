//! The one way the coordinator's server streams talk to their clients: a bounded channel whose
//! sending side also watches for the client leaving and for the server shutting down.
//!
//! A stream's task waits on its feed (a hub subscription, an upstream download) *and* on the
//! client's departure: the response stream is dropped when the client cancels, its deadline
//! passes or its connection closes, which closes the channel, and [`Tx::wait`] returns at once —
//! whether or not anything happens on what the stream watches. A failed send alone would notice
//! the departure only at the next event, which on a quiet job may be hours away.
//!
//! Every stream is counted in `reelay_open_streams{kind}` from [`channel`] until its [`Tx`] is
//! dropped, which is when its task ends and its subscriptions go with it.
//!
//! On shutdown a stream ends with `UNAVAILABLE` ("shutting down"), so a client knows to
//! reconnect (and resume with its cursor) rather than take the end as the stream's natural one.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::ServerStream;
use crate::metrics::{OpenStream, OpenStreams, StreamKind};

/// Messages buffered per stream towards its client.
const CLIENT_BUFFER: usize = 64;
/// Chunks (64 KiB each) buffered per download towards its client.
const DOWNLOAD_BUFFER: usize = 4;

/// Why a stream stopped before its natural end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The client left: cancelled, deadline passed, connection closed.
    ClientGone,
    /// The server is shutting down.
    ShuttingDown,
}

/// The sending side of a stream towards a client. Items are boxed: a channel allocates its slots
/// in blocks, and an idle watcher should hold a block of pointers, not of whole events.
pub(crate) struct Tx<T> {
    sender: mpsc::Sender<Box<Result<T, Status>>>,
    /// Fires when the server shuts down.
    shutdown: CancellationToken,
    /// Set when a wait or a send stopped because of the shutdown: the drop then tells the client.
    stopped_by_shutdown: AtomicBool,
    /// Counts this stream in the gauges until the task ends.
    _open: OpenStream,
}

/// A bounded channel to a client, counted as an open stream of `kind`, and the response stream
/// that reads it.
pub(crate) fn channel<T: Send + 'static>(
    streams: &OpenStreams,
    kind: StreamKind,
    shutdown: CancellationToken,
) -> (Tx<T>, ServerStream<T>) {
    let buffer = match kind {
        StreamKind::DownloadOutput | StreamKind::HttpDownload => DOWNLOAD_BUFFER,
        _ => CLIENT_BUFFER,
    };
    let (sender, receiver) = mpsc::channel(buffer);
    let tx = Tx {
        sender,
        shutdown,
        stopped_by_shutdown: AtomicBool::new(false),
        _open: streams.open(kind),
    };
    (
        tx,
        Box::pin(ReceiverStream::new(receiver).map(|item| *item)),
    )
}

impl<T> Tx<T> {
    /// Waits for `feed` unless the client leaves or the server shuts down first.
    pub(crate) async fn wait<F: Future>(&self, feed: F) -> Result<F::Output, Ended> {
        tokio::select! {
            // Departure first: a client that left gets nothing more, even if the feed is ready.
            biased;
            () = self.sender.closed() => Err(Ended::ClientGone),
            () = self.shutdown.cancelled() => Err(self.stopped()),
            output = feed => Ok(output),
        }
    }

    /// Sends an item, waiting while the client's buffer is full; `Err` when the client has gone
    /// or the server shuts down meanwhile. The item is boxed before the returned future exists,
    /// so a watcher waiting to send holds a pointer, not a whole event.
    pub(crate) fn send(
        &self,
        item: Result<T, Status>,
    ) -> impl Future<Output = Result<(), Ended>> + '_ {
        let item = Box::new(item);
        async move {
            tokio::select! {
                sent = self.sender.send(item) => sent.map_err(|_| Ended::ClientGone),
                () = self.shutdown.cancelled() => Err(self.stopped()),
            }
        }
    }

    fn stopped(&self) -> Ended {
        self.stopped_by_shutdown.store(true, Ordering::Relaxed);
        Ended::ShuttingDown
    }
}

impl<T> Drop for Tx<T> {
    /// A stream stopped by the shutdown ends with `UNAVAILABLE`, if the client's buffer has room
    /// for it: a client that does not read is not waited for (the server's drain grace bounds it).
    fn drop(&mut self) {
        if self.stopped_by_shutdown.load(Ordering::Relaxed) {
            let _ = self.sender.try_send(Box::new(Err(Status::unavailable(
                "the coordinator is shutting down: reconnect to resume",
            ))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(streams: &OpenStreams) -> (Tx<u32>, ServerStream<u32>, CancellationToken) {
        let shutdown = CancellationToken::new();
        let (tx, stream) = channel(streams, StreamKind::WatchJob, shutdown.clone());
        (tx, stream, shutdown)
    }

    #[tokio::test]
    async fn a_wait_ends_when_the_client_leaves_though_the_feed_is_silent() {
        let streams = OpenStreams::default();
        let (tx, stream, _shutdown) = open(&streams);
        let waiting = tokio::spawn(async move { tx.wait(std::future::pending::<()>()).await });
        drop(stream);
        let ended = tokio::time::timeout(std::time::Duration::from_secs(1), waiting).await;
        assert_eq!(ended.unwrap().unwrap(), Err(Ended::ClientGone));
    }

    #[tokio::test]
    async fn a_stream_stopped_by_shutdown_ends_with_unavailable() {
        let streams = OpenStreams::default();
        let (tx, mut stream, shutdown) = open(&streams);
        tx.send(Ok(1)).await.unwrap();
        shutdown.cancel();
        assert_eq!(
            tx.wait(std::future::pending::<()>()).await,
            Err(Ended::ShuttingDown)
        );
        drop(tx);
        assert_eq!(stream.next().await.unwrap().unwrap(), 1);
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_stream_that_ends_by_itself_has_no_status_added() {
        let streams = OpenStreams::default();
        let (tx, mut stream, shutdown) = open(&streams);
        tx.send(Ok(1)).await.unwrap();
        drop(tx);
        shutdown.cancel();
        assert_eq!(stream.next().await.unwrap().unwrap(), 1);
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_send_to_a_full_buffer_ends_on_shutdown() {
        let streams = OpenStreams::default();
        let (tx, _stream, shutdown) = open(&streams);
        for n in 0..CLIENT_BUFFER as u32 {
            tx.send(Ok(n)).await.unwrap();
        }
        let blocked = tokio::spawn(async move { tx.send(Ok(0)).await });
        shutdown.cancel();
        let ended = tokio::time::timeout(std::time::Duration::from_secs(1), blocked).await;
        assert_eq!(ended.unwrap().unwrap(), Err(Ended::ShuttingDown));
    }
}
