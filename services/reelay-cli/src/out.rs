//! Writing to stdout without panicking: `println!` panics when stdout is a closed pipe
//! (`reelay job list | head -1`); these return the error instead, which ends the command quietly.

use std::io::Write;

/// Writes `text` and a newline to stdout and flushes.
pub(crate) fn line(text: impl std::fmt::Display) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    stdout.flush()
}

/// Writes `text` as it is (a rendered table ends with its own newline) and flushes.
pub(crate) fn text(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// Whether an error is stdout closing under us; nothing useful can be printed then.
pub(crate) fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
