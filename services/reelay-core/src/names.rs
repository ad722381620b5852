//! Validation of names that reach the file system or storage keys: output file names, node ids
//! and labels.

use std::collections::BTreeMap;

use crate::error::{Error, quote};

/// Longest output file name accepted (the common file-system limit).
pub const MAX_NAME_LEN: usize = 255;

/// Checks an output file name before it is joined to a job's output directory.
///
/// A name is one path component: not empty, not `.` or `..`, no `/`, `\` or NUL. With that, the
/// joined path cannot leave the directory.
pub fn validate_output_name(name: &str, field: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        "an output name is required"
    } else if name == "." || name == ".." {
        "`.` and `..` are not output names"
    } else if name.contains('/') || name.contains('\\') {
        "an output name is a file name, without `/` or `\\`"
    } else if name.contains('\0') {
        "an output name cannot contain NUL"
    } else if name.len() > MAX_NAME_LEN {
        "an output name is at most 255 bytes"
    } else {
        return Ok(());
    };
    Err(Error::invalid(
        field,
        format!("{reason} (got {})", quote(name)),
    ))
}

/// Checks a node id: 1–64 characters of `[A-Za-z0-9._-]`.
pub fn validate_node_id(id: &str, field: &str) -> Result<(), Error> {
    let valid_chars = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if id.is_empty() || id.len() > 64 || !valid_chars {
        return Err(Error::invalid(
            field,
            format!(
                "{} is not a node id: use 1-64 letters, digits, '.', '_' or '-'",
                quote(id)
            ),
        ));
    }
    Ok(())
}

/// Most labels a job or a node may have.
pub const MAX_LABELS: usize = 64;

/// Checks job or node labels: at most 64, keys of 1-128 bytes, values of at most 256.
pub fn validate_labels(labels: &BTreeMap<String, String>, field: &str) -> Result<(), Error> {
    if labels.len() > MAX_LABELS {
        return Err(Error::invalid(
            field,
            format!("{} labels; at most {MAX_LABELS}", labels.len()),
        ));
    }
    for (key, value) in labels {
        if key.is_empty() || key.len() > 128 || value.len() > 256 {
            return Err(Error::invalid(
                field,
                format!(
                    "label {}={}: keys are 1-128 bytes, values at most 256",
                    quote(key),
                    quote(value)
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_file_names() {
        for name in [
            "out.mp4",
            "final_without_post_process__a.mp4",
            "a..b",
            ".hidden",
            "x y",
        ] {
            validate_output_name(name, "name").unwrap();
        }
    }

    #[test]
    fn rejects_names_that_could_leave_the_directory() {
        let long = "a".repeat(256);
        for name in [
            "",
            ".",
            "..",
            "../etc/passwd",
            "a/b",
            "/etc/passwd",
            "a\\b",
            "a\0b",
            long.as_str(),
        ] {
            let err = validate_output_name(name, "name").unwrap_err();
            assert!(err.to_string().starts_with("name: "), "{err}");
        }
    }

    #[test]
    fn labels() {
        let ok: BTreeMap<String, String> = (0..64).map(|i| (format!("k{i}"), "v".into())).collect();
        validate_labels(&ok, "labels").unwrap();
        let many: BTreeMap<String, String> =
            (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
        let long_key = BTreeMap::from([("k".repeat(129), String::new())]);
        let long_value = BTreeMap::from([("k".to_owned(), "v".repeat(100_000))]);
        let empty_key = BTreeMap::from([(String::new(), "v".to_owned())]);
        for labels in [many, long_key, long_value, empty_key] {
            let err = validate_labels(&labels, "labels").unwrap_err().to_string();
            assert!(err.starts_with("labels: ") && err.len() < 300, "{err}");
        }
    }

    #[test]
    fn node_ids() {
        validate_node_id("worker-1.eu_west", "id").unwrap();
        for id in ["", "a b", "a/b", &"x".repeat(65)] {
            assert!(validate_node_id(id, "id").is_err(), "{id:?}");
        }
    }
}
