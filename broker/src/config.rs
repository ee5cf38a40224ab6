//! Command line / environment configuration, resolved into validated [`Settings`].
//!
//! Secrets (SPEECH_KEY, AZURE_CLIENT_SECRET, IDENTITY_HEADER) are read from the environment only,
//! never from flags (flags show up in `ps`, shell history and crash reports).

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use axum::http::{HeaderName, HeaderValue};
use clap::{Parser, ValueEnum};

use crate::cloud::cloud_of;
use crate::origin::{is_loopback_url, normalize_origin};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Self-signed short-lived tokens + local fake Speech service (no Azure account).
    Dev,
    /// Exchange SPEECH_KEY for a 10-minute token at `/sts/v1.0/issueToken`.
    Key,
    /// Microsoft Entra ID token (client credentials or managed identity).
    Entra,
}

impl Mode {
    /// The mode's name as `--mode` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Dev => "dev",
            Mode::Key => "key",
            Mode::Entra => "entra",
        }
    }
}

/// Reference token broker for speech-token-client.
#[derive(Debug, Clone, Parser)]
#[command(name = "speech-token-broker", version, about, long_about = None)]
pub struct Args {
    /// Where tokens come from. Default: dev, but only on a loopback listen address; anywhere else
    /// the mode must be chosen explicitly (and dev refuses to listen there).
    #[arg(long, value_enum, env = "BROKER_MODE")]
    pub mode: Option<Mode>,

    /// How the broker authenticates the app's user before issuing anything. Required in key and
    /// entra modes (dev: none). `entra` validates the app's own Entra access token (see the
    /// `--auth-*` flags); `header` compares one header with a value from the environment;
    /// `none` hands tokens to anyone who passes the origin check.
    #[arg(long, value_enum, env = "BROKER_AUTH")]
    pub auth: Option<AuthKind>,

    /// --auth entra: tenant ID allowed to call (repeatable; the token's `tid` must be one of them).
    #[arg(
        long = "auth-tenant",
        value_name = "TENANT_ID",
        env = "BROKER_AUTH_TENANTS",
        value_delimiter = ','
    )]
    pub auth_tenants: Vec<String>,

    /// --auth entra: accepted `aud` values: the broker API's application (client) ID and/or its
    /// App ID URI (repeatable).
    #[arg(
        long = "auth-audience",
        value_name = "AUD",
        env = "BROKER_AUTH_AUDIENCES",
        value_delimiter = ','
    )]
    pub auth_audiences: Vec<String>,

    /// --auth entra: delegated permission the token must carry in `scp` (repeatable: any one).
    #[arg(
        long = "auth-scope",
        value_name = "SCOPE",
        env = "BROKER_AUTH_SCOPES",
        value_delimiter = ','
    )]
    pub auth_scopes: Vec<String>,

    /// --auth entra: app role the token may carry in `roles` instead of a scope (repeatable).
    #[arg(
        long = "auth-role",
        value_name = "ROLE",
        env = "BROKER_AUTH_ROLES",
        value_delimiter = ','
    )]
    pub auth_roles: Vec<String>,

    /// --auth entra: authority whose OpenID configuration and signing keys are trusted.
    #[arg(long = "auth-authority", default_value = DEFAULT_AUTHORITY, env = "BROKER_AUTH_AUTHORITY", value_name = "URL")]
    pub auth_authority: String,

    /// --auth entra: shortest time between two signing-key downloads caused by an unknown `kid`,
    /// in seconds (tests only; Microsoft's guidance is to refresh at most every few minutes).
    #[arg(long = "auth-keys-min-refetch", default_value_t = 60, hide = true)]
    pub auth_keys_min_refetch: u64,

    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8787", env = "BROKER_LISTEN")]
    pub listen: SocketAddr,

    /// Allowed browser origin (repeatable), e.g. https://app.example.com.
    #[arg(
        long = "allow-origin",
        value_name = "ORIGIN",
        env = "BROKER_ALLOW_ORIGINS",
        value_delimiter = ','
    )]
    pub allow_origins: Vec<String>,

    /// Also allow any http:// origin on a loopback host, any port: 127.0.0.0/8, localhost,
    /// *.localhost, [::1].
    /// Default: on in dev mode, off otherwise. `--allow-loopback-origins=false` turns it off.
    #[arg(long, env = "BROKER_ALLOW_LOOPBACK_ORIGINS", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    pub allow_loopback_origins: Option<bool>,

    /// --auth header: token requests must carry this header with the value of the environment
    /// variable BROKER_REQUIRE_HEADER_VALUE (never a flag). Implies --auth header.
    #[arg(long, env = "BROKER_REQUIRE_HEADER", value_name = "NAME")]
    pub require_header: Option<String>,

    /// Host names (the `Host` header) this broker answers to, repeatable. The hosts of
    /// --allow-origin are added; dev mode adds its loopback names. DNS-rebinding guard.
    #[arg(
        long = "allow-host",
        value_name = "HOST",
        env = "BROKER_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub allow_hosts: Vec<String>,

    /// Reverse proxies (CIDR, repeatable) whose X-Forwarded-For is believed for the client IP.
    #[arg(
        long = "trust-proxy",
        value_name = "CIDR",
        env = "BROKER_TRUST_PROXY",
        value_delimiter = ','
    )]
    pub trust_proxies: Vec<String>,

    /// Token requests per minute per user (--auth entra) or per client IP (0 = no limit); with
    /// --relay also relay connections per ticket subject, in a bucket of their own.
    #[arg(long, default_value_t = 120, env = "BROKER_RATE_LIMIT")]
    pub rate_limit: u32,

    /// Burst size of the per-client token bucket.
    #[arg(long, default_value_t = 20, env = "BROKER_RATE_BURST")]
    pub rate_burst: u32,

    /// dev mode: lifetime of signed tokens in seconds (2..86400).
    #[arg(long, default_value_t = DEFAULT_TTL_S, env = "BROKER_TTL")]
    pub ttl: u64,

    /// Directory served at `/` (index.html).
    #[arg(long, env = "BROKER_WWW", value_name = "DIR")]
    pub www: Option<PathBuf>,

    /// Directory served at `/pkg/` (wasm-pack output).
    #[arg(long, env = "BROKER_PKG", value_name = "DIR")]
    pub pkg: Option<PathBuf>,

    /// Directory served at `/vendor/` (e.g. the Speech SDK browser bundle).
    #[arg(long, env = "BROKER_VENDOR", value_name = "DIR")]
    pub vendor: Option<PathBuf>,

    /// key / entra mode: Azure region of the Speech resource, e.g. westeurope.
    #[arg(long, env = "BROKER_REGION")]
    pub region: Option<String>,

    /// key mode: base URL of the token service (default https://<region>.api.cognitive.microsoft.com;
    /// .azure.cn for china* regions, .microsoft.us for usgov*).
    #[arg(long, env = "BROKER_STS_BASE", value_name = "URL")]
    pub sts_base: Option<String>,

    /// entra mode: authority host for client credentials.
    #[arg(long, default_value = DEFAULT_AUTHORITY, env = "BROKER_AUTHORITY", value_name = "URL")]
    pub authority: String,

    /// entra mode: Instance Metadata Service base URL (managed identity on VMs/AKS).
    #[arg(long, default_value = DEFAULT_IMDS_BASE, env = "BROKER_IMDS_BASE", value_name = "URL")]
    pub imds_base: String,

    /// entra mode: use managed identity even if AZURE_CLIENT_SECRET is set.
    #[arg(long, env = "BROKER_MANAGED_IDENTITY")]
    pub managed_identity: bool,

    /// entra mode: ARM id of the Speech resource; answers carry `aad#<resourceId>#<token>`.
    #[arg(long, env = "BROKER_RESOURCE_ID", value_name = "ARM_ID")]
    pub resource_id: Option<String>,

    /// entra mode: custom-domain endpoint (https://<name>.cognitiveservices.azure.com); answers carry
    /// the raw Entra token plus this endpoint. With --relay (key or entra mode): where the relay
    /// connects (a host only).
    #[arg(long, env = "BROKER_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,

    /// entra mode: the largest `expiresIn` handed to browsers, in seconds.
    #[arg(long, default_value_t = DEFAULT_MAX_TTL_S, env = "BROKER_MAX_TTL")]
    pub max_ttl: u64,

    /// entra mode: hand browsers the broker identity's own Entra access token. It stays valid
    /// 60-90 minutes (managed identity: about 24 h) whatever `expiresIn` says, for every
    /// Cognitive Services resource the identity has a role on. Needs a dedicated identity with
    /// only "Cognitive Services Speech User" on one Speech resource.
    #[arg(long, env = "BROKER_EXPOSE_ENTRA_TOKEN")]
    pub expose_entra_token: bool,

    /// Timeout of one upstream request, in seconds (default: half the browser client's
    /// requestTimeout, so that a slow upstream answers the client before it gives up).
    #[arg(long, default_value_t = DEFAULT_UPSTREAM_TIMEOUT_S, env = "BROKER_UPSTREAM_TIMEOUT")]
    pub upstream_timeout: u64,

    /// Seconds a connection may take to send a request's headers; also how long an idle
    /// keep-alive connection stays open.
    #[arg(long, default_value_t = 10, env = "BROKER_HEADER_TIMEOUT")]
    pub header_timeout: u64,

    /// Seconds one request may take from headers to answer (WebSocket sessions excepted).
    #[arg(long, default_value_t = 30, env = "BROKER_REQUEST_TIMEOUT")]
    pub request_timeout: u64,

    /// Open HTTP connections at most; further connections are closed at once.
    #[arg(long, default_value_t = 1024, env = "BROKER_MAX_CONNECTIONS")]
    pub max_connections: usize,

    /// dev mode: serve a stand-in for Microsoft Entra ID at /dev-entra/ (fresh RSA key, demo user
    /// tokens) and authenticate token requests against it (`--auth entra`): the demo's MSAL flow
    /// without an Azure tenant.
    #[arg(long, env = "BROKER_DEV_ENTRA")]
    pub dev_entra: bool,

    /// Relay the Speech SDK's WebSocket through the broker: the token route answers a short-lived
    /// relay ticket bound to the page's origin and the user, and the broker connects upstream
    /// with its own credential. The browser holds no Azure credential.
    #[arg(long, env = "BROKER_RELAY")]
    pub relay: bool,

    /// --relay: ticket lifetime in seconds.
    #[arg(long, default_value_t = DEFAULT_RELAY_TICKET_TTL_S, env = "BROKER_RELAY_TICKET_TTL")]
    pub relay_ticket_ttl: u64,

    /// --relay: relayed sessions at most, in total.
    #[arg(long, default_value_t = DEFAULT_RELAY_MAX_SESSIONS, env = "BROKER_RELAY_MAX_SESSIONS")]
    pub relay_max_sessions: usize,

    /// --relay: relayed sessions at most per user.
    #[arg(long, default_value_t = DEFAULT_RELAY_MAX_SESSIONS_PER_USER, env = "BROKER_RELAY_MAX_SESSIONS_PER_USER")]
    pub relay_max_sessions_per_user: usize,

    /// --relay: longest relayed session, in seconds.
    #[arg(long, default_value_t = DEFAULT_RELAY_MAX_DURATION_S, env = "BROKER_RELAY_MAX_DURATION")]
    pub relay_max_duration: u64,

    /// --relay: seconds without a frame from the browser after which a session is closed.
    #[arg(long, default_value_t = DEFAULT_RELAY_IDLE_TIMEOUT_S, env = "BROKER_RELAY_IDLE_TIMEOUT")]
    pub relay_idle_timeout: u64,

    /// --relay: largest frame or message relayed, in bytes.
    #[arg(long, default_value_t = DEFAULT_RELAY_MAX_FRAME, env = "BROKER_RELAY_MAX_FRAME")]
    pub relay_max_frame: usize,

    /// dev mode: seconds without a frame from the client after which the fake Speech service
    /// closes a WebSocket (code 1000).
    #[arg(long, default_value_t = DEFAULT_WS_IDLE_TIMEOUT_S, env = "BROKER_WS_IDLE_TIMEOUT")]
    pub ws_idle_timeout: u64,
}

