//! The signing keys of an Entra tenant: OpenID configuration → `jwks_uri` → RSA keys by `kid`.
//!
//! Keys are cached. An unknown `kid` (Entra rolls its keys over) triggers one download, at most
//! once per [`crate::config::EntraAuthSettings::keys_min_refetch`] (default one minute), however
//! many requests carry unknown kids; concurrent requests wait for that one download. Keys are
//! also refreshed once they are older than [`KEYS_MAX_AGE`] (the previous set is kept if that
//! download fails).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;

use crate::origin::is_loopback_url;
use crate::outbound::{describe_transport_error, read_limited, UpstreamError};

/// Keys older than this are downloaded again. Source: Microsoft identity platform, "Signing key
/// rollover": check for key updates every 24 hours at the least.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Why no key was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The key set has no such `kid` (after a download, or within the refetch interval).
    UnknownKid,
    /// No key set could be obtained at all.
    Unavailable,
}

struct Loaded {
    at: Option<Instant>,
    keys: HashMap<String, Arc<DecodingKey>>,
}

/// The cached signing keys of one authority/tenant.
pub struct SigningKeys {
    client: reqwest::Client,
    metadata_url: String,
    min_refetch: Duration,
    loaded: ArcSwap<Loaded>,
    /// Last download attempt; held while downloading (single flight).
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
    downloads: std::sync::atomic::AtomicU64,
}

#[derive(Deserialize)]
struct OpenIdConfiguration {
    jwks_uri: String,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    kid: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

impl SigningKeys {
    /// Keys published by the OpenID configuration at `metadata_url`.
    pub fn new(client: reqwest::Client, metadata_url: String, min_refetch: Duration) -> Self {
        SigningKeys {
            client,
            metadata_url,
            min_refetch,
            loaded: ArcSwap::from_pointee(Loaded {
                at: None,
                keys: HashMap::new(),
            }),
            last_attempt: tokio::sync::Mutex::new(None),
            downloads: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many downloads were attempted (tests, stats).
    pub fn downloads(&self) -> u64 {
        self.downloads.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lookup(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        let l = self.loaded.load();
        let fresh = l.at.is_some_and(|at| at.elapsed() < KEYS_MAX_AGE);
        l.keys.get(kid).filter(|_| fresh).cloned()
    }

    /// The key `kid`, downloading the key set if needed and allowed.
    pub async fn get(&self, kid: &str) -> Result<Arc<DecodingKey>, KeyError> {
        if let Some(k) = self.lookup(kid) {
            return Ok(k);
        }
        let mut last = self.last_attempt.lock().await;
        if let Some(k) = self.lookup(kid) {
            return Ok(k);
        }
        let recently = last.is_some_and(|t| t.elapsed() < self.min_refetch);
        if !recently {
            *last = Some(Instant::now());
            self.downloads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match self.download().await {
                Ok(keys) => {
                    tracing::info!(keys = keys.len(), "Entra signing keys loaded");
                    self.loaded.store(Arc::new(Loaded {
                        at: Some(Instant::now()),
                        keys,
                    }));
                }
                Err(e) => tracing::warn!(detail = %e.detail, "Entra signing keys: download failed"),
            }
        }
        drop(last);
        let l = self.loaded.load();
        match l.keys.get(kid) {
            Some(k) => Ok(Arc::clone(k)),
            None if l.keys.is_empty() => Err(KeyError::Unavailable),
            None => Err(KeyError::UnknownKid),
        }
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        url: &str,
        who: &str,
    ) -> Result<T, UpstreamError> {
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| describe_transport_error(who, &e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(UpstreamError::new(format!(
                "{who} answered {}",
                status.as_u16()
            )));
        }
        let body = read_limited(resp, who).await?;
        serde_json::from_slice(&body)
            .map_err(|_| UpstreamError::new(format!("{who} answer is not the expected JSON")))
    }

    async fn download(&self) -> Result<HashMap<String, Arc<DecodingKey>>, UpstreamError> {
        let config: OpenIdConfiguration = self
            .get_json(&self.metadata_url, "OpenID configuration")
            .await?;
        let ok = url::Url::parse(&config.jwks_uri)
            .is_ok_and(|u| u.scheme() == "https" || (u.scheme() == "http" && is_loopback_url(&u)));
        if !ok {
            return Err(UpstreamError::new(
                "OpenID configuration: jwks_uri is not an https URL",
            ));
        }
        let jwks: Jwks = self.get_json(&config.jwks_uri, "JWKS").await?;
        let mut keys = HashMap::new();
        for k in jwks.keys {
            let (Some(kid), Some(n), Some(e)) = (k.kid, k.n, k.e) else {
                continue;
            };
            if k.kty.as_deref() != Some("RSA") || k.use_.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            if let Ok(key) = DecodingKey::from_rsa_components(&n, &e) {
                keys.insert(kid, Arc::new(key));
            }
        }
        if keys.is_empty() {
            return Err(UpstreamError::new("JWKS has no RSA signing keys"));
        }
        Ok(keys)
    }
}
