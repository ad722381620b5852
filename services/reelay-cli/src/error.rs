//! Turning a failed command into `error: …` (and a `hint: …` when there is something to do) on
//! stderr, and into an exit code.
//!
//! Exit codes: 0 success; 1 the command failed (an error from the server or here, a job that ended
//! FAILED or CANCELLED, a download whose SHA-256 does not match); 2 the command line is wrong
//! (clap's own code); 130 interrupted by Ctrl-C (watch, download).

use std::error::Error as StdError;
use std::process::ExitCode;

use tonic::{Code, Status};

/// The command failed; its message is already printed (a failed job, a checksum mismatch).
#[derive(Debug)]
pub(crate) struct AlreadyReported;

impl std::fmt::Display for AlreadyReported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("already reported")
    }
}

impl StdError for AlreadyReported {}

/// The user pressed Ctrl-C; the message says what that left behind. Exit code 130.
#[derive(Debug)]
pub(crate) struct Interrupted(pub(crate) String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Interrupted {}

/// What to print for a failed command: the message and an optional hint.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

/// Prints the error and gives the exit code.
pub(crate) fn report(err: &anyhow::Error, server: &str) -> ExitCode {
    if err.downcast_ref::<AlreadyReported>().is_some() || crate::out::is_broken_pipe(err) {
        return ExitCode::FAILURE;
    }
    if let Some(interrupted) = err.downcast_ref::<Interrupted>() {
        eprintln!("{interrupted}");
        return ExitCode::from(130);
    }
    let report = describe(err, server);
    eprintln!("error: {}", report.message);
    if let Some(hint) = report.hint {
        eprintln!("hint: {hint}");
    }
    ExitCode::FAILURE
}

/// The message and hint for an error; a gRPC status anywhere in the chain decides the hint.
pub(crate) fn describe(err: &anyhow::Error, server: &str) -> Report {
    let status = err.chain().find_map(|cause| cause.downcast_ref::<Status>());
    let Some(status) = status else {
        return Report {
            message: chain_text(err.chain()),
            hint: None,
        };
    };
    // Context added on the way up ("downloading count.txt"), then the status.
    let context: Vec<String> = err
        .chain()
        .take_while(|cause| cause.downcast_ref::<Status>().is_none())
        .map(ToString::to_string)
        .collect();
    let prefix = |text: String| {
        if context.is_empty() {
            text
        } else {
            format!("{}: {text}", context.join(": "))
        }
    };
    if is_connection_failure(status) {
        let cause = chain_text(status.source().into_iter().flat_map(sources));
        let cause = if cause.is_empty() {
            status.message().to_owned()
        } else {
            cause
        };
        let hint = if cause.contains("certificate") || cause.contains("CertificateRequired") {
            "the coordinator's TLS certificate is not trusted: pass the CA that signed it with \
             --tls-ca (REELAY_TLS_CA)"
        } else {
            "is it running? Start one with `reelay dev`, or point --server (REELAY_SERVER) at it"
        };
        return Report {
            message: format!("cannot reach the coordinator at {server}: {cause}"),
            hint: Some(hint.to_owned()),
        };
    }
    Report {
        message: prefix(status_text(status)),
        hint: hint(status, server),
    }
}

/// The status message, or the code when the server sent none.
fn status_text(status: &Status) -> String {
    let mut text = status.message().to_owned();
    // Transport errors (an HTTP/1 server, a reset stream) keep their details in the source chain.
    if let Some(source) = status.source() {
        let details = chain_text(sources(source));
        if !details.is_empty() && !text.contains(&details) {
            text = if text.is_empty() {
                details
            } else {
                format!("{text}: {details}")
            };
        }
    }
    if text.is_empty() {
        format!("the server answered {:?} with no message", status.code())
    } else {
        text
    }
}

fn hint(status: &Status, server: &str) -> Option<String> {
    let hint = match status.code() {
        Code::Unauthenticated => "set --token or REELAY_TOKEN to an API token of this coordinator",
        Code::PermissionDenied => {
            "this token may only read; set --token or REELAY_TOKEN to an API token"
        }
        Code::Unimplemented => {
            return Some(format!(
                "{server} does not serve this Reelay API: is --server a Reelay coordinator of the \
                 same version?"
            ));
        }
        Code::Unknown | Code::Internal if status.source().is_some() => {
            if let Some(rest) = server.strip_prefix("http://") {
                return Some(format!(
                    "the connection to {server} failed: is --server a Reelay coordinator? If it \
                     serves TLS, use https://{rest} (with --tls-ca when its CA is private)"
                ));
            }
            return Some(format!(
                "the connection to {server} failed: is --server a Reelay coordinator (gRPC)?"
            ));
        }
        _ => return None,
    };
    Some(hint.to_owned())
}

/// A status made by the client side because no connection could be made (not one the server sent:
/// the coordinator also answers UNAVAILABLE when a node it needs is away).
pub(crate) fn is_connection_failure(status: &Status) -> bool {
    status.code() == Code::Unavailable && status.source().is_some()
}

/// An error worth retrying on a long stream: the connection or the server went away.
pub(crate) fn is_transient(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::Cancelled | Code::Aborted | Code::DeadlineExceeded => true,
        // h2 resets and broken pipes surface as Unknown/Internal with a transport source.
        Code::Unknown | Code::Internal => status.source().is_some(),
        _ => false,
    }
}

