use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::Parser;
use hyper::http::{HeaderValue, Request};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use uuid::Uuid;

use super::*;

/// Shorthands of the tests over the authenticator's entry points.
trait Shorthands {
    fn authenticate_parts(
        &self,
        parts: &hyper::http::request::Parts,
        now: u64,
    ) -> Result<Principal, AuthError>;
    fn verify_token(&self, token: &str, now: u64) -> Result<Principal, AuthError>;
    /// The algorithm tokens must use, if any key is configured.
    fn algorithm(&self) -> Option<Algorithm>;
    fn allows_anonymous(&self) -> bool;
}

impl Shorthands for Authenticator {
    fn authenticate_parts(
        &self,
        parts: &hyper::http::request::Parts,
        now: u64,
    ) -> Result<Principal, AuthError> {
        self.authenticate(&parts.headers, &parts.uri, now)
    }

    fn verify_token(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
        self.verify_grant(token, now).map(|grant| grant.principal)
    }

    fn algorithm(&self) -> Option<Algorithm> {
        match &self.verifier {
            Verifier::None => None,
            Verifier::Key { algorithm, .. } => Some(*algorithm),
        }
    }

    fn allows_anonymous(&self) -> bool {
        self.allow_anonymous
    }
}

const SECRET: &str = "test-secret-of-reasonable-length";
const NOW: u64 = 1_764_324_000;
const EVENT_A: &str = "6f1c2d3e-4a5b-4c6d-8e7f-901234567890";
const EVENT_B: &str = "0a0b0c0d-1111-4222-8333-444455556666";

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    live: LiveSettings,
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn settings(secret: Option<&str>, key_file: Option<&str>, anonymous: bool) -> LiveSettings {
    let mut live = match Wrapper::try_parse_from(["processor"]) {
        Ok(w) => w.live,
        Err(e) => panic!("default LiveSettings do not parse: {e}"),
    };
    live.jwt_secret = secret.map(str::to_owned);
    live.jwt_public_key_file = key_file.map(fixture);
    live.allow_anonymous = anonymous;
    live
}

fn hs256(anonymous: bool) -> Authenticator {
    Authenticator::from_settings(&settings(Some(SECRET), None, anonymous)).unwrap()
}

fn with_key(file: &str) -> Authenticator {
    Authenticator::from_settings(&settings(None, Some(file), true)).unwrap()
}

fn config_error(secret: Option<&str>, key_file: Option<&str>, anon: bool) -> AuthConfigError {
    match Authenticator::from_settings(&settings(secret, key_file, anon)) {
        Ok(a) => panic!("expected a configuration error, got {a:?}"),
        Err(e) => e,
    }
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn sign_hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

fn sign_rs(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&read_fixture("jwt_rs256_private.pem")).unwrap();
    sign(Algorithm::RS256, &key, claims)
}

fn sign_es(claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(&read_fixture("jwt_es256_private.pem")).unwrap();
    sign(Algorithm::ES256, &key, claims)
}

fn valid_claims() -> Value {
    json!({"exp": NOW + 600, "events": [EVENT_A.to_uppercase()], "sub": "user-1"})
}

