//! Text output for people: tables, ages, durations, sizes and state names.

use std::time::{Duration, SystemTime};

use reelay_proto::v1;

/// A table with a header row; columns are left-aligned and two spaces apart, the last one is not
/// padded (it holds free text such as messages).
#[derive(Debug)]
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(headers: &[&str]) -> Self {
        Table {
            rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(
            cells.len(),
            self.rows[0].len(),
            "a row has one cell per column"
        );
        self.rows.push(cells);
    }

    /// The rows below the header.
    pub(crate) fn len(&self) -> usize {
        self.rows.len() - 1
    }

    pub(crate) fn render(&self) -> String {
        let columns = self.rows[0].len();
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (index, cell) in row.iter().enumerate() {
                if index + 1 == columns {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    let pad = widths[index] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `RUNNING`, `SUCCEEDED`, …: the state name without its `JOB_STATE_` prefix.
pub(crate) fn job_state(state: i32) -> String {
    match v1::JobState::try_from(state) {
        Ok(state) => strip(state.as_str_name(), "JOB_STATE_"),
        Err(_) => format!("UNKNOWN({state})"),
    }
}

/// `READY`, `DRAINING`, `OFFLINE`.
pub(crate) fn node_state(state: i32) -> String {
    match v1::NodeState::try_from(state) {
        Ok(state) => strip(state.as_str_name(), "NODE_STATE_"),
        Err(_) => format!("UNKNOWN({state})"),
    }
}

fn strip(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_owned()
}

pub(crate) fn is_terminal(state: i32) -> bool {
    matches!(
        v1::JobState::try_from(state),
        Ok(v1::JobState::Succeeded | v1::JobState::Failed | v1::JobState::Cancelled)
    )
}

pub(crate) fn time(ts: Option<&prost_types::Timestamp>) -> Option<SystemTime> {
    let ts = ts?;
    let seconds = u64::try_from(ts.seconds).ok()?;
    let nanos = u32::try_from(ts.nanos).unwrap_or(0).min(999_999_999);
    Some(SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos))
}

/// How long ago, coarsely, as in `ls -l` style tables: `12s`, `5m`, `3h`, `2d`.
pub(crate) fn age(then: SystemTime, now: SystemTime) -> String {
    let secs = now.duration_since(then).unwrap_or_default().as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// The age of a timestamp, or `-` when there is none.
pub(crate) fn age_of(ts: Option<&prost_types::Timestamp>, now: SystemTime) -> String {
    time(ts).map_or_else(|| "-".to_owned(), |then| age(then, now))
}

/// A duration to two units: `45s`, `1m05s`, `2h03m`, `3d04h`; `350ms` and `2.3s` when short.
pub(crate) fn duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 => format!("{}ms", duration.as_millis()),
        1..10 => format!("{:.1}s", duration.as_secs_f64()),
        10..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// Seconds as reported by a pipeline (ETA): whole seconds, two units.
pub(crate) fn eta(seconds: f64) -> String {
    let secs = if seconds.is_finite() && seconds > 0.0 {
        seconds.round() as u64
    } else {
        0
    };
    if secs < 10 {
        return format!("{secs}s");
    }
    duration(Duration::from_secs(secs))
}

/// `512 B`, `1.5 KiB`, `20.0 MiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// At most `max` characters, with `…` when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `a=1,b=2` in key order, `-` when empty.
pub(crate) fn pairs<'a>(map: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let mut pairs: Vec<String> = map.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    if pairs.is_empty() {
        return "-".to_owned();
    }
    pairs.sort();
    pairs.join(",")
}

/// A job's node for a table cell: `-` for none, `w1 (away)` when the coordinator cannot reach it.
pub(crate) fn node_cell(job: &v1::Job) -> String {
    match (job.node_id.as_str(), job.node_reachable) {
        ("", _) => "-".to_owned(),
        (node, true) => node.to_owned(),
        (node, false) => format!("{node} (away)"),
    }
}

/// The one line that says why a job is where it is: the pending reason of a queued job, the error
/// of a failed one, else its message.
pub(crate) fn job_note(job: &v1::Job) -> String {
    let queued = job.state == v1::JobState::Queued as i32;
    if queued && !job.pending_reason.is_empty() {
        return match job.queue_position {
            0 => job.pending_reason.clone(),
            position => format!("{}; #{position} in the queue", job.pending_reason),
        };
    }
    if !job.error.is_empty() {
        return job.error.clone();
    }
    job.message.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_leave_the_last_free() {
        let mut table = Table::new(&["ID", "STATE", "MESSAGE"]);
        table.row(vec!["a".into(), "RUNNING".into(), "encoding".into()]);
        table.row(vec!["bbbb".into(), "QUEUED".into(), String::new()]);
        assert_eq!(table.len(), 2);
        assert_eq!(
            table.render(),
            "ID    STATE    MESSAGE\na     RUNNING  encoding\nbbbb  QUEUED\n"
        );
    }

    #[test]
    fn state_names_lose_their_prefix() {
        assert_eq!(job_state(v1::JobState::Running as i32), "RUNNING");
        assert_eq!(job_state(42), "UNKNOWN(42)");
        assert_eq!(node_state(v1::NodeState::Draining as i32), "DRAINING");
        assert!(is_terminal(v1::JobState::Cancelled as i32));
        assert!(!is_terminal(v1::JobState::Queued as i32));
    }

    #[test]
    fn ages_are_coarse() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ago = |secs| age(now - Duration::from_secs(secs), now);
        assert_eq!(ago(0), "0s");
        assert_eq!(ago(59), "59s");
        assert_eq!(ago(60), "1m");
        assert_eq!(ago(7199), "1h");
        assert_eq!(ago(3 * 86_400), "3d");
        // A clock behind the server's does not give negative ages.
        assert_eq!(age(now + Duration::from_secs(5), now), "0s");
        assert_eq!(age_of(None, now), "-");
    }

    #[test]
    fn durations_use_two_units() {
        assert_eq!(duration(Duration::from_millis(2340)), "2.3s");
        assert_eq!(duration(Duration::from_millis(35)), "35ms");
        assert_eq!(duration(Duration::from_secs(45)), "45s");
        assert_eq!(duration(Duration::from_secs(65)), "1m05s");
        assert_eq!(duration(Duration::from_secs(7380)), "2h03m");
        assert_eq!(duration(Duration::from_secs(90_000)), "1d01h");
        assert_eq!(eta(4.4), "4s");
        assert_eq!(eta(65.0), "1m05s");
        assert_eq!(eta(f64::NAN), "0s");
    }

    #[test]
    fn sizes_are_binary() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(20 * 1024 * 1024), "20.0 MiB");
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("a long message", 6), "a lon…");
    }

    #[test]
    fn notes_explain_the_state() {
        let mut job = v1::Job {
            state: v1::JobState::Queued as i32,
            pending_reason: "no node has a free slot".into(),
            queue_position: 3,
            ..Default::default()
        };
        assert_eq!(job_note(&job), "no node has a free slot; #3 in the queue");
        job.state = v1::JobState::Failed as i32;
        job.error = "exit code 3".into();
        assert_eq!(job_note(&job), "exit code 3");
    }

    #[test]
    fn pairs_are_sorted() {
        let map: std::collections::HashMap<String, String> =
            [("b".into(), "2".into()), ("a".into(), "1".into())].into();
        assert_eq!(pairs(&map), "a=1,b=2");
        assert_eq!(pairs(&std::collections::HashMap::new()), "-");
    }
}