/// How token requests are authenticated (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthKind {
    /// Anyone who passes the origin check gets a token.
    None,
    /// One header compared with a value from the environment (`--require-header`).
    Header,
    /// The app user's Microsoft Entra access token for the broker's API.
    Entra,
}

/// Microsoft Entra ID's global authority host.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The defaults of the flags that mean something in some modes only (or only with `--relay`):
/// clap's defaults, and how [`refuse_flags_of_other_modes`] tells a flag the deployment set (a
/// value other than its default) from one it left alone.
pub const DEFAULT_TTL_S: u64 = 600;
/// `--max-ttl`: Azure's own Speech tokens last 10 minutes.
pub const DEFAULT_MAX_TTL_S: u64 = 600;
/// `--ws-idle-timeout`: the fake Speech service's idle close.
pub const DEFAULT_WS_IDLE_TIMEOUT_S: u64 = 60;
/// `--imds-base`: the Instance Metadata Service's fixed link-local address.
pub const DEFAULT_IMDS_BASE: &str = "http://169.254.169.254";
/// `--relay-ticket-ttl`: the relay issue's "≤ 60 s by default". The browser client refreshes a
/// ticket half-way (margin max(30 s, 20 %) capped at half the lifetime), so a ticket is always
/// fresh when the SDK opens a connection.
pub const DEFAULT_RELAY_TICKET_TTL_S: u64 = 60;
/// `--relay-max-sessions`.
pub const DEFAULT_RELAY_MAX_SESSIONS: usize = 256;
/// `--relay-max-sessions-per-user`.
pub const DEFAULT_RELAY_MAX_SESSIONS_PER_USER: usize = 4;
/// `--relay-max-duration`: an hour, room for long dictation while a forgotten session still
/// ends.
pub const DEFAULT_RELAY_MAX_DURATION_S: u64 = 3600;
/// `--relay-idle-timeout`.
pub const DEFAULT_RELAY_IDLE_TIMEOUT_S: u64 = 60;
/// `--relay-max-frame`: 1 MiB, far above the SDK's audio frames and JSON messages.
pub const DEFAULT_RELAY_MAX_FRAME: usize = 1024 * 1024;

/// Refuses a flag that means nothing in `mode` (or without `--relay`): its value would be
/// silently ignored, and the deployment would believe in a setting the broker does not have
/// (`--resource-id` in key mode, `--ttl` outside dev mode). A flag is "set" when its value
/// differs from its default (given as a flag or as its environment variable).
fn refuse_flags_of_other_modes(args: &Args, mode: Mode) -> anyhow::Result<()> {
    let (dev, key, entra) = (mode == Mode::Dev, mode == Mode::Key, mode == Mode::Entra);
    // Empty text values are gone already (`Settings::resolve`); an empty URL is the default,
    // and a URL is compared without a trailing `/`.
    let url = |v: &str, default: &str| {
        let v = v.trim().trim_end_matches('/');
        !v.is_empty() && v != default
    };
    let relay = args.relay;
    // (flag, set, applies here, where it applies)
    let flags: [(&str, bool, bool, &str); 17] = [
        ("--ttl", args.ttl != DEFAULT_TTL_S, dev, "dev mode"),
        (
            "--ws-idle-timeout",
            args.ws_idle_timeout != DEFAULT_WS_IDLE_TIMEOUT_S,
            dev,
            "dev mode",
        ),
        (
            "--region",
            args.region.is_some(),
            !dev,
            "key and entra modes",
        ),
        ("--sts-base", args.sts_base.is_some(), key, "key mode"),
        (
            "--endpoint",
            args.endpoint.is_some(),
            !dev,
            "entra mode (key mode: with --relay)",
        ),
        (
            "--resource-id",
            args.resource_id.is_some(),
            entra,
            "entra mode",
        ),
        (
            "--max-ttl",
            args.max_ttl != DEFAULT_MAX_TTL_S,
            entra,
            "entra mode",
        ),
        (
            "--expose-entra-token",
            args.expose_entra_token,
            entra && !relay,
            "entra mode without --relay (the relay hands out tickets, never the Entra token)",
        ),
        (
            "--managed-identity",
            args.managed_identity,
            entra,
            "entra mode",
        ),
        (
            "--authority",
            url(&args.authority, DEFAULT_AUTHORITY),
            entra,
            "entra mode",
        ),
        (
            "--imds-base",
            url(&args.imds_base, DEFAULT_IMDS_BASE),
            entra,
            "entra mode",
        ),
        (
            "--relay-ticket-ttl",
            args.relay_ticket_ttl != DEFAULT_RELAY_TICKET_TTL_S,
            relay,
            "--relay",
        ),
        (
            "--relay-max-sessions",
            args.relay_max_sessions != DEFAULT_RELAY_MAX_SESSIONS,
            relay,
            "--relay",
        ),
        (
            "--relay-max-sessions-per-user",
            args.relay_max_sessions_per_user != DEFAULT_RELAY_MAX_SESSIONS_PER_USER,
            relay,
            "--relay",
        ),
        (
            "--relay-max-duration",
            args.relay_max_duration != DEFAULT_RELAY_MAX_DURATION_S,
            relay,
            "--relay",
        ),
        (
            "--relay-idle-timeout",
            args.relay_idle_timeout != DEFAULT_RELAY_IDLE_TIMEOUT_S,
            relay,
            "--relay",
        ),
        (
            "--relay-max-frame",
            args.relay_max_frame != DEFAULT_RELAY_MAX_FRAME,
            relay,
            "--relay",
        ),
    ];
    for (flag, set, applies, where_) in flags {
        if set && !applies {
            bail!(
                "{flag} applies to {where_} only; this broker runs in {} mode{}: the value would be ignored",
                mode.name(),
                if relay { " with --relay" } else { " without --relay" }
            );
        }
    }
    Ok(())
}

/// Default upstream timeout: half the browser client's default `requestTimeout`
/// (`speech_token_client::engine::policy::DEFAULT_REQUEST_TIMEOUT_MS`), so that the broker's
/// answer (an error, or the stale token) reaches the client before the client gives up.
pub const DEFAULT_UPSTREAM_TIMEOUT_S: u64 =
    (speech_token_client::engine::policy::DEFAULT_REQUEST_TIMEOUT_MS / 2000.0) as u64;

/// Validated `--auth` settings.
#[derive(Debug, Clone)]
pub enum AuthSettings {
    /// `--auth none`.
    None,
    /// `--auth header`: header name and the expected value (from the environment; redacted).
    Header { name: HeaderName, value: Secret },
    /// `--auth entra`.
    Entra(EntraAuthSettings),
}

/// Validated `--auth entra` settings.
#[derive(Debug, Clone)]
pub struct EntraAuthSettings {
    pub authority: String,
    pub tenants: Vec<String>,
    pub audiences: Vec<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub keys_min_refetch: Duration,
}

