//! The secrets of a request obauth built, and their removal from whatever the server says
//! back.
//!
//! A server (or a gateway in front of it) may quote the request in its error: an
//! `error_description` repeating the body, an HTML page echoing the form. The generic
//! redaction of [`crate::redact`] catches token-shaped runs of 24 characters or more; a
//! client secret such as `Argv-Secret-77` is shorter. [`RequestSecrets`] takes the exact
//! values out of the request itself — body fields that hold secrets, the `Authorization`
//! header — and [`crate::Call`] replaces each of them, raw and in every encoding the request
//! used (percent-encoded, form-encoded, JSON-escaped), in the error it returns.

use std::borrow::Cow;

use base64::Engine as _;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use zeroize::Zeroizing;

use crate::error::Error;

/// Body fields whose values are secrets, in any request obauth builds.
const SECRET_FIELDS: [&str; 7] = [
    "client_secret",
    "client_assertion",
    "code",
    "code_verifier",
    "refresh_token",
    "access_token",
    "password",
];

/// What replaces a secret in a server's text.
const REDACTED: &str = "<redacted>";

/// The secret values of the requests of one call, each with its encodings, longest first.
///
/// A request's secrets are taken out of it only when an error needs scrubbing: most calls
/// succeed, and reading a body and encoding each secret four ways costs a few
/// microseconds per request. Until then the request's credentials and body wait here
/// (copies, wiped on drop).
#[derive(Default)]
pub(crate) struct RequestSecrets {
    forms: Vec<Zeroizing<String>>,
    pending: Vec<Pending>,
}

/// What a request carries that may hold secrets, not read yet.
struct Pending {
    authorization: Option<Zeroizing<String>>,
    content_type: String,
    body: Zeroizing<Vec<u8>>,
}

impl RequestSecrets {
    /// Keeps what `request` carries, to take its secrets out if an error needs them.
    pub(crate) fn add_request(&mut self, request: &http::Request<Vec<u8>>) {
        let header = |name| {
            request
                .headers()
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
        };
        self.pending.push(Pending {
            authorization: header(AUTHORIZATION).map(|value| Zeroizing::new(value.to_owned())),
            content_type: header(CONTENT_TYPE).unwrap_or_default().to_owned(),
            body: Zeroizing::new(request.body().clone()),
        });
    }

    /// Takes the secrets out of the requests kept so far.
    fn digest(&mut self) {
        for pending in std::mem::take(&mut self.pending) {
            self.read(&pending);
        }
    }

    /// Adds the secrets one request carries.
    fn read(&mut self, pending: &Pending) {
        if let Some(value) = pending.authorization.as_deref().map(String::as_str) {
            let credentials = value.split_once(' ').map_or(value, |(_, rest)| rest).trim();
            self.add(credentials);
            // Basic: base64 of `id:secret`, each half possibly percent-encoded (RFC 6749
            // §2.3.1); the secret half is what matters.
            if value
                .get(..6)
                .is_some_and(|s| s.eq_ignore_ascii_case("basic "))
                && let Ok(decoded) =
                    base64::engine::general_purpose::STANDARD.decode(credentials.as_bytes())
            {
                let decoded = Zeroizing::new(decoded);
                if let Some((_, secret)) = std::str::from_utf8(&decoded)
                    .ok()
                    .and_then(|pair| pair.split_once(':'))
                {
                    let secret = Zeroizing::new(
                        percent_encoding::percent_decode_str(secret)
                            .decode_utf8_lossy()
                            .into_owned(),
                    );
                    self.add(&secret);
                }
            }
        }
        let content_type = pending.content_type.as_str();
        let body = pending.body.as_slice();
        if content_type.starts_with("application/x-www-form-urlencoded") {
            for (name, value) in form_urlencoded::parse(body) {
                if SECRET_FIELDS.contains(&name.as_ref()) {
                    self.add(&Zeroizing::new(value.into_owned()));
                }
            }
        } else if content_type.starts_with("application/json")
            && let Ok(serde_json::Value::Object(fields)) =
                serde_json::from_slice::<serde_json::Value>(body)
        {
            for name in SECRET_FIELDS {
                if let Some(serde_json::Value::String(value)) = fields.get(name) {
                    self.add(value);
                }
            }
            // A provider's extra inputs (`/v1/authuri`) may be the user's bank password.
            if let Some(serde_json::Value::Object(inputs)) = fields.get("auth_inputs") {
                for value in inputs.values() {
                    if let serde_json::Value::String(value) = value {
                        self.add(value);
                    }
                }
            }
        }
    }

