//! An object into a local file: resumed from what the file already holds, checked against the
//! size and SHA-256 it must have.

use std::path::Path;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::blobs::{Blobs, ObjectRef};
use crate::error::ArtifactError;
use crate::hash_lane::HashLane;

/// What the fetched file must be.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub size: u64,
    /// Lowercase hex; `None` when not known beforehand (then it is only computed).
    pub sha256: Option<&'a str>,
}

/// Copies `object` into `file`, keeping the bytes `file` already holds (a fetch cut before) and
/// asking the store only for the rest. `progress` hears the bytes the file holds, from the first
/// ones. Returns the SHA-256 of the whole file; a size or SHA-256 that is not the expected one is
/// [`ArtifactError::Integrity`] (the caller decides whether to start again from nothing).
pub async fn fetch_to_file(
    blobs: &dyn Blobs,
    object: &ObjectRef,
    expected: &Expected<'_>,
    file: &Path,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<String, ArtifactError> {
    let disk = |what: &str, err: std::io::Error| {
        ArtifactError::disk(&format!("{what} {}", file.display()), &err)
    };
    let mut out = tokio::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(file)
        .await
        .map_err(|err| disk("opening", err))?;
    let mut have = out
        .metadata()
        .await
        .map_err(|err| disk("reading", err))?
        .len();
    if have > expected.size {
        out.set_len(0).await.map_err(|err| disk("emptying", err))?;
        have = 0;
    }
    let mut hasher = Sha256::new();
    if have > 0 {
        hash_prefix(file, have, &mut hasher)
            .await
            .map_err(|err| disk("reading", err))?;
    }
    progress(have);
    // The rest is hashed beside the writes.
    let mut hasher = HashLane::start(hasher);
    if have < expected.size {
        let mut stream = blobs.read(object, have).await?;
        let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, &mut out);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if have + chunk.len() as u64 > expected.size {
                return Err(ArtifactError::Integrity(format!(
                    "{object} is longer than the {} bytes expected (it changed?)",
                    expected.size
                )));
            }
            hasher.update(chunk.clone()).await?;
            writer
                .write_all(&chunk)
                .await
                .map_err(|err| disk("writing", err))?;
            have += chunk.len() as u64;
            progress(have);
        }
        writer.flush().await.map_err(|err| disk("writing", err))?;
    }
    out.sync_all().await.map_err(|err| disk("syncing", err))?;
    if have != expected.size {
        return Err(ArtifactError::Integrity(format!(
            "{object}: got {have} bytes, expected {}",
            expected.size
        )));
    }
    let sha256 = hasher.finish().await?;
    if let Some(want) = expected.sha256
        && !want.eq_ignore_ascii_case(&sha256)
    {
        return Err(ArtifactError::Integrity(format!(
            "{object}: SHA-256 {sha256}, expected {want}"
        )));
    }
    Ok(sha256)
}

/// Feeds the first `len` bytes of `file` to `hasher`.
async fn hash_prefix(file: &Path, len: u64, hasher: &mut Sha256) -> std::io::Result<()> {
    let mut input = tokio::fs::File::open(file).await?.take(len);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = input.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        hasher.update(&buffer[..read]);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::location::{S3Options, StoreLocation};
    use crate::object::ObjectBlobs;
    use crate::writer::PartWriter;

    async fn stored(data: &[u8]) -> (tempfile::TempDir, Arc<dyn Blobs>, ObjectRef) {
        let dir = tempfile::tempdir().unwrap();
        let blobs: Arc<dyn Blobs> = Arc::new(
            ObjectBlobs::open(
                &StoreLocation::Local(dir.path().join("a")),
                &S3Options::default(),
            )
            .unwrap(),
        );
        let mut writer = PartWriter::begin(Arc::clone(&blobs), "uploads/x", 1024)
            .await
            .unwrap();
        writer.write(data).await.unwrap();
        writer.seal().await.unwrap();
        writer.complete().await.unwrap();
        (dir, blobs, ObjectRef::stored("uploads/x"))
    }

    #[tokio::test]
    async fn fetches_resumes_and_verifies() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 200) as u8).collect();
        let sha = hex::encode(Sha256::digest(&data));
        let (dir, blobs, object) = stored(&data).await;
        let file = dir.path().join("partial");
        // A fetch cut after 1234 bytes.
        std::fs::write(&file, &data[..1234]).unwrap();
        let mut seen = Vec::new();
        let expected = Expected {
            size: 5000,
            sha256: Some(&sha),
        };
        let got = fetch_to_file(blobs.as_ref(), &object, &expected, &file, &mut |n| {
            seen.push(n)
        })
        .await
        .unwrap();
        assert_eq!(got, sha);
        assert_eq!(std::fs::read(&file).unwrap(), data);
        assert_eq!(seen.first(), Some(&1234));
        assert_eq!(seen.last(), Some(&5000));

        // A file that holds wrong bytes fails the check (and is not trusted).
        std::fs::write(&file, vec![9u8; 100]).unwrap();
        let err = fetch_to_file(blobs.as_ref(), &object, &expected, &file, &mut |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, ArtifactError::Integrity(_)), "{err}");

        // A wrong size promised.
        std::fs::remove_file(&file).unwrap();
        let wrong = Expected {
            size: 4000,
            sha256: None,
        };
        let err = fetch_to_file(blobs.as_ref(), &object, &wrong, &file, &mut |_| {})
            .await
            .unwrap_err();
        assert!(err.to_string().contains("longer"), "{err}");
    }
}
