//! A minimal grpc-web client, the way a browser calls the coordinator: an HTTP/1.1 POST with
//! `content-type: application/grpc-web+proto` whose body is one frame (1 flag byte, a 4-byte
//! big-endian length, the protobuf bytes). The answer is data frames (flag 0) and a trailer frame
//! (flag 0x80) with `grpc-status`, or — when the call fails at once — `grpc-status` in the HTTP
//! headers ("trailers-only").
//!
//! The body is read frame by frame, so a server stream (WatchJobs) can be sampled: the reading
//! stops after `max_messages` data frames.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use tonic::Code;

use crate::http;

/// What a grpc-web call got back.
#[derive(Debug)]
pub struct Reply {
    pub http_status: u16,
    /// `grpc-status` from the trailer frame or the headers; `None` if neither came (yet).
    pub grpc_status: Option<i32>,
    pub grpc_message: String,
    /// Payloads of the data frames read.
    pub messages: Vec<Vec<u8>>,
}

impl Reply {
    /// The gRPC code. A call answered `200` without a status yet (a stream left open, or left
    /// before its trailer) counts as `Ok`: it was accepted.
    pub fn code(&self) -> Code {
        match self.grpc_status {
            Some(status) => Code::from_i32(status),
            None if self.http_status == 200 => Code::Ok,
            None => Code::Unknown,
        }
    }

    pub fn decode<M: prost::Message + Default>(&self, index: usize) -> M {
        M::decode(self.messages[index].as_slice()).expect("a well-formed message")
    }
}

/// Calls `path` (`/reelay.v1.JobService/ListJobs`) on `address` with the encoded request
/// `payload`, plain or over TLS verified by `ca`, sending `token` as a bearer token; reads at most
/// `max_messages` data frames (0: only the headers).
pub fn call(
    address: &str,
    ca: Option<&Path>,
    path: &str,
    payload: &[u8],
    token: Option<&str>,
    max_messages: usize,
) -> std::io::Result<Reply> {
    let mut body = Vec::with_capacity(payload.len() + 5);
    body.push(0);
    body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    body.extend_from_slice(payload);
    let bearer = token.map(|token| format!("Bearer {token}"));
    let mut headers = vec![
        ("Content-Type", "application/grpc-web+proto"),
        ("Accept", "application/grpc-web+proto"),
        ("X-Grpc-Web", "1"),
    ];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer.as_str()));
    }
    let mut stream = http::connect(address, ca)?;
    http::send(&mut *stream, address, "POST", path, &headers, &body)?;
    let mut reader = BufReader::new(stream);
    let (http_status, head) = http::read_head(&mut reader)?;
    let header = |name: &str| {
        head.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let mut reply = Reply {
        http_status,
        grpc_status: header("grpc-status").and_then(|value| value.parse().ok()),
        grpc_message: header("grpc-message").unwrap_or_default(),
        messages: Vec::new(),
    };
    if reply.grpc_status.is_some() {
        return Ok(reply); // trailers-only
    }
    let chunked = header("transfer-encoding").is_some_and(|value| value.contains("chunked"));
    let mut body: Box<dyn Read> = if chunked {
        Box::new(Chunked {
            inner: reader,
            left: 0,
            done: false,
        })
    } else if let Some(length) = header("content-length").and_then(|value| value.parse().ok()) {
        Box::new(reader.take(length))
    } else {
        Box::new(reader)
    };
    while reply.messages.len() < max_messages {
        let mut prefix = [0u8; 5];
        if read_exact_or_end(&mut body, &mut prefix)? {
            break;
        }
        let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        let mut frame = vec![0; length];
        body.read_exact(&mut frame)?;
        if prefix[0] & 0x80 != 0 {
            for line in String::from_utf8_lossy(&frame).split("\r\n") {
                if let Some((key, value)) = line.split_once(':') {
                    match key.trim().to_ascii_lowercase().as_str() {
                        "grpc-status" => reply.grpc_status = value.trim().parse().ok(),
                        "grpc-message" => value.trim().clone_into(&mut reply.grpc_message),
                        _ => {}
                    }
                }
            }
            break;
        }
        reply.messages.push(frame);
    }
    Ok(reply)
}

/// Fills `buf`; `true` when the body ended before its first byte.
fn read_exact_or_end(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(true),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof && filled == 0 => {
                return Ok(true);
            }
            Err(err) => return Err(err),
        }
    }
    Ok(false)
}

/// An HTTP/1.1 chunked body, read as it arrives.
struct Chunked<R> {
    inner: R,
    /// Bytes left in the current chunk.
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            if line.trim().is_empty() {
                // The CRLF after the previous chunk.
                line.clear();
                self.inner.read_line(&mut line)?;
            }
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = usize::from_str_radix(size, 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left);
        let read = self.inner.read(&mut buf[..want])?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= read;
        Ok(read)
    }
}
