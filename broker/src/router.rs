//! Wiring: routes, their guards, static files with their security headers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, MethodRouter};
use axum::Router;
use tower_http::services::ServeDir;

use crate::admin::{
    admin_fail, admin_outage, admin_reset, admin_slow, admin_speech, admin_stats, admin_ttl,
};
use crate::cloud::cloud_of;
use crate::config::{EntraTarget, ModeSettings, Settings};
use crate::dev_entra;
use crate::guards::{admin_guard, deadline, host_guard, origin_guard, relay_user_guard};
use crate::health::{healthz, readyz};
use crate::http::{json_405, json_error, method_not_allowed};
use crate::relay::{redirect_probe, relay_ws};
use crate::speech::speech_ws;
use crate::state::{public_authority, AppState};
use crate::token_route::token_handler;

pub fn content_security_policy(settings: &Settings, local: SocketAddr) -> String {
    let connect = match &settings.mode {
        ModeSettings::Dev { .. } => format!("'self' ws://{}", public_authority(local)),
        ModeSettings::Key { region, .. } => regional_hosts(region),
        ModeSettings::Entra { target, .. } => match target {
            EntraTarget::ResourceId { region, .. } => regional_hosts(region),
            EntraTarget::Endpoint { endpoint, .. } => {
                let host = url::Url::parse(endpoint)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
                    .unwrap_or_default();
                format!("'self' wss://{host} https://{host}")
            }
        },
    };
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src {connect}; worker-src 'self' blob:; \
         style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
}

/// What the Speech SDK connects to for `region`, in the region's own cloud.
fn regional_hosts(region: &str) -> String {
    let speech = cloud_of(region).speech;
    format!("'self' wss://{region}.stt.{speech} https://{region}.stt.{speech} wss://{region}.tts.{speech}")
}

/// The token route's methods (README: "405 method-not-allowed | not GET/POST/OPTIONS").
const TOKEN_METHODS: HeaderValue = HeaderValue::from_static("GET, POST, OPTIONS");

/// Any other method on the token route, HEAD included.
async fn refuse_token_method() -> Response {
    method_not_allowed(Some(TOKEN_METHODS))
}

/// Any method but GET on a [`get_only`] route.
async fn refuse_all_but_get() -> Response {
    method_not_allowed(Some(HeaderValue::from_static("GET")))
}

/// `GET` and nothing else. axum's `get()` also answers HEAD, by running the GET handler and
/// dropping the body: on the token route that minted a token and spent rate-limit allowance for
/// nothing. The README names GET for these routes, so HEAD gets their 405 like any other method.
fn get_only<H, T, S>(handler: H) -> MethodRouter<S>
where
    H: Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    get(handler)
        .head(refuse_all_but_get)
        .fallback(refuse_all_but_get)
}

/// The broker's routes.
pub fn router(settings: &Settings, state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route(
            "/api/speech-token",
            get(token_handler)
                .post(token_handler)
                .options(|| async { StatusCode::NO_CONTENT })
                .head(refuse_token_method)
                .fallback(refuse_token_method),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            origin_guard,
        ))
        .with_state(Arc::clone(&state));

    let mut app = Router::new()
        .route("/healthz", get_only(healthz))
        .route("/readyz", get_only(readyz))
        .with_state(Arc::clone(&state))
        .merge(api);

    if let Some(dev) = &state.dev {
        let admin = Router::new()
            .route("/admin/ttl", post(admin_ttl))
            .route("/admin/outage", post(admin_outage))
            .route("/admin/slow", post(admin_slow))
            .route("/admin/fail", post(admin_fail))
            .route("/admin/speech", post(admin_speech))
            .route("/admin/stats", get_only(admin_stats))
            .route("/admin/reset", post(admin_reset))
            .with_state(Arc::clone(dev))
            .route_layer(middleware::from_fn_with_state(
                Arc::clone(&state),
                origin_guard,
            ))
            .route_layer(middleware::from_fn(admin_guard));
        let speech = Router::new()
            .route("/speech/{*rest}", any(speech_ws))
            .route("/stt/speech/{*rest}", any(speech_ws))
            .route("/tts/{*rest}", any(speech_ws))
            .route("/cognitiveservices/{*rest}", any(speech_ws))
            .with_state(Arc::clone(&dev.speech));
        app = app.merge(admin).merge(speech);
        if let Some(entra) = &dev.entra {
            let fake = Router::new()
                .route("/dev-entra/msal-config", get_only(dev_entra::msal_config))
                .route(
                    "/dev-entra/{tenant}/v2.0/.well-known/openid-configuration",
                    get_only(dev_entra::openid_configuration),
                )
                .route(
                    "/dev-entra/{tenant}/discovery/v2.0/keys",
                    get_only(dev_entra::keys),
                )
                .route(
                    "/dev-entra/{tenant}/oauth2/v2.0/token",
                    post(dev_entra::token),
                )
                .with_state(Arc::clone(entra))
                .route_layer(middleware::from_fn_with_state(
                    Arc::clone(&state),
                    origin_guard,
                ))
                .route_layer(middleware::from_fn(admin_guard));
            app = app.merge(fake);
        }
    }

    if let Some(relay) = &state.relay {
        let r = Router::new()
            .route("/relay/{*rest}", any(relay_ws))
            .with_state(Arc::clone(relay))
            .route_layer(middleware::from_fn_with_state(
                Arc::clone(&state),
                relay_user_guard,
            ));
        app = app.merge(r);
        if state.dev.is_none() {
            // dev serves its fake Speech service on these paths
            app = app
                .route("/speech/{*rest}", get_only(redirect_probe))
                .route("/stt/speech/{*rest}", get_only(redirect_probe))
                .route("/tts/{*rest}", get_only(redirect_probe));
        }
    }

    let csp = HeaderValue::from_str(&content_security_policy(settings, state.local))
        .expect("CSP is a header value");
    let mut statics: Router = Router::new();
    if let Some(p) = &settings.pkg {
        statics = statics.nest_service("/pkg", confined_dir(p));
    }
    if let Some(v) = &settings.vendor {
        statics = statics.nest_service("/vendor", confined_dir(v));
    }
    statics = match &settings.www {
        Some(w) => statics.fallback_service(confined_dir(w)),
        None => statics.fallback(|| async { json_error(StatusCode::NOT_FOUND, "not-found", None) }),
    };
    let statics = statics.layer(middleware::from_fn_with_state(csp, static_headers));

    app.fallback_service(statics)
        .layer(middleware::map_response(json_405))
        .layer(middleware::from_fn_with_state(
            (settings.limits.request_timeout, Arc::clone(&state)),
            deadline,
        ))
        .layer(middleware::from_fn_with_state(state, host_guard))
}

