//! The one way the coordinator's server streams talk to their clients: a bounded channel, and
//! [`Tx::run`], which runs a stream's work only as long as its client is there and the server is
//! not shutting down.
//!
//! A stream's work waits on its feed (a hub subscription, an upstream download); `run` races it
//! against the client's departure and the shutdown. The response stream is dropped when the
//! client cancels, its deadline passes or its connection closes, which closes the channel: `run`
//! drops the work at once, wherever it waits — on a quiet feed or on a full buffer — and with it
//! the stream's subscriptions. A failed send alone would notice the departure only at the next
//! event, which on a quiet job may be hours away. One race per stream, not per event: the hot
//! path (an event to a watcher) is a plain bounded send.
//!
//! Every stream is counted in `reelay_open_streams{kind}` from [`channel`] until its [`Tx`] is
//! dropped, which is when its task ends.
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

/// A send found the client gone: the stream's work should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gone;

/// How a stream's work ended (see [`Tx::run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The work finished by itself (or a send found the client gone).
    Finished,
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
    /// Set when the shutdown stopped the work: the drop then tells the client.
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
    /// Runs `work` — the stream's loop, sending through this `Tx` — until it ends by itself, the
    /// client leaves or the server shuts down, whichever comes first.
    pub(crate) async fn run(&self, work: impl Future<Output = Result<(), Gone>>) -> Ended {
        tokio::select! {
            // The work first: what it has ready is sent before a shutdown is noticed.
            biased;
            _ = work => Ended::Finished,
            () = self.sender.closed() => Ended::ClientGone,
            () = self.shutdown.cancelled() => {
                self.stopped_by_shutdown.store(true, Ordering::Relaxed);
                Ended::ShuttingDown
            }
        }
    }

    /// Sends an item, waiting while the client's buffer is full; `Err` when the client has gone.
    /// The item is boxed before the returned future exists, so a watcher waiting to send holds a
    /// pointer, not a whole event.
    pub(crate) fn send(
        &self,
        item: Result<T, Status>,
    ) -> impl Future<Output = Result<(), Gone>> + '_ {
        let item = Box::new(item);
        async move { self.sender.send(item).await.map_err(|_| Gone) }
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
    use std::time::Duration;

    use super::*;

    fn open(streams: &OpenStreams) -> (Tx<u32>, ServerStream<u32>, CancellationToken) {
        let shutdown = CancellationToken::new();
        let (tx, stream) = channel(streams, StreamKind::WatchJob, shutdown.clone());
        (tx, stream, shutdown)
    }

    /// Work that waits on a feed where nothing ever happens.
    async fn quiet() -> Result<(), Gone> {
        std::future::pending().await
    }

    #[tokio::test]
    async fn work_on_a_quiet_feed_ends_when_the_client_leaves_and_the_stream_is_uncounted() {
        let streams = OpenStreams::default();
        let (tx, stream, _shutdown) = open(&streams);
        assert_eq!(streams.count(StreamKind::WatchJob), 1);
        let running = tokio::spawn(async move { tx.run(quiet()).await });
        drop(stream);
        let ended = tokio::time::timeout(Duration::from_secs(1), running).await;
        assert_eq!(ended.unwrap().unwrap(), Ended::ClientGone);
        assert_eq!(streams.count(StreamKind::WatchJob), 0);
    }

    #[tokio::test]
    async fn work_blocked_on_a_full_buffer_ends_on_shutdown() {
        let streams = OpenStreams::default();
        let (tx, _stream, shutdown) = open(&streams);
        let running = tokio::spawn(async move {
            tx.run(async {
                for n in 0.. {
                    tx.send(Ok(n)).await?;
                }
                Ok(())
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        shutdown.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(1), running).await;
        assert_eq!(ended.unwrap().unwrap(), Ended::ShuttingDown);
    }

    #[tokio::test]
    async fn a_stream_stopped_by_shutdown_ends_with_unavailable() {
        let streams = OpenStreams::default();
        let (tx, mut stream, shutdown) = open(&streams);
        shutdown.cancel();
        let work = async {
            tx.send(Ok(1)).await?;
            quiet().await
        };
        assert_eq!(tx.run(work).await, Ended::ShuttingDown);
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
        assert_eq!(tx.run(tx.send(Ok(1))).await, Ended::Finished);
        drop(tx);
        shutdown.cancel();
        assert_eq!(stream.next().await.unwrap().unwrap(), 1);
        assert!(stream.next().await.is_none());
    }
}
