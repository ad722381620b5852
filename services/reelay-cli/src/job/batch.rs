//! Submitting several jobs at once: CreateJobs in batches of at most
//! [`reelay_proto::MAX_CREATE_JOBS`] (and a few MiB), each job with a request id derived from its
//! spec, so that running the same command again submits nothing twice.
//!
//! A job's request id is `spec-<hash>` — the first 32 hex digits of the SHA-256 of its spec as
//! `-o json` prints it (keys sorted) — or `<prefix>/<hash>` with `--request-id PREFIX`; the n-th
//! job with the same spec in one command gets `-n` appended (`n` ≥ 2). A `request_id` given on a
//! `--from` line is used as it is.

use prost::Message;
use reelay_proto::v1;
use sha2::{Digest, Sha256};

use crate::error::is_transient;
use crate::reconnect::{self, Backoff};
use crate::{Ctx, format, json};

/// A batch's encoded requests at most: under the server's 4 MiB message limit, and its answer
/// (each job about as large as its request, plus ~200 bytes) under the decoding limit below.
const BATCH_BYTES: usize = 3 * 1024 * 1024;
/// The largest answer this client decodes (a full batch of large specs).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// One job to submit.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) spec: v1::JobSpec,
    /// The request id chosen for it (a `--from` line's own); `None`: derived from the spec.
    pub(crate) request_id: Option<String>,
    /// Where it came from, for messages: the input path as typed, or `FILE line N`.
    pub(crate) source: String,
}

/// What became of one item.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) source: String,
    pub(crate) result: Result<Submitted, v1::ItemError>,
}

/// A job the server answered with.
#[derive(Debug, Clone)]
pub(crate) struct Submitted {
    pub(crate) job: v1::Job,
    /// False when its request id returned a job submitted before.
    pub(crate) created: bool,
}

/// Gives every item without a request id one derived from its spec (see the module doc).
pub(crate) fn assign_request_ids(items: &mut [Item], prefix: Option<&str>) -> anyhow::Result<()> {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for item in items.iter_mut().filter(|item| item.request_id.is_none()) {
        let hash = spec_hash(&item.spec)?;
        let count = seen.entry(hash.clone()).or_insert(0);
        *count += 1;
        let base = match prefix {
            Some(prefix) => format!("{prefix}/{hash}"),
            None => format!("spec-{hash}"),
        };
        item.request_id = Some(if *count == 1 {
            base
        } else {
            format!("{base}-{count}")
        });
    }
    Ok(())
}

/// The first 32 hex digits of the SHA-256 of the spec as JSON (keys sorted).
fn spec_hash(spec: &v1::JobSpec) -> anyhow::Result<String> {
    let text = serde_json::to_vec(&json::spec(spec))?;
    Ok(hex::encode(&Sha256::digest(&text)[..16]))
}

/// Sends the items in batches, in order; a batch that fails on the way is sent again (its request
/// ids make that safe).
pub(crate) async fn submit(ctx: &Ctx, items: Vec<Item>) -> anyhow::Result<Vec<Outcome>> {
    let mut client = ctx.conn.jobs().max_decoding_message_size(MAX_ANSWER_BYTES);
    let mut outcomes = Vec::with_capacity(items.len());
    for chunk in batches(&items) {
        let requests: Vec<v1::CreateJobRequest> = chunk
            .iter()
            .map(|item| v1::CreateJobRequest {
                spec: Some(item.spec.clone()),
                request_id: item.request_id.clone().unwrap_or_default(),
            })
            .collect();
        let results = send(&mut client, requests, outcomes.len()).await?;
        if results.len() != chunk.len() {
            anyhow::bail!(
                "the server answered {} results for {} jobs; is it an older version?",
                results.len(),
                chunk.len()
            );
        }
        for (item, result) in chunk.iter().zip(results) {
            let result = match result.result {
                Some(v1::create_job_result::Result::Job(job)) => Ok(Submitted {
                    job,
                    created: result.created,
                }),
                Some(v1::create_job_result::Result::Error(error)) => Err(error),
                None => Err(v1::ItemError {
                    code: tonic::Code::Unknown as i32,
                    message: "the server sent an empty result".into(),
                }),
            };
            outcomes.push(Outcome {
                source: item.source.clone(),
                result,
            });
        }
    }
    Ok(outcomes)
}

