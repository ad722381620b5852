//! Validation of names that reach the file system or storage keys: output file names and node ids.

use crate::error::Error;

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
    Err(Error::invalid(field, format!("{reason} (got {name:?})")))
}

/// Checks a node id: 1–64 characters of `[A-Za-z0-9._-]`.
pub fn validate_node_id(id: &str, field: &str) -> Result<(), Error> {
    let valid_chars = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if id.is_empty() || id.len() > 64 || !valid_chars {
        return Err(Error::invalid(
            field,
            format!("{id:?} is not a node id: use 1-64 letters, digits, '.', '_' or '-'"),
        ));
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
    fn node_ids() {
        validate_node_id("worker-1.eu_west", "id").unwrap();
        for id in ["", "a b", "a/b", &"x".repeat(65)] {
            assert!(validate_node_id(id, "id").is_err(), "{id:?}");
        }
    }
}