    /// Adds one secret value in each of the forms a server could quote it in.
    fn add(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let json = serde_json::to_string(secret).unwrap_or_default();
        let forms = [
            secret.to_owned(),
            form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>(),
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
            json.get(1..json.len().saturating_sub(1))
                .unwrap_or_default()
                .to_owned(),
        ];
        for form in forms {
            if !form.is_empty() && !self.forms.iter().any(|known| **known == form) {
                self.forms.push(Zeroizing::new(form));
            }
        }
        // Longest first, so that an encoding containing a shorter form is replaced whole.
        self.forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    }

    /// `text` with every known secret replaced by `<redacted>`.
    pub(crate) fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut text = Cow::Borrowed(text);
        for form in &self.forms {
            if text.contains(form.as_str()) {
                text = Cow::Owned(text.replace(form.as_str(), REDACTED));
            }
        }
        text
    }

    fn scrub_in_place(&self, text: &mut String) {
        if let Cow::Owned(scrubbed) = self.scrub(text) {
            *text = scrubbed;
        }
    }

    fn scrub_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) => self.scrub_in_place(text),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            serde_json::Value::Object(fields) => {
                let scrubbed: serde_json::Map<String, serde_json::Value> = std::mem::take(fields)
                    .into_iter()
                    .map(|(key, mut value)| {
                        self.scrub_json(&mut value);
                        (self.scrub(&key).into_owned(), value)
                    })
                    .collect();
                *fields = scrubbed;
            }
            _ => {}
        }
    }

    /// Removes the known secrets from every text in `error` that came from the server or
    /// the transport.
    pub(crate) fn scrub_error(&mut self, error: &mut Error) {
        self.digest();
        if self.forms.is_empty() {
            return;
        }
        match error {
            Error::Api(api) => self.scrub_api(api),
            Error::ReauthenticationRequired(reauth) => self.scrub_api(reauth.cause_mut()),
            Error::UnexpectedResponse(unexpected) => {
                self.scrub_in_place(&mut unexpected.excerpt);
                if let Some(content_type) = &mut unexpected.content_type {
                    self.scrub_in_place(content_type);
                }
                if let Some(trace_id) = &mut unexpected.trace_id {
                    self.scrub_in_place(trace_id);
                }
            }
            // Built from obauth's or the HTTP client's own words, never from a body.
            Error::Transport(_)
            | Error::InvalidInput(_)
            | Error::Signing(_)
            | Error::Callback(_)
            | Error::Randomness(_)
            | Error::Timeout(_)
            | Error::Store(_) => {}
        }
    }

    fn scrub_api(&self, api: &mut crate::error::ApiError) {
        if let Cow::Owned(code) = self.scrub(api.code.as_ref()) {
            api.code = obauth_types::ErrorCode::parse(&code);
        }
        if let Some(description) = &mut api.description {
            self.scrub_in_place(description);
        }
        if let Some(trace_id) = &mut api.trace_id {
            self.scrub_in_place(trace_id);
        }
        if let Some(details) = &mut api.details {
            if let Some(reason) = &mut details.reason {
                self.scrub_in_place(reason);
            }
            let mut other = serde_json::Value::Object(std::mem::take(&mut details.other));
            self.scrub_json(&mut other);
            if let serde_json::Value::Object(fields) = other {
                details.other = fields;
            }
        }
    }
}

