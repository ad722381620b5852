//! The `::progress` line of the pipeline protocol.
//!
//! `::progress <0-100> [stage words] [fps=<n>] [eta=<seconds>]` sets a job's progress. The number may
//! have decimals; `fps=` and `eta=` tokens anywhere after it are read as numbers and left out of the
//! stage. Any other line, and a `::progress` line that does not parse, is an ordinary log line.

/// A parsed `::progress` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// 0 to 100, rounded down.
    pub percent: u32,
    pub stage: String,
    pub fps: Option<f64>,
    pub eta_seconds: Option<f64>,
}

const MARKER: &str = "::progress";

/// Parses one output line; `None` when it is not a valid progress line.
pub fn parse_progress(line: &str) -> Option<Progress> {
    let rest = line.trim_end_matches(['\r', '\n']).strip_prefix(MARKER)?;
    // `::progressive` is not a progress line: the marker must be followed by whitespace.
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let mut words = rest.split_whitespace();
    let percent: f64 = words.next()?.parse().ok()?;
    if !(0.0..=100.0).contains(&percent) {
        return None;
    }
    let mut stage = Vec::new();
    let mut fps = None;
    let mut eta_seconds = None;
    for word in words {
        if let Some(value) = word.strip_prefix("fps=").and_then(parse_non_negative) {
            fps = Some(value);
        } else if let Some(value) = word.strip_prefix("eta=").and_then(parse_non_negative) {
            eta_seconds = Some(value);
        } else {
            stage.push(word);
        }
    }
    Some(Progress {
        percent: percent as u32,
        stage: stage.join(" "),
        fps,
        eta_seconds,
    })
}

fn parse_non_negative(text: &str) -> Option<f64> {
    text.parse::<f64>()
        .ok()
        .filter(|value| value.is_finite() && *value >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_percent_and_stage() {
        let p = parse_progress("::progress 42 encoding video").unwrap();
        assert_eq!(p.percent, 42);
        assert_eq!(p.stage, "encoding video");
        assert_eq!(p.fps, None);
    }

    #[test]
    fn parses_decimals_fps_and_eta() {
        let p = parse_progress("::progress 12.9 transcoding fps=59.5 eta=3.25\n").unwrap();
        assert_eq!(p.percent, 12);
        assert_eq!(p.stage, "transcoding");
        assert_eq!(p.fps, Some(59.5));
        assert_eq!(p.eta_seconds, Some(3.25));
    }

    #[test]
    fn bare_percent_has_empty_stage() {
        assert_eq!(parse_progress("::progress 100").unwrap().stage, "");
        assert_eq!(parse_progress("::progress\t0").unwrap().percent, 0);
    }

    #[test]
    fn rejects_what_is_not_a_progress_line() {
        for line in [
            "",
            "progress 10",
            " ::progress 10",
            "::progress",
            "::progress ",
            "::progressive 10",
            "::progress ten",
            "::progress -1",
            "::progress 100.5",
            "::progress NaN",
            "::progress inf",
        ] {
            assert_eq!(parse_progress(line), None, "{line:?}");
        }
    }

    #[test]
    fn malformed_fps_is_kept_as_stage() {
        let p = parse_progress("::progress 5 step fps=abc eta=-3").unwrap();
        assert_eq!(p.stage, "step fps=abc eta=-3");
        assert_eq!(p.fps, None);
        assert_eq!(p.eta_seconds, None);
    }
}
