//! Parsing what people type: `KEY=VALUE` pairs, durations, job states, input paths.
//!
//! Each parser returns a message that names what was expected, so clap can print it next to the flag.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use reelay_proto::v1;

/// `KEY=VALUE`, split at the first `=` (the value may contain more). For `--param` and `--label`.
pub(crate) fn key_value(text: &str) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!("expected KEY=VALUE, got {text:?}"));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("the key is empty in {text:?}; expected KEY=VALUE"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// The pairs of a repeated flag as a map; a key given twice is an error rather than a silent
/// override.
pub(crate) fn pairs_to_map(
    pairs: &[(String, String)],
    flag: &str,
) -> Result<HashMap<String, String>, String> {
    let mut map = HashMap::with_capacity(pairs.len());
    for (key, value) in pairs {
        if map.insert(key.clone(), value.clone()).is_some() {
            return Err(format!("{flag}: {key:?} is given more than once"));
        }
    }
    Ok(map)
}

/// Whole seconds, written as `90` or as a duration such as `90s`, `10m`, `1h30m`.
pub(crate) fn seconds(text: &str) -> Result<u32, String> {
    let text = text.trim();
    let secs = match text.parse::<u64>() {
        Ok(secs) => secs,
        Err(_) => humantime::parse_duration(text)
            .map_err(|_| {
                format!("expected seconds (90) or a duration (90s, 10m, 1h30m), got {text:?}")
            })?
            .as_secs(),
    };
    u32::try_from(secs).map_err(|_| format!("{text:?} is too long (at most {} seconds)", u32::MAX))
}

/// The input path as the server wants it: absolute. A relative path is taken from `cwd`.
pub(crate) fn absolute_input(path: &Path, cwd: &Path) -> Result<String, String> {
    let absolute: PathBuf = if path.is_absolute() {
        path.components().collect()
    } else {
        cwd.join(path).components().collect()
    };
    absolute
        .into_os_string()
        .into_string()
        .map_err(|raw| format!("--input: {raw:?} is not valid UTF-8"))
}

/// A job state as typed on the command line (`--state running,queued`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StateArg {
    Queued,
    Assigned,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// queued, assigned and running.
    Active,
    /// succeeded, failed and cancelled.
    Finished,
}

impl StateArg {
    fn states(self) -> &'static [v1::JobState] {
        use v1::JobState as S;
        match self {
            StateArg::Queued => &[S::Queued],
            StateArg::Assigned => &[S::Assigned],
            StateArg::Running => &[S::Running],
            StateArg::Succeeded => &[S::Succeeded],
            StateArg::Failed => &[S::Failed],
            StateArg::Cancelled => &[S::Cancelled],
            StateArg::Active => &[S::Queued, S::Assigned, S::Running],
            StateArg::Finished => &[S::Succeeded, S::Failed, S::Cancelled],
        }
    }
}

/// The wire states for `--state` values, each once, in lifecycle order.
pub(crate) fn wire_states(args: &[StateArg]) -> Vec<i32> {
    let mut states: Vec<i32> = args
        .iter()
        .flat_map(|arg| arg.states())
        .map(|state| *state as i32)
        .collect();
    states.sort_unstable();
    states.dedup();
    states
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_splits_at_the_first_equals_sign() {
        assert_eq!(key_value("steps=5").unwrap(), ("steps".into(), "5".into()));
        assert_eq!(
            key_value("expr=a=b").unwrap(),
            ("expr".into(), "a=b".into())
        );
        assert_eq!(
            key_value("empty=").unwrap(),
            ("empty".into(), String::new())
        );
        assert!(key_value("steps").unwrap_err().contains("KEY=VALUE"));
        assert!(key_value("=5").unwrap_err().contains("key is empty"));
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let pairs = vec![
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ];
        assert_eq!(pairs_to_map(&pairs, "--param").unwrap().len(), 2);
        let twice = vec![
            ("a".to_owned(), "1".to_owned()),
            ("a".to_owned(), "2".to_owned()),
        ];
        let err = pairs_to_map(&twice, "--param").unwrap_err();
        assert_eq!(err, "--param: \"a\" is given more than once");
    }

    #[test]
    fn seconds_take_numbers_and_durations() {
        assert_eq!(seconds("90").unwrap(), 90);
        assert_eq!(seconds("90s").unwrap(), 90);
        assert_eq!(seconds("10m").unwrap(), 600);
        assert_eq!(seconds("1h 30m").unwrap(), 5400);
        assert!(seconds("soon").is_err());
        assert!(seconds("-5").is_err());
        assert!(seconds("99999999999").is_err());
    }

    #[test]
    fn relative_inputs_become_absolute() {
        let cwd = Path::new("/home/ana/videos");
        assert_eq!(
            absolute_input(Path::new("clip.mov"), cwd).unwrap(),
            "/home/ana/videos/clip.mov"
        );
        assert_eq!(
            absolute_input(Path::new("./raw/clip.mov"), cwd).unwrap(),
            "/home/ana/videos/raw/clip.mov"
        );
        assert_eq!(
            absolute_input(Path::new("/srv/in//clip.mov"), cwd).unwrap(),
            "/srv/in/clip.mov"
        );
    }

    #[test]
    fn state_groups_expand() {
        use v1::JobState as S;
        assert_eq!(
            wire_states(&[StateArg::Running, StateArg::Active]),
            vec![S::Queued as i32, S::Assigned as i32, S::Running as i32]
        );
        assert_eq!(wire_states(&[]), Vec::<i32>::new());
    }
}
