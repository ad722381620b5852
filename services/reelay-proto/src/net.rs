//! Accepting plain TCP connections for the servers.
//!
//! Every accepted socket gets `TCP_NODELAY`: gRPC writes whole messages, and Nagle's algorithm
//! holding back the tail of a response until the client's delayed ACK (40 ms) would add that much
//! to every reply larger than one segment (a page of jobs, a log chunk).

use std::io;

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
