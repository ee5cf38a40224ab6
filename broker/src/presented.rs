//! How a Speech client presents its credential, as the Speech SDK sends it: the `Authorization`
//! query parameter on a browser's WebSocket (a browser cannot set headers there), else the
//! `Authorization` header (native clients). Read alike by the relay (its ticket), the relay's
//! user guard and the fake Speech service (a token), so this sits below all three.

use axum::http::HeaderMap;

/// The token a client presented: `Authorization` query parameter (browser SDK), else the
/// `Authorization` header; `Bearer ` prefix removed; `aad#<resourceId>#<token>` reduced to `<token>`.
pub fn presented_token(query: Option<&str>, headers: &HeaderMap) -> Option<String> {
    let from_query = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.into_owned())
    });
    let raw = from_query.or_else(|| {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    })?;
    let mut t = raw.trim();
    if t.len() >= 6
        && t.is_char_boundary(6)
        && t[..6].eq_ignore_ascii_case("bearer")
        && t[6..].chars().next().is_none_or(char::is_whitespace)
    {
        t = t[6..].trim();
    }
    if let Some(i) = t.rfind('#') {
        t = &t[i + 1..];
    }
    (!t.is_empty()).then(|| t.to_string())
}
