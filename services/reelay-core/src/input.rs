//! Where a job's input comes from: `JobSpec.input_uri`, parsed.
//!
//! - `upload:<id>` — a file sent to the coordinator (UploadInput, `POST /upload`); `<id>` is a UUID.
//! - `s3://BUCKET/KEY` — an object of the coordinator's S3 endpoint.
//!
//! Resolving the URI (does the upload exist, is it complete, how big is the object) is the
//! coordinator's business; this module only says whether the text is one.

use std::fmt;

use crate::error::{Error, quote};

/// Longest `input_uri` accepted.
const MAX_URI_LEN: usize = 4096;

/// A parsed `input_uri`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputUri {
    /// `upload:<id>`, the id in its canonical (lowercase, hyphenated) form.
    Upload(String),
    /// `s3://BUCKET/KEY`.
    S3 { bucket: String, key: String },
    /// `job:<id>/<attempt>/<name>`: an output of another job (how a step takes another step's
    /// files).
    Output {
        job: String,
        attempt: u32,
        name: String,
    },
}

impl InputUri {
    /// Parses `text`; `field` names the request field in errors.
    pub fn parse(text: &str, field: &str) -> Result<Self, Error> {
        if text.len() > MAX_URI_LEN || text.contains('\0') {
            return Err(Error::invalid(
                field,
                "input URIs are at most 4096 bytes, without NUL",
            ));
        }
        if let Some(id) = text.strip_prefix("upload:") {
            let id = uuid::Uuid::parse_str(id).map_err(|_| {
                Error::invalid(
                    field,
                    format!(
                        "{} is not an upload id: use upload:<id> with the id UploadInput returned",
                        quote(id)
                    ),
                )
            })?;
            return Ok(InputUri::Upload(id.hyphenated().to_string()));
        }
        if let Some(rest) = text.strip_prefix("job:") {
            let bad = || {
                Error::invalid(
                    field,
                    format!(
                        "{} names no output: use job:<job id>/<attempt>/<output name>",
                        quote(text)
                    ),
                )
            };
            let mut parts = rest.splitn(3, '/');
            let (Some(job), Some(attempt), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            let job = uuid::Uuid::parse_str(job).map_err(|_| bad())?;
            let attempt: u32 = attempt.parse().map_err(|_| bad())?;
            crate::names::validate_output_name(name, field).map_err(|_| bad())?;
            return Ok(InputUri::Output {
                job: job.hyphenated().to_string(),
                attempt,
                name: name.to_owned(),
            });
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() || key.is_empty() || key.ends_with('/') {
                return Err(Error::invalid(
                    field,
                    format!("{} names no object: use s3://BUCKET/KEY", quote(text)),
                ));
            }
            return Ok(InputUri::S3 {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            });
        }
        Err(Error::invalid(
            field,
            format!(
                "{} is not an input URI: use upload:<id> (a file sent with `reelay job submit \
                 --upload`) or s3://BUCKET/KEY",
                quote(text)
            ),
        ))
    }

    /// The file name a pipeline sees for an `s3://` object: the key's last segment.
    pub fn s3_name(key: &str) -> &str {
        key.rsplit('/').next().unwrap_or(key)
    }
}

impl fmt::Display for InputUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputUri::Upload(id) => write!(f, "upload:{id}"),
            InputUri::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            InputUri::Output { job, attempt, name } => write!(f, "job:{job}/{attempt}/{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uploads_and_s3_objects() {
        let id = "0193A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B";
        assert_eq!(
            InputUri::parse(&format!("upload:{id}"), "f").unwrap(),
            InputUri::Upload(id.to_lowercase())
        );
        let s3 = InputUri::parse("s3://media/in/clip one.mov", "f").unwrap();
        assert_eq!(
            s3,
            InputUri::S3 {
                bucket: "media".into(),
                key: "in/clip one.mov".into()
            }
        );
        assert_eq!(s3.to_string(), "s3://media/in/clip one.mov");
        assert_eq!(InputUri::s3_name("in/clip one.mov"), "clip one.mov");
        let output = InputUri::parse(
            "job:0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/2/piece 1.mkv",
            "f",
        )
        .unwrap();
        assert_eq!(
            output,
            InputUri::Output {
                job: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
                attempt: 2,
                name: "piece 1.mkv".into()
            }
        );
        assert_eq!(
            output.to_string(),
            "job:0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/2/piece 1.mkv"
        );
    }

    #[test]
    fn refuses_what_names_nothing() {
        for bad in [
            "",
            "upload:",
            "upload:123",
            "s3://",
            "s3://bucket",
            "s3://bucket/",
            "s3:///key",
            "s3://b/dir/",
            "http://x/y",
            "/local/path",
            "job:",
            "job:nope/1/x",
            "job:0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/x/y",
            "job:0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/1/../x",
        ] {
            let err = InputUri::parse(bad, "spec.input_uri").unwrap_err();
            assert!(
                matches!(&err, Error::InvalidArgument { field, .. } if field == "spec.input_uri"),
                "{bad:?}: {err}"
            );
        }
    }
}