fn request(auth: Option<&str>, uri: &str) -> hyper::http::request::Parts {
    let mut builder = Request::builder().uri(uri);
    if let Some(auth) = auth {
        builder = builder.header(header::AUTHORIZATION, auth);
    }
    builder.body(()).unwrap().into_parts().0
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn events(ids: &[&str]) -> Principal {
    Principal::Token {
        events: ids.iter().map(|s| Uuid::parse_str(s).unwrap()).collect(),
        admin: false,
    }
}

/// Every byte percent-encoded, the strictest form a client could send.
fn percent_encode_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[test]
fn hs256_token_in_header_grants_its_events_case_insensitively() {
    let token = sign_hs(&valid_claims());
    let principal = hs256(true)
        .authenticate_parts(&request(Some(&bearer(&token)), "/live"), NOW)
        .unwrap();
    assert_eq!(principal, events(&[EVENT_A]));
    let event = Uuid::parse_str(EVENT_A).unwrap();
    assert!(principal.may_subscribe(event, processor_core::live::Visibility::Private));
}

#[test]
fn bearer_scheme_is_case_insensitive() {
    let token = sign_hs(&valid_claims());
    let parts = request(Some(&format!("bearer {token}")), "/live");
    assert_eq!(
        hs256(true).authenticate_parts(&parts, NOW),
        Ok(events(&[EVENT_A]))
    );
}

#[test]
fn admin_role_grants_everything() {
    let token = sign_hs(&json!({"exp": NOW + 60, "role": "admin"}));
    let principal = hs256(false)
        .authenticate_parts(&request(Some(&bearer(&token)), "/live"), NOW)
        .unwrap();
    assert_eq!(
        principal,
        Principal::Token {
            events: BTreeSet::new(),
            admin: true
        }
    );
    let other_role = sign_hs(&json!({"exp": NOW + 60, "role": "viewer"}));
    assert_eq!(
        hs256(false).verify_token(&other_role, NOW),
        Ok(Principal::Token {
            events: BTreeSet::new(),
            admin: false
        })
    );
}

#[test]
fn expired_token_is_refused_from_its_exp_second_on() {
    let auth = hs256(true);
    let token = sign_hs(&json!({"exp": NOW, "events": [EVENT_A]}));
    assert!(auth.verify_token(&token, NOW - 1).is_ok());
    assert_eq!(
        auth.verify_token(&token, NOW),
        Err(AuthError::Claims(ClaimsRefused::Expired {
            exp: NOW,
            now: NOW
        }))
    );
    assert_eq!(
        auth.authenticate_parts(&request(Some(&bearer(&token)), "/live"), NOW + 3600),
        Err(AuthError::Claims(ClaimsRefused::Expired {
            exp: NOW,
            now: NOW + 3600
        }))
    );
}

#[test]
fn token_without_exp_is_refused() {
    let token = sign_hs(&json!({"events": [EVENT_A], "role": "admin"}));
    assert_eq!(
        hs256(true).verify_token(&token, NOW),
        Err(AuthError::Claims(ClaimsRefused::MissingExp))
    );
}

#[test]
fn exp_of_the_wrong_type_is_refused_and_fractional_exp_accepted() {
    let token = sign_hs(&json!({"exp": "tomorrow"}));
    assert!(matches!(
        hs256(true).verify_token(&token, NOW),
        Err(AuthError::Claims(ClaimsRefused::InvalidClaim {
            claim: "exp",
            ..
        }))
    ));
    let token = sign_hs(&json!({"exp": (NOW + 10) as f64 + 0.5}));
    assert!(hs256(true).verify_token(&token, NOW).is_ok());
}

#[test]
fn nbf_in_the_future_is_refused_beyond_the_leeway() {
    let auth = hs256(true);
    let soon = sign_hs(&json!({"exp": NOW + 600, "nbf": NOW + NBF_LEEWAY_S}));
    assert!(auth.verify_token(&soon, NOW).is_ok());
    let later = sign_hs(&json!({"exp": NOW + 600, "nbf": NOW + NBF_LEEWAY_S + 1}));
    assert_eq!(
        auth.verify_token(&later, NOW),
        Err(AuthError::Claims(ClaimsRefused::NotYetValid {
            nbf: NOW + NBF_LEEWAY_S + 1,
            now: NOW
        }))
    );
}

#[test]
fn bad_signature_is_refused() {
    let other = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret"),
        &valid_claims(),
    );
    assert_eq!(
        hs256(true).verify_token(&other, NOW),
        Err(AuthError::BadSignature)
    );

    // A genuine signature over different claims: the payload was swapped.
    let genuine = sign_hs(&valid_claims());
    let forged_claims = sign_hs(&json!({"exp": NOW + 600, "role": "admin"}));
    let mut parts: Vec<&str> = genuine.split('.').collect();
    parts[1] = forged_claims.split('.').nth(1).unwrap();
    assert_eq!(
        hs256(true).verify_token(&parts.join("."), NOW),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn hs256_token_is_refused_when_an_rsa_key_is_configured() {
    // The classic confusion: an HS256 token "signed" with the public key's PEM as secret.
    let public_pem = read_fixture("jwt_rs256_public.pem");
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public_pem),
        &valid_claims(),
    );
    assert_eq!(
        with_key("jwt_rs256_public.pem").verify_token(&token, NOW),
        Err(AuthError::WrongAlgorithm { expected: "RS256" })
    );
}

