#![cfg(not(target_arch = "wasm32"))]
//! Native tests of `engine::token`: the redacting `Token`, strict broker-answer parsing
//! (`parse_grant`), base64url decoding, broker URL and loopback checks.

use speech_token_client::engine::token::{
    base64url_decode, check_broker_url, is_loopback_host, parse_grant, parse_grant_at, read_fields,
    AnswerClock, Field, Grant, DATE_RESOLUTION_MS, DEFAULT_LIFETIME_MS, MAX_BODY_BYTES,
    MAX_TOKEN_BYTES,
};
use speech_token_client::error::{Error, Invalid};
use speech_token_sim::SerdeJson;

/// A fixed "now" on the wall clock (epoch ms), a whole number of seconds.
const NOW_MS: f64 = 1_700_000_000_000.0;
const NOW_S: i64 = 1_700_000_000;
/// A recognisable secret: no error text may ever contain it.
const SECRET: &str = "SeCrEtToKeN-0123456789abcdef";

const JSON_CT: Option<&str> = Some("application/json");

// ---------------------------------------------------------------------------------------------
// helpers

/// A tiny base64url encoder (no padding), the inverse of `base64url_decode`.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 0x3f;
            out.push(ALPHABET[idx as usize] as char);
        }
    }
    out
}

/// A JWT-shaped token (unsigned: the engine never verifies) with the given payload JSON.
fn jwt(payload: &str) -> String {
    format!(
        "{}.{}.{}",
        b64url(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64url(payload.as_bytes()),
        b64url(b"not-a-real-signature")
    )
}

fn parse(body: &str, content_type: Option<&str>) -> Result<Grant, Error> {
    parse_grant(body, content_type, &SerdeJson, NOW_MS)
}

fn ok(body: &str, content_type: Option<&str>) -> Grant {
    match parse(body, content_type) {
        Ok(g) => g,
        Err(e) => panic!(
            "expected a grant, got error {e:?} for body of {} bytes",
            body.len()
        ),
    }
}

/// Asserts a rejection with exactly `reason`, and that neither the error's Display nor Debug
/// text contains `secret` (when one is given) nor the literal `SECRET`.
fn rejected(body: &str, content_type: Option<&str>, reason: Invalid, secret: Option<&str>) {
    match parse(body, content_type) {
        Ok(g) => panic!(
            "expected {reason:?}, got a grant (lifetime {} ms)",
            g.lifetime_ms
        ),
        Err(e) => {
            assert_eq!(
                e,
                Error::InvalidResponse(reason),
                "wrong rejection reason for body {:?}",
                body.chars().take(120).collect::<String>()
            );
            assert_eq!(e.kind(), "invalid-response");
            let shown = format!("{e}");
            let debugged = format!("{e:?}");
            for s in [Some(SECRET), secret].into_iter().flatten() {
                if s.len() >= 3 {
                    assert!(!shown.contains(s), "Display leaks the token: {shown}");
                    assert!(!debugged.contains(s), "Debug leaks the token: {debugged}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Token redaction

#[test]
fn token_debug_and_display_never_show_the_value() {
    let g = ok(
        &format!(r#"{{"token":"{SECRET}","expiresIn":600}}"#),
        JSON_CT,
    );
    // Positive control: the value really is in there.
    assert_eq!(g.token.expose(), SECRET);
    assert_eq!(g.token.len(), SECRET.len());
    assert!(!g.token.is_empty());
    let dbg = format!("{:?}", g.token);
    let disp = format!("{}", g.token);
    let alt = format!("{:#?}", g.token);
    for text in [&dbg, &disp, &alt] {
        assert!(!text.contains(SECRET), "token value leaked: {text}");
        assert!(
            !text.contains("0123456789"),
            "part of the token leaked: {text}"
        );
    }
    assert!(dbg.contains("redacted"), "{dbg}");
    assert!(disp.contains("redacted"), "{disp}");
    // The whole grant's Debug is redacted as well.
    let grant_dbg = format!("{g:?}");
    assert!(!grant_dbg.contains(SECRET), "{grant_dbg}");
    assert!(grant_dbg.contains("lifetime_ms"), "{grant_dbg}");
}

#[test]
fn a_jwt_token_is_redacted_too() {
    let t = jwt(r#"{"exp":1700000600,"iat":1700000000}"#);
    let g = ok(&t, Some("text/plain"));
    assert_eq!(g.token.expose(), t);
    for text in [
        format!("{:?}", g.token),
        format!("{}", g.token),
        format!("{g:?}"),
    ] {
        assert!(!text.contains(&t), "{text}");
        // Not even the signature or payload segment.
        for part in t.split('.') {
            assert!(!text.contains(part), "segment leaked: {text}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON answers

#[test]
fn json_with_token_expires_in_region_and_endpoint() {
    let g = ok(
        &format!(
            r#"{{"token":"{SECRET}","expiresIn":540,"region":"westeurope","endpoint":"wss://my-speech.cognitiveservices.azure.com/stt"}}"#
        ),
        JSON_CT,
    );
    assert_eq!(g.token.expose(), SECRET);
    assert_eq!(g.lifetime_ms, 540_000.0);
    assert_eq!(g.region.as_deref(), Some("westeurope"));
    assert_eq!(
        g.endpoint.as_deref(),
        Some("wss://my-speech.cognitiveservices.azure.com/stt")
    );
}

#[test]
fn json_is_recognised_by_shape_and_by_content_type_parameters() {
    let body = format!(r#"  {{"token":"{SECRET}","expiresIn":60}}  "#);
    for ct in [
        None,
        Some("application/json; charset=utf-8"),
        Some("APPLICATION/JSON"),
        Some("application/vnd.api+json"),
        Some("text/plain"),
    ] {
        let g = ok(&body, ct);
        assert_eq!(g.token.expose(), SECRET, "{ct:?}");
        assert_eq!(g.lifetime_ms, 60_000.0, "{ct:?}");
        assert_eq!(g.region, None);
        assert_eq!(g.endpoint, None);
    }
}

#[test]
fn access_token_and_expires_in_aliases() {
    let g = ok(
        &format!(r#"{{"access_token":"{SECRET}","expires_in":3599,"token_type":"Bearer"}}"#),
        JSON_CT,
    );
    assert_eq!(g.token.expose(), SECRET);
    assert_eq!(g.lifetime_ms, 3_599_000.0);
    // Mixed: camelCase token with snake_case lifetime.
    let g = ok(
        &format!(r#"{{"token":"{SECRET}","expires_in":42}}"#),
        JSON_CT,
    );
    assert_eq!(g.lifetime_ms, 42_000.0);
    // `token` wins over `access_token` when both are present.
    let g = ok(
        &format!(r#"{{"token":"{SECRET}","access_token":"other","expiresIn":42}}"#),
        JSON_CT,
    );
    assert_eq!(g.token.expose(), SECRET);
    // Fractional seconds are honoured.
    let g = ok(
        &format!(r#"{{"token":"{SECRET}","expiresIn":1.5}}"#),
        JSON_CT,
    );
    assert_eq!(g.lifetime_ms, 1_500.0);
    // Unknown fields are ignored; null counts as absent.
    let g = ok(
        &format!(r#"{{"token":"{SECRET}","expiresIn":null,"extra":{{"a":[1,2]}}}}"#),
        JSON_CT,
    );
    assert_eq!(g.lifetime_ms, DEFAULT_LIFETIME_MS);
}

#[test]
fn expires_on_is_epoch_seconds_relative_to_now() {
    let g = ok(
        &format!(r#"{{"token":"{SECRET}","expiresOn":{}}}"#, NOW_S + 900),
        JSON_CT,
    );
    assert_eq!(g.lifetime_ms, 900_000.0);
    // expiresIn wins over expiresOn.
    let g = ok(
        &format!(
            r#"{{"token":"{SECRET}","expiresIn":120,"expiresOn":{}}}"#,
            NOW_S + 900
        ),
        JSON_CT,
    );
    assert_eq!(g.lifetime_ms, 120_000.0);
    // In the past, or now: out of range.
    rejected(
        &format!(r#"{{"token":"{SECRET}","expiresOn":{}}}"#, NOW_S - 10),
        JSON_CT,
        Invalid::Lifetime,
        None,
    );
    rejected(
        &format!(r#"{{"token":"{SECRET}","expiresOn":{NOW_S}}}"#),
        JSON_CT,
        Invalid::Lifetime,
        None,
    );
    // More than 24 h ahead.
    rejected(
        &format!(r#"{{"token":"{SECRET}","expiresOn":{}}}"#, NOW_S + 86_401),
        JSON_CT,
        Invalid::Lifetime,
        None,
    );
    // Milliseconds by mistake (1000× too far): rejected, not a 50-year token.
    rejected(
        &format!(
            r#"{{"token":"{SECRET}","expiresOn":{}}}"#,
            (NOW_S + 900) * 1000
        ),
        JSON_CT,
        Invalid::Lifetime,
        None,
    );
}

#[test]
fn json_without_lifetime_uses_the_jwt_then_the_default() {
    let t = jwt(r#"{"aud":"speech","iat":1700000000,"exp":1700000300}"#);
    let g = ok(&format!(r#"{{"token":"{t}"}}"#), JSON_CT);
    assert_eq!(g.lifetime_ms, 300_000.0);
    // An explicit expiresIn wins over the JWT's claims.
    let g = ok(&format!(r#"{{"token":"{t}","expiresIn":60}}"#), JSON_CT);
    assert_eq!(g.lifetime_ms, 60_000.0);
    // An opaque token and no lifetime: the default 600 s.
    let g = ok(&format!(r#"{{"token":"{SECRET}"}}"#), JSON_CT);
    assert_eq!(g.lifetime_ms, DEFAULT_LIFETIME_MS);
    assert_eq!(DEFAULT_LIFETIME_MS, 600_000.0);
}

#[test]
fn managed_identity_style_answers_with_numeric_strings_are_read() {
    // Azure's managed-identity endpoints answer `expires_in`/`expires_on` as digit strings; a
    // broker passing such an answer through is understood.
    let g = ok(
        &format!(r#"{{"access_token":"{SECRET}","expires_in":"3599"}}"#),
        JSON_CT,
    );
    assert_eq!(g.lifetime_ms, 3_599_000.0);
    let g = ok(
        &format!(
            r#"{{"access_token":"{SECRET}","expires_on":"{}"}}"#,
            NOW_S + 300
        ),
        JSON_CT,
    );
    assert_eq!(g.lifetime_ms, 300_000.0);
    // The App Service MSI date form of `expires_on` (not a number) is ignored, as before this
    // field was read: the stated `expires_in` decides.
    let g = ok(
        &format!(
            r#"{{"access_token":"{SECRET}","expires_in":3599,"expires_on":"09/14/2017 00:00:00 PM +00:00"}}"#
        ),
        JSON_CT,
    );
    assert_eq!(g.lifetime_ms, 3_599_000.0);
    // Only plain digits, and only in the OAuth-style fields: anything else is still a wrong
    // type (the contract's own `expiresIn` stays a number: `wrong_field_types_are_wrong_type`).
    for bad in [r#""36a""#, r#""-5""#, r#""1e3""#, r#""""#, r#"" 60""#] {
        rejected(
            &format!(r#"{{"token":"{SECRET}","expires_in":{bad}}}"#),
            JSON_CT,
            Invalid::WrongType,
            None,
        );
    }
}

#[test]
fn a_body_with_a_utf8_bom_is_read() {
    let g = ok(
        &format!("\u{feff}{{\"token\":\"{SECRET}\",\"expiresIn\":600}}"),
        JSON_CT,
    );
    assert_eq!(g.lifetime_ms, 600_000.0);
}

/// Bodies are bytes (the browser hands over what the broker sent): the decoder, not a UTF-8
/// check of the engine's, refuses what is not UTF-8.
#[test]
fn bodies_that_are_not_utf8_are_refused_and_a_bom_is_not_content() {
    let raw = |body: &[u8], content_type| {
        parse_grant(body, Some(content_type), &SerdeJson, NOW_MS).map(|g| g.lifetime_ms)
    };
    let json = format!(r#"{{"token":"{SECRET}","expiresIn":600}}"#);
    // The same answer as bytes, with and without a byte order mark: read.
    assert_eq!(raw(json.as_bytes(), "application/json"), Ok(600_000.0));
    let with_bom = [&b"\xef\xbb\xbf"[..], json.as_bytes()].concat();
    assert_eq!(raw(&with_bom, "application/json"), Ok(600_000.0));
    // A JSON body with a byte that is not UTF-8 (in an unknown field): not JSON.
    let latin1 = [
        &json.as_bytes()[..json.len() - 1],
        &b",\"note\":\"caf\xe9\"}"[..],
    ]
    .concat();
    assert_eq!(
        raw(&latin1, "application/json").unwrap_err(),
        Error::InvalidResponse(Invalid::NotJson)
    );
    // Its negative control: the same field in UTF-8 is fine.
    let utf8 = [
        &json.as_bytes()[..json.len() - 1],
        ",\"note\":\"caf\u{e9}\"}".as_bytes(),
    ]
    .concat();
    assert_eq!(raw(&utf8, "application/json"), Ok(600_000.0));
    // A text token with a byte outside ASCII, valid UTF-8 or not: not a token.
    let token = jwt(&format!(r#"{{"exp":{}}}"#, NOW_S + 600));
    for tail in [&b"\xe9"[..], "\u{e9}".as_bytes(), &b"\xff\xfe"[..]] {
        let body = [token.as_bytes(), tail].concat();
        assert_eq!(
            raw(&body, "text/plain").unwrap_err(),
            Error::InvalidResponse(Invalid::TokenCharacters)
        );
    }
    // ... and over the length limit it is too long, counted in bytes as before: 16 383 ASCII
    // bytes are within the limit (refused only as not token-like), an "é" (two bytes) takes
    // them over it.
    let within = "a".repeat(MAX_TOKEN_BYTES - 1);
    assert_eq!(
        raw(format!("{within}b").as_bytes(), "text/plain").unwrap_err(),
        Error::InvalidResponse(Invalid::NotAToken)
    );
    assert_eq!(
        raw(format!("{within}\u{e9}").as_bytes(), "text/plain").unwrap_err(),
        Error::InvalidResponse(Invalid::TokenTooLong)
    );
    // Their negative control: the token alone is read.
    assert_eq!(raw(token.as_bytes(), "text/plain"), Ok(600_000.0));
}

#[test]
fn a_stated_lifetime_never_outlives_the_jwts_own_exp() {
    // A broker repeating a stale `expiresIn: 600` for a cached JWT issued 540 s ago (exp in
    // 60 s): never served past its `exp`.
    // Clock-free cap: exp − iat (the issuer's whole lifetime).
    let t = jwt(&format!(r#"{{"iat":{},"exp":{}}}"#, NOW_S, NOW_S + 60));
    let g = ok(&format!(r#"{{"token":"{t}","expiresIn":600}}"#), JSON_CT);
    assert_eq!(g.lifetime_ms, 60_000.0, "capped by exp - iat");
    let g = ok(
        &format!(r#"{{"token":"{t}","expiresOn":{}}}"#, NOW_S + 600),
        JSON_CT,
    );
    assert_eq!(g.lifetime_ms, 60_000.0, "expiresOn capped the same way");
    // With the broker's clock known: exp − (broker now), whatever this machine's clock says.
    let t = jwt(&format!(
        r#"{{"iat":{},"exp":{}}}"#,
        NOW_S - 540,
        NOW_S + 60
    ));
    let body = format!(r#"{{"token":"{t}","expiresIn":600}}"#);
    let clock = AnswerClock {
        local_ms: NOW_MS + 3_600_000.0, // this machine's clock is an hour fast
        server_ms: Some(NOW_MS),
    };
    let g = parse_grant_at(&body, JSON_CT, &SerdeJson, clock).unwrap();
    assert_eq!(g.lifetime_ms, 60_000.0, "exp − broker now");
    // Without the broker's clock, this machine's clock is not trusted to shorten it (a fast
    // clock would reject a good token): only exp − iat caps it.
    let g = ok(&body, JSON_CT);
    assert_eq!(g.lifetime_ms, 600_000.0);
    // Already past its `exp` by the broker's clock: expired on arrival, whatever expiresIn says.
    let t = jwt(&format!(
        r#"{{"iat":{},"exp":{}}}"#,
        NOW_S - 600,
        NOW_S - 10
    ));
    let body = format!(r#"{{"token":"{t}","expiresIn":600}}"#);
    let clock = AnswerClock {
        local_ms: NOW_MS,
        server_ms: Some(NOW_MS),
    };
    assert_eq!(
        parse_grant_at(&body, JSON_CT, &SerdeJson, clock).unwrap_err(),
        Error::InvalidResponse(Invalid::ExpiredOnArrival)
    );
    // control: a shorter stated lifetime stands, and an opaque token is unchanged
    let t = jwt(&format!(r#"{{"iat":{},"exp":{}}}"#, NOW_S, NOW_S + 3600));
    let g = ok(&format!(r#"{{"token":"{t}","expiresIn":600}}"#), JSON_CT);
    assert_eq!(g.lifetime_ms, 600_000.0);
    let g = ok(
        &format!(r#"{{"token":"{SECRET}","expiresIn":600}}"#),
        JSON_CT,
    );
    assert_eq!(g.lifetime_ms, 600_000.0);
}

// ---------------------------------------------------------------------------------------------
// text / JWT bodies

#[test]
fn text_jwt_body_lifetime_is_exp_minus_iat_when_fresh() {
    let t = jwt(r#"{"iat":1700000000,"exp":1700000600,"scp":"speech"}"#);
    let g = ok(&t, Some("text/plain"));
    assert_eq!(g.token.expose(), t);
    assert_eq!(g.lifetime_ms, 600_000.0);
    assert_eq!(g.region, None);
    let t = jwt(r#"{"iat":1700000000,"exp":1700000125}"#);
    let g = ok(&format!("{t}\r\n"), Some("text/plain; charset=utf-8"));
    assert_eq!(g.token.expose(), t, "the body is trimmed");
    assert_eq!(g.lifetime_ms, 125_000.0);
    // No content type at all.
    let g = ok(&t, None);
    assert_eq!(g.lifetime_ms, 125_000.0);
}

#[test]
fn jwt_with_exp_only_is_relative_to_now() {
    let t = jwt(&format!(r#"{{"exp":{}}}"#, NOW_S + 450));
    assert_eq!(ok(&t, Some("text/plain")).lifetime_ms, 450_000.0);
}

/// A cached Entra token with 5 minutes left is served for 5 minutes, not for its full hour
/// (`min(exp − now, exp − iat)`), and one already past its `exp` is expired on arrival.
#[test]
fn a_jwt_is_never_served_past_its_own_exp() {
    let t = jwt(&format!(
        r#"{{"iat":{},"exp":{}}}"#,
        NOW_S - 3300,
        NOW_S + 300
    ));
    assert_eq!(ok(&t, Some("text/plain")).lifetime_ms, 300_000.0);
    let t = jwt(&format!(
        r#"{{"iat":{},"exp":{}}}"#,
        NOW_S - 4000,
        NOW_S - 400
    ));
    rejected(&t, Some("text/plain"), Invalid::ExpiredOnArrival, Some(&t));
}

/// With the broker's clock (its `Date` header), a browser clock that is ten minutes off in
/// either direction neither rejects a fresh token nor extends an old one.
#[test]
fn the_brokers_clock_makes_a_wrong_browser_clock_harmless() {
    let server_s = NOW_S as f64;
    for skew_s in [-600.0, -30.0, 0.0, 30.0, 600.0] {
        let clock = AnswerClock {
            local_ms: (server_s + skew_s) * 1000.0,
            server_ms: Some(server_s * 1000.0),
        };
        let fresh = jwt(&format!(
            r#"{{"iat":{server_s},"exp":{}}}"#,
            server_s + 600.0
        ));
        let g = parse_grant_at(&fresh, Some("text/plain"), &SerdeJson, clock).unwrap();
        assert_eq!(
            g.lifetime_ms,
            600_000.0 - DATE_RESOLUTION_MS,
            "skew {skew_s} s"
        );
        let old = jwt(&format!(
            r#"{{"iat":{},"exp":{}}}"#,
            server_s - 3300.0,
            server_s + 300.0
        ));
        let g = parse_grant_at(&old, Some("text/plain"), &SerdeJson, clock).unwrap();
        assert_eq!(
            g.lifetime_ms,
            300_000.0 - DATE_RESOLUTION_MS,
            "skew {skew_s} s"
        );
        let on = format!(r#"{{"token":"{SECRET}","expiresOn":{}}}"#, server_s + 900.0);
        let g = parse_grant_at(&on, JSON_CT, &SerdeJson, clock).unwrap();
        assert_eq!(
            g.lifetime_ms,
            900_000.0 - DATE_RESOLUTION_MS,
            "skew {skew_s} s"
        );
    }
}

#[test]
fn jwt_with_a_bad_lifetime_is_rejected() {
    for payload in [
        r#"{"iat":1700000000,"exp":1700000000}"#,
        r#"{"iat":1700000600,"exp":1700000000}"#,
        r#"{"iat":1700000000,"exp":1700086401}"#,
    ] {
        let t = jwt(payload);
        rejected(&t, Some("text/plain"), Invalid::Lifetime, Some(&t));
    }
}

/// A 200 text answer must look like a token: junk that a misconfigured broker or proxy answers
/// is `invalid-response`, not a 10-minute token.
#[test]
fn text_bodies_that_are_not_token_shaped_are_refused() {
    for body in [
        "OK",
        "null",
        "true",
        "123",
        "Unauthorized",
        SECRET,
        "a.b",
        "a.b.c.d",
        "x.!!!.y",
        "..",
        "a..c",
        "aad#resource",
        "aad##a.b.c",
        "aad#r#opaque",
    ] {
        rejected(body, Some("text/plain"), Invalid::NotAToken, Some(body));
        rejected(body, None, Invalid::NotAToken, Some(body));
    }
}

#[test]
fn token_shaped_text_bodies_without_usable_claims_get_the_default_lifetime() {
    for body in [
        format!("x.{}.y", b64url(b"not json")),
        format!("x.{}.y", b64url(br#"{"iat":5}"#)), // no exp
        format!("x.{}.y", b64url(&[0xff, 0xfe])),   // not UTF-8
    ] {
        let g = ok(&body, Some("text/plain"));
        assert_eq!(g.token.expose(), body);
        assert_eq!(g.lifetime_ms, DEFAULT_LIFETIME_MS, "{body}");
    }
}

#[test]
fn aad_form_takes_its_lifetime_from_the_inner_jwt_and_passes_unchanged() {
    let inner = jwt(r#"{"iat":1700000000,"exp":1700003599}"#);
    let resource = "/subscriptions/0000-1111/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/my-speech";
    let token = format!("aad#{resource}#{inner}");
    let g = ok(&token, Some("text/plain"));
    assert_eq!(
        g.token.expose(),
        token,
        "the aad# form must reach the SDK unchanged"
    );
    assert_eq!(g.lifetime_ms, 3_599_000.0);
    // Same in a JSON answer.
    let g = ok(
        &format!(r#"{{"token":"{token}","region":"eastus"}}"#),
        JSON_CT,
    );
    assert_eq!(g.token.expose(), token);
    assert_eq!(g.lifetime_ms, 3_599_000.0);
    assert_eq!(g.region.as_deref(), Some("eastus"));
    // Negative control: in JSON, an aad# token around a non-JWT has the default lifetime.
    let g = ok(&format!(r#"{{"token":"aad#{resource}#opaque"}}"#), JSON_CT);
    assert_eq!(g.lifetime_ms, DEFAULT_LIFETIME_MS);
}

// ---------------------------------------------------------------------------------------------
// rejections

#[test]
fn malformed_json_is_not_json() {
    for body in [
        format!(r#"{{"token":"{SECRET}""#),
        format!(r#"{{"token":"{SECRET}",}}"#),
        format!(r#"{{token:"{SECRET}"}}"#),
        r#"{"token":"abc","expiresIn":60"#.to_string(),
        "[".to_string(),
        format!(r#"{{"token":"{SECRET}","expiresIn":NaN}}"#),
    ] {
        rejected(&body, JSON_CT, Invalid::NotJson, None);
    }
    // Declared JSON but plain text.
    rejected("hello", JSON_CT, Invalid::NotJson, None);
}

#[test]
fn wrong_field_types_are_wrong_type() {
    for body in [
        format!(r#"{{"token":"{SECRET}","expiresIn":"600"}}"#),
        r#"{"token":12345}"#.to_string(),
        format!(r#"{{"token":["{SECRET}"]}}"#),
        format!(r#"{{"token":"{SECRET}","region":7}}"#),
        format!(r#"{{"token":"{SECRET}","expiresOn":"tomorrow"}}"#),
        format!(r#"{{"access_token":"{SECRET}","expires_in":true}}"#),
        "[1,2]".to_string(),
        "\"just a string\"".to_string(),
        "42".to_string(),
    ] {
        rejected(&body, JSON_CT, Invalid::WrongType, None);
    }
}

#[test]
// Arrays are not token answers (serde-derived parsing once accepted `["<token>"]` by
// position; the object-only parser rejects them).
fn a_json_array_is_not_a_token_answer() {
    for body in [
        format!(r#"["{SECRET}"]"#),
        format!(r#"["{SECRET}", null, 600]"#),
        "[]".to_string(),
    ] {
        rejected(&body, JSON_CT, Invalid::WrongType, None);
    }
}

#[test]
fn missing_or_empty_token() {
    rejected(r#"{"expiresIn":600}"#, JSON_CT, Invalid::MissingToken, None);
    rejected(r#"{}"#, JSON_CT, Invalid::MissingToken, None);
    rejected(r#"{"token":null}"#, JSON_CT, Invalid::MissingToken, None);
    rejected(
        r#"{"token":"","expiresIn":600}"#,
        JSON_CT,
        Invalid::MissingToken,
        None,
    );
    // An empty body, or only whitespace.
    rejected("", JSON_CT, Invalid::Empty, None);
    rejected(" \r\n\t ", Some("text/plain"), Invalid::Empty, None);
}

#[test]
fn token_longer_than_16_kib_is_rejected() {
    let at_limit = "A".repeat(MAX_TOKEN_BYTES);
    let g = ok(&format!(r#"{{"token":"{at_limit}"}}"#), JSON_CT);
    assert_eq!(g.token.len(), MAX_TOKEN_BYTES);
    let long = format!("{SECRET}{}", "B".repeat(MAX_TOKEN_BYTES));
    rejected(
        &format!(r#"{{"token":"{long}"}}"#),
        JSON_CT,
        Invalid::TokenTooLong,
        Some(&long),
    );
    rejected(
        &long,
        Some("text/plain"),
        Invalid::TokenTooLong,
        Some(&long),
    );
}

#[test]
fn tokens_with_forbidden_characters_are_rejected_without_leaking() {
    let cases: Vec<String> = vec![
        format!("{SECRET} tail"),    // space
        format!("{SECRET}\\ttail"),  // JSON escape → tab
        format!("{SECRET}\\\"tail"), // JSON escape → double quote
        format!("{SECRET}'tail"),    // single quote
        format!("{SECRET}\\\\tail"), // JSON escape → backslash
        format!("{SECRET}\\u0001"),  // control character
        format!("{SECRET}\\u007f"),  // DEL
        format!("{SECRET}é"),        // non-ASCII
        format!("{SECRET}\\u00a0x"), // no-break space
    ];
    for raw in &cases {
        rejected(
            &format!(r#"{{"token":"{raw}","expiresIn":600}}"#),
            JSON_CT,
            Invalid::TokenCharacters,
            Some(SECRET),
        );
    }
    // Text bodies: inner whitespace/quotes/controls (outer whitespace is trimmed).
    for body in [
        format!("{SECRET} tail"),
        format!("{SECRET}\ttail"),
        format!("{SECRET}\"tail"),
        format!("{SECRET}\u{1}tail"),
        format!("{SECRET}ü"),
    ] {
        rejected(
            &body,
            Some("text/plain"),
            Invalid::TokenCharacters,
            Some(SECRET),
        );
    }
}

#[test]
fn lifetimes_outside_one_second_to_a_day_are_rejected() {
    for seconds in [
        "0",
        "-1",
        "-600",
        "0.5",
        "0.999",
        "86400.001",
        "86401",
        "1e300",
        "-0",
    ] {
        rejected(
            &format!(r#"{{"token":"{SECRET}","expiresIn":{seconds}}}"#),
            JSON_CT,
            Invalid::Lifetime,
            None,
        );
        rejected(
            &format!(r#"{{"access_token":"{SECRET}","expires_in":{seconds}}}"#),
            JSON_CT,
            Invalid::Lifetime,
            None,
        );
    }
    // The edges are accepted.
    assert_eq!(
        ok(&format!(r#"{{"token":"{SECRET}","expiresIn":1}}"#), JSON_CT).lifetime_ms,
        1_000.0
    );
    assert_eq!(
        ok(
            &format!(r#"{{"token":"{SECRET}","expiresIn":86400}}"#),
            JSON_CT
        )
        .lifetime_ms,
        86_400_000.0
    );
}

#[test]
fn non_finite_lifetimes_are_rejected() {
    // JSON has no NaN/Infinity literals; an overflowing number is the closest a broker can get.
    // serde_json refuses it as malformed; either way it never becomes a grant.
    for seconds in ["1e999", "-1e999", "Infinity", "NaN"] {
        let err = parse(
            &format!(r#"{{"token":"{SECRET}","expiresIn":{seconds}}}"#),
            JSON_CT,
        )
        .expect_err(seconds);
        assert!(
            matches!(
                err,
                Error::InvalidResponse(Invalid::NotJson | Invalid::Lifetime)
            ),
            "{seconds}: {err:?}"
        );
    }
    // A JWT cannot carry NaN either, but a huge exp - iat is out of range.
    let t = jwt(r#"{"iat":0,"exp":1e308}"#);
    rejected(&t, Some("text/plain"), Invalid::Lifetime, Some(&t));
}

#[test]
fn html_bodies_are_rejected() {
    rejected(
        "<!doctype html><html><body>Sign in</body></html>",
        Some("text/html; charset=utf-8"),
        Invalid::Html,
        None,
    );
    // By shape, whatever the content type says.
    rejected(
        "<html>login</html>",
        Some("application/json"),
        Invalid::Html,
        None,
    );
    rejected("\n  <html>", None, Invalid::Html, None);
    // By content type, whatever the shape.
    rejected(
        &format!(r#"{{"token":"{SECRET}"}}"#),
        Some("Text/HTML"),
        Invalid::Html,
        None,
    );
    rejected(SECRET, Some("text/html"), Invalid::Html, None);
}

#[test]
fn bodies_over_64_kib_are_rejected_before_parsing() {
    let pad = " ".repeat(MAX_BODY_BYTES);
    let body = format!(r#"{{"token":"{SECRET}","pad":"{pad}"}}"#);
    assert!(body.len() > MAX_BODY_BYTES);
    rejected(&body, JSON_CT, Invalid::BodyTooLarge, None);
    // Even whitespace that would trim away: the size is checked first.
    rejected(&pad.repeat(2), None, Invalid::BodyTooLarge, None);
    // Negative control: a body of exactly 64 KiB is parsed.
    let fill = MAX_BODY_BYTES - format!(r#"{{"token":"{SECRET}","pad":""}}"#).len();
    let body = format!(r#"{{"token":"{SECRET}","pad":"{}"}}"#, "x".repeat(fill));
    assert_eq!(body.len(), MAX_BODY_BYTES);
    assert_eq!(ok(&body, JSON_CT).token.expose(), SECRET);
}

#[test]
fn bad_regions_are_rejected() {
    for region in [
        "WestEurope",
        "westEurope",
        "west-europe",
        "west europe",
        "west_europe",
        "",
        "région",
    ] {
        rejected(
            &format!(r#"{{"token":"{SECRET}","region":"{region}"}}"#),
            JSON_CT,
            Invalid::Region,
            None,
        );
    }
    let long = "a".repeat(65);
    rejected(
        &format!(r#"{{"token":"{SECRET}","region":"{long}"}}"#),
        JSON_CT,
        Invalid::Region,
        None,
    );
    for region in ["westeurope", "eastus2", "usgovvirginia"] {
        let g = ok(
            &format!(r#"{{"token":"{SECRET}","region":"{region}"}}"#),
            JSON_CT,
        );
        assert_eq!(g.region.as_deref(), Some(region));
    }
}

#[test]
fn endpoints_must_be_secure_or_loopback() {
    let accepted = [
        "wss://westeurope.stt.speech.microsoft.com/speech/recognition",
        "https://my-speech.cognitiveservices.azure.com",
        "WSS://upper.example.com/",
        "ws://127.0.0.1:8080/fake",
        "ws://localhost:8080",
        "http://localhost/",
        "http://127.0.0.2:3000/x?y=1",
        "http://[::1]:3000/",
        "wss://host.example.com:443?x=1#frag",
        "ws://localhost.:8080/x", // trailing dot: still localhost
        "ws://LOCALHOST/x",
        "ws://[0:0:0:0:0:0:0:1]/x",     // ::1 written out
        "ws://0x7f000001/x",            // 127.0.0.1 in hex, as the URL parser normalises it
        "wss://xn--bcher-kva.example/", // IDN over TLS is fine
    ];
    for endpoint in accepted {
        let g = ok(
            &format!(r#"{{"token":"{SECRET}","endpoint":"{endpoint}"}}"#),
            JSON_CT,
        );
        assert_eq!(g.endpoint.as_deref(), Some(endpoint));
    }
    let refused = [
        "http://speech.example.com/",
        "ws://speech.example.com/",
        "http://127.0.0.1.evil.com/",
        "http://localhost.evil.com/",
        "http://10.0.0.1/",
        "https://user:password@speech.example.com/",
        "wss://user@speech.example.com/",
        "http://user@127.0.0.1/",
        "wss://speech.example.com/a b",
        "wss://speech.example.com/\\u0000",
        "wss://speech.example.com/é",
        "ftp://speech.example.com/",
        "javascript:alert(1)",
        "//speech.example.com/",
        "speech.example.com",
        "wss://",
        "",
        // WHATWG URL semantics, as the browser connects (issue: endpoint check bypass):
        "ws://evil.example\\.localhost/speech", // `\` is `/`: the host is evil.example
        "ws://evil.example\\@127.0.0.1/x",
        "http://127.0.0.1@evil.example/", // userinfo
        "ws://localhost@evil.example/",
        "ws://xn--lcalhost-9za.example/", // IDN, punycode: not loopback
        "ws://[::2]/",                    // IPv6, not loopback
        "ws://[::ffff:10.0.0.1]/",
        "ws://0x7f000001.evil.example/",
    ];
    for endpoint in refused {
        // JSON-escape literal backslashes (but keep the `\u0000` escape, a control character).
        let endpoint = if endpoint.contains("\\u") {
            endpoint.to_string()
        } else {
            endpoint.replace('\\', "\\\\")
        };
        let body = format!(r#"{{"token":"{SECRET}","endpoint":"{endpoint}"}}"#);
        assert!(parse(&body, JSON_CT).is_err(), "{endpoint} must be refused");
        rejected(
            &format!(r#"{{"token":"{SECRET}","endpoint":"{endpoint}"}}"#),
            JSON_CT,
            Invalid::Endpoint,
            None,
        );
    }
    let long = format!("wss://a.example.com/{}", "p".repeat(2048));
    rejected(
        &format!(r#"{{"token":"{SECRET}","endpoint":"{long}"}}"#),
        JSON_CT,
        Invalid::Endpoint,
        None,
    );
}

#[test]
fn every_error_display_is_free_of_the_token() {
    // A broad sweep: each rejection of a body holding SECRET, through every Error path.
    let bodies = [
        (
            format!(r#"{{"token":"{SECRET}","expiresIn":"x"}}"#),
            JSON_CT,
        ),
        (format!(r#"{{"token":"{SECRET}","expiresIn":0}}"#), JSON_CT),
        (format!(r#"{{"token":"{SECRET}","region":"X"}}"#), JSON_CT),
        (
            format!(r#"{{"token":"{SECRET}","endpoint":"http://x.y"}}"#),
            JSON_CT,
        ),
        (format!(r#"{{"token":"{SECRET} x"}}"#), JSON_CT),
        (format!("<p>{SECRET}</p>"), Some("text/html")),
        (format!(r#"{{"token":"{SECRET}""#), JSON_CT),
    ];
    for (body, ct) in &bodies {
        let err = parse(body, *ct).expect_err(body);
        for text in [format!("{err}"), format!("{err:?}"), err.kind().to_string()] {
            assert!(!text.contains(SECRET), "{text}");
            assert!(!text.contains("SeCrEt"), "{text}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// base64url

#[test]
fn base64url_round_trips_padded_and_unpadded() {
    let mut data: Vec<u8> = Vec::new();
    for len in 0..=64usize {
        data.clear();
        data.extend((0..len).map(|i| (i * 37 + len * 11) as u8));
        let enc = b64url(&data);
        assert!(!enc.contains('='));
        assert_eq!(
            base64url_decode(&enc).as_deref(),
            Some(&data[..]),
            "len {len}"
        );
        let padded = format!("{enc}{}", "=".repeat((4 - enc.len() % 4) % 4));
        assert_eq!(padded.len() % 4, 0);
        assert_eq!(
            base64url_decode(&padded).as_deref(),
            Some(&data[..]),
            "padded len {len}"
        );
    }
    // Known vectors (RFC 4648 §10, url alphabet).
    assert_eq!(base64url_decode("Zm9vYmFy").unwrap(), b"foobar");
    assert_eq!(base64url_decode("Zm9vYg").unwrap(), b"foob");
    assert_eq!(base64url_decode("Zm9vYg==").unwrap(), b"foob");
    assert_eq!(base64url_decode("-_8").unwrap(), [0xfb, 0xff]);
    assert_eq!(base64url_decode("").unwrap(), b"");
    // The encoder agrees with the vectors (so the round trip is not trivially self-consistent).
    assert_eq!(b64url(b"foobar"), "Zm9vYmFy");
    assert_eq!(b64url(b"foob"), "Zm9vYg");
    assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
}

#[test]
fn base64url_rejects_invalid_input() {
    for bad in [
        "Zm9v+mFy", // standard alphabet '+'
        "Zm9v/mFy", // standard alphabet '/'
        "Zm9v YmFy",
        "Zm9v\nYmFy",
        "Zm9v*",
        "Zm=9v",
        "é",
        "A",     // one leftover character cannot encode a byte
        "Zm9vY", // 5 chars: one leftover
    ] {
        assert_eq!(base64url_decode(bad), None, "{bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// broker URL and loopback

#[test]
fn broker_url_rules() {
    // https anywhere.
    assert_eq!(
        check_broker_url(false, false, "https:", "broker.example.com", false),
        Ok(())
    );
    // Relative, same origin (whatever the page's scheme).
    assert_eq!(
        check_broker_url(true, true, "https:", "app.example.com", false),
        Ok(())
    );
    assert_eq!(
        check_broker_url(true, true, "http:", "app.example.com", false),
        Ok(())
    );
    // Relative but resolving elsewhere (`//other.host/`): refused, even over https.
    for scheme in ["https:", "http:"] {
        let err = check_broker_url(true, false, scheme, "other.example.com", false).unwrap_err();
        assert_eq!(err.kind(), "config");
    }
    // http on loopback.
    for host in [
        "127.0.0.1",
        "127.0.0.2",
        "127.255.255.254",
        "localhost",
        "::1",
        "LocalHost",
    ] {
        assert_eq!(
            check_broker_url(false, false, "http:", host, false),
            Ok(()),
            "{host}"
        );
    }
    // http elsewhere.
    for host in [
        "broker.example.com",
        "10.0.0.1",
        "127.0.0.1.evil.com",
        "128.0.0.1",
        "::2",
    ] {
        let err = check_broker_url(false, false, "http:", host, false).unwrap_err();
        assert_eq!(err.kind(), "config", "{host}");
    }
    // Credentials in the URL: refused even on https and loopback.
    for (scheme, host) in [("https:", "broker.example.com"), ("http:", "127.0.0.1")] {
        let err = check_broker_url(false, false, scheme, host, true).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
    }
    // Other schemes.
    for scheme in [
        "ftp:",
        "ws:",
        "wss:",
        "file:",
        "data:",
        "javascript:",
        "HTTPS:",
    ] {
        assert!(
            check_broker_url(false, false, scheme, "localhost", false).is_err(),
            "{scheme}"
        );
    }
}

#[test]
fn loopback_host_edge_cases() {
    for host in [
        "localhost",
        "localhost.",
        "LOCALHOST",
        "app.localhost",
        "127.0.0.1",
        "127.0.0.1.",
        "127.1.2.3",
        "127.255.255.255",
        "::1",
    ] {
        assert!(is_loopback_host(host), "{host} should be loopback");
    }
    for host in [
        "127.0.0.1.evil.com",
        "localhost.evil.com",
        "evil-localhost",
        "notlocalhost",
        "127.0.0",
        "127.0.0.1.1",
        "127.0.0.256",
        "127.0.0.-1",
        "127.0.0.1000",
        "127..0.1",
        "128.0.0.1",
        "0.0.0.0",
        "10.0.0.1",
        "::2",
        "[::1]",
        "",
        ".",
        "127.0.0.0x1",
    ] {
        assert!(!is_loopback_host(host), "{host} should not be loopback");
    }
}

// ---------------------------------------------------------------------------------------------
// read_fields: the one serde visitor for the answer, the JWT claims and the options

const NAMES: &[&str] = &["token", "expiresIn", "region", "endpoint"];

#[test]
fn read_fields_puts_each_named_field_in_its_slot_and_skips_other_keys() {
    let mut out: [Field; 4] = Default::default();
    let value: serde_json::Value = serde_json::from_str(
        r#"{"extra":{"deep":[1,{"x":2}]},"region":"westeurope","token":"t","expiresIn":600,"endpoint":[1,2],"more":true}"#,
    )
    .unwrap();
    read_fields(value, NAMES, &mut out).unwrap();
    assert_eq!(
        out,
        [
            Field::Str("t".into()),
            Field::Num(600.0),
            Field::Str("westeurope".into()),
            Field::Other,
        ]
    );
    // Missing and null fields are absent; booleans are kept as such.
    let mut out: [Field; 4] = Default::default();
    let value: serde_json::Value =
        serde_json::from_str(r#"{"token":null,"region":false}"#).unwrap();
    read_fields(value, NAMES, &mut out).unwrap();
    assert_eq!(
        out,
        [
            Field::Absent,
            Field::Absent,
            Field::Bool(false),
            Field::Absent
        ]
    );
}

#[test]
fn read_fields_wipes_the_strings_it_read_when_the_object_fails_later() {
    // A text parser fails after the token was read: the token's string must not survive.
    let mut out: [Field; 4] = Default::default();
    let text = format!(r#"{{"token":"{SECRET}","expiresIn":600,"region":"#);
    let mut parser = serde_json::Deserializer::from_str(&text);
    assert!(read_fields(&mut parser, NAMES, &mut out).is_err());
    let Field::Str(token) = &out[0] else {
        panic!("the token slot holds {:?}", out[0]);
    };
    assert!(token.is_empty(), "the token was not cleared");
    // Wiped, not only cleared: its buffer (still allocated) holds zeros.
    assert!(token.capacity() >= SECRET.len());
    // SAFETY: the bytes up to the capacity were written (by the parser, then the wipe).
    let buffer = unsafe { std::slice::from_raw_parts(token.as_ptr(), SECRET.len()) };
    assert!(
        buffer.iter().all(|&b| b == 0),
        "the token's bytes were not zeroed"
    );
    assert_eq!(out[1], Field::Num(600.0));
    // Negative control: the same text, complete, keeps the token.
    let mut out: [Field; 4] = Default::default();
    let text = format!(r#"{{"token":"{SECRET}","expiresIn":600,"region":"r"}}"#);
    let mut parser = serde_json::Deserializer::from_str(&text);
    read_fields(&mut parser, NAMES, &mut out).unwrap();
    assert_eq!(out[0], Field::Str(SECRET.into()));
}

/// With serde_json, a value that is not an object is refused by `read_fields` itself (the `Json`
/// implementations also refuse one before: serde-wasm-bindgen would read an array's properties).
#[test]
fn read_fields_refuses_a_serde_json_value_that_is_not_an_object() {
    for text in ["[1,2]", "\"token\"", "42"] {
        let mut out: [Field; 4] = Default::default();
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert!(read_fields(value, NAMES, &mut out).is_err(), "{text}");
    }
}