#[derive(Debug, Clone)]
pub enum EntraCredential {
    ClientSecret {
        authority: String,
        tenant: String,
        client_id: String,
        secret: Secret,
    },
    /// App Service / Container Apps / Functions (IDENTITY_ENDPOINT + IDENTITY_HEADER).
    AppService {
        endpoint: String,
        header: Secret,
        client_id: Option<String>,
    },
    /// Azure Instance Metadata Service (VMs, VMSS, AKS).
    Imds {
        base: String,
        client_id: Option<String>,
    },
}

impl EntraCredential {
    pub fn kind(&self) -> &'static str {
        match self {
            EntraCredential::ClientSecret { .. } => "client-credentials",
            EntraCredential::AppService { .. } => "managed-identity (IDENTITY_ENDPOINT)",
            EntraCredential::Imds { .. } => "managed-identity (IMDS)",
        }
    }
}

#[derive(Debug, Clone)]
pub enum EntraTarget {
    /// `aad#<resourceId>#<token>` + region.
    ResourceId { resource_id: String, region: String },
    /// raw token + custom-domain endpoint.
    Endpoint {
        endpoint: String,
        region: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub enum ModeSettings {
    Dev {
        ttl: u64,
    },
    Key {
        key: Secret,
        region: String,
        sts_base: String,
        /// `--relay` only: the custom domain / private endpoint the relay connects to instead of
        /// the regional host.
        endpoint: Option<String>,
    },
    Entra {
        credential: EntraCredential,
        target: EntraTarget,
        max_ttl: u64,
    },
}

/// Server limits (`--header-timeout`, `--request-timeout`, `--max-connections`,
/// `--ws-idle-timeout`).
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub ws_idle_timeout: Duration,
}

impl ModeSettings {
    /// The mode these settings are for.
    pub fn mode(&self) -> Mode {
        match self {
            ModeSettings::Dev { .. } => Mode::Dev,
            ModeSettings::Key { .. } => Mode::Key,
            ModeSettings::Entra { .. } => Mode::Entra,
        }
    }