impl std::fmt::Debug for RequestSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSecrets")
            .field("forms", &self.forms.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form_request(body: &str) -> http::Request<Vec<u8>> {
        http::Request::post("http://127.0.0.1/token")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.as_bytes().to_vec())
            .unwrap()
    }

    #[test]
    fn every_encoding_of_a_form_secret_is_replaced_and_other_fields_kept() {
        let mut secrets = RequestSecrets::default();
        secrets.add_request(&form_request(
            "grant_type=client_credentials&client_id=app&client_secret=a%2Fb+c%22d&scope=VOP",
        ));
        let secret = "a/b c\"d";
        let echoes = [
            secret.to_owned(),
            "a%2Fb+c%22d".to_owned(),
            "a%2Fb%20c%22d".to_owned(),
            r#"a/b c\"d"#.to_owned(),
        ];
        secrets.digest();
        for echo in echoes {
            let text = format!("bad client_secret={echo} for client app and scope VOP");
            let scrubbed = secrets.scrub(&text);
            assert_eq!(
                scrubbed, "bad client_secret=<redacted> for client app and scope VOP",
                "{echo}"
            );
        }
    }

    #[test]
    fn json_bodies_and_bearer_and_basic_headers_give_their_secrets() {
        let mut secrets = RequestSecrets::default();
        let basic = base64::engine::general_purpose::STANDARD.encode("client:Basic-Secret-1");
        secrets.add_request(
            &http::Request::post("http://127.0.0.1/connect/token")
                .header(CONTENT_TYPE, "application/json")
                .header(AUTHORIZATION, format!("Basic {basic}"))
                .body(
                    br#"{"grant_type":"authorization_code","client_id":"app","client_secret":"Json-Secret-2","code":"C0de","redirect_uri":"https://app.example/cb"}"#
                        .to_vec(),
                )
                .unwrap(),
        );
        secrets.add_request(
            &http::Request::delete("http://127.0.0.1/api/delete")
                .header(AUTHORIZATION, "Bearer Bearer-Token-3")
                .body(Vec::new())
                .unwrap(),
        );
        secrets.add_request(
            &http::Request::post("http://127.0.0.1/v1/authuri")
                .header(CONTENT_TYPE, "application/json")
                .body(
                    br#"{"provider_id":"p","auth_inputs":{"password":"Bank-Pass-4","branch":"b-1"}}"#
                        .to_vec(),
                )
                .unwrap(),
        );
        let text = "Basic-Secret-1 Json-Secret-2 C0de Bearer-Token-3 Bank-Pass-4 app https://app.example/cb";
        secrets.digest();
        assert_eq!(
            secrets.scrub(text),
            "<redacted> <redacted> <redacted> <redacted> <redacted> app https://app.example/cb"
        );
    }

    #[test]
    fn a_text_without_secrets_is_not_copied() {
        let mut secrets = RequestSecrets::default();
        secrets.add_request(&form_request("client_secret=s3cr3t"));
        // Kept, not read: a call that succeeds never reads it.
        assert_eq!(
            format!("{secrets:?}"),
            "RequestSecrets { forms: 0, pending: 1 }"
        );
        secrets.digest();
        assert!(matches!(secrets.scrub("nothing here"), Cow::Borrowed(_)));
        assert_eq!(
            format!("{secrets:?}"),
            "RequestSecrets { forms: 1, pending: 0 }"
        );
    }

    #[test]
    fn an_error_reads_the_kept_requests_before_scrubbing() {
        let mut secrets = RequestSecrets::default();
        secrets.add_request(&form_request("client_secret=Lazy-Secret-9"));
        let mut error = Error::Api(Box::new(crate::error::ApiError {
            status: http::StatusCode::UNAUTHORIZED,
            code: obauth_types::ErrorCode::parse("invalid_client"),
            description: Some("client_secret=Lazy-Secret-9 is wrong".to_owned()),
            details: None,
            trace_id: None,
            retry_after: None,
        }));
        secrets.scrub_error(&mut error);
        let Error::Api(api) = error else { panic!() };
        assert_eq!(
            api.description.as_deref(),
            Some("client_secret=<redacted> is wrong")
        );
    }
}
