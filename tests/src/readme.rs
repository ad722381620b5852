//! The README's commands, read from README.md itself, so a test runs exactly what a newcomer types
//! and the two cannot drift apart.

/// The shell commands of the `sh` code blocks in the section headed `heading` (`## Quickstart`), in
/// order: comments removed, lines continued with `\` joined, blank lines dropped.
pub fn commands(readme: &str, heading: &str) -> Vec<String> {
    let mut in_section = false;
    let mut in_block = false;
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in readme.lines() {
        if !in_block && line.starts_with("## ") {
            in_section = line.trim_end() == heading;
            continue;
        }
        if !in_section {
            continue;
        }
        let fence = line.trim_start();
        if fence.starts_with("```") {
            in_block = !in_block && fence.trim_start_matches('`').trim() == "sh";
            continue;
        }
        if !in_block {
            continue;
        }
        let code = strip_comment(line);
        let (code, continued) = match code.trim_end().strip_suffix('\\') {
            Some(head) => (head.trim_end().to_owned(), true),
            None => (code.trim_end().to_owned(), false),
        };
        pending.push_str(code.trim_start());
        if continued {
            pending.push(' ');
            continue;
        }
        let command = std::mem::take(&mut pending).trim().to_owned();
        if !command.is_empty() {
            commands.push(command);
        }
    }
    commands
}

/// `line` without a trailing `# comment` (a `#` after whitespace, outside quotes).
fn strip_comment(line: &str) -> String {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') if previous.is_whitespace() => return line[..at].to_owned(),
            _ => {}
        }
        previous = c;
    }
    line.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_blocks_of_one_section() {
        let readme = "# T\n## Set up\n```sh\nsetup # no\n```\n## Quickstart\ntext\n```sh\n\
                      a --x 1   # what\n# only a comment\n\nb '{\"k\": \"#1\"}' \\\n  c:1 \\\n  d\n```\n\
                      ```text\nnot a command\n```\n```sh\ne#f\n```\n## Next\n```sh\nz\n```\n";
        assert_eq!(
            commands(readme, "## Quickstart"),
            ["a --x 1", "b '{\"k\": \"#1\"}' c:1 d", "e#f"]
        );
    }

    #[test]
    fn the_readme_has_a_quickstart() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md");
        let quickstart = commands(&readme, "## Quickstart");
        assert!(
            quickstart
                .iter()
                .any(|c| c.starts_with("reelay job submit count")),
            "{quickstart:?}"
        );
        assert!(
            quickstart.iter().any(|c| c.starts_with("grpcurl")),
            "{quickstart:?}"
        );
    }
}
