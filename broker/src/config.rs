//! Command line / environment configuration, resolved into validated [`Settings`].
//!
//! Secrets (SPEECH_KEY, AZURE_CLIENT_SECRET, IDENTITY_HEADER) are read from the environment only,
//! never from flags (flags show up in `ps`, shell history and crash reports).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use axum::http::{HeaderName, HeaderValue};
use clap::{Parser, ValueEnum};

use crate::origin::normalize_origin;
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

/// Reference token broker for speech-token-client.
#[derive(Debug, Clone, Parser)]
#[command(name = "speech-token-broker", version, about, long_about = None)]
pub struct Args {
    /// Where tokens come from.
    #[arg(long, value_enum, default_value_t = Mode::Dev, env = "BROKER_MODE")]
    pub mode: Mode,

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

    /// Also allow any http://127.0.0.1:<port>, http://localhost:<port>, http://[::1]:<port> origin.
    /// Default: on in dev mode, off otherwise. `--allow-loopback-origins=false` turns it off.
    #[arg(long, env = "BROKER_ALLOW_LOOPBACK_ORIGINS", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    pub allow_loopback_origins: Option<bool>,

    /// App-auth hook: token requests must carry this exact header, NAME=VALUE.
    #[arg(long, env = "BROKER_REQUIRE_HEADER", value_name = "NAME=VALUE")]
    pub require_header: Option<String>,

    /// Per-client-IP token requests per minute (0 = no limit).
    #[arg(long, default_value_t = 120, env = "BROKER_RATE_LIMIT")]
    pub rate_limit: u32,

    /// Burst size of the per-client token bucket.
    #[arg(long, default_value_t = 20, env = "BROKER_RATE_BURST")]
    pub rate_burst: u32,

    /// dev mode: lifetime of signed tokens in seconds (minimum 2).
    #[arg(long, default_value_t = 600, env = "BROKER_TTL")]
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

    /// key mode: base URL of the token service (default https://<region>.api.cognitive.microsoft.com).
    #[arg(long, env = "BROKER_STS_BASE", value_name = "URL")]
    pub sts_base: Option<String>,

    /// entra mode: authority host for client credentials.
    #[arg(
        long,
        default_value = "https://login.microsoftonline.com",
        env = "BROKER_AUTHORITY",
        value_name = "URL"
    )]
    pub authority: String,

    /// entra mode: Instance Metadata Service base URL (managed identity on VMs/AKS).
    #[arg(
        long,
        default_value = "http://169.254.169.254",
        env = "BROKER_IMDS_BASE",
        value_name = "URL"
    )]
    pub imds_base: String,

    /// entra mode: use managed identity even if AZURE_CLIENT_SECRET is set.
    #[arg(long, env = "BROKER_MANAGED_IDENTITY")]
    pub managed_identity: bool,

    /// entra mode: ARM id of the Speech resource; answers carry `aad#<resourceId>#<token>`.
    #[arg(long, env = "BROKER_RESOURCE_ID", value_name = "ARM_ID")]
    pub resource_id: Option<String>,

    /// entra mode: custom-domain endpoint (https://<name>.cognitiveservices.azure.com); answers carry
    /// the raw Entra token plus this endpoint.
    #[arg(long, env = "BROKER_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,

    /// entra mode: the largest `expiresIn` handed to browsers, in seconds.
    #[arg(long, default_value_t = 600, env = "BROKER_MAX_TTL")]
    pub max_ttl: u64,

    /// Timeout of one upstream request, in seconds.
    #[arg(long, default_value_t = 10, env = "BROKER_UPSTREAM_TIMEOUT")]
    pub upstream_timeout: u64,
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
    },
    Entra {
        credential: EntraCredential,
        target: EntraTarget,
        max_ttl: u64,
    },
}

