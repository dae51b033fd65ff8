//! Worldline's Keycloak realm token endpoint: client secret or RS256 client assertion.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use obauth_types::worldline::token::{ClientAuthentication, FormError, TokenRequest};
use rsa::PublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use sha2::Sha256;

use crate::wire::{Answer, Request, random_token, same, shown_name, shown_names};
use crate::{WORLDLINE_CLIENT_ID, WORLDLINE_CLIENT_SECRET, WORLDLINE_REALM};

/// Keycloak's default upper bound on an assertion's lifetime (`exp` − `iat`).
const MAX_ASSERTION_LIFETIME: u64 = 60;
/// Clock skew tolerated on `iat` and `exp`.
const SKEW: u64 = 10;

pub(crate) enum ClientAuth {
    Secret(String),
    Assertion { kid: String, key: PublicKey },
}

struct Client {
    auth: ClientAuth,
    scopes: Vec<String>,
}

pub(crate) struct WorldlineState {
    base: String,
    realms: HashMap<String, HashMap<String, Client>>,
    /// Seen assertion ids, until their `exp`.
    jtis: HashMap<String, u64>,
    pub(crate) token_lifetime: Duration,
}

/// A key pair and a self-signed certificate for it, as an initiating party would register
/// with Worldline: for tests of the client-assertion flow.
#[derive(Clone)]
pub struct SigningIdentity {
    /// The RSA-2048 private key, PKCS#8 PEM.
    pub private_key_pem: String,
    /// The self-signed X.509 certificate of its public key, PEM.
    pub certificate_pem: String,
}

impl std::fmt::Debug for SigningIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningIdentity").finish_non_exhaustive()
    }
}

impl SigningIdentity {
    /// A fresh RSA-2048 key and a self-signed certificate (CN `obauth-mock test client`).
    pub fn generate() -> Result<Self, String> {
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).map_err(|e| e.to_string())?;
        let private_key_pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| e.to_string())?
            .to_string();
        let pair =
            rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&private_key_pem, &rcgen::PKCS_RSA_SHA256)
                .map_err(|e| e.to_string())?;
        let certificate = rcgen::CertificateParams::new(vec!["obauth-mock test client".to_owned()])
            .and_then(|params| params.self_signed(&pair))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            private_key_pem,
            certificate_pem: certificate.pem(),
        })
    }
}

