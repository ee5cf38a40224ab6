//! Origin allow-list, `Sec-Fetch-Site` check and CORS headers.
//!
//! Browsers attach `Origin` to every cross-origin request (and to same-origin POSTs); a page on a
//! foreign site can therefore be told apart from our own pages and from allow-listed apps, and is
//! refused before any token is minted. Requests without `Origin` (curl, server-to-server, same-origin
//! GET) pass, unless the browser labels them `Sec-Fetch-Site: cross-site`.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, HeaderValue};
pub use speech_token_client::engine::token::is_loopback_host;

/// `scheme://host[:port]` as a browser serializes it (lower case, default port dropped), or `None`
/// for anything that is not an http(s) origin (including `null`).
pub fn normalize_origin(s: &str) -> Option<String> {
    let u = url::Url::parse(s.trim()).ok()?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return None;
    }
    if !(u.path() == "/" || u.path().is_empty()) || u.query().is_some() || u.username() != "" {
        return None;
    }
    match u.origin() {
        o @ url::Origin::Tuple(..) => Some(o.ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}

/// Whether a URL's host names this machine, by the browser client's own rule
/// (`speech_token_client::engine::token::is_loopback_host`: `localhost`, `*.localhost`,
/// `127.0.0.0/8`, `::1`).
pub fn is_loopback_url(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => is_loopback_host(d),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `http://127.0.0.1:<port>`, `http://localhost:<port>`, `http://[::1]:<port>`.
pub fn is_loopback_origin(normalized: &str) -> bool {
    url::Url::parse(normalized).is_ok_and(|u| u.scheme() == "http" && is_loopback_url(&u))
}

/// True for a loopback peer address (IPv4, IPv6, IPv4-mapped IPv6).
pub fn is_loopback_peer(addr: &SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginDecision {
    /// No `Origin` header and not labelled cross-site: no CORS headers needed.
    NoOrigin,
    /// Allowed; echo this origin in `Access-Control-Allow-Origin`.
    Allowed(String),
    /// Refused (403).
    Denied,
}

#[derive(Debug, Clone)]
pub struct OriginPolicy {
    pub allow: Vec<String>,
    pub allow_loopback: bool,
    /// The broker's own origins (derived from the listening address, never from `Host`, which
    /// a DNS-rebinding page controls). dev mode only: a deployed broker's own origin is whatever
    /// public name its proxy gives it, and must be allow-listed like any other.
    pub own: Vec<String>,
}

impl OriginPolicy {
    /// `own_loopback`: also allow the broker's own origins on its listening address (dev).
    pub fn new(
        allow: Vec<String>,
        allow_loopback: bool,
        local: SocketAddr,
        own_loopback: bool,
    ) -> Self {
        let mut own = Vec::new();
        let port = local.port();
        let ip = local.ip();
        if own_loopback && (ip.is_unspecified() || ip.is_loopback()) {
            own.push(format!("http://127.0.0.1:{port}"));
            own.push(format!("http://localhost:{port}"));
            own.push(format!("http://[::1]:{port}"));
        }
        if own_loopback && !ip.is_unspecified() {
            own.push(format!("http://{local}"));
        }
        OriginPolicy {
            allow,
            allow_loopback,
            own,
        }
    }

    pub fn is_allowed(&self, normalized: &str) -> bool {
        self.own.iter().any(|o| o == normalized)
            || self.allow.iter().any(|o| o == normalized)
            || (self.allow_loopback && is_loopback_origin(normalized))
    }

    pub fn decide(&self, headers: &HeaderMap) -> OriginDecision {
        let cross_site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
        match headers.get(axum::http::header::ORIGIN) {
            None => {
                if cross_site {
                    OriginDecision::Denied
                } else {
                    OriginDecision::NoOrigin
                }
            }
            Some(v) => {
                let Some(n) = v.to_str().ok().and_then(normalize_origin) else {
                    return OriginDecision::Denied;
                };
                if self.is_allowed(&n) {
                    OriginDecision::Allowed(n)
                } else {
                    OriginDecision::Denied
                }
            }
        }
    }
}

/// The most request headers a preflight is granted. A browser asks for the non-safelisted
/// headers the page sets (an app sends one or two: its session bearer, a trace id); the list is
/// the attacker's to make as long as the server's header limit allows, so the filter stops here.
pub const MAX_PREFLIGHT_HEADERS: usize = 32;

/// Filters `Access-Control-Request-Headers` down to what the broker accepts:
/// `authorization`, `content-type` and `x-*`.
pub fn allowed_request_headers(requested: Option<&HeaderValue>) -> String {
    let mut out: Vec<String> = Vec::new();
    if let Some(list) = requested.and_then(|v| v.to_str().ok()) {
        for h in list.split(',') {
            // Linear in the list, whatever its length: the duplicate check below is over at
            // most this many names.
            if out.len() == MAX_PREFLIGHT_HEADERS {
                break;
            }
            let h = h.trim().to_ascii_lowercase();
            if h.is_empty() || out.contains(&h) {
                continue;
            }
            if h == "authorization" || h == "content-type" || (h.starts_with("x-") && h.len() > 2) {
                out.push(h);
            }
        }
    }
    if out.is_empty() {
        "authorization, content-type".to_string()
    } else {
        out.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(
            normalize_origin("HTTPS://App.Example.com:443").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            normalize_origin("http://127.0.0.1:8080/").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(normalize_origin("null"), None);
        assert_eq!(normalize_origin("file:///x"), None);
        assert_eq!(normalize_origin("https://a.com/path"), None);
    }

    #[test]
    fn loopback_peer_check() {
        assert!(is_loopback_peer(&"127.0.0.1:1".parse().unwrap()));
        assert!(is_loopback_peer(&"127.9.9.9:1".parse().unwrap()));
        assert!(is_loopback_peer(&"[::1]:1".parse().unwrap()));
        assert!(is_loopback_peer(&"[::ffff:127.0.0.1]:1".parse().unwrap()));
        assert!(!is_loopback_peer(&"10.0.0.1:1".parse().unwrap()));
        assert!(!is_loopback_peer(&"192.168.1.2:1".parse().unwrap()));
        assert!(!is_loopback_peer(&"[::ffff:10.0.0.1]:1".parse().unwrap()));
        assert!(!is_loopback_peer(&"[2001:db8::1]:1".parse().unwrap()));
        assert!(!is_loopback_peer(&"0.0.0.0:1".parse().unwrap()));
    }

    fn hdrs(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn decisions() {
        let p = OriginPolicy::new(
            vec!["https://app.example.com".into()],
            false,
            "127.0.0.1:8787".parse().unwrap(),
            true,
        );
        assert_eq!(p.decide(&hdrs(&[])), OriginDecision::NoOrigin);
        assert_eq!(
            p.decide(&hdrs(&[("sec-fetch-site", "cross-site")])),
            OriginDecision::Denied
        );
        assert_eq!(
            p.decide(&hdrs(&[("sec-fetch-site", "same-origin")])),
            OriginDecision::NoOrigin
        );
        assert_eq!(
            p.decide(&hdrs(&[("origin", "https://app.example.com")])),
            OriginDecision::Allowed("https://app.example.com".into())
        );
        assert_eq!(
            p.decide(&hdrs(&[("origin", "https://evil.example")])),
            OriginDecision::Denied
        );
        assert_eq!(
            p.decide(&hdrs(&[("origin", "null")])),
            OriginDecision::Denied
        );
        assert_eq!(
            p.decide(&hdrs(&[("origin", "http://127.0.0.1:9999")])),
            OriginDecision::Denied
        );
        assert_eq!(
            p.decide(&hdrs(&[("origin", "http://127.0.0.1:8787")])),
            OriginDecision::Allowed("http://127.0.0.1:8787".into())
        );
        let dev = OriginPolicy::new(vec![], true, "127.0.0.1:8787".parse().unwrap(), true);
        let deployed = OriginPolicy::new(vec![], false, "127.0.0.1:8787".parse().unwrap(), false);
        assert_eq!(
            deployed.decide(&hdrs(&[("origin", "http://127.0.0.1:8787")])),
            OriginDecision::Denied
        );
        for o in [
            "http://127.0.0.1:9999",
            "http://localhost:3000",
            "http://[::1]:5000",
            "http://127.0.0.2:5555",
            "http://app.localhost:5555",
        ] {
            let mut h = HeaderMap::new();
            h.insert("origin", HeaderValue::from_str(o).unwrap());
            assert!(matches!(dev.decide(&h), OriginDecision::Allowed(_)), "{o}");
        }
        assert_eq!(
            dev.decide(&hdrs(&[("origin", "https://127.0.0.1:9999")])),
            OriginDecision::Denied
        );
        assert_eq!(
            dev.decide(&hdrs(&[("origin", "http://localhost.evil.com:80")])),
            OriginDecision::Denied
        );
    }

    #[test]
    fn request_header_filter() {
        let v = HeaderValue::from_static("Authorization, X-App-Session, Cookie, content-type");
        assert_eq!(
            allowed_request_headers(Some(&v)),
            "authorization, x-app-session, content-type"
        );
        assert_eq!(allowed_request_headers(None), "authorization, content-type");
    }
}
