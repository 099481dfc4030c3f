//! Client authentication (contract section 5).
//!
//! A WebSocket client presents a JWT in the `Authorization: Bearer` header or, because
//! browsers cannot set headers on a WebSocket, in the `access_token` query parameter; the
//! header wins when both are present. The [`Authenticator`] is built once from
//! [`LiveSettings`] and turns a request into a core [`Principal`], or an [`AuthError`] that
//! the server answers with HTTP 401 and no upgrade.
//!
//! Rules:
//! - HS256 with `LIVE_AUTH_JWT_SECRET`; RS256 with an RSA PEM public key, ES256 with a P-256
//!   PEM public key at `LIVE_AUTH_JWT_PUBLIC_KEY_FILE`. Only that one algorithm is accepted:
//!   an HS256 token is refused when a public key is configured, and the reverse.
//! - With neither configured only anonymous clients can connect; a presented token is
//!   refused as unverifiable rather than ignored.
//! - What the claims grant is the core's judgement
//!   ([`processor_core::live::claims::grant_of`]): `exp` required and enforced without
//!   leeway, `nbf` with [`NBF_LEEWAY_S`], `events` and `role` of the right types. This
//!   module checks the signature and the algorithm, and reads the token from the request.
//! - No token: [`Principal::Anonymous`] when `LIVE_ALLOW_ANONYMOUS` is true.
//!
//! The current time is passed in, so that verification is deterministic under test. No
//! error's text contains the token (tokens are never logged whole, section 7).

use std::fmt;
use std::path::{Path, PathBuf};

use hyper::http::{header, HeaderMap, Uri};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use processor_core::live::claims::{grant_of, Claims, ClaimsRefused};
use processor_core::live::{Grant, Principal};
use processor_core::UnixMillis;

use crate::config::LiveSettings;

/// Name of the query parameter that carries the token.
pub const ACCESS_TOKEN_PARAM: &str = "access_token";

pub use processor_core::live::claims::NBF_LEEWAY_S;

/// Longest token considered; longer ones are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

const SECRET_VAR: &str = "LIVE_AUTH_JWT_SECRET";
/// An HS256 key shorter than the hash (256 bits) weakens it (RFC 7518, section 3.2).
pub const MIN_SECRET_BYTES: usize = 32;
const KEY_FILE_VAR: &str = "LIVE_AUTH_JWT_PUBLIC_KEY_FILE";
const ANONYMOUS_VAR: &str = "LIVE_ALLOW_ANONYMOUS";

/// Why the authentication settings cannot be used; each message names its variable.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("{SECRET_VAR}: set either it or {KEY_FILE_VAR}, not both")]
    BothKeysSet,
    #[error("{SECRET_VAR}: must be at least {MIN_SECRET_BYTES} bytes (RFC 7518, section 3.2), got {len}")]
    ShortSecret { len: usize },
    #[error(
        "{ANONYMOUS_VAR}: is false but neither {SECRET_VAR} nor {KEY_FILE_VAR} is set, \
         so no client could connect"
    )]
    NobodyCanConnect,
    #[error("{KEY_FILE_VAR}: cannot read {}: {source}", path.display())]
    ReadKeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{KEY_FILE_VAR}: {} holds a private key; give the public key", path.display())]
    PrivateKey { path: PathBuf },
    #[error("{KEY_FILE_VAR}: {} is not a PEM RSA or EC public key", path.display())]
    NotAPublicKey { path: PathBuf },
    #[error(
        "{KEY_FILE_VAR}: {} is an EC key on a curve other than P-256 (ES256 needs P-256)",
        path.display()
    )]
    UnsupportedCurve { path: PathBuf },
    #[error(
        "{KEY_FILE_VAR}: {} is a {bits}-bit RSA key; RS256 keys of 2048 to 4096 bits are accepted",
        path.display()
    )]
    UnsupportedRsaSize { path: PathBuf, bits: usize },
}