#[test]
fn asymmetric_tokens_are_refused_when_a_secret_is_configured() {
    assert_eq!(
        hs256(true).verify_token(&sign_rs(&valid_claims()), NOW),
        Err(AuthError::WrongAlgorithm { expected: "HS256" })
    );
    assert_eq!(
        hs256(true).verify_token(&sign_es(&valid_claims()), NOW),
        Err(AuthError::WrongAlgorithm { expected: "HS256" })
    );
    // And an RS256 key does not accept ES256 tokens.
    assert_eq!(
        with_key("jwt_rs256_public.pem").verify_token(&sign_es(&valid_claims()), NOW),
        Err(AuthError::WrongAlgorithm { expected: "RS256" })
    );
}

#[test]
fn unsigned_token_is_refused() {
    let header = base64_url(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = base64_url(format!(r#"{{"exp":{},"role":"admin"}}"#, NOW + 60).as_bytes());
    for token in [format!("{header}.{claims}."), format!("{header}.{claims}")] {
        let err = hs256(true).verify_token(&token, NOW).unwrap_err();
        assert!(
            matches!(
                err,
                AuthError::MalformedToken | AuthError::WrongAlgorithm { .. }
            ),
            "{err:?}"
        );
    }
}

/// Minimal unpadded base64url for hand-made tokens.
fn base64_url(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn malformed_tokens_are_refused() {
    let auth = hs256(true);
    for token in [
        "abc",
        "a.b.c",
        "not a jwt",
        "..",
        "eyJhbGciOiJIUzI1NiJ9.%%%.x",
    ] {
        assert_eq!(
            auth.verify_token(token, NOW),
            Err(AuthError::MalformedToken),
            "{token}"
        );
    }
    assert_eq!(
        auth.verify_token(&"a".repeat(MAX_TOKEN_BYTES + 1), NOW),
        Err(AuthError::TokenTooLong)
    );
}

#[test]
fn claims_of_the_wrong_type_are_refused() {
    let auth = hs256(true);
    for (claims, claim) in [
        (json!({"exp": NOW + 60, "events": EVENT_A}), "events"),
        (json!({"exp": NOW + 60, "events": [EVENT_A, 7]}), "events"),
        (json!({"exp": NOW + 60, "role": ["admin"]}), "role"),
    ] {
        match auth.verify_token(&sign_hs(&claims), NOW) {
            Err(AuthError::Claims(ClaimsRefused::InvalidClaim { claim: c, .. })) => {
                assert_eq!(c, claim)
            }
            other => panic!("{claims}: {other:?}"),
        }
    }
    // Entries that are not UUIDs grant nothing but do not fail the token.
    let token = sign_hs(&json!({"exp": NOW + 60, "events": ["nope", EVENT_B]}));
    assert_eq!(auth.verify_token(&token, NOW), Ok(events(&[EVENT_B])));
}

#[test]
fn token_in_percent_encoded_query_parameter() {
    let token = sign_hs(&valid_claims());
    let uri = format!(
        "/live?foo=bar&access%5Ftoken={}&x=%20",
        percent_encode_all(&token)
    );
    assert_eq!(
        hs256(false).authenticate_parts(&request(None, &uri), NOW),
        Ok(events(&[EVENT_A]))
    );
    // Plain (unencoded) also works.
    let uri = format!("/live?access_token={token}");
    assert_eq!(
        hs256(false).authenticate_parts(&request(None, &uri), NOW),
        Ok(events(&[EVENT_A]))
    );
}

#[test]
fn malformed_query_parameter_is_refused() {
    let token = sign_hs(&valid_claims());
    for uri in [
        format!("/live?access_token={token}&access_token={token}"),
        "/live?access_token=".to_owned(),
        "/live?access_token=%zz".to_owned(),
        "/live?access_token=%C3%28".to_owned(),
    ] {
        assert_eq!(
            hs256(true).authenticate_parts(&request(None, &uri), NOW),
            Err(AuthError::MalformedQuery),
            "{uri}"
        );
    }
}

#[test]
fn header_wins_over_query() {
    let auth = hs256(false);
    let header_token = sign_hs(&json!({"exp": NOW + 60, "events": [EVENT_A]}));
    let query_token = sign_hs(&json!({"exp": NOW + 60, "events": [EVENT_B]}));
    let uri = format!("/live?access_token={query_token}");
    assert_eq!(
        auth.authenticate_parts(&request(Some(&bearer(&header_token)), &uri), NOW),
        Ok(events(&[EVENT_A]))
    );
    // An invalid header is not rescued by a valid query token.
    let expired = sign_hs(&json!({"exp": NOW - 1, "events": [EVENT_A]}));
    assert!(matches!(
        auth.authenticate_parts(&request(Some(&bearer(&expired)), &uri), NOW),
        Err(AuthError::Claims(ClaimsRefused::Expired { .. }))
    ));
}

#[test]
fn non_bearer_or_repeated_authorization_header_is_refused() {
    let auth = hs256(true);
    for value in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Token abc"] {
        assert_eq!(
            auth.authenticate_parts(&request(Some(value), "/live"), NOW),
            Err(AuthError::MalformedAuthorization),
            "{value}"
        );
    }
    let token = sign_hs(&valid_claims());
    let mut parts = request(Some(&bearer(&token)), "/live");
    parts.headers.append(
        header::AUTHORIZATION,
        HeaderValue::from_str(&bearer(&token)).unwrap(),
    );
    assert_eq!(
        auth.authenticate_parts(&parts, NOW),
        Err(AuthError::MalformedAuthorization)
    );
}

#[test]
fn anonymous_allowed_and_disallowed() {
    assert_eq!(
        hs256(true).authenticate_parts(&request(None, "/live?foo=1"), NOW),
        Ok(Principal::Anonymous)
    );
    assert_eq!(
        hs256(false).authenticate_parts(&request(None, "/live"), NOW),
        Err(AuthError::AnonymousNotAllowed)
    );
    assert!(hs256(true).allows_anonymous());
    assert!(!hs256(false).allows_anonymous());
}

#[test]
fn without_a_key_only_anonymous_clients_connect() {
    let auth = Authenticator::from_settings(&settings(None, None, true)).unwrap();
    assert_eq!(auth.algorithm(), None);
    assert_eq!(
        auth.authenticate_parts(&request(None, "/live"), NOW),
        Ok(Principal::Anonymous)
    );
    let token = sign_hs(&valid_claims());
    assert_eq!(
        auth.authenticate_parts(&request(Some(&bearer(&token)), "/live"), NOW),
        Err(AuthError::NoVerificationKey)
    );
    let uri = format!("/live?access_token={token}");
    assert_eq!(
        auth.authenticate_parts(&request(None, &uri), NOW),
        Err(AuthError::NoVerificationKey)
    );
}

#[test]
fn rs256_token_with_spki_or_pkcs1_public_key() {
    let token = sign_rs(&valid_claims());
    for file in ["jwt_rs256_public.pem", "jwt_rs256_public_pkcs1.pem"] {
        let auth = with_key(file);
        assert_eq!(auth.algorithm(), Some(Algorithm::RS256));
        assert_eq!(
            auth.authenticate_parts(&request(Some(&bearer(&token)), "/live"), NOW),
            Ok(events(&[EVENT_A])),
            "{file}"
        );
        let expired = sign_rs(&json!({"exp": NOW - 10}));
        assert!(matches!(
            auth.verify_token(&expired, NOW),
            Err(AuthError::Claims(ClaimsRefused::Expired { .. }))
        ));
        assert_eq!(
            auth.verify_token(&sign_rs(&json!({"role": "admin"})), NOW),
            Err(AuthError::Claims(ClaimsRefused::MissingExp))
        );
    }
}

#[test]
fn es256_token_with_p256_public_key() {
    let auth = with_key("jwt_es256_public.pem");
    assert_eq!(auth.algorithm(), Some(Algorithm::ES256));
    let token = sign_es(&json!({"exp": NOW + 60, "role": "admin", "events": [EVENT_B]}));
    assert_eq!(
        auth.authenticate_parts(&request(None, &format!("/live?access_token={token}")), NOW),
        Ok(Principal::from_claims([EVENT_B], Some("admin")))
    );
    // A flipped signature byte fails verification.
    let (message, signature) = token.rsplit_once('.').unwrap();
    let mut signature = signature.to_owned().into_bytes();
    signature[5] = if signature[5] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{message}.{}", String::from_utf8(signature).unwrap());
    assert_eq!(
        auth.verify_token(&tampered, NOW),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn config_errors_name_the_variable() {
    let missing = config_error(None, Some("does-not-exist.pem"), true);
    let text = missing.to_string();
    assert!(
        text.starts_with("LIVE_AUTH_JWT_PUBLIC_KEY_FILE: cannot read ")
            && text.contains("does-not-exist.pem"),
        "{text}"
    );

    let private = config_error(None, Some("jwt_rs256_private.pem"), true);
    assert!(matches!(private, AuthConfigError::PrivateKey { .. }));
    assert!(private
        .to_string()
        .starts_with("LIVE_AUTH_JWT_PUBLIC_KEY_FILE: "));

    // Not PEM at all: this test file.
    let not_pem = config_error(None, Some("../../shell/src/auth_tests.rs"), true);
    assert!(
        not_pem
            .to_string()
            .ends_with("is not a PEM RSA or EC public key"),
        "{not_pem}"
    );

    assert!(matches!(
        config_error(None, Some("jwt_p384_public.pem"), true),
        AuthConfigError::UnsupportedCurve { .. }
    ));
    match config_error(None, Some("jwt_rsa1024_public.pem"), true) {
        AuthConfigError::UnsupportedRsaSize { bits, .. } => assert_eq!(bits, 1024),
        other => panic!("{other}"),
    }

    let both = config_error(Some(SECRET), Some("jwt_rs256_public.pem"), true);
    assert!(both.to_string().starts_with("LIVE_AUTH_JWT_SECRET: "));
    let empty = config_error(Some(""), None, true);
    assert_eq!(
        empty.to_string(),
        "LIVE_AUTH_JWT_SECRET: must be at least 32 bytes (RFC 7518, section 3.2), got 0"
    );
    let short = config_error(Some(&SECRET[..31]), None, true);
    assert!(short.to_string().ends_with("got 31"), "{short}");
    assert!(
        !short.to_string().contains(&SECRET[..31]),
        "the secret is never echoed"
    );
    assert!(Authenticator::from_settings(&settings(Some(&SECRET[..32]), None, true)).is_ok());
    let nobody = config_error(None, None, false);
    assert!(nobody.to_string().starts_with("LIVE_ALLOW_ANONYMOUS: "));
}

#[test]
fn debug_does_not_show_the_secret() {
    let text = format!("{:?}", hs256(true));
    assert!(!text.contains(SECRET), "{text}");
    assert!(text.contains("HS256"), "{text}");
}

#[test]
fn error_text_never_contains_the_token() {
    let rs = with_key("jwt_rs256_public.pem");
    let no_key = Authenticator::from_settings(&settings(None, None, true)).unwrap();
    let hs = hs256(true);
    let cases: Vec<(&Authenticator, String)> = vec![
        (&hs, sign_hs(&json!({"exp": NOW - 5}))),
        (&hs, sign_hs(&json!({"role": "admin"}))),
        (&hs, sign_hs(&json!({"exp": NOW + 60, "nbf": NOW + 999}))),
        (&hs, sign_hs(&json!({"exp": NOW + 60, "events": 5}))),
        (&hs, sign_hs(&json!({"exp": "x"}))),
        (&hs, sign_rs(&valid_claims())),
        (&rs, sign_hs(&valid_claims())),
        (
            &hs,
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"wrong"),
                &valid_claims(),
            ),
        ),
        (&hs, "garbage-token-text-1234567890".to_owned()),
        (&no_key, sign_hs(&valid_claims())),
    ];
    let mut kinds = BTreeSet::new();
    for (auth, token) in &cases {
        for parts in [
            request(Some(&bearer(token)), "/live"),
            request(None, &format!("/live?access_token={token}")),
        ] {
            let err = auth.authenticate_parts(&parts, NOW).unwrap_err();
            kinds.insert(err.kind());
            for text in [
                err.to_string(),
                format!("{err:?}"),
                err.www_authenticate().to_owned(),
            ] {
                assert!(!text.contains(token.as_str()), "{text}");
                for segment in token.split('.').filter(|s| s.len() >= 8) {
                    assert!(!text.contains(segment), "{text}");
                }
            }
        }
    }
    assert!(kinds.len() >= 8, "{kinds:?}");
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("a%2Eb+c%2b").as_deref(), Some("a.b c+"));
    assert_eq!(percent_decode("%e2%82%ac").as_deref(), Some("€"));
    assert_eq!(percent_decode("%4"), None);
    assert_eq!(percent_decode("%G0"), None);
    assert_eq!(percent_decode("%FF"), None);
}

#[test]
fn rsa_modulus_bits_of_malformed_der_is_none() {
    assert_eq!(rsa_modulus_bits(&[]), None);
    assert_eq!(rsa_modulus_bits(&[0x30, 0x03, 0x02, 0x01, 0x01]), None);
    assert_eq!(
        rsa_modulus_bits(&[0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x03]),
        Some(8)
    );
    assert_eq!(
        rsa_modulus_bits(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
        None
    );
}
