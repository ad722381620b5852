//! Talking to the engine: which errors mean it did not answer, waiting for it, messages.

use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::RemoveContainerOptionsBuilder;

use super::PING_TIMEOUT;
use crate::executor::ExecError;

/// Removes a container (force); a container already gone is fine, other failures are logged.
pub(super) async fn remove_quietly(docker: &Docker, id: &str) -> bool {
    let options = RemoveContainerOptionsBuilder::new().force(true).build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => true,
        Err(err) if is_not_found(&err) => true,
        Err(err) => {
            tracing::warn!(container = id, error = %describe(&err), "cannot remove the container");
            false
        }
    }
}

/// Removes a container, retrying in the background while the engine does not answer (a finished
/// job's container must not be left behind because the engine blinked).
pub(super) fn remove_eventually(docker: Docker, id: String) {
    tokio::spawn(async move {
        let mut backoff = Backoff::default();
        for _ in 0..30 {
            if remove_quietly(&docker, &id).await {
                return;
            }
            backoff.sleep().await;
        }
        tracing::error!(container = %id, "gave up removing the container; the worker's next start removes it");
    });
}

/// Waits until the engine answers a ping, with a bounded backoff.
pub(super) async fn wait_for_engine(docker: &Docker) {
    let mut backoff = Backoff::default();
    loop {
        if let Ok(Ok(_)) = tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
            return;
        }
        backoff.sleep().await;
    }
}

/// Delays between tries while the engine does not answer: 250 ms, doubling up to 5 s.
#[derive(Debug)]
pub(super) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_millis(250),
        }
    }
}

impl Backoff {
    pub(super) async fn sleep(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Duration::from_secs(5));
    }
}

/// Whether the error means the engine did not answer (as opposed to answering with an error).
pub(super) fn is_unreachable(err: &DockerError) -> bool {
    matches!(
        err,
        DockerError::HyperLegacyError { .. }
            | DockerError::HyperResponseError { .. }
            | DockerError::HttpClientError { .. }
            | DockerError::IOError { .. }
            | DockerError::RequestTimeoutError
            | DockerError::SocketNotFoundError(_)
    )
}

pub(super) fn is_not_found(err: &DockerError) -> bool {
    matches!(
        err,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The error of a container that would not start.
pub(super) fn start_error(err: &DockerError) -> ExecError {
    match err {
        DockerError::DockerResponseServerError { message, .. } => {
            ExecError::Start(format!("cannot start the container: {message}"))
        }
        err => engine_error(err),
    }
}

/// An error with its causes, for messages ("client error (Connect): Connection refused").
pub(super) fn describe(err: &DockerError) -> String {
    if let DockerError::DockerResponseServerError { message, .. } = err {
        return message.clone();
    }
    reelay_proto::tls::error_chain(err)
}

/// The error of a call that failed because the engine did not answer (or answered oddly).
pub(super) fn engine_error(err: &DockerError) -> ExecError {
    if is_unreachable(err) {
        ExecError::Unavailable(format!("docker engine does not answer: {}", describe(err)))
    } else {
        ExecError::Start(describe(err))
    }
}
