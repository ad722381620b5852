//! Where the artifact store is: the coordinator's `--artifacts` URL, and the S3 options.
//!
//! `--artifacts` takes a directory (absolute, or `file:///…`), the embedded default, or
//! `s3://BUCKET[/PREFIX]`. S3 settings come from the standard `AWS_*` variables as the
//! `object_store` crate reads them (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL` for an S3-compatible server, `AWS_ALLOW_HTTP=true` for plain http).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use object_store::aws::AmazonS3ConfigKey;

use crate::error::ArtifactError;

/// The artifact store named by `--artifacts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A directory on the coordinator; workers reach it through the coordinator.
    Local(PathBuf),
    /// A bucket (and a key prefix, maybe empty) of an S3 endpoint; workers go to it directly.
    S3 { bucket: String, prefix: String },
}

impl StoreLocation {
    /// Parses `--artifacts`.
    pub fn parse(text: &str) -> Result<Self, ArtifactError> {
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(ArtifactError::Invalid(format!(
                    "--artifacts {text:?} names no bucket: use s3://BUCKET or s3://BUCKET/PREFIX"
                )));
            }
            return Ok(StoreLocation::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        let path = text.strip_prefix("file://").unwrap_or(text);
        if path.contains("://") {
            return Err(ArtifactError::Invalid(format!(
                "--artifacts {text:?}: use a directory or s3://BUCKET/PREFIX"
            )));
        }
        let path = std::path::absolute(path).map_err(|err| {
            ArtifactError::Invalid(format!(
                "--artifacts {text:?} cannot be made absolute: {err}"
            ))
        })?;
        Ok(StoreLocation::Local(path))
    }

    /// The URL a worker is told for an S3 store.
    pub fn url(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Local(path) => write!(f, "{}", path.display()),
            StoreLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// S3 settings as `object_store`'s option names (`aws_endpoint`, `aws_region`, …) and values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Options(pub BTreeMap<String, String>);

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets are never shown.
        let shown: BTreeMap<&str, &str> = self
            .0
            .iter()
            .map(|(key, value)| {
                let value = if is_secret(key) {
                    "***"
                } else {
                    value.as_str()
                };
                (key.as_str(), value)
            })
            .collect();
        shown.fmt(f)
    }
}

fn is_secret(key: &str) -> bool {
    key.contains("secret") || key.contains("token") || key.contains("password")
}

impl S3Options {
    /// The `AWS_*` variables of this process that `object_store` understands.
    pub fn from_env() -> Self {
        Self::from_vars(std::env::vars())
    }

    /// The `AWS_*` variables among `vars` that `object_store` understands.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut options = BTreeMap::new();
        for (name, value) in vars {
            if !name.starts_with("AWS_") {
                continue;
            }
            if let Ok(key) = AmazonS3ConfigKey::from_str(&name.to_ascii_lowercase()) {
                options.insert(key.as_ref().to_owned(), value);
            }
        }
        S3Options(options)
    }

    /// These options with `overrides` on top (a worker's own variables over the coordinator's).
    pub fn overridden_by(&self, overrides: &S3Options) -> S3Options {
        let mut merged = self.0.clone();
        merged.extend(overrides.0.clone());
        S3Options(merged)
    }

    /// The options as `object_store` keys; unknown names are refused with their name.
    pub fn keys(&self) -> Result<Vec<(AmazonS3ConfigKey, String)>, ArtifactError> {
        self.0
            .iter()
            .map(|(name, value)| {
                AmazonS3ConfigKey::from_str(name)
                    .map(|key| (key, value.clone()))
                    .map_err(|_| ArtifactError::Invalid(format!("unknown S3 option {name:?}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_directories_and_buckets() {
        assert_eq!(
            StoreLocation::parse("/var/lib/reelay/artifacts").unwrap(),
            StoreLocation::Local("/var/lib/reelay/artifacts".into())
        );
        assert_eq!(
            StoreLocation::parse("file:///x/y").unwrap(),
            StoreLocation::Local("/x/y".into())
        );
        let relative = StoreLocation::parse("rel/dir").unwrap();
        assert!(matches!(&relative, StoreLocation::Local(path) if path.is_absolute()));
        let s3 = StoreLocation::parse("s3://media/reelay/").unwrap();
        assert_eq!(
            s3,
            StoreLocation::S3 {
                bucket: "media".into(),
                prefix: "reelay".into()
            }
        );
        assert_eq!(s3.url(), "s3://media/reelay");
        assert_eq!(
            StoreLocation::parse("s3://media").unwrap().url(),
            "s3://media"
        );
        for bad in ["s3://", "s3:///x", "gs://bucket"] {
            assert!(StoreLocation::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_aws_variables_and_hides_secrets() {
        let options = S3Options::from_vars([
            (
                "AWS_ENDPOINT_URL".to_owned(),
                "http://127.0.0.1:9000".to_owned(),
            ),
            ("AWS_ALLOW_HTTP".to_owned(), "true".to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "hush".to_owned()),
            ("AWS_NOT_A_THING".to_owned(), "x".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ]);
        assert_eq!(options.0.len(), 3, "{options:?}");
        assert_eq!(options.0["aws_endpoint"], "http://127.0.0.1:9000");
        assert!(!format!("{options:?}").contains("hush"));
        let mine = S3Options::from_vars([("AWS_ALLOW_HTTP".to_owned(), "false".to_owned())]);
        let merged = options.overridden_by(&mine);
        assert_eq!(merged.0["allow_http"], "false");
        assert_eq!(merged.keys().unwrap().len(), 3);
    }
}
