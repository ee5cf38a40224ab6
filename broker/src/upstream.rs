//! Where tokens come from: the dev signer, Azure's issueToken (key mode) or Entra ID (entra mode).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{EntraCredential, EntraTarget};
use crate::devjwt::{unverified_lifetime, DevSigner};
use crate::oauth;
use crate::secret::{is_valid_token_text, Secret};

/// Short, secret-free description of an upstream failure (goes into the 502 body and the log).
#[derive(Debug, Clone)]
pub struct UpstreamError {
    pub detail: String,
}

impl UpstreamError {
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

pub struct UpstreamToken {
    pub token: Secret,
    pub lifetime: Duration,
    /// Anchored on the local monotonic clock at the moment the request was sent.
    pub expires_at: Instant,
    pub expires_in_cap: Option<u64>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn now_unix_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Builds an HTTP client for upstream calls: rustls, no redirects, bounded time, and no proxy for
/// loopback / link-local targets (IMDS must never go through a proxy).
pub fn http_client(target: &str, timeout: Duration) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("speech-token-broker/", env!("CARGO_PKG_VERSION")));
    if let Ok(u) = url::Url::parse(target) {
        let link_local = matches!(u.host(), Some(url::Host::Ipv4(ip)) if ip.is_link_local());
        let local = link_local || crate::origin::is_loopback_url(&u);
        if local {
            b = b.no_proxy();
        }
    }
    b.build().expect("reqwest client builds")
}

pub struct DevUpstream {
    pub signer: Arc<DevSigner>,
    pub ttl: Arc<AtomicU64>,
    pub endpoint: String,
}

pub struct KeyUpstream {
    pub client: reqwest::Client,
    pub key: Secret,
    pub region: String,
    pub sts_base: String,
}

pub struct EntraUpstream {
    pub client: reqwest::Client,
    pub credential: EntraCredential,
    pub target: EntraTarget,
    pub max_ttl: u64,
}

pub enum Upstream {
    Dev(DevUpstream),
    Key(KeyUpstream),
    Entra(EntraUpstream),
}

/// Largest body accepted from an upstream.
const MAX_UPSTREAM_BODY: usize = 64 * 1024;

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

impl Upstream {
    pub async fn fetch(&self) -> Result<UpstreamToken, UpstreamError> {
        match self {
            Upstream::Dev(d) => {
                let ttl = d.ttl.load(Ordering::Relaxed);
                let sent = Instant::now();
                let now_f = now_unix_f64();
                let (token, claims) = d.signer.sign(now_f as u64, ttl);
                // exp is a whole second: measure the true remaining time from the wall clock.
                let remaining = Duration::from_secs_f64((claims.exp as f64 - now_f).max(0.0));
                Ok(UpstreamToken {
                    token: Secret::new(token),
                    lifetime: Duration::from_secs(ttl),
                    expires_at: sent + remaining,
                    expires_in_cap: None,
                    region: Some("local".into()),
                    endpoint: Some(d.endpoint.clone()),
                })
            }
            Upstream::Key(k) => {
                let url = format!("{}/sts/v1.0/issueToken", k.sts_base);
                let mut key = reqwest::header::HeaderValue::from_str(k.key.expose())
                    .map_err(|_| UpstreamError::new("SPEECH_KEY is not a valid header value"))?;
                key.set_sensitive(true);
                let sent = Instant::now();
                let resp = k
                    .client
                    .post(url)
                    .header("Ocp-Apim-Subscription-Key", key)
                    .header(reqwest::header::CONTENT_LENGTH, "0")
                    .body(Vec::<u8>::new())
                    .send()
                    .await
                    .map_err(|e| describe_transport_error("issueToken", &e))?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(UpstreamError::new(format!(
                        "issueToken answered {}",
                        status.as_u16()
                    )));
                }
                let body = read_limited(resp, "issueToken").await?;
                let text = String::from_utf8(body)
                    .map_err(|_| UpstreamError::new("issueToken answer is not text"))?;
                let token = text.trim();
                if !is_valid_token_text(token) {
                    return Err(UpstreamError::new("issueToken answer is not a token"));
                }
                let lifetime = Duration::from_secs(unverified_lifetime(token).unwrap_or(600));
                Ok(UpstreamToken {
                    token: Secret::new(token),
                    lifetime,
                    expires_at: sent + lifetime,
                    expires_in_cap: None,
                    region: Some(k.region.clone()),
                    endpoint: None,
                })
            }
            Upstream::Entra(e) => {
                let sent = Instant::now();
                let at = oauth::acquire(&e.client, &e.credential, now_unix()).await?;
                let (token, region, endpoint) = match &e.target {
                    EntraTarget::ResourceId {
                        resource_id,
                        region,
                    } => (
                        Secret::new(format!("aad#{resource_id}#{}", at.access_token.expose())),
                        Some(region.clone()),
                        None,
                    ),
                    EntraTarget::Endpoint { endpoint, region } => (
                        at.access_token.clone(),
                        region.clone(),
                        Some(endpoint.clone()),
                    ),
                };
                Ok(UpstreamToken {
                    token,
                    lifetime: at.lifetime,
                    expires_at: sent + at.lifetime,
                    expires_in_cap: Some(e.max_ttl),
                    region,
                    endpoint,
                })
            }
        }
    }
}
