//! Static files (Django's STATIC_ROOT / STATIC_URL, nginx's job in front of Django): their
//! settings and the service that serves a directory under a URL prefix.

use std::path::PathBuf;

use axum::response::IntoResponse;
use http::{HeaderValue, header};
use serde::Deserialize;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::api::error::ApiError;
use crate::config::source::{ConfigError, Sources};

/// The static files settings as the layers give them.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct StaticSettings {
    static_root: Option<PathBuf>,
    static_url: String,
    static_cache_control: String,
}

impl Default for StaticSettings {
    fn default() -> Self {
        StaticSettings {
            static_root: None,
            static_url: "/static/".to_owned(),
            static_cache_control: "public, max-age=3600".to_owned(),
        }
    }
}

impl StaticSettings {
    /// The directory to serve, when `static_root` is set.
    pub fn validate(self, src: &Sources) -> Result<Option<StaticFiles>, ConfigError> {
        let Some(root) = self.static_root else {
            return Ok(None);
        };
        if !root.is_dir() {
            return Err(src.fail(
                "static_root",
                format!("{} is not a directory", root.display()),
            ));
        }
        let url = self.static_url;
        let url_setting = src.named("static_url");
        let shaped = url.starts_with('/') && url.ends_with('/') && url.len() > 1;
        if !shaped || !url.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad_url(&url_setting, &url));
        }
        if http::HeaderValue::from_str(&self.static_cache_control).is_err() {
            return Err(src.fail("static_cache_control", "expected a header value"));
        }
        Ok(Some(StaticFiles {
            root,
            url,
            url_setting,
            cache_control: self.static_cache_control,
        }))
    }
}

fn bad_url(setting: &str, url: &str) -> ConfigError {
    ConfigError(format!(
        "{setting}: expected a prefix like /static/ that no doorman route uses, got {url:?}"
    ))
}

/// A directory served under a URL prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticFiles {
    pub root: PathBuf,
    /// Like `/static/`: starts and ends with a slash.
    pub url: String,
    /// Where `static_url` came from, for the error when it collides with a route.
    pub url_setting: String,
    pub cache_control: String,
}

impl StaticFiles {
    /// Refuses a `static_url` that falls under, or contains, one of doorman's own route
    /// prefixes (the router derives them from its endpoints).
    pub fn check_prefixes(&self, reserved: &[String]) -> Result<(), ConfigError> {
        let url = self.url.as_str();
        if reserved
            .iter()
            .any(|r| url.starts_with(r.as_str()) || r.starts_with(url))
        {
            return Err(bad_url(&self.url_setting, url));
        }
        Ok(())
    }
}

/// The static files service (nginx's job): ETag and Last-Modified revalidation, Range,
/// precompressed `.br`/`.gz` siblings by Accept-Encoding, MIME types, the configured
/// Cache-Control; no directory listing or index pages, no path traversal, JSON 404s.
pub fn service(files: &StaticFiles) -> axum::routing::MethodRouter {
    use tower_http::services::ServeDir;
    let not_found = tower::service_fn(|_request: axum::extract::Request| async {
        Ok::<_, std::convert::Infallible>(ApiError::NotFound.into_response())
    });
    let serve = ServeDir::new(&files.root)
        .append_index_html_on_directories(false)
        .precompressed_br()
        .precompressed_gzip()
        .fallback(not_found);
    let cache_control =
        HeaderValue::from_str(&files.cache_control).unwrap_or(HeaderValue::from_static("no-cache"));
    axum::routing::get_service(
        ServiceBuilder::new()
            .layer(super::compression())
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                cache_control,
            ))
            .service(serve),
    )
}
