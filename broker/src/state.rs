//! What every handler shares: the token cache, the guards' policies, authentication, the rate
//! limiter, and (dev mode only) the dev state.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use crate::auth::{Authenticator, EntraValidator};
use crate::cache::TokenCache;
use crate::clientip::TrustedProxies;
use crate::config::{EntraCredential, EntraTarget, ModeSettings, Settings};
use crate::dev::{Counters, DevState};
use crate::dev_entra::DevEntra;
use crate::devjwt::DevSigner;
use crate::origin::{is_loopback_host, OriginPolicy};
use crate::outbound::http_client;
use crate::ratelimit::RateLimiter;
use crate::relay::{Relay, RelayUpstream};
use crate::shutdown::ShutdownWatch;
use crate::speech::SpeechService;
use crate::upstream::{DevUpstream, EntraUpstream, KeyUpstream, Upstream};

/// The fake Speech service's WebSocket path (dev mode).
pub const SPEECH_PATH: &str = "/speech/recognition/conversation/cognitiveservices/v1";

/// The `Host` allow-list (DNS-rebinding guard).
#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// Normalized host names (lower case, no port).
    pub allow: Vec<String>,
    /// dev: also loopback names and the listening IP.
    pub loopback: bool,
    local: SocketAddr,
}

impl HostPolicy {
    /// Whether a request with this `Host` header is for us.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let Some(name) = host.and_then(crate::config::normalize_host) else {
            return false;
        };
        self.allow.contains(&name)
            || (self.loopback
                && (is_loopback_host(&name)
                    || name
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback() || ip == self.local.ip())))
    }
}

/// Shared state of one broker.
pub struct AppState {
    pub mode: &'static str,
    pub cache: Arc<TokenCache>,
    pub origins: OriginPolicy,
    pub hosts: HostPolicy,
    pub proxies: TrustedProxies,
    pub rate: Option<Arc<RateLimiter>>,
    pub auth: Authenticator,
    pub dev: Option<Arc<DevState>>,
    pub local: SocketAddr,
    pub counters: Arc<Counters>,
    /// `--relay`.
    pub relay: Option<Arc<Relay>>,
}

/// Where the relay connects: the Speech service's host(s).
pub fn relay_upstream_base(mode: &ModeSettings, local: SocketAddr) -> RelayUpstream {
    let regional = |region: &str| RelayUpstream::Regional(region.to_string());
    let custom = |endpoint: &str| {
        RelayUpstream::Fixed(match url::Url::parse(endpoint) {
            Ok(u) => {
                let scheme = if matches!(u.scheme(), "http" | "ws") {
                    "ws"
                } else {
                    "wss"
                };
                let host = u.host_str().unwrap_or_default();
                match u.port() {
                    Some(p) => format!("{scheme}://{host}:{p}"),
                    None => format!("{scheme}://{host}"),
                }
            }
            Err(_) => endpoint.to_string(),
        })
    };
    match mode {
        ModeSettings::Dev { .. } => {
            RelayUpstream::Fixed(format!("ws://{}", public_authority(local)))
        }
        ModeSettings::Key {
            endpoint: Some(e), ..
        } => custom(e),
        ModeSettings::Key { region, .. } => regional(region),
        ModeSettings::Entra { target, .. } => match target {
            EntraTarget::ResourceId { region, .. } => regional(region),
            EntraTarget::Endpoint { endpoint, .. } => custom(endpoint),
        },
    }
}

/// `ws://host:port` of this broker, as pages should reach it.
pub fn public_authority(local: SocketAddr) -> String {
    if local.ip().is_unspecified() {
        format!("127.0.0.1:{}", local.port())
    } else {
        local.to_string()
    }
}

/// Builds the state; `shutdown` is handed to the WebSocket services (relay, fake Speech).
pub fn build_state(
    settings: &Settings,
    local: SocketAddr,
    shutdown: ShutdownWatch,
) -> anyhow::Result<Arc<AppState>> {
    let dev_entra = if settings.dev_entra {
        let authority = format!("http://{}/dev-entra", public_authority(local));
        Some(Arc::new(DevEntra::generate(authority)?))
    } else {
        None
    };
    let counters = Arc::new(Counters::default());
    let rate = RateLimiter::new(settings.rate_limit, settings.rate_burst).map(Arc::new);
    let mut dev_parts = None;
    let upstream = match &settings.mode {
        ModeSettings::Dev { ttl } => {
            let signer = Arc::new(DevSigner::new_random());
            let ttl = Arc::new(AtomicU64::new(*ttl));
            dev_parts = Some((Arc::clone(&signer), Arc::clone(&ttl)));
            Upstream::Dev(DevUpstream {
                signer,
                ttl,
                endpoint: format!("ws://{}{SPEECH_PATH}", public_authority(local)),
            })
        }
        ModeSettings::Key {
            key,
            region,
            sts_base,
            ..
        } => Upstream::Key(KeyUpstream {
            client: http_client(sts_base, settings.upstream_timeout),
            key: key.clone(),
            region: region.clone(),
            sts_base: sts_base.clone(),
        }),
        ModeSettings::Entra {
            credential,
            target,
            max_ttl,
        } => {
            let target_url = match credential {
                EntraCredential::ClientSecret { authority, .. } => authority.as_str(),
                EntraCredential::AppService { endpoint, .. } => endpoint.as_str(),
                EntraCredential::Imds { base, .. } => base.as_str(),
            };
            Upstream::Entra(EntraUpstream {
                client: http_client(target_url, settings.upstream_timeout),
                credential: credential.clone(),
                target: target.clone(),
                max_ttl: *max_ttl,
            })
        }
    };
    let cache = TokenCache::new(upstream);
    let relay = settings.relay.map(|limits| {
        Arc::new(Relay::new(
            limits,
            relay_upstream_base(&settings.mode, local),
            settings.upstream_timeout,
            Arc::clone(&cache),
            rate.clone(),
            shutdown.clone(),
        ))
    });
    let dev = dev_parts.map(|(signer, ttl)| {
        Arc::new(DevState {
            speech: Arc::new(SpeechService::new(
                Arc::clone(&signer),
                settings.limits.ws_idle_timeout,
                shutdown,
            )),
            signer,
            ttl,
            cache: Arc::clone(&cache),
            rate: rate.clone(),
            counters: Arc::clone(&counters),
            outage_until: Mutex::new(None),
            slow_ms: AtomicU64::new(0),
            fail: Mutex::new(None),
            entra: dev_entra.clone(),
            relay: relay.clone(),
        })
    });
    let auth = match &dev_entra {
        Some(e) => Authenticator::Entra(Box::new(EntraValidator::new(
            &e.auth_settings(),
            settings.upstream_timeout,
        ))),
        None => Authenticator::new(&settings.auth, settings.upstream_timeout),
    };
    let is_dev = dev.is_some();
    Ok(Arc::new(AppState {
        mode: settings.mode.name(),
        cache,
        origins: OriginPolicy::new(
            settings.allow_origins.clone(),
            settings.allow_loopback_origins,
            local,
            is_dev,
        ),
        hosts: HostPolicy {
            allow: settings.allow_hosts.clone(),
            loopback: is_dev,
            local,
        },
        proxies: TrustedProxies::new(settings.trust_proxies.clone()),
        rate,
        auth,
        dev,
        local,
        counters,
        relay,
    }))
}