/// Why a client was refused (HTTP 401, no upgrade). The text never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a token is required (anonymous clients are not allowed)")]
    AnonymousNotAllowed,
    #[error("tokens cannot be verified: no key is configured")]
    NoVerificationKey,
    #[error("the Authorization header is not a single `Bearer <token>`")]
    MalformedAuthorization,
    #[error("the access_token query parameter is malformed or given more than once")]
    MalformedQuery,
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TokenTooLong,
    #[error("the token is not a well-formed JWT")]
    MalformedToken,
    #[error("the token's algorithm is not accepted (expected {expected})")]
    WrongAlgorithm { expected: &'static str },
    #[error("the token's signature is invalid")]
    BadSignature,
    /// Signed, but its claims grant nothing (the core's judgement).
    #[error(transparent)]
    Claims(#[from] ClaimsRefused),
}

impl AuthError {
    /// A short stable label, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::AnonymousNotAllowed => "anonymous_not_allowed",
            AuthError::NoVerificationKey => "no_verification_key",
            AuthError::MalformedAuthorization => "malformed_authorization",
            AuthError::MalformedQuery => "malformed_query",
            AuthError::TokenTooLong => "token_too_long",
            AuthError::MalformedToken => "malformed_token",
            AuthError::WrongAlgorithm { .. } => "wrong_algorithm",
            AuthError::BadSignature => "bad_signature",
            AuthError::Claims(ClaimsRefused::MissingExp) => "missing_exp",
            AuthError::Claims(ClaimsRefused::Expired { .. }) => "expired",
            AuthError::Claims(ClaimsRefused::NotYetValid { .. }) => "not_yet_valid",
            AuthError::Claims(ClaimsRefused::InvalidClaim { .. }) => "invalid_claim",
        }
    }

    /// Value of the 401 response's `WWW-Authenticate` header (RFC 6750). Fixed strings
    /// only, so that nothing from the request is echoed.
    pub fn www_authenticate(&self) -> &'static str {
        match self {
            AuthError::AnonymousNotAllowed => "Bearer realm=\"live\"",
            AuthError::MalformedAuthorization | AuthError::MalformedQuery => {
                "Bearer realm=\"live\", error=\"invalid_request\""
            }
            _ => "Bearer realm=\"live\", error=\"invalid_token\"",
        }
    }
}

/// How tokens are verified.
#[derive(Clone)]
enum Verifier {
    /// No key configured: any presented token is refused.
    None,
    Key {
        key: DecodingKey,
        algorithm: Algorithm,
    },
}

/// Verifies client tokens; built once at start-up from [`LiveSettings`].
#[derive(Clone)]
pub struct Authenticator {
    verifier: Verifier,
    allow_anonymous: bool,
}

impl fmt::Debug for Authenticator {
    // Hand-written so that the HS256 secret is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algorithm = match &self.verifier {
            Verifier::None => None,
            Verifier::Key { algorithm, .. } => Some(*algorithm),
        };
        f.debug_struct("Authenticator")
            .field("algorithm", &algorithm)
            .field("allow_anonymous", &self.allow_anonymous)
            .finish_non_exhaustive()
    }
}

fn hs256_verifier(secret: &str) -> Result<Verifier, AuthConfigError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(AuthConfigError::ShortSecret { len: secret.len() });
    }
    Ok(Verifier::Key {
        key: DecodingKey::from_secret(secret.as_bytes()),
        algorithm: Algorithm::HS256,
    })
}

impl Authenticator {
    /// Builds the authenticator from the settings, reading the PEM key file if one is set.
    pub fn from_settings(settings: &LiveSettings) -> Result<Authenticator, AuthConfigError> {
        let verifier = match (&settings.jwt_secret, &settings.jwt_public_key_file) {
            (Some(_), Some(_)) => return Err(AuthConfigError::BothKeysSet),
            (Some(secret), None) => hs256_verifier(secret)?,
            (None, Some(path)) => {
                let pem = std::fs::read(path).map_err(|source| AuthConfigError::ReadKeyFile {
                    path: path.clone(),
                    source,
                })?;
                let (key, algorithm) = public_key_from_pem(path, &pem)?;
                Verifier::Key { key, algorithm }
            }
            (None, None) => {
                if !settings.allow_anonymous {
                    return Err(AuthConfigError::NobodyCanConnect);
                }
                Verifier::None
            }
        };
        Ok(Authenticator {
            verifier,
            allow_anonymous: settings.allow_anonymous,
        })
    }

    /// Tokens signed with an HS256 `secret` (at least 32 bytes), without the settings.
    pub fn hs256(secret: &str, allow_anonymous: bool) -> Result<Authenticator, AuthConfigError> {
        Ok(Authenticator {
            verifier: hs256_verifier(secret)?,
            allow_anonymous,
        })
    }

    /// Authenticates an upgrade request from its headers and URI: the bearer token, else
    /// the `access_token` query parameter, else anonymous if allowed. `now_unix_s` is the
    /// current time in seconds since the epoch, against which `exp` and `nbf` are checked.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        now_unix_s: u64,
    ) -> Result<Principal, AuthError> {
        self.authenticate_until(headers, uri, now_unix_s)
            .map(|(principal, _)| principal)
    }

    /// As [`Self::authenticate`], with the token's expiry (none for an anonymous client).
    pub fn authenticate_until(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        now_unix_s: u64,
    ) -> Result<(Principal, Option<UnixMillis>), AuthError> {
        let token = match bearer_token(headers)? {
            Some(token) => Some(token.to_owned()),
            None => query_token(uri.query())?,
        };
        match token {
            None if self.allow_anonymous => Ok((Principal::Anonymous, None)),
            None => Err(AuthError::AnonymousNotAllowed),
            Some(token) => self
                .verify_grant(&token, now_unix_s)
                .map(|grant| (grant.principal, Some(grant.expires_at))),
        }
    }

    /// Verifies one token and returns what its claims grant, until its `exp`.
    pub fn verify_grant(&self, token: &str, now_unix_s: u64) -> Result<Grant, AuthError> {
        let (key, algorithm) = match &self.verifier {
            Verifier::None => return Err(AuthError::NoVerificationKey),
            Verifier::Key { key, algorithm } => (key, *algorithm),
        };
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TokenTooLong);
        }
        if token.is_empty() {
            return Err(AuthError::MalformedToken);
        }

        let mut validation = Validation::new(algorithm);
        // Time claims are checked below against `now_unix_s`, not the library's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        // No audience is configured; a token naming one is still accepted.
        validation.validate_aud = false;

        let data = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| map_decode_error(e.kind(), algorithm))?;
        Ok(grant_of(&data.claims, now_unix_s)?)
    }
}

fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        _ => "the configured algorithm",
    }
}

fn map_decode_error(kind: &ErrorKind, algorithm: Algorithm) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            AuthError::WrongAlgorithm {
                expected: algorithm_name(algorithm),
            }
        }
        ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => {
            AuthError::Claims(ClaimsRefused::MissingExp)
        }
        _ => AuthError::MalformedToken,
    }
}

/// The bearer token of the `Authorization` header, if that header is present.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::MalformedAuthorization);
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::MalformedAuthorization)?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(AuthError::MalformedAuthorization)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MalformedAuthorization);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::MalformedAuthorization);
    }
    Ok(Some(token))
}

/// The percent-decoded `access_token` query parameter, if present exactly once.
fn query_token(query: Option<&str>) -> Result<Option<String>, AuthError> {
    let Some(query) = query else {
        return Ok(None);
    };
    let mut found = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(name).as_deref() != Some(ACCESS_TOKEN_PARAM) {
            continue;
        }
        if found.is_some() {
            return Err(AuthError::MalformedQuery);
        }
        let value = percent_decode(value).ok_or(AuthError::MalformedQuery)?;
        if value.is_empty() {
            return Err(AuthError::MalformedQuery);
        }
        found = Some(value);
    }
    Ok(found)
}

/// `application/x-www-form-urlencoded` decoding: `%XX` escapes and `+` for space. `None`
/// for a broken escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex_value(*bytes.get(i + 1)?)?;
                let lo = hex_value(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Reads an RSA (RS256) or P-256 EC (ES256) public key from PEM text.
fn public_key_from_pem(
    path: &Path,
    pem: &[u8],
) -> Result<(DecodingKey, Algorithm), AuthConfigError> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("PRIVATE KEY-----") {
        return Err(AuthConfigError::PrivateKey {
            path: path.to_owned(),
        });
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        // The RSA backend parses the key only when verifying; check it now so that a bad
        // key stops start-up instead of refusing every token.
        let bits = rsa_modulus_bits(key.as_bytes()).ok_or(AuthConfigError::NotAPublicKey {
            path: path.to_owned(),
        })?;
        if !(2048..=4096).contains(&bits) {
            return Err(AuthConfigError::UnsupportedRsaSize {
                path: path.to_owned(),
                bits,
            });
        }
        return Ok((key, Algorithm::RS256));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        // The key is the SEC1 point: 65 bytes uncompressed or 33 compressed on P-256.
        let point = key.as_bytes();
        let p256 = match point.first() {
            Some(0x04) => point.len() == 65,
            Some(0x02 | 0x03) => point.len() == 33,
            _ => false,
        };
        if !p256 {
            return Err(AuthConfigError::UnsupportedCurve {
                path: path.to_owned(),
            });
        }
        return Ok((key, Algorithm::ES256));
    }
    Err(AuthConfigError::NotAPublicKey {
        path: path.to_owned(),
    })
}

/// Bit length of the modulus of a PKCS#1 `RSAPublicKey` (`SEQUENCE { INTEGER n, INTEGER e }`),
/// or `None` if the DER is not one.
fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    let (tag, body, rest) = der_element(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (n_tag, n, rest) = der_element(body)?;
    let (e_tag, e, rest) = der_element(rest)?;
    if n_tag != 0x02 || e_tag != 0x02 || !rest.is_empty() || e.is_empty() {
        return None;
    }
    let n = {
        let start = n.iter().position(|&b| b != 0)?;
        &n[start..]
    };
    let first = *n.first()?;
    Some((n.len() - 1) * 8 + (8 - first.leading_zeros() as usize))
}

/// One DER element: its tag, its contents and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || input.len() < count {
            return None;
        }
        let (len_bytes, rest) = input.split_at(count);
        input = rest;
        len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if input.len() < len {
        return None;
    }
    let (body, rest) = input.split_at(len);
    Some((tag, body, rest))
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