/// `dir` served as static files, confined ([`confine`]).
fn confined_dir(dir: &Path) -> Router {
    Router::new()
        .fallback_service(ServeDir::new(dir))
        .layer(middleware::from_fn_with_state(
            Arc::new(dir.to_path_buf()),
            confine,
        ))
}

/// Static files never include a dot-file or a dot-directory (`.env`, `.git/`, `.npmrc`) and
/// never leave their directory through a symlink: a `--www` pointed at a checkout or a build
/// folder must not publish what sits beside the page. Either is the same bare 404 as a file that
/// is not there (`ServeDir`'s), so an answer never tells whether something exists outside.
/// (`ServeDir` itself refuses `..` but serves dot-files and follows symlinks.) The directory
/// is resolved on every request, as `ServeDir` reads it: a release swap that repoints a
/// symlinked `--www` is judged against the tree that is served.
async fn confine(State(dir): State<Arc<PathBuf>>, req: Request, next: Next) -> Response {
    let not_found = || StatusCode::NOT_FOUND.into_response();
    let Ok(path) = percent_encoding::percent_decode_str(req.uri().path()).decode_utf8() else {
        return not_found();
    };
    let segments: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if segments
        .iter()
        .any(|s| s.starts_with('.') || s.contains('\\'))
    {
        return not_found();
    }
    let Ok(root) = tokio::fs::canonicalize(dir.as_path()).await else {
        return not_found();
    };
    // The path itself and, for a directory, the `index.html` served for it. A path that does
    // not resolve is left to `ServeDir` (its 404); one that resolves outside the directory is
    // refused here, a directory too (`ServeDir` would answer its existence with a redirect).
    let target = root.join(segments.join("/"));
    let index = tokio::fs::metadata(&target)
        .await
        .is_ok_and(|m| m.is_dir())
        .then(|| target.join("index.html"));
    for path in std::iter::once(target).chain(index) {
        if let Ok(real) = tokio::fs::canonicalize(&path).await {
            if !real.starts_with(&root) {
                return not_found();
            }
        }
    }
    next.run(req).await
}

/// Every static answer carries the CSP and friends; JS and wasm get exact content types.
async fn static_headers(State(csp): State<HeaderValue>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_ascii_lowercase();
    let mut resp = next.run(req).await;
    let ok = resp.status().is_success() || resp.status() == StatusCode::NOT_MODIFIED;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if ok {
        let ct = if path.ends_with(".wasm") {
            Some("application/wasm")
        } else if path.ends_with(".js") || path.ends_with(".mjs") {
            Some("text/javascript")
        } else {
            None
        };
        if let Some(ct) = ct {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Args;
    use clap::Parser;

    /// The page may connect to the Speech hosts of its region's own cloud (the SDK's
    /// `getHostSuffix`: `.azure.cn` for `china*`, `.azure.us` for `usgov*`).
    #[test]
    fn csp_names_the_speech_hosts_of_the_regions_cloud() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        for (region, host) in [
            ("westeurope", "westeurope.stt.speech.microsoft.com"),
            ("chinaeast2", "chinaeast2.stt.speech.azure.cn"),
            ("usgovvirginia", "usgovvirginia.stt.speech.azure.us"),
        ] {
            let argv = [
                "speech-token-broker",
                "--mode",
                "key",
                "--region",
                region,
                "--auth",
                "none",
                "--allow-host",
                "b.example",
            ];
            let settings = Settings::resolve(Args::try_parse_from(argv).unwrap(), &|k| {
                (k == "SPEECH_KEY").then(|| "k".to_string())
            })
            .unwrap();
            let csp = content_security_policy(&settings, local);
            assert!(csp.contains(&format!("wss://{host} ")), "{region}: {csp}");
            let tts = host.replace(".stt.", ".tts.");
            assert!(csp.contains(&format!("wss://{tts};")), "{region}: {csp}");
        }
    }
}
