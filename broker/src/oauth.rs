//! A small OAuth2 client for the three ways a broker gets a Cognitive Services token from
//! Microsoft Entra ID: client credentials, App Service / Container Apps managed identity
//! (`IDENTITY_ENDPOINT`), and IMDS managed identity. See README.md for why this is not
//! `azure_identity`.

use std::time::Duration;

use serde_json::Value;

use crate::config::EntraCredential;
use crate::outbound::{describe_transport_error, read_limited, UpstreamError};
use crate::secret::{is_valid_token_text, Secret};

pub const SCOPE: &str = "https://cognitiveservices.azure.com/.default";
pub const RESOURCE: &str = "https://cognitiveservices.azure.com";

pub struct AccessToken {
    pub access_token: Secret,
    pub lifetime: Duration,
}

/// `"3599"` or `3599`.
fn number_or_string(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Parses a token answer of any of the three endpoints. `now_unix` is used with `expires_on`
/// when `expires_in` is absent.
pub fn parse_token_answer(
    body: &[u8],
    now_unix: u64,
    who: &str,
) -> Result<AccessToken, UpstreamError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| UpstreamError::new(format!("{who} answer is not JSON")))?;
    if let Some(tt) = v.get("token_type").and_then(Value::as_str) {
        if !tt.eq_ignore_ascii_case("bearer") {
            return Err(UpstreamError::new(format!(
                "{who} answered an unexpected token_type"
            )));
        }
    }
    let token = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| is_valid_token_text(t))
        .ok_or_else(|| UpstreamError::new(format!("{who} answer has no usable access_token")))?;
    let secs = number_or_string(v.get("expires_in"))
        .or_else(|| number_or_string(v.get("expires_on")).and_then(|on| on.checked_sub(now_unix)))
        .filter(|s| *s >= 1)
        .ok_or_else(|| UpstreamError::new(format!("{who} answer has no usable expiry")))?;
    Ok(AccessToken {
        access_token: Secret::new(token),
        lifetime: Duration::from_secs(secs.min(86_400)),
    })
}

/// Turns an error answer into a short detail: status and the OAuth `error` code (never the
/// description, which can echo identifiers, and never the body).
fn error_detail(who: &str, status: u16, body: &[u8]) -> UpstreamError {
    let code = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v.get("error").and_then(|e| match e {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o.get("code").and_then(Value::as_str).map(str::to_string),
            _ => None,
        })
    });
    match code.filter(|c| {
        c.len() <= 64
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }) {
        Some(c) => UpstreamError::new(format!("{who} answered {status} ({c})")),
        None => UpstreamError::new(format!("{who} answered {status}")),
    }
}

pub async fn acquire(
    client: &reqwest::Client,
    cred: &EntraCredential,
    now_unix: u64,
) -> Result<AccessToken, UpstreamError> {
    let (who, req) = match cred {
        EntraCredential::ClientSecret {
            authority,
            tenant,
            client_id,
            secret,
        } => {
            let url = format!("{authority}/{tenant}/oauth2/v2.0/token");
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", client_id.as_str()),
                ("client_secret", secret.expose()),
                ("scope", SCOPE),
            ];
            ("entra token endpoint", client.post(url).form(&form))
        }
        EntraCredential::AppService {
            endpoint,
            header,
            client_id,
        } => {
            let mut q = vec![("api-version", "2019-08-01"), ("resource", RESOURCE)];
            if let Some(c) = client_id {
                q.push(("client_id", c.as_str()));
            }
            let mut hv = reqwest::header::HeaderValue::from_str(header.expose())
                .map_err(|_| UpstreamError::new("IDENTITY_HEADER is not a valid header value"))?;
            hv.set_sensitive(true);
            (
                "managed identity endpoint",
                client
                    .get(endpoint.as_str())
                    .query(&q)
                    .header("X-IDENTITY-HEADER", hv),
            )
        }
        EntraCredential::Imds { base, client_id } => {
            let url = format!("{base}/metadata/identity/oauth2/token");
            let mut q = vec![("api-version", "2018-02-01"), ("resource", RESOURCE)];
            if let Some(c) = client_id {
                q.push(("client_id", c.as_str()));
            }
            ("IMDS", client.get(url).query(&q).header("Metadata", "true"))
        }
    };
    let resp = req
        .send()
        .await
        .map_err(|e| describe_transport_error(who, &e))?;
    let status = resp.status().as_u16();
    let body = read_limited(resp, who).await?;
    if !(200..300).contains(&status) {
        return Err(error_detail(who, status, &body));
    }
    parse_token_answer(&body, now_unix, who)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_number_string_and_expires_on() {
        let a = parse_token_answer(
            br#"{"token_type":"Bearer","expires_in":3599,"access_token":"abc"}"#,
            0,
            "x",
        )
        .unwrap();
        assert_eq!(a.lifetime, Duration::from_secs(3599));
        assert_eq!(a.access_token.expose(), "abc");
        let b = parse_token_answer(
            br#"{"access_token":"abc","expires_in":"3599","expires_on":"1700003599","resource":"r","token_type":"Bearer"}"#,
            1_700_000_000,
            "x",
        )
        .unwrap();
        assert_eq!(b.lifetime, Duration::from_secs(3599));
        let c = parse_token_answer(
            br#"{"access_token":"abc","expires_on":"1700000600","token_type":"Bearer"}"#,
            1_700_000_000,
            "x",
        )
        .unwrap();
        assert_eq!(c.lifetime, Duration::from_secs(600));
    }

    #[test]
    fn rejects_bad_answers_without_echoing_them() {
        for body in [
            &br#"not json"#[..],
            br#"{"expires_in":3599}"#,
            br#"{"access_token":"a b","expires_in":3599}"#,
            br#"{"access_token":"abc"}"#,
            br#"{"access_token":"abc","expires_in":"soon"}"#,
            br#"{"access_token":"abc","expires_in":3599,"token_type":"pop"}"#,
        ] {
            let e = parse_token_answer(body, 0, "x").err().expect("rejected");
            assert!(!e.detail.contains("abc"));
        }
        let e = error_detail("entra", 401, br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. secret=hunter2"}"#);
        assert_eq!(e.detail, "entra answered 401 (invalid_client)");
        assert_eq!(
            error_detail("entra", 500, b"<html>").detail,
            "entra answered 500"
        );
    }
}