    /// The mode's name ([`Mode::name`]).
    pub fn name(&self) -> &'static str {
        self.mode().name()
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: ModeSettings,
    pub listen: SocketAddr,
    pub allow_origins: Vec<String>,
    pub allow_loopback_origins: bool,
    pub auth: AuthSettings,
    /// dev: `--dev-entra` (the auth settings are filled in once the listening port is known).
    pub dev_entra: bool,
    /// `--relay` and its limits.
    pub relay: Option<RelayLimits>,
    /// Lower-case host names the `Host` header may carry (dev adds loopback names at run time).
    pub allow_hosts: Vec<String>,
    pub trust_proxies: Vec<ipnet::IpNet>,
    pub limits: ServerLimits,
    pub rate_limit: u32,
    pub rate_burst: u32,
    pub www: Option<PathBuf>,
    pub pkg: Option<PathBuf>,
    pub vendor: Option<PathBuf>,
    pub upstream_timeout: Duration,
}

pub const MIN_TTL: u64 = 2;
pub const MAX_TTL: u64 = 86_400;

/// An Azure region name as the browser client accepts it (the engine's rule).
pub fn valid_region(r: &str) -> bool {
    speech_token_client::engine::token::is_valid_region(r)
}

/// An upstream base URL: `https://` (plain `http://` only on loopback, for local fakes), no
/// query or fragment. IMDS is the one documented plain-HTTP endpoint: `allow_http` says so.
fn valid_base_url(name: &str, s: &str, link_local_http: bool) -> anyhow::Result<String> {
    let u = url::Url::parse(s).with_context(|| format!("{name}: not a URL"))?;
    if u.host_str().is_none() {
        bail!("{name}: must be an https URL");
    }
    match u.scheme() {
        "https" => {}
        "http" if is_loopback_url(&u) || (link_local_http && is_link_local_url(&u)) => {}
        _ if link_local_http => bail!(
            "{name}: must be an https:// URL (http:// only on loopback or a link-local address such as 169.254.169.254)"
        ),
        _ => bail!("{name}: must be an https:// URL (http:// only on loopback)"),
    }
    if u.query().is_some() || u.fragment().is_some() {
        bail!("{name}: must not have a query or fragment");
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// Whether `u`'s host is a link-local address (IPv4 169.254.0.0/16, IPv6 fe80::/10): the
/// Instance Metadata Service's (169.254.169.254), reachable only from the machine itself.
fn is_link_local_url(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_link_local(),
        Some(url::Host::Ipv6(ip)) => (ip.segments()[0] & 0xffc0) == 0xfe80,
        _ => false,
    }
}

/// Whether `u`'s host is a link-local or private (RFC 1918, IPv6 unique-local) address: the
/// hosting platform's own network, where Azure serves its managed identity endpoint.
fn is_platform_local_url(u: &url::Url) -> bool {
    is_link_local_url(u)
        || match u.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_private(),
            Some(url::Host::Ipv6(ip)) => (ip.segments()[0] & 0xfe00) == 0xfc00,
            _ => false,
        }
}

/// Whether `ip` may listen for dev mode: loopback only.
fn is_loopback_listen(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// A host name for the `Host` allow-list: lower case, no port, no brackets, no trailing dot.
pub fn normalize_host(h: &str) -> Option<String> {
    let h = h.trim();
    let name = if let Some(rest) = h.strip_prefix('[') {
        // After the closing bracket: nothing, or a port.
        let (name, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
        if !port_ok {
            return None;
        }
        name
    } else {
        match h.rsplit_once(':') {
            Some((n, p)) if !n.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => h,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
    ok.then_some(name)
}

impl Settings {
    /// Validates `args`; secrets are looked up with `env` (the process environment in `main`,
    /// a map in tests).
    pub fn resolve(
        mut args: Args,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Settings> {
        // An empty text value (`BROKER_ENDPOINT=` from a template that writes every variable)
        // is no value, as an empty secret is.
        for value in [
            &mut args.region,
            &mut args.sts_base,
            &mut args.endpoint,
            &mut args.resource_id,
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *value = None;
            }
        }
        let env_nonempty = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let timeout = Duration::from_secs(in_range(
            "--upstream-timeout",
            args.upstream_timeout,
            UPSTREAM_TIMEOUT_S,
            " seconds",
        )?);
        let chosen = match args.mode {
            Some(m) => m,
            None if is_loopback_listen(&args.listen) => Mode::Dev,
            None => bail!(
                "--listen {} is not a loopback address: choose --mode key or --mode entra \
                 (dev mode, with its self-signed tokens and test routes, only listens on loopback)",
                args.listen
            ),
        };
        if chosen == Mode::Dev && !is_loopback_listen(&args.listen) {
            bail!(
                "dev mode listens on loopback only (127.0.0.1 or [::1]), not {}: its tokens are \
                 self-signed and its /admin routes change the broker's behaviour",
                args.listen
            );
        }

        // whatever the mode: a value ignored in this mode is still a mistake (README: out of
        // range exits with status 2), and would surface only when the mode changes
        in_range("--ttl", args.ttl, MIN_TTL..=MAX_TTL, " seconds")?;
        in_range("--max-ttl", args.max_ttl, 1..=MAX_TTL, " seconds")?;

        let mode = match chosen {
            Mode::Dev => ModeSettings::Dev { ttl: args.ttl },
            Mode::Key => {
                let key = env_nonempty("SPEECH_KEY")
                    .ok_or_else(|| anyhow!("key mode needs the SPEECH_KEY environment variable (keys are never accepted as flags)"))?;
                let region = args
                    .region
                    .clone()
                    .ok_or_else(|| anyhow!("key mode needs --region"))?;
                if !valid_region(&region) {
                    bail!("--region must match [a-z0-9]+");
                }
                let sts_base = match &args.sts_base {
                    Some(b) => valid_base_url("--sts-base", b, false)?,
                    None => format!("https://{region}.{}", cloud_of(&region).sts),
                };
                let endpoint = match &args.endpoint {
                    None => None,
                    Some(_) if !args.relay => bail!(
                        "--endpoint in key mode is for --relay (the relay connects there; browsers never see it)"
                    ),
                    Some(ep)
                        if !speech_token_client::engine::token::is_valid_endpoint(
                            ep,
                            &speech_token_client::engine::token::WhatwgUrl,
                        ) =>
                    {
                        bail!("--endpoint must be an https:// or wss:// URL (http/ws only on loopback)")
                    }
                    Some(ep) => {
                        relay_endpoint_is_host(ep)?;
                        Some(ep.clone())
                    }
                };
                ModeSettings::Key {
                    key: Secret::new(key),
                    region,
                    sts_base,
                    endpoint,
                }
            }
            Mode::Entra => {
                let client_id = env_nonempty("AZURE_CLIENT_ID");
                let secret = env_nonempty("AZURE_CLIENT_SECRET");
                let credential = if let Some(secret) = secret.filter(|_| !args.managed_identity) {
                    let tenant = env_nonempty("AZURE_TENANT_ID")
                        .ok_or_else(|| anyhow!("client credentials need AZURE_TENANT_ID"))?;
                    if !tenant
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                    {
                        bail!("AZURE_TENANT_ID has unexpected characters");
                    }
                    let client_id = client_id
                        .ok_or_else(|| anyhow!("client credentials need AZURE_CLIENT_ID"))?;
                    EntraCredential::ClientSecret {
                        authority: valid_base_url("--authority", &args.authority, false)?,
                        tenant,
                        client_id,
                        secret: Secret::new(secret),
                    }
                } else if let (Some(endpoint), Some(header)) = (
                    env_nonempty("IDENTITY_ENDPOINT"),
                    env_nonempty("IDENTITY_HEADER"),
                ) {
                    let u = url::Url::parse(&endpoint).context("IDENTITY_ENDPOINT: not a URL")?;
                    // Azure's own is plain http on the platform's local network: a loopback
                    // port (Windows App Service, Container Apps, Arc), a link-local address
                    // (Linux App Service and Functions: 169.254.129.x, 169.254.130.x,
                    // 169.254.255.2) or, on older Linux custom containers, a private one
                    // (172.16.x.x). On a routable address plain http would carry
                    // IDENTITY_HEADER, a secret, across networks in the clear.
                    match u.scheme() {
                        "https" => {}
                        "http" if is_loopback_url(&u) || is_platform_local_url(&u) => {}
                        _ => bail!(
                            "IDENTITY_ENDPOINT must be an https:// URL (http:// only on a loopback, link-local or private address, as Azure sets it)"
                        ),
                    }
                    EntraCredential::AppService {
                        endpoint,
                        header: Secret::new(header),
                        client_id,
                    }
                } else {
                    EntraCredential::Imds {
                        base: valid_base_url("--imds-base", &args.imds_base, true)?,
                        client_id,
                    }
                };
                let target = match (&args.resource_id, &args.endpoint) {
                    (Some(_), Some(_)) => {
                        bail!("give either --resource-id (with --region) or --endpoint, not both")
                    }
                    (Some(rid), None) => {
                        let lower = rid.to_ascii_lowercase();
                        if !lower.starts_with("/subscriptions/")
                            || !lower.contains("/resourcegroups/")
                            || !lower.contains("/providers/microsoft.cognitiveservices/accounts/")
                            || !speech_token_client::engine::token::is_valid_token_text(rid)
                            || rid.contains('#')
                        {
                            bail!("--resource-id must look like /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.CognitiveServices/accounts/<name>");
                        }
                        let region = args
                            .region
                            .clone()
                            .ok_or_else(|| anyhow!("--resource-id needs --region"))?;
                        if !valid_region(&region) {
                            bail!("--region must match [a-z0-9]+");
                        }
                        EntraTarget::ResourceId {
                            resource_id: rid.clone(),
                            region,
                        }
                    }
                    (None, Some(ep)) => {
                        if !speech_token_client::engine::token::is_valid_endpoint(
                            ep,
                            &speech_token_client::engine::token::WhatwgUrl,
                        ) {
                            bail!("--endpoint must be an https:// or wss:// URL (http/ws only on loopback)");
                        }
                        if args.relay {
                            relay_endpoint_is_host(ep)?;
                        }
                        if let Some(r) = &args.region {
                            if !valid_region(r) {
                                bail!("--region must match [a-z0-9]+");
                            }
                        }
                        EntraTarget::Endpoint {
                            endpoint: ep.clone(),
                            region: args.region.clone(),
                        }
                    }
                    (None, None) => {
                        bail!("entra mode needs --resource-id and --region, or --endpoint")
                    }
                };
                if !args.expose_entra_token && !args.relay {
                    bail!(
                        "entra mode would hand browsers this broker identity's own Entra access token \
                         (audience https://cognitiveservices.azure.com). That token stays valid 60-90 \
                         minutes (managed identity: about 24 hours) whatever expiresIn says, for every \
                         Cognitive Services resource the identity has a role on. Prefer --relay (the \
                         browser then holds no Azure credential). If you accept the exposure, give the \
                         broker a dedicated identity with only \"Cognitive Services Speech User\" on \
                         one Speech resource and pass --expose-entra-token"
                    );
                }
                ModeSettings::Entra {
                    credential,
                    target,
                    max_ttl: args.max_ttl,
                }
            }
        };

        let mut allow_origins = Vec::new();
        for o in &args.allow_origins {
            let o = o.trim();
            if o.is_empty() {
                continue;
            }
            let n = normalize_origin(o)
                .ok_or_else(|| anyhow!("--allow-origin {o:?}: not an http(s) origin"))?;
            allow_origins.push(n);
        }

        let auth_kind = match (args.auth, &args.require_header) {
            (Some(k), _) => k,
            (None, Some(_)) => AuthKind::Header,
            (None, None) if chosen == Mode::Dev => AuthKind::None,
            (None, None) => bail!(
                "{} mode needs an explicit --auth: entra (validate the app user's Entra access \
                 token, recommended), header (--require-header NAME with BROKER_REQUIRE_HEADER_VALUE), \
                 or none (anyone who can reach the broker gets Speech tokens)",
                mode.name()
            ),
        };
        if args.dev_entra {
            if chosen != Mode::Dev {
                bail!("--dev-entra is a dev-mode feature (a stand-in for Entra ID with a throwaway key)");
            }
            if !matches!(args.auth, None | Some(AuthKind::Entra)) || args.require_header.is_some() {
                bail!("--dev-entra authenticates with --auth entra against itself; drop the other --auth flags");
            }
        }
        let auth = if args.dev_entra {
            AuthSettings::None
        } else {
            resolve_auth(auth_kind, &args, &env_nonempty)?
        };

        let mut allow_hosts = Vec::new();
        for h in &args.allow_hosts {
            if h.trim().is_empty() {
                continue;
            }
            let n =
                normalize_host(h).ok_or_else(|| anyhow!("--allow-host {h:?}: not a host name"))?;
            allow_hosts.push(n);
        }
        for o in &allow_origins {
            if let Some(h) = url::Url::parse(o)
                .ok()
                .and_then(|u| u.host_str().and_then(normalize_host))
            {
                if !allow_hosts.contains(&h) {
                    allow_hosts.push(h);
                }
            }
        }
        if chosen != Mode::Dev && allow_hosts.is_empty() {
            bail!(
                "{} mode needs --allow-host <name> (or --allow-origin): the host name(s) browsers use \
                 to reach this broker. Requests with any other Host header are refused (DNS rebinding)",
                mode.name()
            );
        }
        let mut trust_proxies = Vec::new();
        for c in &args.trust_proxies {
            if c.trim().is_empty() {
                continue;
            }
            let net = c
                .trim()
                .parse::<ipnet::IpNet>()
                .or_else(|_| c.trim().parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| anyhow!("--trust-proxy {c:?}: not a CIDR (e.g. 10.0.0.0/8)"))?;
            if too_wide_to_be_proxies(&net) {
                bail!(
                    "--trust-proxy {c:?} is too wide to be your proxies (IPv4 /{MIN_PROXY_PREFIX_V4} \
                     or narrower, IPv6 /{MIN_PROXY_PREFIX_V6} or narrower): any client in it could \
                     forge X-Forwarded-For past the rate limit and the relay's session caps. Give \
                     the reverse proxy's own addresses"
                );
            }
            trust_proxies.push(net);
        }
        let relay = RelayLimits::from_args(&args)?;
        let limits = ServerLimits {
            header_timeout: Duration::from_secs(in_range(
                "--header-timeout",
                args.header_timeout,
                HEADER_TIMEOUT_S,
                " seconds",
            )?),
            request_timeout: Duration::from_secs(in_range(
                "--request-timeout",
                args.request_timeout,
                REQUEST_TIMEOUT_S,
                " seconds",
            )?),
            max_connections: in_range(
                "--max-connections",
                args.max_connections.try_into().unwrap_or(u64::MAX),
                MAX_CONNECTIONS,
                "",
            )? as usize,
            ws_idle_timeout: Duration::from_secs(in_range(
                "--ws-idle-timeout",
                args.ws_idle_timeout,
                WS_IDLE_TIMEOUT_S,
                " seconds",
            )?),
        };

        // After the range checks: a value out of range gets the range's message in every mode.
        refuse_flags_of_other_modes(&args, chosen)?;
        Ok(Settings {
            allow_loopback_origins: args.allow_loopback_origins.unwrap_or(chosen == Mode::Dev),
            mode,
            listen: args.listen,
            allow_origins,
            auth,
            dev_entra: args.dev_entra,
            relay: args.relay.then_some(relay),
            allow_hosts,
            trust_proxies,
            limits,
            rate_limit: args.rate_limit,
            rate_burst: in_range("--rate-burst", args.rate_burst.into(), RATE_BURST, "")? as u32,
            www: static_dir("--www", args.www)?,
            pkg: static_dir("--pkg", args.pkg)?,
            vendor: static_dir("--vendor", args.vendor)?,
            upstream_timeout: timeout,
        })
    }
}

/// The widest IPv4 range `--trust-proxy` takes: a /8 (`10.0.0.0/8`, a private network's
/// proxies). Wider ranges (`0.0.0.0/1` and `128.0.0.0/1` together trust every address) are
/// refused: the README's "never trust every address".
pub const MIN_PROXY_PREFIX_V4: u8 = 8;
/// The widest IPv6 range `--trust-proxy` takes: a /32, an ISP's or a cloud region's allocation.
pub const MIN_PROXY_PREFIX_V6: u8 = 32;

/// Whether `net` is wider than any set of reverse proxies: an IPv4 range wider than
/// [`MIN_PROXY_PREFIX_V4`], an IPv6 range wider than [`MIN_PROXY_PREFIX_V6`], or an
/// IPv4-mapped IPv6 range (`::ffff:0:0/96`) wider than the same /8 of IPv4.
fn too_wide_to_be_proxies(net: &ipnet::IpNet) -> bool {
    match net {
        ipnet::IpNet::V4(v4) => v4.prefix_len() < MIN_PROXY_PREFIX_V4,
        ipnet::IpNet::V6(v6) => {
            let mapped_space = std::net::Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0);
            if v6.prefix_len() < MIN_PROXY_PREFIX_V6 {
                true
            } else if v6.prefix_len() <= 96 {
                // Holds all of IPv4, mapped (`::/64` does).
                v6.contains(&mapped_space)
            } else {
                v6.network().to_ipv4_mapped().is_some()
                    && v6.prefix_len() < 96 + MIN_PROXY_PREFIX_V4
            }
        }
    }
}

/// A static-files directory (`--www`, `--pkg`, `--vendor`) that exists: a mistyped path is a
/// startup error, not a broker that answers 404 for everything under it.
fn static_dir(flag: &str, dir: Option<PathBuf>) -> anyhow::Result<Option<PathBuf>> {
    match dir {
        Some(d) if !d.is_dir() => bail!("{flag} {}: not a directory", d.display()),
        d => Ok(d),
    }
}

fn resolve_auth(
    kind: AuthKind,
    args: &Args,
    env_nonempty: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<AuthSettings> {
    let entra_flags = !args.auth_tenants.is_empty()
        || !args.auth_audiences.is_empty()
        || !args.auth_scopes.is_empty()
        || !args.auth_roles.is_empty();
    if kind != AuthKind::Entra && entra_flags {
        bail!("--auth-tenant/--auth-audience/--auth-scope/--auth-role need --auth entra");
    }
    if kind != AuthKind::Header && args.require_header.is_some() {
        bail!("--require-header needs --auth header");
    }
    match kind {
        AuthKind::None => Ok(AuthSettings::None),
        AuthKind::Header => {
            let spec = args
                .require_header
                .as_deref()
                .ok_or_else(|| anyhow!("--auth header needs --require-header NAME"))?;
            if spec.contains('=') {
                bail!("--require-header takes the header NAME only; its value comes from the BROKER_REQUIRE_HEADER_VALUE environment variable (never a flag)");
            }
            let name = HeaderName::from_bytes(spec.trim().as_bytes())
                .context("--require-header: bad header name")?;
            let value = env_nonempty("BROKER_REQUIRE_HEADER_VALUE").ok_or_else(|| {
                anyhow!("--auth header needs a non-empty BROKER_REQUIRE_HEADER_VALUE environment variable")
            })?;
            HeaderValue::from_str(&value)
                .map_err(|_| anyhow!("BROKER_REQUIRE_HEADER_VALUE is not a header value"))?;
            Ok(AuthSettings::Header {
                name,
                value: Secret::new(value),
            })
        }
        AuthKind::Entra => {
            let authority = valid_base_url("--auth-authority", &args.auth_authority, false)?;
            let clean = |v: &[String]| -> Vec<String> {
                v.iter()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            };
            let tenants = clean(&args.auth_tenants);
            if tenants.is_empty() {
                bail!("--auth entra needs --auth-tenant <tenant ID> (repeatable): the tenants whose users may get tokens");
            }
            for t in &tenants {
                if !is_guid(t) {
                    bail!("--auth-tenant {t:?}: give a tenant ID (GUID); common/organizations would accept every tenant");
                }
            }
            let tenants = tenants
                .into_iter()
                .map(|t| t.to_ascii_lowercase())
                .collect();
            let audiences = clean(&args.auth_audiences);
            if audiences.is_empty() {
                bail!("--auth entra needs --auth-audience: the broker API's application (client) ID and/or App ID URI");
            }
            let scopes = clean(&args.auth_scopes);
            let roles = clean(&args.auth_roles);
            if scopes.is_empty() && roles.is_empty() {
                bail!("--auth entra needs --auth-scope (delegated permission, e.g. Speech.Token) or --auth-role (app role)");
            }
            Ok(AuthSettings::Entra(EntraAuthSettings {
                authority,
                tenants,
                audiences,
                scopes,
                roles,
                keys_min_refetch: Duration::from_secs(args.auth_keys_min_refetch),
            }))
        }
    }
}

/// A relay `--endpoint` names only a scheme, host and port (path `/`, no query, no fragment):
/// the relay connects to that host and adds the Speech SDK's own paths, so anything more would
/// be dropped without a word.
fn relay_endpoint_is_host(endpoint: &str) -> anyhow::Result<()> {
    let host_only = url::Url::parse(endpoint)
        .is_ok_and(|u| u.path() == "/" && u.query().is_none() && u.fragment().is_none());
    if !host_only {
        bail!("--endpoint for the relay is a host (https://<name>.cognitiveservices.azure.com): the relay adds the Speech SDK's own paths, so a path, query or fragment would be dropped");
    }
    Ok(())
}

/// Whether `s` is a GUID as Entra writes tenant IDs (8-4-4-4-12 hex digits, any case): not
/// `common`/`organizations`/`consumers` (every tenant), and not a typo that would match no token.
fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Relay limits (`--relay`): settings owned here, enforced by the relay room.
#[derive(Debug, Clone, Copy)]
pub struct RelayLimits {
    /// How long a relay ticket is good for.
    pub ticket_ttl: Duration,
    /// Relayed sessions at once, in all.
    pub max_sessions: usize,
    /// Relayed sessions at once, per user.
    pub max_sessions_per_user: usize,
    /// Longest relayed session.
    pub max_duration: Duration,
    /// A session with no frame from the browser for this long is closed (frames from the
    /// Speech service do not count: a chatty service must not keep an abandoned page's session).
    pub idle_timeout: Duration,
    /// Largest frame relayed.
    pub max_frame_bytes: usize,
}

/// The documented ranges of the server's numeric flags (broker/README.md, flags table): out of
/// range is a configuration error (exit 2), never a silently clamped value.
pub const UPSTREAM_TIMEOUT_S: RangeInclusive<u64> = 1..=120;
pub const HEADER_TIMEOUT_S: RangeInclusive<u64> = 1..=300;
pub const REQUEST_TIMEOUT_S: RangeInclusive<u64> = 1..=600;
pub const MAX_CONNECTIONS: RangeInclusive<u64> = 1..=1_000_000;
pub const WS_IDLE_TIMEOUT_S: RangeInclusive<u64> = 1..=3600;
pub const RATE_BURST: RangeInclusive<u64> = 1..=100_000;

/// The documented ranges of the relay flags (broker/README.md, flags table).
pub const RELAY_TICKET_TTL_S: RangeInclusive<u64> = 2..=600;
pub const RELAY_MAX_SESSIONS: RangeInclusive<u64> = 1..=100_000;
pub const RELAY_MAX_SESSIONS_PER_USER: RangeInclusive<u64> = 1..=100_000;
pub const RELAY_MAX_DURATION_S: RangeInclusive<u64> = 1..=86_400;
pub const RELAY_IDLE_TIMEOUT_S: RangeInclusive<u64> = 1..=3600;
pub const RELAY_MAX_FRAME_BYTES: RangeInclusive<u64> = 1024..=16 * 1024 * 1024;

/// `value` if it lies in `range`, else a configuration error naming the flag and the range
/// (`unit`: `" seconds"`, `" bytes"` or `""`).
fn in_range(flag: &str, value: u64, range: RangeInclusive<u64>, unit: &str) -> anyhow::Result<u64> {
    if range.contains(&value) {
        Ok(value)
    } else {
        bail!(
            "{flag} must be between {} and {}{unit} (got {value})",
            range.start(),
            range.end()
        )
    }
}

impl RelayLimits {
    /// Validated even without `--relay`: a value out of range is a mistake either way.
    fn from_args(args: &Args) -> anyhow::Result<RelayLimits> {
        let count = |flag, v: usize, range| {
            in_range(flag, v.try_into().unwrap_or(u64::MAX), range, "").map(|v| v as usize)
        };
        Ok(RelayLimits {
            ticket_ttl: Duration::from_secs(in_range(
                "--relay-ticket-ttl",
                args.relay_ticket_ttl,
                RELAY_TICKET_TTL_S,
                " seconds",
            )?),
            max_sessions: count(
                "--relay-max-sessions",
                args.relay_max_sessions,
                RELAY_MAX_SESSIONS,
            )?,
            max_sessions_per_user: count(
                "--relay-max-sessions-per-user",
                args.relay_max_sessions_per_user,
                RELAY_MAX_SESSIONS_PER_USER,
            )?,
            max_duration: Duration::from_secs(in_range(
                "--relay-max-duration",
                args.relay_max_duration,
                RELAY_MAX_DURATION_S,
                " seconds",
            )?),
            idle_timeout: Duration::from_secs(in_range(
                "--relay-idle-timeout",
                args.relay_idle_timeout,
                RELAY_IDLE_TIMEOUT_S,
                " seconds",
            )?),
            max_frame_bytes: in_range(
                "--relay-max-frame",
                args.relay_max_frame.try_into().unwrap_or(u64::MAX),
                RELAY_MAX_FRAME_BYTES,
                " bytes",
            )? as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A `Host` is a name or a bracketed IPv6 address, then at most a port: anything else is not
    /// a host (a malformed `Host` must not pass the allow-list as the name inside it).
    #[test]
    fn a_host_is_a_name_or_bracketed_address_with_at_most_a_port() {
        for (host, want) in [
            ("Broker.Example.COM.", Some("broker.example.com")),
            ("broker.example.com:8443", Some("broker.example.com")),
            ("[::1]", Some("::1")),
            ("[::1]:8787", Some("::1")),
            ("127.0.0.1:8787", Some("127.0.0.1")),
            ("[::1]junk", None),
            ("[::1]:80x", None),
            ("[::1]]", None),
            ("[::1", None),
            ("bro ker", None),
            ("", None),
        ] {
            assert_eq!(normalize_host(host).as_deref(), want, "{host:?}");
        }
    }

    fn resolve(argv: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let mut full = vec!["speech-token-broker"];
        full.extend_from_slice(argv);
        let args = Args::try_parse_from(full)?;
        let map: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::resolve(args, &move |k| map.get(k).cloned())
    }

    /// Asserts that `result` is a configuration error whose message names `flag` (`case` says
    /// which case failed).
    fn assert_refused_naming(result: anyhow::Result<Settings>, flag: &str, case: &str) {
        let error = result.err().map(|e| e.to_string());
        assert!(
            error.as_deref().is_some_and(|e| e.contains(flag)),
            "{case}: {error:?}"
        );
    }

    /// What every key/entra deployment must state: `--auth`, the host allow-list and (entra)
    /// the token-exposure opt-in.
    fn deployed(argv: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let mut full = argv.to_vec();
        full.extend_from_slice(&["--auth", "none", "--allow-host", "broker.example.com"]);
        if argv.contains(&"entra") {
            full.push("--expose-entra-token");
        }
        resolve(&full, env)
    }

    #[test]
    fn dev_defaults() {
        let s = resolve(&[], &[]).unwrap();
        assert!(matches!(s.mode, ModeSettings::Dev { ttl: 600 }));
        assert!(s.allow_loopback_origins);
        assert_eq!(s.rate_limit, 120);
        assert_eq!(s.rate_burst, 20);
        assert!(resolve(&["--ttl", "1"], &[]).is_err());
        assert!(
            !resolve(&["--allow-loopback-origins=false"], &[])
                .unwrap()
                .allow_loopback_origins
        );
    }

    #[test]
    fn key_mode_needs_env_key_and_region() {
        assert!(deployed(&["--mode", "key", "--region", "westeurope"], &[]).is_err());
        assert!(deployed(&["--mode", "key"], &[("SPEECH_KEY", "k")]).is_err());
        assert!(deployed(
            &["--mode", "key", "--region", "West Europe"],
            &[("SPEECH_KEY", "k")]
        )
        .is_err());
        let s = deployed(
            &["--mode", "key", "--region", "westeurope"],
            &[("SPEECH_KEY", "k")],
        )
        .unwrap();
        match s.mode {
            ModeSettings::Key { sts_base, .. } => {
                assert_eq!(sts_base, "https://westeurope.api.cognitive.microsoft.com")
            }
            _ => panic!(),
        }
        assert!(!s.allow_loopback_origins);
        // Sovereign clouds have their own token hosts (learn.microsoft.com, "Speech service in
        // sovereign clouds": `<region>.api.cognitive.azure.cn`, `….microsoft.us`).
        for (region, sts) in [
            ("chinaeast2", "https://chinaeast2.api.cognitive.azure.cn"),
            (
                "usgovarizona",
                "https://usgovarizona.api.cognitive.microsoft.us",
            ),
        ] {
            let s = deployed(
                &["--mode", "key", "--region", region],
                &[("SPEECH_KEY", "k")],
            )
            .unwrap();
            match s.mode {
                ModeSettings::Key { sts_base, .. } => assert_eq!(sts_base, sts),
                _ => panic!(),
            }
        }
        // The relay connects to the endpoint's host and adds the SDK's own paths: a path, query
        // or fragment there would be dropped without a word, so it is refused.
        for (endpoint, ok) in [
            ("https://x.cognitiveservices.azure.com/speech", false),
            ("https://x.cognitiveservices.azure.com/?q=1", false),
            ("https://x.cognitiveservices.azure.com/#f", false),
            ("https://x.cognitiveservices.azure.com", true),
            ("https://x.cognitiveservices.azure.com/", true),
        ] {
            let relay = [
                "--mode",
                "key",
                "--region",
                "westeurope",
                "--relay",
                "--endpoint",
                endpoint,
            ];
            let result = deployed(&relay, &[("SPEECH_KEY", "k")]);
            assert_eq!(result.is_ok(), ok, "{endpoint}: {result:?}");
        }
        // there is no flag for the key
        assert!(deployed(&["--mode", "key", "--region", "x", "--key", "k"], &[]).is_err());
    }

    #[test]
    fn entra_credential_selection() {
        let rid = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/sp";
        let cc = deployed(
            &[
                "--mode",
                "entra",
                "--resource-id",
                rid,
                "--region",
                "westeurope",
            ],
            &[
                ("AZURE_TENANT_ID", "t"),
                ("AZURE_CLIENT_ID", "c"),
                ("AZURE_CLIENT_SECRET", "s"),
            ],
        )
        .unwrap();
        assert!(matches!(
            cc.mode,
            ModeSettings::Entra {
                credential: EntraCredential::ClientSecret { .. },
                ..
            }
        ));
        let mi = deployed(
            &[
                "--mode",
                "entra",
                "--resource-id",
                rid,
                "--region",
                "westeurope",
                "--managed-identity",
            ],
            &[
                ("AZURE_TENANT_ID", "t"),
                ("AZURE_CLIENT_ID", "c"),
                ("AZURE_CLIENT_SECRET", "s"),
            ],
        )
        .unwrap();
        assert!(matches!(
            mi.mode,
            ModeSettings::Entra {
                credential: EntraCredential::Imds { .. },
                ..
            }
        ));
        let app = deployed(
            &[
                "--mode",
                "entra",
                "--endpoint",
                "https://x.cognitiveservices.azure.com",
            ],
            &[
                ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi"),
                ("IDENTITY_HEADER", "h"),
            ],
        )
        .unwrap();
        assert!(matches!(
            app.mode,
            ModeSettings::Entra {
                credential: EntraCredential::AppService { .. },
                ..
            }
        ));
        assert!(deployed(&["--mode", "entra"], &[]).is_err());
        assert!(deployed(
            &["--mode", "entra", "--resource-id", "/bad", "--region", "x"],
            &[]
        )
        .is_err());
        assert!(deployed(&["--mode", "entra", "--resource-id", rid], &[]).is_err());
        assert!(deployed(
            &["--mode", "entra", "--endpoint", "http://example.com"],
            &[]
        )
        .is_err());
    }

    #[test]
    fn require_header_value_comes_from_the_environment_only() {
        let s = resolve(
            &[
                "--require-header",
                "X-App-Session",
                "--allow-origin",
                "https://App.Example.com/",
            ],
            &[("BROKER_REQUIRE_HEADER_VALUE", "s3ss10n-value")],
        )
        .unwrap();
        let AuthSettings::Header { name, value } = &s.auth else {
            panic!("header auth")
        };
        assert_eq!(name.as_str(), "x-app-session");
        assert_eq!(value.expose(), "s3ss10n-value");
        // redacted in Debug
        assert!(!format!("{s:?}").contains("s3ss10n-value"));
        assert_eq!(s.allow_origins, vec!["https://app.example.com".to_string()]);
        // a value on the command line is refused, as is an empty or missing one
        assert!(resolve(
            &["--require-header", "X-App-Session=abc"],
            &[("BROKER_REQUIRE_HEADER_VALUE", "x")]
        )
        .is_err());
        assert!(resolve(&["--require-header", "X-App-Session"], &[]).is_err());
        assert!(resolve(
            &["--require-header", "X-App-Session"],
            &[("BROKER_REQUIRE_HEADER_VALUE", "  ")]
        )
        .is_err());
        assert!(resolve(&["--allow-origin", "ftp://x"], &[]).is_err());
    }

    #[test]
    fn no_silent_dev() {
        // dev is the default only on loopback
        assert!(matches!(
            resolve(&["--listen", "[::1]:0"], &[]).unwrap().mode,
            ModeSettings::Dev { .. }
        ));
        let e = resolve(&["--listen", "0.0.0.0:8787"], &[]).unwrap_err();
        assert!(format!("{e:#}").contains("--mode"), "{e:#}");
        // dev refuses to listen anywhere else
        assert!(resolve(&["--mode", "dev", "--listen", "0.0.0.0:8787"], &[]).is_err());
        assert!(resolve(&["--mode", "dev", "--listen", "10.1.2.3:8787"], &[]).is_err());
    }

    #[test]
    fn deployed_modes_state_auth_and_hosts() {
        let key = [("SPEECH_KEY", "k")];
        let base = ["--mode", "key", "--region", "westeurope"];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            resolve(&v, &key)
        };
        let e = with(&["--allow-host", "b.example.com"]).unwrap_err();
        assert!(format!("{e:#}").contains("--auth"), "{e:#}");
        let e = with(&["--auth", "none"]).unwrap_err();
        assert!(format!("{e:#}").contains("--allow-host"), "{e:#}");
        let s = with(&[
            "--auth",
            "none",
            "--allow-origin",
            "https://App.example.com",
        ])
        .unwrap();
        assert_eq!(s.allow_hosts, vec!["app.example.com".to_string()]);
        let s = with(&["--auth", "none", "--allow-host", "Broker.Example.com:443"]).unwrap();
        assert_eq!(s.allow_hosts, vec!["broker.example.com".to_string()]);
        // upstream base URLs are https (loopback excepted)
        assert!(with(&[
            "--auth",
            "none",
            "--allow-host",
            "b",
            "--sts-base",
            "http://sts.example.com"
        ])
        .is_err());
        assert!(with(&[
            "--auth",
            "none",
            "--allow-host",
            "b",
            "--sts-base",
            "http://127.0.0.1:9"
        ])
        .is_ok());
        assert!(deployed(
            &[
                "--mode",
                "entra",
                "--endpoint",
                "https://x.cognitiveservices.azure.com",
                "--authority",
                "http://login.example.com"
            ],
            &[
                ("AZURE_TENANT_ID", "t"),
                ("AZURE_CLIENT_ID", "c"),
                ("AZURE_CLIENT_SECRET", "s")
            ]
        )
        .is_err());
        // trusted proxies
        let s = with(&[
            "--auth",
            "none",
            "--allow-host",
            "b",
            "--trust-proxy",
            "10.0.0.0/8",
            "--trust-proxy",
            "192.0.2.1",
        ])
        .unwrap();
        assert_eq!(s.trust_proxies.len(), 2);
        assert!(with(&[
            "--auth",
            "none",
            "--allow-host",
            "b",
            "--trust-proxy",
            "nonsense"
        ])
        .is_err());
    }

    #[test]
    fn entra_mode_needs_the_explicit_exposure_opt_in() {
        let argv = [
            "--mode",
            "entra",
            "--endpoint",
            "https://x.cognitiveservices.azure.com",
            "--auth",
            "none",
            "--allow-host",
            "b.example.com",
        ];
        let env = [
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi"),
            ("IDENTITY_HEADER", "h"),
        ];
        let e = resolve(&argv, &env).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("--expose-entra-token"), "{msg}");
        assert!(
            msg.contains("24 hours") && msg.contains("cognitiveservices.azure.com"),
            "{msg}"
        );
        let mut ok = argv.to_vec();
        ok.push("--expose-entra-token");
        assert!(resolve(&ok, &env).is_ok());
    }

    #[test]
    fn default_upstream_timeout_is_below_the_clients_request_timeout() {
        let s = resolve(&[], &[]).unwrap();
        let upstream_ms = s.upstream_timeout.as_millis() as f64;
        assert!(upstream_ms < speech_token_client::engine::policy::DEFAULT_REQUEST_TIMEOUT_MS);
    }

    /// Every numeric relay flag: out of its documented range is a configuration error that names
    /// the flag and the range (exit 2), never a silently clamped value; the bounds themselves pass
    /// and are taken as given.
    #[test]
    fn relay_limits_out_of_range_are_errors_not_clamped() {
        let cases: [(&str, u64, u64); 6] = [
            ("--relay-ticket-ttl", 2, 600),
            ("--relay-max-sessions", 1, 100_000),
            ("--relay-max-sessions-per-user", 1, 100_000),
            ("--relay-max-duration", 1, 86_400),
            ("--relay-idle-timeout", 1, 3600),
            ("--relay-max-frame", 1024, 16 * 1024 * 1024),
        ];
        for (flag, min, max) in cases {
            assert_range(&["--relay"], flag, min, max, |s| {
                let l = s.relay.as_ref().expect("relay limits");
                match flag {
                    "--relay-ticket-ttl" => l.ticket_ttl.as_secs(),
                    "--relay-max-sessions" => l.max_sessions as u64,
                    "--relay-max-sessions-per-user" => l.max_sessions_per_user as u64,
                    "--relay-max-duration" => l.max_duration.as_secs(),
                    "--relay-idle-timeout" => l.idle_timeout.as_secs(),
                    _ => l.max_frame_bytes as u64,
                }
            });
        }
        let d = resolve(&["--relay"], &[]).unwrap().relay.unwrap();
        assert_eq!(d.ticket_ttl, Duration::from_secs(60));
        assert_eq!(d.max_sessions, 256);
        assert_eq!(d.max_sessions_per_user, 4);
        assert_eq!(d.max_duration, Duration::from_secs(3600));
        assert_eq!(d.idle_timeout, Duration::from_secs(60));
        assert_eq!(d.max_frame_bytes, 1024 * 1024);
    }

    /// The server's numeric flags, like the relay's: out of range is an error naming the flag
    /// and the range (exit 2), never silently clamped (`--request-timeout 0` used to become 1 s,
    /// `--rate-burst 0` 1); the bounds themselves are taken as given.
    #[test]
    fn server_limits_out_of_range_are_errors_not_clamped() {
        let cases: [(&str, u64, u64); 6] = [
            ("--upstream-timeout", 1, 120),
            ("--header-timeout", 1, 300),
            ("--request-timeout", 1, 600),
            ("--max-connections", 1, 1_000_000),
            ("--ws-idle-timeout", 1, 3600),
            ("--rate-burst", 1, 100_000),
        ];
        for (flag, min, max) in cases {
            assert_range(&[], flag, min, max, |s| match flag {
                "--upstream-timeout" => s.upstream_timeout.as_secs(),
                "--header-timeout" => s.limits.header_timeout.as_secs(),
                "--request-timeout" => s.limits.request_timeout.as_secs(),
                "--max-connections" => s.limits.max_connections as u64,
                "--ws-idle-timeout" => s.limits.ws_idle_timeout.as_secs(),
                _ => u64::from(s.rate_burst),
            });
        }
    }

    /// `flag` (after `base` flags) out of `min..=max` is an error naming the flag and the range;
    /// the bounds pass and `read` finds them in the settings unchanged.
    fn assert_range(
        base: &[&str],
        flag: &str,
        min: u64,
        max: u64,
        read: impl Fn(&Settings) -> u64,
    ) {
        for (good, s) in range_checked(base, &[], flag, min, max) {
            assert_eq!(read(&s), good, "{flag}");
        }
    }

    /// `flag` (after `base` flags, with `env`) out of `min..=max` is an error naming the flag and
    /// the range; the bounds pass. The settings for `min` and `max`.
    fn range_checked(
        base: &[&str],
        env: &[(&str, &str)],
        flag: &str,
        min: u64,
        max: u64,
    ) -> Vec<(u64, Settings)> {
        out_of_range_refused(base, env, flag, min, max);
        [min, max]
            .into_iter()
            .map(|good| {
                let s = with_flag(base, env, flag, good)
                    .unwrap_or_else(|e| panic!("{flag} {good}: {e:#}"));
                (good, s)
            })
            .collect()
    }

    fn with_flag(
        base: &[&str],
        env: &[(&str, &str)],
        flag: &str,
        value: u64,
    ) -> anyhow::Result<Settings> {
        let value = value.to_string();
        let mut args = base.to_vec();
        args.extend([flag, value.as_str()]);
        resolve(&args, env)
    }

    /// `flag` out of `min..=max` is an error naming the flag and the range.
    fn out_of_range_refused(base: &[&str], env: &[(&str, &str)], flag: &str, min: u64, max: u64) {
        let with = |value: u64| with_flag(base, env, flag, value);
        for bad in [0, min.saturating_sub(1), max + 1] {
            if bad >= min && bad <= max {
                continue;
            }
            let Err(e) = with(bad) else {
                panic!("{flag} {bad} accepted");
            };
            let msg = format!("{e:#}");
            assert!(msg.contains(flag), "{flag} {bad}: {msg}");
            assert!(
                msg.contains(&format!("between {min} and {max}")),
                "{flag} {bad}: {msg}"
            );
        }
    }

    /// `--ttl` (dev) and `--max-ttl` (entra) are range-checked in every mode: the README lists
    /// them among the out-of-range values that exit with status 2, and a value silently ignored
    /// in one mode (`--ttl 0` in key mode, `--max-ttl 0` in key or dev mode) hides a typo or a
    /// stray `BROKER_TTL`/`BROKER_MAX_TTL` until the mode changes. In range, each is taken in its
    /// own mode only ([`a_flag_of_another_mode_is_refused`]).
    #[test]
    fn ttl_flags_are_range_checked_in_every_mode() {
        let key = [
            "--mode",
            "key",
            "--region",
            "westeurope",
            "--auth",
            "none",
            "--allow-host",
            "broker.example.com",
        ];
        let key_env = [("SPEECH_KEY", "k")];
        let entra = [
            "--mode",
            "entra",
            "--endpoint",
            "https://sp.cognitiveservices.azure.com",
            "--expose-entra-token",
            "--auth",
            "none",
            "--allow-host",
            "broker.example.com",
        ];
        let entra_env = [
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
        ];
        for (base, env, mode) in [
            (&[][..], &[][..], Mode::Dev),
            (&key[..], &key_env[..], Mode::Key),
            (&entra[..], &entra_env[..], Mode::Entra),
        ] {
            for (flag, min, own) in [("--ttl", MIN_TTL, Mode::Dev), ("--max-ttl", 1, Mode::Entra)] {
                if mode == own {
                    range_checked(base, env, flag, min, MAX_TTL);
                } else {
                    out_of_range_refused(base, env, flag, min, MAX_TTL);
                    assert_refused_naming(
                        with_flag(base, env, flag, min),
                        "applies to",
                        &format!("{flag} in {} mode", mode.name()),
                    );
                }
            }
        }
    }

    #[test]
    fn entra_auth_settings() {
        let base = [
            "--auth",
            "entra",
            "--auth-tenant",
            "11111111-2222-3333-4444-555555555555",
        ];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            resolve(&v, &[])
        };
        assert!(
            with(&["--auth-audience", "api://x"]).is_err(),
            "scope or role required"
        );
        assert!(
            with(&["--auth-scope", "Speech.Token"]).is_err(),
            "audience required"
        );
        let s = with(&["--auth-audience", "api://x", "--auth-scope", "Speech.Token"]).unwrap();
        let AuthSettings::Entra(e) = &s.auth else {
            panic!()
        };
        assert_eq!(e.authority, "https://login.microsoftonline.com");
        // Only a tenant ID (a GUID): not `common`, and not a fragment of hex digits (which
        // would match no token and lock every user out without a word).
        for tenant in [
            "common",
            "abc",
            "11111111222233334444555555555555",
            "11111111-2222-3333-4444-55555555555",
            "11111111-2222-3333-4444-5555555555555",
            "1111111-12222-3333-4444-555555555555",
            "g1111111-2222-3333-4444-555555555555",
        ] {
            assert!(
                resolve(
                    &[
                        "--auth",
                        "entra",
                        "--auth-tenant",
                        tenant,
                        "--auth-audience",
                        "a",
                        "--auth-scope",
                        "s"
                    ],
                    &[]
                )
                .is_err(),
                "--auth-tenant {tenant} accepted"
            );
        }
        assert!(resolve(
            &[
                "--auth",
                "entra",
                "--auth-tenant",
                "AAAAAAAA-2222-3333-4444-555555555555",
                "--auth-audience",
                "a",
                "--auth-scope",
                "s"
            ],
            &[]
        )
        .is_ok());
        assert!(with(&[
            "--auth-audience",
            "a",
            "--auth-scope",
            "s",
            "--auth-authority",
            "http://login.example.com"
        ])
        .is_err());
        assert!(
            resolve(&["--auth-scope", "s"], &[]).is_err(),
            "entra flags need --auth entra"
        );
    }

    /// A flag that means something only in another mode (or only with `--relay`) would do
    /// nothing, silently: a deployment that sets `--resource-id` in key mode, or `--ttl` outside
    /// dev mode, believes in a setting the broker ignores. Refused, naming the flag; each flag
    /// still works in its own mode.
    #[test]
    fn a_flag_of_another_mode_is_refused() {
        let key_env: &[(&str, &str)] = &[("SPEECH_KEY", "k")];
        let entra_env: &[(&str, &str)] = &[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
        ];
        let rid =
            "/subscriptions/0/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/a";
        let dev: &[&str] = &["--mode", "dev"];
        let key: &[&str] = &["--mode", "key", "--region", "westeurope"];
        let entra: &[&str] = &[
            "--mode",
            "entra",
            "--resource-id",
            rid,
            "--region",
            "westeurope",
        ];
        let run = |base: &[&str], extra: &[&str], env: &[(&str, &str)]| {
            let mut argv = base.to_vec();
            argv.extend_from_slice(extra);
            if base == dev {
                resolve(&argv, env)
            } else {
                deployed(&argv, env)
            }
        };
        // Negative control: each base is valid as it stands.
        for (base, env) in [(dev, &[][..]), (key, key_env), (entra, entra_env)] {
            run(base, &[], env).unwrap();
        }
        /// A base command line, its environment and the flag (with its value) added to it.
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a [&'a str]);
        let refused: &[Case] = &[
            (key, key_env, &["--resource-id", rid]),
            (key, key_env, &["--expose-entra-token"]),
            (key, key_env, &["--managed-identity"]),
            (key, key_env, &["--max-ttl", "300"]),
            (key, key_env, &["--authority", "https://login.example.com"]),
            (key, key_env, &["--imds-base", "http://127.0.0.1:1"]),
            (key, key_env, &["--ttl", "60"]),
            (key, key_env, &["--ws-idle-timeout", "5"]),
            (key, key_env, &["--relay-ticket-ttl", "30"]),
            (entra, entra_env, &["--sts-base", "https://sts.example.com"]),
            (entra, entra_env, &["--ttl", "60"]),
            (entra, entra_env, &["--relay-max-sessions", "9"]),
            (dev, &[], &["--region", "westeurope"]),
            (dev, &[], &["--sts-base", "https://sts.example.com"]),
            (dev, &[], &["--resource-id", rid]),
            (
                dev,
                &[],
                &["--endpoint", "https://a.cognitiveservices.azure.com"],
            ),
            (dev, &[], &["--max-ttl", "300"]),
            (dev, &[], &["--expose-entra-token"]),
            (dev, &[], &["--relay-idle-timeout", "5"]),
        ];
        for (base, env, extra) in refused {
            assert_refused_naming(
                run(base, extra, env),
                extra[0],
                &format!("{base:?} + {extra:?}"),
            );
        }
        // The relay hands out tickets: the Entra token opt-in is refused with it.
        assert_refused_naming(
            resolve(
                &[
                    "--mode",
                    "entra",
                    "--endpoint",
                    "https://a.cognitiveservices.azure.com",
                    "--relay",
                    "--expose-entra-token",
                    "--auth",
                    "none",
                    "--allow-host",
                    "b",
                ],
                entra_env,
            ),
            "--expose-entra-token",
            "",
        );
        // An empty value (a template that writes every variable) is unset, and a URL equal to
        // its default but for a trailing `/` is the default.
        run(
            key,
            &["--resource-id", "", "--sts-base", "https://sts.example.com"],
            key_env,
        )
        .unwrap();
        run(entra, &["--sts-base", " "], entra_env).unwrap();
        run(dev, &["--region", "", "--endpoint", ""], &[]).unwrap();
        run(key, &["--endpoint", ""], key_env).unwrap();
        run(entra, &["--endpoint", " "], entra_env).unwrap();
        run(key, &["--imds-base", "http://169.254.169.254/"], key_env).unwrap();
        // Each flag in its own mode.
        run(key, &["--sts-base", "https://sts.example.com"], key_env).unwrap();
        run(
            entra,
            &["--max-ttl", "300", "--managed-identity"],
            entra_env,
        )
        .unwrap();
        run(dev, &["--ttl", "60", "--ws-idle-timeout", "5"], &[]).unwrap();
        run(dev, &["--relay", "--relay-idle-timeout", "5"], &[]).unwrap();
        run(key, &["--relay", "--relay-ticket-ttl", "30"], key_env).unwrap();
    }

    /// The README's "never trust `0.0.0.0/0`": a proxy range that is the whole address space (or
    /// near it, or several ranges that add up to it) lets any client forge `X-Forwarded-For`
    /// past the per-IP rate limit and session cap.
    #[test]
    fn trusting_every_address_as_a_proxy_is_refused() {
        for all in [
            "0.0.0.0/0",
            "::/0",
            "10.0.0.0/8,0.0.0.0/0",
            "0.0.0.0/1,128.0.0.0/1",
            "10.0.0.0/7",
            "::ffff:0:0/96",
            "::ffff:0:0/103",
            "::/64",
            "2000::/3",
        ] {
            assert_refused_naming(resolve(&["--trust-proxy", all], &[]), "--trust-proxy", all);
        }
        let s = resolve(
            &[
                "--trust-proxy",
                "10.0.0.0/8,::1,2001:db8::/32,::ffff:10.0.0.0/104,192.0.2.1",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(s.trust_proxies.len(), 5);
    }

    /// A mistyped static-files directory is a startup error, not a broker that answers 404.
    #[test]
    fn a_static_directory_that_is_not_there_is_refused() {
        let here = std::env::temp_dir();
        let here = here.to_str().unwrap();
        for flag in ["--www", "--pkg", "--vendor"] {
            assert_refused_naming(
                resolve(&[flag, "/nonexistent/speech-token-broker"], &[]),
                flag,
                flag,
            );
            resolve(&[flag, here], &[]).unwrap();
        }
    }

    /// README: the broker exits 2 on an `http://` upstream across networks. The managed identity
    /// endpoints were the exception: `IDENTITY_ENDPOINT` (whose `IDENTITY_HEADER` is a secret)
    /// took any `http://` host, `--imds-base` any `http://` host. Azure's own are on the
    /// platform's local network: a loopback port (Windows App Service, Container Apps, Arc), a
    /// link-local address (Linux App Service and Functions), a private one (older Linux custom
    /// containers), and the link-local IMDS.
    #[test]
    fn managed_identity_endpoints_are_https_or_local() {
        let entra = |extra: &[&str], env: &[(&str, &str)]| {
            let mut argv = vec![
                "--mode",
                "entra",
                "--endpoint",
                "https://sp.cognitiveservices.azure.com",
            ];
            argv.extend_from_slice(extra);
            deployed(&argv, env)
        };
        let app_service = |endpoint| {
            entra(
                &[],
                &[("IDENTITY_ENDPOINT", endpoint), ("IDENTITY_HEADER", "h")],
            )
        };
        for refused in [
            "http://203.0.113.7/msi/token",
            "http://identity.example.com/msi",
            "ftp://127.0.0.1/msi",
        ] {
            assert_refused_naming(app_service(refused), "IDENTITY_ENDPOINT", refused);
        }
        for taken in [
            "http://127.0.0.1:41234/msi/token",
            "http://localhost:42356/msi/token",
            "http://169.254.129.2:8081/msi/token",
            "http://169.254.255.2:8081/msi/token",
            "http://172.16.1.5:8081/msi/token",
            "https://identity.example.com/msi/token",
        ] {
            app_service(taken).unwrap_or_else(|e| panic!("{taken}: {e:#}"));
        }
        for refused in ["http://imds.attacker.example", "http://10.0.0.1"] {
            assert_refused_naming(
                entra(&["--imds-base", refused], &[]),
                "--imds-base",
                refused,
            );
        }
        for taken in [
            "http://169.254.169.254",
            "http://127.0.0.1:1",
            "https://imds.example.com",
        ] {
            entra(&["--imds-base", taken], &[]).unwrap_or_else(|e| panic!("{taken}: {e:#}"));
        }
    }
}