/// Splits the items into batches of at most MAX_CREATE_JOBS items and BATCH_BYTES bytes.
fn batches(items: &[Item]) -> Vec<&[Item]> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, item) in items.iter().enumerate() {
        let size = item.spec.encoded_len() + item.request_id.as_ref().map_or(0, String::len) + 16;
        let full = index - start == reelay_proto::MAX_CREATE_JOBS
            || (index > start && bytes + size > BATCH_BYTES);
        if full {
            batches.push(&items[start..index]);
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < items.len() {
        batches.push(&items[start..]);
    }
    batches
}

/// One CreateJobs call, sent again after a transient failure (the server may have stored the
/// batch before the answer was lost: the request ids return the same jobs).
async fn send(
    client: &mut reelay_proto::v1::job_service_client::JobServiceClient<crate::client::AuthChannel>,
    requests: Vec<v1::CreateJobRequest>,
    done: usize,
) -> anyhow::Result<Vec<v1::CreateJobResult>> {
    let mut backoff = Backoff::new();
    loop {
        let request = v1::CreateJobsRequest {
            requests: requests.clone(),
        };
        match client.create_jobs(request).await {
            Ok(response) => return Ok(response.into_inner().results),
            Err(status) if is_transient(&status) => {
                let cause = status.message().to_owned();
                if !reconnect::wait(&mut backoff, &cause, |text| eprintln!("{text}")).await {
                    return Err(anyhow::Error::new(status).context(format!(
                        "submitting jobs {}–{} (those before were submitted; run the same command \
                         again to submit the rest without duplicates)",
                        done + 1,
                        done + requests.len()
                    )));
                }
            }
            Err(status) => {
                let context = if done == 0 {
                    "submitting the jobs".to_owned()
                } else {
                    format!(
                        "submitting jobs {}– (the first {done} were submitted)",
                        done + 1
                    )
                };
                return Err(anyhow::Error::new(status).context(context));
            }
        }
    }
}

/// The name of a gRPC code for people: `INVALID_ARGUMENT`.
pub(crate) fn code_name(code: i32) -> String {
    let name = format!("{:?}", tonic::Code::from_i32(code));
    let mut out = String::new();
    for (index, ch) in name.chars().enumerate() {
        if ch.is_uppercase() && index > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

/// A refused item as JSON: `{"error": {"code": "INVALID_ARGUMENT", "message": …}, "source": …}`.
pub(crate) fn refusal_json(source: &str, error: &v1::ItemError) -> serde_json::Value {
    serde_json::json!({
        "error": { "code": code_name(error.code), "message": error.message },
        "source": source,
    })
}

/// Prints what became of each item: a line per job (or its id with `quiet`, its JSON with -o
/// json), each refusal on stderr (and as JSON on stdout with -o json), then a summary line.
/// With `watching`, jobs get no line of their own: the watch shows them.
pub(crate) fn print(
    ctx: &Ctx,
    outcomes: &[Outcome],
    quiet: bool,
    watching: bool,
) -> anyhow::Result<()> {
    let (mut new, mut before, mut refused) = (0, 0, 0);
    for outcome in outcomes {
        match &outcome.result {
            Ok(submitted) => {
                if submitted.created {
                    new += 1;
                } else {
                    before += 1;
                }
                if watching {
                    continue;
                }
                if ctx.json() {
                    json::print_line(&json::job(&submitted.job))?;
                } else if quiet {
                    crate::out::line(&submitted.job.id)?;
                } else {
                    crate::out::line(format_args!("{}", job_line(&outcome.source, submitted)))?;
                }
            }
            Err(error) => {
                refused += 1;
                if ctx.json() {
                    json::print_line(&refusal_json(&outcome.source, error))?;
                }
                eprintln!("error: {}: {}", outcome.source, error.message);
            }
        }
    }
    if ctx.json() || quiet {
        return Ok(());
    }
    let mut summary = match (new, before) {
        (_, 0) => format!("submitted {new} job{}", plural(new)),
        (0, _) => format!(
            "nothing new: {} submitted before with the same spec (`reelay job retry ID` runs one \
             again; a new --request-id submits them anew)",
            if before == 1 {
                "the job was".to_owned()
            } else {
                format!("all {before} jobs were")
            }
        ),
        _ => format!(
            "submitted {new} new job{}; {before} more {} submitted before with the same spec (not again)",
            plural(new),
            if before == 1 { "was" } else { "were" }
        ),
    };
    if refused > 0 {
        summary.push_str(&format!("; {refused} refused (above)"));
    }
    crate::out::line(summary)?;
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `job <id> queued: <why it waits>  (<source>)`.
fn job_line(source: &str, submitted: &Submitted) -> String {
    let job = &submitted.job;
    let state = format::job_state(job.state).to_lowercase();
    let note = format::job_note(job);
    let mut line = format!("job {} {state}", job.id);
    if !note.is_empty() && !note.eq_ignore_ascii_case(&state) {
        line.push_str(&format!(": {note}"));
    }
    let before = if submitted.created {
        ""
    } else {
        ", submitted before"
    };
    line.push_str(&format!("  ({source}{before})"));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pipeline: &str, input: &str) -> Item {
        Item {
            spec: v1::JobSpec {
                pipeline: pipeline.into(),
                input_path: input.into(),
                params: [("height".to_owned(), "360".to_owned())].into(),
                ..Default::default()
            },
            request_id: None,
            source: input.into(),
        }
    }

    #[test]
    fn request_ids_follow_the_spec_not_the_run() {
        let mut first = vec![item("transcode", "/a.mov"), item("transcode", "/b.mov")];
        let mut again = first.clone();
        assign_request_ids(&mut first, None).unwrap();
        assign_request_ids(&mut again, None).unwrap();
        let ids = |items: &[Item]| -> Vec<String> {
            items
                .iter()
                .map(|i| i.request_id.clone().unwrap())
                .collect()
        };
        assert_eq!(ids(&first), ids(&again), "the same command, the same ids");
        assert_ne!(ids(&first)[0], ids(&first)[1]);
        assert!(ids(&first)[0].starts_with("spec-"), "{:?}", ids(&first));
        assert_eq!(ids(&first)[0].len(), "spec-".len() + 32);

        let mut prefixed = vec![item("transcode", "/a.mov")];
        assign_request_ids(&mut prefixed, Some("run2")).unwrap();
        let id = prefixed[0].request_id.clone().unwrap();
        assert_eq!(id, format!("run2/{}", &ids(&first)[0]["spec-".len()..]));
    }

    /// The web UI derives the same ids (web/src/lib/specRequestId.test.ts checks this vector):
    /// keys sorted by code point, strings escaped as JSON, every field present.
    #[test]
    fn a_known_spec_has_the_id_the_web_ui_derives() {
        let spec = v1::JobSpec {
            pipeline: "copy".into(),
            params: [
                ("zeta", "a\"b\n\u{1}"),
                ("label", "x"),
                ("é", "ü"),
                ("😀", "smile"),
                ("\u{ff01}", "bang"),
            ]
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .into(),
            input_uri: "upload:0a1b2c3d-0000-8000-8000-000000000000".into(),
            priority: -2,
            max_attempts: 1,
            labels: [("zone".to_owned(), "a".to_owned())].into(),
            ..Default::default()
        };
        assert_eq!(
            spec_hash(&spec).unwrap(),
            "ccff377ec1145a3743d43b897fa1c7d0"
        );
        let mut items = vec![Item {
            spec,
            request_id: None,
            source: "a.bin".into(),
        }];
        assign_request_ids(&mut items, None).unwrap();
        assert_eq!(
            items[0].request_id.as_deref(),
            Some("spec-ccff377ec1145a3743d43b897fa1c7d0")
        );
    }

    #[test]
    fn the_same_spec_twice_is_two_jobs_and_given_ids_stay() {
        let mut items = vec![item("count", ""), item("count", ""), item("count", "")];
        items[2].request_id = Some("mine".into());
        assign_request_ids(&mut items, None).unwrap();
        let first = items[0].request_id.clone().unwrap();
        assert_eq!(items[1].request_id.clone().unwrap(), format!("{first}-2"));
        assert_eq!(items[2].request_id.as_deref(), Some("mine"));
    }

    #[test]
    fn batches_hold_at_most_the_limit_and_a_few_mib() {
        let items: Vec<Item> = (0..2500).map(|n| item("count", &format!("/{n}"))).collect();
        let sizes: Vec<usize> = batches(&items).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        let mut big = item("count", "/x");
        big.spec.params.insert("blob".into(), "x".repeat(1 << 20));
        let items = vec![big.clone(), big.clone(), big.clone(), big];
        let sizes: Vec<usize> = batches(&items).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [2, 2], "3 MiB at most per batch");
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn codes_have_their_grpc_names() {
        assert_eq!(code_name(3), "INVALID_ARGUMENT");
        assert_eq!(code_name(13), "INTERNAL");
        assert_eq!(code_name(5), "NOT_FOUND");
    }
}
