//! Where things live in the artifact store. Keys are `/`-separated, under the store's prefix:
//!
//! - `uploads/<upload id>` — an input sent with UploadInput or `POST /upload`;
//! - `outputs/<job id>/<attempt>/<file name>` — an output of one attempt of a job. The attempt in
//!   the key means a retried or superseded attempt never overwrites another's files, and a worker
//!   that re-uploads after a restart writes the same key again (no duplicate).

use reelay_core::input::InputUri;

use crate::blobs::ObjectRef;
use crate::error::ArtifactError;

/// Longest key accepted.
const MAX_KEY_LEN: usize = 1024;

/// The key of an upload.
pub fn upload(id: &str) -> String {
    format!("uploads/{id}")
}

/// The key of output `name` of `attempt` of job `job_id`.
pub fn output(job_id: &str, attempt: u32, name: &str) -> String {
    format!("outputs/{job_id}/{attempt}/{name}")
}

/// The prefix of every output of every attempt of a job (for deleting them).
pub fn job_outputs(job_id: &str) -> String {
    format!("outputs/{job_id}/")
}

/// Where the input a job names is: an upload in the store, or an object of another bucket.
pub fn input_object(uri: &InputUri) -> ObjectRef {
    match uri {
        InputUri::Upload(id) => ObjectRef::stored(upload(id)),
        InputUri::S3 { bucket, key } => ObjectRef {
            bucket: Some(bucket.clone()),
            key: key.clone(),
        },
        InputUri::Output { job, attempt, name } => ObjectRef::stored(output(job, *attempt, name)),
    }
}

/// Checks a key from a peer: segments that are not empty, `.` or `..`, no control characters.
pub fn validate(key: &str) -> Result<(), ArtifactError> {
    let bad = |why: &str| ArtifactError::Invalid(format!("key {key:?}: {why}"));
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(bad("keys are 1 to 1024 bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err(bad("no control characters"));
    }
    if key
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(bad("segments may not be empty, '.' or '..'"));
    }
    Ok(())
}

/// Whether a worker may write `key`: outputs only.
pub fn is_output(key: &str) -> bool {
    key.starts_with("outputs/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_their_checks() {
        assert_eq!(output("j", 2, "a b.mp4"), "outputs/j/2/a b.mp4");
        assert!(output("j", 2, "x").starts_with(&job_outputs("j")));
        assert!(!output("j", 2, "x").starts_with(&job_outputs("j2")[..job_outputs("j2").len()]));
        validate(&upload("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")).unwrap();
        validate(&output("j", 1, "é.mp4")).unwrap();
        for bad in ["", "/a", "a//b", "a/../b", "a/.", "a\nb", "a/"] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
        assert!(is_output("outputs/j/1/x") && !is_output("uploads/x"));
    }
}
