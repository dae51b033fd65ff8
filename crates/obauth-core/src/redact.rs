//! Text from a server made safe for an error message: excerpts of bodies and server-written
//! texts with anything that may be a secret redacted, folded to one line and cut short.
//!
//! A leaf: it imports nothing from the rest of the crate, so that the error types can use
//! it without tying themselves to the wire code.

/// How much of an unexpected body an error message shows.
pub(crate) const EXCERPT_CHARS: usize = 200;

/// A UTF-8 byte-order mark is not JSON, but some servers send one.
pub(crate) fn without_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

/// serde_json's message without the offending value, which could be a secret that landed
/// in the wrong field ("invalid type: string \"eyJ…\", expected u64").
pub(crate) fn describe_serde_error(error: &serde_json::Error) -> String {
    let message = error.to_string();
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let kind = prefix.trim_end_matches([':', ' ']);
            return match rest.find(", expected ") {
                Some(at) => format!("{kind}{}", &rest[at..]),
                None => kind.to_owned(),
            };
        }
    }
    if message.starts_with("unknown variant") {
        return format!(
            "unknown variant at line {} column {}",
            error.line(),
            error.column()
        );
    }
    message
}

/// Keys whose values are shown in excerpts; every other string value is redacted.
const SHOWN_KEYS: [&str; 12] = [
    "error",
    "error_description",
    "reason",
    "token_type",
    "expires_in",
    "refresh_expires_in",
    "not-before-policy",
    "scope",
    "success",
    "message",
    "status",
    "title",
];

/// The start of a body for an error message, with control characters and runs of white
/// space folded to one space, cut to [`EXCERPT_CHARS`] characters, and anything that may be
/// a secret replaced by `<redacted>`: a token in a malformed answer must not reach a log
/// through an error message.
///
/// * Quoted strings (JSON, complete or truncated, wherever it starts) keep their keys, but
///   every value outside [`SHOWN_KEYS`] is redacted.
/// * A form-encoded body (`a=b&c=d`) keeps its names, and only [`SHOWN_KEYS`] values.
/// * Any remaining run of 24 or more token characters (JWTs, hex or base64 tokens) is
///   redacted.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let body = without_bom(body);
    let head = String::from_utf8_lossy(&body[..body.len().min(EXCERPT_CHARS * 8)]);
    let trimmed = head.trim();
    let text = if trimmed.contains('"') {
        redact_json_strings(trimmed)
    } else if trimmed.contains('=') && !trimmed.contains(char::is_whitespace) {
        redact_form_values(trimmed)
    } else {
        trimmed.to_owned()
    };
    let text = redact_long_tokens(&text);
    let folded: String = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    truncate_chars(&folded, EXCERPT_CHARS)
}

fn redact_form_values(text: &str) -> String {
    text.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if SHOWN_KEYS.contains(&name) => format!("{name}={value}"),
            Some((name, _)) => format!("{name}=<redacted>"),
            None => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Characters of opaque tokens: base64, base64url, hex, JWT dots, percent-encoding.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=' | '%')
}

fn redact_long_tokens(text: &str) -> String {
    const LONG: usize = 24;
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().count() >= LONG {
            out.push_str("<redacted>");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if is_token_char(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Replaces JSON string values with `"<redacted>"` unless their key is in [`SHOWN_KEYS`].
/// Works on truncated or invalid JSON too: it only tracks string literals and keys.
fn redact_json_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut shown = false;
    while let Some(c) = chars.next() {
        if c != '"' {
            out.push(c);
            continue;
        }
        let mut literal = String::new();
        let mut closed = false;
        let mut escaped = false;
        for c in chars.by_ref() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                closed = true;
                break;
            }
            literal.push(c);
        }
        let is_key = closed && {
            let mut ahead = chars.clone();
            ahead.find(|c| !c.is_whitespace()) == Some(':')
        };
        if is_key {
            shown = SHOWN_KEYS.contains(&literal.as_str());
            out.push('"');
            out.push_str(&literal);
            out.push('"');
        } else if shown && closed {
            out.push('"');
            out.push_str(&literal);
            out.push('"');
        } else {
            out.push_str(if closed {
                "\"<redacted>\""
            } else {
                "\"<redacted>"
            });
        }
    }
    out
}

/// A text the server wrote (an `error_description`, a reason), ready for an error message:
/// runs of 24 or more token characters redacted, control characters and runs of white
/// space folded to one space, cut to `max` characters.
pub(crate) fn server_text(text: &str, max: usize) -> String {
    let redacted = redact_long_tokens(text);
    let folded: String = redacted
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    truncate_chars(&folded, max)
}

pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_redact_json_strings_and_fold_html() {
        let json = br#"{"access_token":"eyJsecret","expires_in":"soon","error":"x","nested":{"refresh_token":"r"}}"#;
        let shown = excerpt(json);
        assert!(
            !shown.contains("eyJsecret") && !shown.contains("\"r\""),
            "{shown}"
        );
        assert!(
            shown.contains("\"soon\"") && shown.contains("\"error\":\"x\""),
            "{shown}"
        );

        let html = format!("<html>\n\t<body>{}</body></html>", "word\n".repeat(100));
        let shown = excerpt(html.as_bytes());
        assert!(shown.starts_with("<html> <body>word word"), "{shown}");
        assert_eq!(shown.chars().count(), EXCERPT_CHARS + 1);
        assert_eq!(excerpt(&[0xff, 0xfe, b'a']), "\u{fffd}\u{fffd}a");
    }

    #[test]
    fn serde_messages_lose_the_offending_value() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            n: u64,
        }
        let error = serde_json::from_str::<T>(r#"{"n":"top-secret"}"#).unwrap_err();
        let described = describe_serde_error(&error);
        assert!(!described.contains("top-secret"), "{described}");
        assert!(
            described.starts_with("invalid type, expected u64"),
            "{described}"
        );
        let missing = serde_json::from_str::<T>("{}").unwrap_err();
        assert!(describe_serde_error(&missing).contains("missing field `n`"));
    }
}
