//! What a token's claims grant (contract section 5), once the shell has checked its
//! signature: `exp` required and enforced without leeway, `nbf` with [`NBF_LEEWAY_S`], and
//! the `events` and `role` claims, a claim of the wrong type refusing the token. The time is
//! an input, so the judgement is the same wherever it runs.

use serde::Deserialize;

use super::auth::Principal;
use super::input::Grant;
use crate::UnixMillis;

/// Seconds by which `nbf` may lie in the future (an issuer whose clock runs slightly
/// ahead). `exp` has no leeway: the contract enforces it.
pub const NBF_LEEWAY_S: u64 = 60;

/// The claims read; others are ignored (`aud`, `iss` and `sub` are not checked: the contract
/// configures none). Kept as raw JSON so that a claim of the wrong type is reported as such.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub exp: Option<serde_json::Value>,
    #[serde(default)]
    pub nbf: Option<serde_json::Value>,
    #[serde(default)]
    pub events: Option<serde_json::Value>,
    #[serde(default)]
    pub role: Option<serde_json::Value>,
}

/// Why a token's claims grant nothing. The text never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsRefused {
    #[error("the token has no `exp` claim")]
    MissingExp,
    #[error("the token expired at {exp} (now {now})")]
    Expired { exp: u64, now: u64 },
    #[error("the token is not valid before {nbf} (now {now})")]
    NotYetValid { nbf: u64, now: u64 },
    #[error("the token's `{claim}` claim {problem}")]
    InvalidClaim {
        claim: &'static str,
        problem: &'static str,
    },
}

const NOT_SECONDS: &str = "is not a non-negative number of seconds";
const NOT_STRINGS: &str = "is not an array of strings";

/// What `claims` grant at `now_unix_s` (seconds since the epoch), until their `exp`.
pub fn grant_of(claims: &Claims, now_unix_s: u64) -> Result<Grant, ClaimsRefused> {
    let exp = match &claims.exp {
        None => return Err(ClaimsRefused::MissingExp),
        Some(value) => numeric_date(value).ok_or(ClaimsRefused::InvalidClaim {
            claim: "exp",
            problem: NOT_SECONDS,
        })?,
    };
    if now_unix_s >= exp {
        return Err(ClaimsRefused::Expired {
            exp,
            now: now_unix_s,
        });
    }
    if let Some(value) = &claims.nbf {
        let nbf = numeric_date(value).ok_or(ClaimsRefused::InvalidClaim {
            claim: "nbf",
            problem: NOT_SECONDS,
        })?;
        if now_unix_s.saturating_add(NBF_LEEWAY_S) < nbf {
            return Err(ClaimsRefused::NotYetValid {
                nbf,
                now: now_unix_s,
            });
        }
    }
    let not_strings = ClaimsRefused::InvalidClaim {
        claim: "events",
        problem: NOT_STRINGS,
    };
    let events: Vec<&str> = match &claims.events {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str())
            .collect::<Option<Vec<&str>>>()
            .ok_or(not_strings)?,
        Some(_) => return Err(not_strings),
    };
    let role = match &claims.role {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(role)) => Some(role.as_str()),
        Some(_) => {
            return Err(ClaimsRefused::InvalidClaim {
                claim: "role",
                problem: "is not a string",
            })
        }
    };
    Ok(Grant {
        principal: Principal::from_claims(events, role),
        expires_at: UnixMillis(i64::try_from(exp.saturating_mul(1_000)).unwrap_or(i64::MAX)),
    })
}

