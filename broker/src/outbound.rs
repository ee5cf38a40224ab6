//! Outbound HTTP to Azure and Entra ID: the client every upstream call uses (no redirects,
//! bounded time, no proxy for loopback or IMDS), bounded body reads, and failures described
//! without URLs or payloads. Shared by the token sources (`upstream.rs`), the OAuth exchanges
//! (`oauth.rs`) and the key fetchers (`auth/`); depends on none of them.

use std::time::Duration;

/// Short, secret-free description of an upstream failure (goes into the 502 body and the log).
#[derive(Debug, Clone)]
pub struct UpstreamError {
    /// What failed, e.g. "Entra ID timed out".
    pub detail: String,
}

impl UpstreamError {
    /// An error with this (secret-free) description.
    pub fn new(detail: impl Into<String>) -> Self {
        UpstreamError {
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// Classifies a reqwest error without its URL or any payload.
pub fn describe_transport_error(who: &str, e: &reqwest::Error) -> UpstreamError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "unreachable"
    } else if e.is_redirect() {
        "redirected"
    } else if e.is_body() || e.is_decode() {
        "sent an unreadable answer"
    } else {
        "request failed"
    };
    UpstreamError::new(format!("{who} {what}"))
}

/// Builds an HTTP client for upstream calls: rustls, no redirects, bounded time, and no proxy
/// where [`bypasses_proxy`] says so.
pub fn http_client(target: &str, timeout: Duration) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("speech-token-broker/", env!("CARGO_PKG_VERSION")));
    if bypasses_proxy(target) {
        b = b.no_proxy();
    }
    b.build().expect("reqwest client builds")
}

/// Whether requests to `target` skip an `HTTP(S)_PROXY` from the environment: loopback and
/// link-local targets (IMDS must never go through a proxy), and every plain `http://` target.
/// The configuration takes plain http only on the platform's local network (a managed identity
/// endpoint on a private address, as Azure sets it): through a proxy its secret header would
/// cross networks in the clear, where https would tunnel it.
pub fn bypasses_proxy(target: &str) -> bool {
    let Ok(u) = url::Url::parse(target) else {
        return false;
    };
    let link_local = matches!(u.host(), Some(url::Host::Ipv4(ip)) if ip.is_link_local());
    u.scheme() == "http" || link_local || crate::origin::is_loopback_url(&u)
}

/// Largest body accepted from an upstream.
pub const MAX_UPSTREAM_BODY: usize = 64 * 1024;

/// Reads `resp`'s body, failing once it exceeds [`MAX_UPSTREAM_BODY`].
pub async fn read_limited(resp: reqwest::Response, who: &str) -> Result<Vec<u8>, UpstreamError> {
    let mut resp = resp;
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| describe_transport_error(who, &e))?
    {
        out.extend_from_slice(&chunk);
        if out.len() > MAX_UPSTREAM_BODY {
            return Err(UpstreamError::new(format!("{who} answer too large")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A managed identity endpoint on a private address (Linux App Service's older containers:
    /// `http://172.16.x.x:8081`) carries `IDENTITY_HEADER`, a secret: never through an
    /// environment proxy in plain text. An https upstream may use the proxy (it tunnels).
    #[test]
    fn plain_http_and_local_targets_never_use_a_proxy() {
        for direct in [
            "http://172.16.1.5:8081/msi/token",
            "http://169.254.169.254/metadata/identity/oauth2/token",
            "http://169.254.129.2:8081/msi/token",
            "http://127.0.0.1:41234/msi/token",
            "https://127.0.0.1:8443/x",
        ] {
            assert!(bypasses_proxy(direct), "{direct}");
        }
        for proxied in [
            "https://login.microsoftonline.com/t/oauth2/v2.0/token",
            "https://westeurope.api.cognitive.microsoft.com",
            "not a url",
        ] {
            assert!(!bypasses_proxy(proxied), "{proxied}");
        }
    }
}
