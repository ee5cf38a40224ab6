//! Where tokens come from: the dev signer, Azure's issueToken (key mode) or Entra ID (entra mode).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{EntraCredential, EntraTarget};
use crate::devjwt::{unverified_lifetime, DevSigner};
use crate::oauth;
use crate::outbound::{describe_transport_error, read_limited, UpstreamError};
use crate::secret::{is_valid_token_text, Secret};

/// A token from an upstream source, with what the token route tells the browser about it.
pub struct UpstreamToken {
    pub token: Secret,
    pub lifetime: Duration,
    /// Anchored on the local monotonic clock at the moment the request was sent.
    pub expires_at: Instant,
    pub expires_in_cap: Option<u64>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
}

/// Wall-clock seconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn now_unix_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Dev mode: tokens signed by this process, accepted by the fake Speech service.
pub struct DevUpstream {
    pub signer: Arc<DevSigner>,
    pub ttl: Arc<AtomicU64>,
    pub endpoint: String,
}

/// Key mode: Azure's `issueToken` with the resource key (the key never leaves the broker).
pub struct KeyUpstream {
    pub client: reqwest::Client,
    pub key: Secret,
    pub region: String,
    pub sts_base: String,
}

/// Entra mode: an Entra ID token for the Speech resource, from the configured credential.
pub struct EntraUpstream {
    pub client: reqwest::Client,
    pub credential: EntraCredential,
    pub target: EntraTarget,
    pub max_ttl: u64,
}

/// Where this broker's tokens come from (one per process, chosen by `--mode`).
pub enum Upstream {
    Dev(DevUpstream),
    Key(KeyUpstream),
    Entra(EntraUpstream),
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