fn sources<'a>(
    first: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(first), |err: &&'a (dyn StdError + 'static)| {
        (*err).source()
    })
}

/// `a: b: c` without repeated or empty parts.
fn chain_text<'a>(chain: impl Iterator<Item = &'a (dyn StdError + 'static)>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in chain {
        let text = match cause.downcast_ref::<Status>() {
            Some(status) => status.message().to_owned(),
            None => cause.to_string(),
        };
        if text.is_empty() || parts.last().is_some_and(|last| last.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    const SERVER: &str = "http://127.0.0.1:7070";

    #[test]
    fn server_messages_are_shown_as_sent() {
        let err = anyhow::Error::new(Status::invalid_argument(
            "spec.params.steps: \"x\" does not match the pattern ^[0-9]+$",
        ));
        let report = describe(&err, SERVER);
        assert_eq!(
            report.message,
            "spec.params.steps: \"x\" does not match the pattern ^[0-9]+$"
        );
        assert_eq!(report.hint, None);
    }

    #[test]
    fn context_comes_before_the_status() {
        let err = Err::<(), _>(Status::not_found("job 1 has no output named \"x\""))
            .context("downloading x")
            .unwrap_err();
        assert_eq!(
            describe(&err, SERVER).message,
            "downloading x: job 1 has no output named \"x\""
        );
    }

    #[test]
    fn tokens_get_a_hint() {
        let err = anyhow::Error::new(Status::unauthenticated("this server needs a token"));
        let hint = describe(&err, SERVER).hint.unwrap();
        assert!(hint.contains("REELAY_TOKEN"), "{hint}");
    }

    #[test]
    fn a_server_side_unavailable_is_not_a_connection_failure() {
        let status = Status::unavailable("node a, which holds the outputs, is not connected");
        assert!(!is_connection_failure(&status));
        assert!(is_transient(&status));
        let report = describe(&anyhow::Error::new(status), SERVER);
        assert!(report.message.starts_with("node a"), "{}", report.message);
    }

    #[test]
    fn a_refused_connection_names_the_server() {
        // What tonic makes when it cannot connect: UNAVAILABLE with the cause as its source.
        let mut status = Status::unavailable("tcp connect error");
        status.set_source(std::sync::Arc::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        )));
        let report = describe(&anyhow::Error::new(status), SERVER);
        assert_eq!(
            report.message,
            "cannot reach the coordinator at http://127.0.0.1:7070: connection refused"
        );
        assert!(report.hint.unwrap().contains("reelay dev"));
    }

    #[test]
    fn only_lost_connections_are_retried() {
        assert!(is_transient(&Status::unavailable("restarting")));
        assert!(is_transient(&Status::cancelled("")));
        assert!(!is_transient(&Status::not_found("job not found")));
        assert!(!is_transient(&Status::invalid_argument("id")));
        // An INTERNAL sent by the server is its answer; one made from a broken connection is not.
        assert!(!is_transient(&Status::internal("store failed")));
        let mut reset = Status::internal("h2 protocol error");
        reset.set_source(std::sync::Arc::new(std::io::Error::other("reset")));
        assert!(is_transient(&reset));
    }

    #[test]
    fn plain_errors_print_their_chain() {
        let err = Err::<(), _>(std::io::Error::other("disk full"))
            .context("writing ./count.txt")
            .unwrap_err();
        assert_eq!(
            describe(&err, SERVER).message,
            "writing ./count.txt: disk full"
        );
    }
}
