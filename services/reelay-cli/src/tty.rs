//! The terminal: whether one is there, colours, and asking before destructive commands.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;

/// Whether someone can be asked: stdin and stderr are a terminal. Without one there is nobody to
/// ask and destructive commands go ahead (scripts pass `--yes` to be explicit).
pub(crate) fn can_ask() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Asks `question [y/N]` on stderr and reads the answer from stdin; yes when nobody can be asked.
pub(crate) fn confirm(question: &str) -> anyhow::Result<bool> {
    if !can_ask() {
        return Ok(true);
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer")?;
    Ok(is_yes(&answer))
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Whether stdout takes ANSI colours (a terminal, and `NO_COLOR` not set).
pub(crate) fn color_stdout() -> bool {
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
        && std::env::var("TERM").map_or(true, |term| term != "dumb")
}

/// `text` in a colour (an ANSI SGR code such as `31` for red) when `enabled`.
pub(crate) fn paint(text: &str, code: &str, enabled: bool) -> String {
    if enabled {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_is_yes() {
        assert!(is_yes("y\n"));
        assert!(is_yes(" YES "));
        assert!(!is_yes("\n"));
        assert!(!is_yes("no"));
        assert!(!is_yes("yess"));
    }

    #[test]
    fn paint_only_when_enabled() {
        assert_eq!(paint("x", "31", false), "x");
        assert_eq!(paint("x", "31", true), "\x1b[31mx\x1b[0m");
    }
}
