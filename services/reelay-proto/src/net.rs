//! Accepting plain TCP connections for the servers, and bounding how long a server waits for them
//! to close when it shuts down.
//!
//! Every accepted socket gets `TCP_NODELAY`: gRPC writes whole messages, and Nagle's algorithm
//! holding back the tail of a response until the client's delayed ACK (40 ms) would add that much
//! to every reply larger than one segment (a page of jobs, a log chunk).

use std::io;
use std::time::Duration;

use futures::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

/// Turns off Nagle's algorithm on `stream` (a failure only costs latency, so it is logged).
pub fn no_delay(stream: &TcpStream) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(error = %err, "cannot set TCP_NODELAY");
    }
}

/// The connections accepted on `listener`, with `TCP_NODELAY` set, for `serve_with_incoming`.
pub fn incoming(listener: TcpListener) -> impl Stream<Item = io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|accepted| accepted.inspect(no_delay))
}

/// Runs `serve` — a server future that stops accepting when `stop` fires and then waits for its
/// connections to close — but waits at most `grace` for them after `stop`. A client that does not
/// read (stopped, its laptop lid closed) or never acknowledges the server's GOAWAY would otherwise
/// hold the server until HTTP/2 keepalive gives up on it. Connections still open after the grace
/// are left to the caller, which is about to exit; their count is not known here, so the log says
/// only that some were cut.
pub async fn serve_bounded<E>(
    serve: impl Future<Output = Result<(), E>>,
    stop: impl Future<Output = ()>,
    grace: Duration,
) -> Result<(), E> {
    tokio::pin!(serve);
    let expired = async {
        stop.await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = &mut serve => served,
        () = expired => {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "connections still open after the drain grace: closing them"
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn a_server_that_does_not_drain_is_cut_after_the_grace() {
        let started = std::time::Instant::now();
        let stuck = std::future::pending::<Result<(), ()>>();
        let stop = tokio::time::sleep(100 * MS);
        assert_eq!(serve_bounded(stuck, stop, 200 * MS).await, Ok(()));
        let took = started.elapsed();
        assert!(took >= 300 * MS && took < 2000 * MS, "{took:?}");
    }

    #[tokio::test]
    async fn a_server_that_drains_returns_its_own_result() {
        let started = std::time::Instant::now();
        let drains = async {
            tokio::time::sleep(150 * MS).await;
            Err::<(), _>("failed")
        };
        let stop = tokio::time::sleep(100 * MS);
        let served = serve_bounded(drains, stop, 5000 * MS).await;
        assert_eq!(served, Err("failed"));
        assert!(started.elapsed() < 2000 * MS, "{:?}", started.elapsed());
    }
}
