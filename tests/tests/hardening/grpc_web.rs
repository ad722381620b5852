//! grpc-web with broken framing, as raw HTTP/1.1 POSTs on the coordinator's port: each request
//! gets a gRPC error status with a message (in the headers or a trailer frame) or an HTTP 4xx
//! within 10 s, and the port keeps serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use prost::Message;
use reelay_proto::v1;
use reelay_tests::TestCluster;
use tonic::Code;

use super::{MISSING_ID, assert_still_runs_jobs, oversized, shorten};
/// What a raw HTTP/1.1 exchange got back.
#[derive(Debug)]
struct RawReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// `grpc-status` and `grpc-message` from the headers or from a trailer frame of the body.
    fn grpc_status(&self) -> Option<(i32, String)> {
        if let Some(status) = self.header("grpc-status") {
            return Some((
                status.parse().ok()?,
                self.header("grpc-message").unwrap_or_default().to_owned(),
            ));
        }
        let mut body = self.body.as_slice();
        while body.len() >= 5 {
            let flag = body[0];
            let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
            let frame = body.get(5..5 + len)?;
            if flag & 0x80 != 0 {
                let text = String::from_utf8_lossy(frame);
                let field = |name: &str| {
                    text.lines()
                        .find_map(|line| {
                            line.split_once(':')
                                .filter(|(key, _)| key.trim().eq_ignore_ascii_case(name))
                        })
                        .map(|(_, value)| value.trim().to_owned())
                };
                return Some((
                    field("grpc-status")?.parse().ok()?,
                    field("grpc-message").unwrap_or_default(),
                ));
            }
            body = &body[5 + len..];
        }
        None
    }
}

/// POSTs `body` to `path` with `headers` as raw HTTP/1.1; `content_length` overrides the real
/// length (a body that ends early: the write side is then closed). Fails after 10 s without an answer.
fn raw_post(
    address: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    content_length: Option<usize>,
) -> std::io::Result<RawReply> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "Content-Length: {}\r\n\r\n",
        content_length.unwrap_or(body.len())
    ));
    // A server may answer and close before the whole body is sent (a body over the limit): a
    // failed write is no failure as long as an answer comes.
    let sent = stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.write_all(body));
    if sent.is_ok() && content_length.is_some() {
        stream.shutdown(std::net::Shutdown::Write)?;
    }
    let mut raw = Vec::new();
    if let Err(err) = stream.read_to_end(&mut raw)
        && raw.is_empty()
    {
        return Err(sent.err().unwrap_or(err));
    }
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "no complete response: {:?}",
                String::from_utf8_lossy(&raw)
            ))
        })?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(key, value)| key == "transfer-encoding" && value.contains("chunked"))
    {
        body = reelay_tests::http::dechunk(&body);
    }
    Ok(RawReply {
        status,
        headers,
        body,
    })
}

const TWO_MESSAGES: &str = "two messages for a unary call";

fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut framed = vec![flag];
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(payload);
    framed
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_web_with_broken_framing_gets_a_clear_error() {
    let cluster = TestCluster::builder().workers(1).start().await;
    let address = cluster.address();
    let path = "/reelay.v1.JobService/GetJob";
    let web = [
        ("Content-Type", "application/grpc-web+proto"),
        ("X-Grpc-Web", "1"),
    ];
    let request = v1::GetJobRequest {
        id: MISSING_ID.into(),
    }
    .encode_to_vec();
    let valid = frame(0, &request);
    let mut long = frame(0, &request);
    long[1..5].copy_from_slice(&1000u32.to_be_bytes());
    let mut huge = frame(0, &request);
    huge[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
    let over_limit = frame(0, &oversized().encode_to_vec());
    let mut two = valid.clone();
    two.extend_from_slice(&valid);
    let text = [
        ("Content-Type", "application/grpc-web-text"),
        ("X-Grpc-Web", "1"),
    ];

    // (case, headers, body, declared length)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Vec<u8>, Option<usize>);
    const OVER_LIMIT: [&str; 2] = ["a frame of 4 GiB", "a body over 4 MiB"];
    let cases: Vec<Case<'_>> = vec![
        ("an empty body", &web, Vec::new(), None),
        ("a truncated frame header", &web, vec![0, 0, 0], None),
        ("a frame longer than the body", &web, long, None),
        ("a frame of 4 GiB", &web, huge, None),
        (
            "the compressed flag without compression",
            &web,
            frame(1, &request),
            None,
        ),
        ("an unknown flag", &web, frame(0x42, &request), None),
        (
            "a trailer frame as the request",
            &web,
            frame(0x80, b"grpc-status: 0\r\n"),
            None,
        ),
        (
            "garbage bytes",
            &web,
            b"\xff\xfe garbage that is no frame at all".to_vec(),
            None,
        ),
        (
            "a frame of garbage",
            &web,
            frame(0, b"\xff\xff\xff\xff\xff"),
            None,
        ),
        (TWO_MESSAGES, &web, two, None),
        ("a body over 4 MiB", &web, over_limit, None),
        (
            "a body that ends before its Content-Length",
            &web,
            valid[..4].to_vec(),
            Some(valid.len() + 100),
        ),
        (
            "grpc-web-text that is no base64",
            &text,
            b"!!!! not base64 ****".to_vec(),
            None,
        ),
        (
            "a wrong content type",
            &[("Content-Type", "text/plain"), ("X-Grpc-Web", "1")],
            valid.clone(),
            None,
        ),
        (
            "no content type",
            &[("X-Grpc-Web", "1")],
            valid.clone(),
            None,
        ),
        (
            "a json content type",
            &[
                ("Content-Type", "application/grpc-web+json"),
                ("X-Grpc-Web", "1"),
            ],
            b"{\"id\": 1}".to_vec(),
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (case, headers, body, declared) in cases {
        let started = std::time::Instant::now();
        let address = address.clone();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let reply = tokio::task::spawn_blocking(move || {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            raw_post(&address, path, &headers, &body, declared)
        })
        .await
        .unwrap();
        let reply = match reply {
            Ok(reply) => reply,
            Err(err) => {
                failures.push(format!(
                    "{case}: no answer after {:?}: {err}",
                    started.elapsed()
                ));
                continue;
            }
        };
        let grpc = reply.grpc_status();
        let clear = match &grpc {
            // tonic answers the first message of a unary call and ignores the rest.
            Some((code, _)) if case == TWO_MESSAGES => *code == Code::NotFound as i32,
            // Over the message limit: RESOURCE_EXHAUSTED naming the limit (percent-encoded).
            Some((code, message)) if OVER_LIMIT.contains(&case) => {
                *code == Code::ResourceExhausted as i32 && message.contains("limit%20of%204194304")
            }
            // A gRPC error with a message.
            Some((code, message)) => *code != 0 && !message.is_empty(),
            // Or an HTTP client error.
            None => (400..500).contains(&reply.status),
        };
        eprintln!(
            "{case}: HTTP {} grpc {grpc:?} in {:?}",
            reply.status,
            started.elapsed()
        );
        if !clear {
            failures.push(format!(
                "{case}: HTTP {} grpc {grpc:?} headers {:?} body {:?}",
                reply.status,
                reply.headers,
                shorten(&String::from_utf8_lossy(&reply.body))
            ));
        }
    }

    // The same port still answers grpc-web and gRPC.
    let ok = raw_post(&address, path, &web, &valid, None).unwrap();
    assert_eq!(
        ok.grpc_status().map(|(code, _)| code),
        Some(Code::NotFound as i32),
        "{ok:?}"
    );
    assert!(
        failures.is_empty(),
        "{} cases without a clear error:\n  {}\n{}",
        failures.len(),
        failures.join("\n  "),
        cluster.logs()
    );
    assert_still_runs_jobs(&cluster).await;
}