impl ModeSettings {
    pub fn name(&self) -> &'static str {
        match self {
            ModeSettings::Dev { .. } => "dev",
            ModeSettings::Key { .. } => "key",
            ModeSettings::Entra { .. } => "entra",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: ModeSettings,
    pub listen: SocketAddr,
    pub allow_origins: Vec<String>,
    pub allow_loopback_origins: bool,
    pub require_header: Option<(HeaderName, HeaderValue)>,
    pub rate_limit: u32,
    pub rate_burst: u32,
    pub www: Option<PathBuf>,
    pub pkg: Option<PathBuf>,
    pub vendor: Option<PathBuf>,
    pub upstream_timeout: Duration,
}

pub const MIN_TTL: u64 = 2;
pub const MAX_TTL: u64 = 86_400;

pub fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn valid_base_url(name: &str, s: &str) -> anyhow::Result<String> {
    let u = url::Url::parse(s).with_context(|| format!("{name}: not a URL"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        bail!("{name}: must be an http(s) URL");
    }
    if u.query().is_some() || u.fragment().is_some() {
        bail!("{name}: must not have a query or fragment");
    }
    Ok(s.trim_end_matches('/').to_string())
}

fn is_loopback_host(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl Settings {
    /// Validates `args`; secrets are looked up with `env` (the process environment in `main`,
    /// a map in tests).
    pub fn resolve(args: Args, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Settings> {
        let env_nonempty = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let timeout = Duration::from_secs(args.upstream_timeout.clamp(1, 120));

        let mode = match args.mode {
            Mode::Dev => {
                if !(MIN_TTL..=MAX_TTL).contains(&args.ttl) {
                    bail!("--ttl must be between {MIN_TTL} and {MAX_TTL} seconds");
                }
                ModeSettings::Dev { ttl: args.ttl }
            }
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
                    Some(b) => valid_base_url("--sts-base", b)?,
                    None => format!("https://{region}.api.cognitive.microsoft.com"),
                };
                ModeSettings::Key {
                    key: Secret::new(key),
                    region,
                    sts_base,
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
                        authority: valid_base_url("--authority", &args.authority)?,
                        tenant,
                        client_id,
                        secret: Secret::new(secret),
                    }
                } else if let (Some(endpoint), Some(header)) = (
                    env_nonempty("IDENTITY_ENDPOINT"),
                    env_nonempty("IDENTITY_HEADER"),
                ) {
                    let u = url::Url::parse(&endpoint).context("IDENTITY_ENDPOINT: not a URL")?;
                    if !matches!(u.scheme(), "http" | "https") {
                        bail!("IDENTITY_ENDPOINT must be an http(s) URL");
                    }
                    EntraCredential::AppService {
                        endpoint,
                        header: Secret::new(header),
                        client_id,
                    }
                } else {
                    EntraCredential::Imds {
                        base: valid_base_url("--imds-base", &args.imds_base)?,
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
                            || !crate::secret::is_valid_token_text(rid)
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
                        let u = url::Url::parse(ep).context("--endpoint: not a URL")?;
                        let ok = match u.scheme() {
                            "https" | "wss" => true,
                            "http" | "ws" => is_loopback_host(&u),
                            _ => false,
                        };
                        if !ok {
                            bail!("--endpoint must be an https:// or wss:// URL (http/ws only on loopback)");
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
                if !(1..=MAX_TTL).contains(&args.max_ttl) {
                    bail!("--max-ttl must be between 1 and {MAX_TTL} seconds");
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

        let require_header = match &args.require_header {
            None => None,
            Some(spec) if spec.trim().is_empty() => None,
            Some(spec) => {
                let (name, value) = spec
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--require-header must be NAME=VALUE"))?;
                let name = HeaderName::from_bytes(name.trim().as_bytes())
                    .context("--require-header: bad header name")?;
                let value =
                    HeaderValue::from_str(value).context("--require-header: bad header value")?;
                Some((name, value))
            }
        };

        Ok(Settings {
            allow_loopback_origins: args
                .allow_loopback_origins
                .unwrap_or(args.mode == Mode::Dev),
            mode,
            listen: args.listen,
            allow_origins,
            require_header,
            rate_limit: args.rate_limit,
            rate_burst: args.rate_burst.max(1),
            www: args.www,
            pkg: args.pkg,
            vendor: args.vendor,
            upstream_timeout: timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
        assert!(resolve(&["--mode", "key", "--region", "westeurope"], &[]).is_err());
        assert!(resolve(&["--mode", "key"], &[("SPEECH_KEY", "k")]).is_err());
        assert!(resolve(
            &["--mode", "key", "--region", "West Europe"],
            &[("SPEECH_KEY", "k")]
        )
        .is_err());
        let s = resolve(
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
        // there is no flag for the key
        assert!(resolve(&["--mode", "key", "--region", "x", "--key", "k"], &[]).is_err());
    }

    #[test]
    fn entra_credential_selection() {
        let rid = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/sp";
        let cc = resolve(
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
        let mi = resolve(
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
        let app = resolve(
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
        assert!(resolve(&["--mode", "entra"], &[]).is_err());
        assert!(resolve(
            &["--mode", "entra", "--resource-id", "/bad", "--region", "x"],
            &[]
        )
        .is_err());
        assert!(resolve(&["--mode", "entra", "--resource-id", rid], &[]).is_err());
        assert!(resolve(
            &["--mode", "entra", "--endpoint", "http://example.com"],
            &[]
        )
        .is_err());
    }

    #[test]
    fn require_header_and_origins() {
        let s = resolve(
            &[
                "--require-header",
                "X-App-Session=abc",
                "--allow-origin",
                "https://App.Example.com/",
            ],
            &[],
        )
        .unwrap();
        let (n, v) = s.require_header.unwrap();
        assert_eq!(n.as_str(), "x-app-session");
        assert_eq!(v, "abc");
        assert_eq!(s.allow_origins, vec!["https://app.example.com".to_string()]);
        assert!(resolve(&["--require-header", "novalue"], &[]).is_err());
        assert!(resolve(&["--allow-origin", "ftp://x"], &[]).is_err());
    }
}
