//! Reading a service's log file: the tail for failure messages, and waiting for a line.
//! ANSI colour codes are stripped before matching.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

/// Removes ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The log from byte `offset` on (lossy UTF-8, colours stripped); empty when unreadable.
pub fn read_from(path: &Path, offset: u64) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    strip_ansi(&String::from_utf8_lossy(&bytes))
}

/// The last `lines` lines of the log.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = read_from(path, 0);
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

/// The current size of the log: later reads from here see only what comes after.
pub fn len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Waits until the log, from byte `offset` on, contains `needle`.
pub async fn wait_for(
    path: &Path,
    offset: u64,
    needle: &str,
    timeout: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        if read_from(path, offset).contains(needle) {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(format!(
                "{needle:?} did not appear in {} within {timeout:?}",
                path.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn strips_colours() {
        assert_eq!(
            strip_ansi(
                "\u{1b}[2m2025\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m pause point reached: after_reserve"
            ),
            "2025  INFO pause point reached: after_reserve"
        );
    }

    #[tokio::test]
    async fn waits_for_a_line_written_later_and_ignores_older_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "old marker\n").unwrap();
        let offset = len(&path);
        assert!(
            wait_for(&path, offset, "marker", Duration::from_millis(50))
                .await
                .is_err()
        );
        let writer_path = path.clone();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(writer_path)
                .unwrap();
            writeln!(f, "new marker").unwrap();
        });
        wait_for(&path, offset, "marker", Duration::from_secs(5))
            .await
            .unwrap();
        writer.await.unwrap();
        assert_eq!(tail(&path, 1), "new marker");
    }
}
