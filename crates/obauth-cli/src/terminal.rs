//! Server text made safe for a terminal.
//!
//! A token, a provider name or a `token_type` comes from the server, and a terminal obeys
//! what it prints: `ESC[2J` clears the screen, an OSC sequence retitles the window or
//! wraps a link that shows one address and opens another, `\r\n` forges a line of output,
//! a right-to-left override reorders what is read. Text output shows each such character
//! escaped (`\u{1b}`) instead. JSON output needs nothing: serde_json escapes control
//! characters itself.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` would steer a terminal rather than be shown by it: C0 and C1 controls, DEL,
/// and the Unicode bidirectional overrides and isolates.
fn steers(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character that would steer a terminal written as `\u{…}`.
pub(crate) fn escaped(text: &str) -> Cow<'_, str> {
    if !text.chars().any(steers) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if steers(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::escaped;

    #[test]
    fn controls_and_overrides_are_shown_not_obeyed() {
        assert_eq!(escaped("plain text, ünïcode"), "plain text, ünïcode");
        assert_eq!(escaped("at\u{1b}[2Jx"), "at\\u{1b}[2Jx");
        assert_eq!(
            escaped("\u{1b}]8;;https://evil.example\u{7}shown\u{1b}]8;;\u{7}"),
            "\\u{1b}]8;;https://evil.example\\u{7}shown\\u{1b}]8;;\\u{7}"
        );
        assert_eq!(
            escaped("Bearer\r\nforged: 1"),
            "Bearer\\u{d}\\u{a}forged: 1"
        );
        assert_eq!(escaped("a\u{9b}31mb\u{7f}"), "a\\u{9b}31mb\\u{7f}");
        assert_eq!(escaped("abc\u{202e}fdp.exe"), "abc\\u{202e}fdp.exe");
    }
}