/// A JWT NumericDate as whole seconds; fractions are truncated.
fn numeric_date(value: &serde_json::Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let f = value.as_f64()?;
    if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 {
        // Truncated: a fractional `exp` is then enforced up to a second early, never late.
        Some(f as u64)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_764_324_000;

    fn judge(claims: serde_json::Value) -> Result<Grant, ClaimsRefused> {
        let claims: Claims = serde_json::from_value(claims).expect("claims");
        grant_of(&claims, NOW)
    }

    #[test]
    fn exp_is_required_and_holds_until_its_second() {
        assert_eq!(judge(json!({})), Err(ClaimsRefused::MissingExp));
        assert_eq!(
            judge(json!({"exp": NOW})),
            Err(ClaimsRefused::Expired { exp: NOW, now: NOW })
        );
        let grant = judge(json!({"exp": NOW + 1})).expect("valid for one more second");
        assert_eq!(grant.expires_at, UnixMillis((NOW as i64 + 1) * 1_000));
        assert_eq!(grant.principal, Principal::from_claims([], None));
    }

    #[test]
    fn a_time_claim_is_a_non_negative_number_of_seconds() {
        // A fraction is cut: enforced up to a second early, never late.
        let grant = judge(json!({"exp": NOW as f64 + 1.9})).expect("a fraction");
        assert_eq!(grant.expires_at, UnixMillis((NOW as i64 + 1) * 1_000));
        assert_eq!(
            judge(json!({"exp": NOW as f64 + 0.5})),
            Err(ClaimsRefused::Expired { exp: NOW, now: NOW })
        );
        // A null claim is an absent one.
        assert_eq!(judge(json!({"exp": null})), Err(ClaimsRefused::MissingExp));
        // 2^64, the first float past u64::MAX, is out of range; 1e30 far out.
        for bad in [
            json!(-1),
            json!("soon"),
            json!(18_446_744_073_709_551_616.0),
            json!(1e30),
        ] {
            assert_eq!(
                judge(json!({"exp": bad})),
                Err(ClaimsRefused::InvalidClaim {
                    claim: "exp",
                    problem: NOT_SECONDS,
                }),
                "{bad}"
            );
        }
        assert_eq!(
            judge(json!({"exp": NOW + 9, "nbf": "now"})),
            Err(ClaimsRefused::InvalidClaim {
                claim: "nbf",
                problem: NOT_SECONDS,
            })
        );
        // Far in the future: the expiry saturates instead of wrapping.
        let grant = judge(json!({"exp": u64::MAX / 2})).expect("far");
        assert_eq!(grant.expires_at, UnixMillis(i64::MAX));
    }

    #[test]
    fn nbf_has_a_minute_of_leeway() {
        assert!(judge(json!({"exp": NOW + 600, "nbf": NOW + NBF_LEEWAY_S})).is_ok());
        assert_eq!(
            judge(json!({"exp": NOW + 600, "nbf": NOW + NBF_LEEWAY_S + 1})),
            Err(ClaimsRefused::NotYetValid {
                nbf: NOW + NBF_LEEWAY_S + 1,
                now: NOW,
            })
        );
        let at_the_end = Claims {
            exp: Some(json!(u64::MAX)),
            nbf: Some(json!(u64::MAX)),
            ..Claims::default()
        };
        assert!(grant_of(&at_the_end, u64::MAX - 1).is_ok(), "no overflow");
    }

    #[test]
    fn events_and_role_grant_what_they_name_and_refuse_a_wrong_type() {
        let event = "11111111-1111-4111-8111-111111111111";
        let grant =
            judge(json!({"exp": NOW + 9, "events": [event, "not-a-uuid"], "role": "admin"}))
                .expect("valid");
        assert_eq!(
            grant.principal,
            Principal::from_claims([event], Some("admin"))
        );
        let grant = judge(json!({"exp": NOW + 9, "events": null, "role": null})).expect("nulls");
        assert_eq!(grant.principal, Principal::from_claims([], None));
        for events in [json!([event, 5]), json!(event), json!({})] {
            assert_eq!(
                judge(json!({"exp": NOW + 9, "events": events})),
                Err(ClaimsRefused::InvalidClaim {
                    claim: "events",
                    problem: NOT_STRINGS,
                })
            );
        }
        assert_eq!(
            judge(json!({"exp": NOW + 9, "role": ["admin"]})),
            Err(ClaimsRefused::InvalidClaim {
                claim: "role",
                problem: "is not a string",
            })
        );
    }
}