/// The `kid` (SHA-1 fingerprint of the DER, upper-case hex) and RSA public key of a PEM
/// certificate.
pub(crate) fn certificate_identity(pem: &str) -> Result<(String, PublicKey), String> {
    use rsa::pkcs8::der::{Decode, Encode};
    use sha1::Digest;
    let (label, der) =
        pem_rfc7468::decode_vec(pem.trim().as_bytes()).map_err(|e| format!("not PEM: {e}"))?;
    if label != "CERTIFICATE" {
        return Err(format!("expected a CERTIFICATE, found {label}"));
    }
    let kid: String = sha1::Sha1::digest(&der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let certificate =
        x509_cert::Certificate::from_der(&der).map_err(|e| format!("not X.509: {e}"))?;
    let spki = certificate
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    let key = PublicKey::from_public_key_der(&spki).map_err(|e| format!("not an RSA key: {e}"))?;
    Ok((kid, key))
}

impl WorldlineState {
    pub(crate) fn new(base: String) -> Self {
        let mut state = Self {
            base,
            realms: HashMap::new(),
            jtis: HashMap::new(),
            token_lifetime: Duration::from_secs(300),
        };
        state.register(
            WORLDLINE_REALM,
            WORLDLINE_CLIENT_ID,
            ClientAuth::Secret(WORLDLINE_CLIENT_SECRET.to_owned()),
            &["VOP", "WERO"],
        );
        state
    }

    pub(crate) fn register(
        &mut self,
        realm: &str,
        client_id: &str,
        auth: ClientAuth,
        scopes: &[&str],
    ) {
        self.realms.entry(realm.to_owned()).or_default().insert(
            client_id.to_owned(),
            Client {
                auth,
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            },
        );
    }

    pub(crate) fn token(&mut self, request: &Request) -> Answer {
        let realm = request
            .path
            .strip_prefix("/auth/realms/")
            .and_then(|rest| rest.strip_suffix("/protocol/openid-connect/token"))
            .map(percent_decode)
            .unwrap_or_default();
        if !self.realms.contains_key(&realm) {
            return Answer::json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({ "error": "Realm does not exist" }),
            );
        }
        let form = form_urlencoded::parse(&request.body).into_owned();
        let token_request = match TokenRequest::from_form_fields(form) {
            Ok(request) => request,
            Err(FormError::UnsupportedGrantType) => {
                return Answer::error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "Unsupported grant_type",
                );
            }
            Err(error) => {
                return Answer::error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &describe_form_error(&error),
                );
            }
        };
        let issuer = format!("{}/realms/{realm}", self.base);
        let token_url = format!("{issuer}/protocol/openid-connect/token");
        let client_id = match &token_request.authentication {
            ClientAuthentication::Secret {
                client_id,
                client_secret,
            } => {
                let ok = self.realms[&realm].get(client_id).is_some_and(|client| {
                    matches!(&client.auth, ClientAuth::Secret(secret) if same(secret, client_secret.expose_secret()))
                });
                if !ok {
                    return invalid_client("Invalid client or Invalid client credentials");
                }
                client_id.clone()
            }
            ClientAuthentication::Assertion { client_assertion } => {
                match self.verify_assertion(
                    &realm,
                    client_assertion.expose_secret(),
                    &issuer,
                    &token_url,
                ) {
                    Ok(client_id) => client_id,
                    Err(why) => return invalid_client(why),
                }
            }
        };
        let allowed = &self.realms[&realm][&client_id].scopes;
        let refused: Vec<&str> = token_request
            .scope
            .iter()
            .map(|scope| scope.as_str())
            .filter(|scope| !allowed.iter().any(|a| a == scope))
            .collect();
        if token_request.scope.is_empty() || !refused.is_empty() {
            return Answer::error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                &format!("Invalid scopes: {}", shown_names(refused)),
            );
        }
        Answer::json(
            StatusCode::OK,
            &serde_json::json!({
                "access_token": random_token("wl-at-"),
                "expires_in": self.token_lifetime.as_secs(),
                "refresh_expires_in": 0,
                "token_type": "Bearer",
                "not-before-policy": 0,
                "scope": token_request.scope.to_wire(),
            }),
        )
    }

    /// Checks an RS256 client assertion as Keycloak does; the client id, or why not.
    fn verify_assertion(
        &mut self,
        realm: &str,
        jwt: &str,
        issuer: &str,
        token_url: &str,
    ) -> Result<String, &'static str> {
        let mut parts = jwt.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("client_assertion is not a JWS");
        };
        let header: serde_json::Value = decode_json(header).ok_or("unreadable JWS header")?;
        let claims: serde_json::Value = decode_json(claims).ok_or("unreadable JWT claims")?;
        if header["alg"] != "RS256" {
            return Err("algorithm must be RS256");
        }
        let kid = header["kid"].as_str().ok_or("missing kid")?;
        let subject = claims["sub"].as_str().ok_or("missing sub")?;
        if claims["iss"].as_str() != Some(subject) {
            return Err("iss must equal sub (the client id)");
        }
        let client = self
            .realms
            .get(realm)
            .and_then(|clients| clients.get(subject))
            .ok_or("Invalid client or Invalid client credentials")?;
        let ClientAuth::Assertion {
            kid: registered,
            key,
        } = &client.auth
        else {
            return Err("client does not authenticate with a signed JWT");
        };
        if kid != registered {
            return Err("unknown kid");
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .and_then(|bytes| Signature::try_from(bytes.as_slice()).ok())
            .ok_or("unreadable signature")?;
        let signing_input = &jwt[..jwt.rfind('.').unwrap_or(0)];
        VerifyingKey::<Sha256>::new(key.clone())
            .verify(signing_input.as_bytes(), &signature)
            .map_err(|_| "signature verification failed")?;
        match &claims["aud"] {
            serde_json::Value::String(aud) if aud == issuer || aud == token_url => {}
            serde_json::Value::Array(_) => return Err("aud must be a single string"),
            _ => return Err("invalid audience"),
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let exp = claims["exp"].as_u64().ok_or("missing exp")?;
        let iat = claims["iat"].as_u64().ok_or("missing iat")?;
        if exp + SKEW < now {
            return Err("token expired");
        }
        if iat > now + SKEW {
            return Err("token issued in the future");
        }
        if exp.saturating_sub(iat) > MAX_ASSERTION_LIFETIME {
            return Err("token lifetime exceeds the maximum");
        }
        let jti = claims["jti"].as_str().ok_or("missing jti")?;
        self.jtis.retain(|_, expires| *expires + SKEW >= now);
        if self.jtis.insert(jti.to_owned(), exp).is_some() {
            return Err("Token reuse detected");
        }
        Ok(subject.to_owned())
    }
}

/// Why a form is refused, for the answer's `error_description`: it names the field but
/// never shows a value, and shows a sender-chosen name (an unknown or repeated field) only
/// if it is a plain name (see `shown_name`). `FormError`'s own `Display` is not used: it
/// quotes whatever name the sender wrote, and a variant added later could carry a value.
fn describe_form_error(error: &FormError) -> String {
    match error {
        FormError::MissingField(name) => format!("missing `{name}`"),
        FormError::RepeatedField(name) => {
            format!("{} appears more than once", shown_name(name))
        }
        FormError::UnknownField(name) => format!("unexpected field {}", shown_name(name)),
        FormError::UnsupportedGrantType => "grant_type must be client_credentials".to_owned(),
        FormError::TwoAuthenticationMethods => {
            "client_secret and client_assertion are mutually exclusive".to_owned()
        }
        _ => "malformed token request".to_owned(),
    }
}

fn invalid_client(why: &str) -> Answer {
    Answer::error(StatusCode::BAD_REQUEST, "invalid_client", why)
}

fn decode_json(segment: &str) -> Option<serde_json::Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).ok()?).ok()
}

fn percent_decode(text: &str) -> String {
    form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}
