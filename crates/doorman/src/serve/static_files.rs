//! Static files (Django's STATIC_ROOT / STATIC_URL, nginx's job in front of Django): a
//! directory served under a URL prefix.

use std::path::PathBuf;

use axum::response::IntoResponse;
use http::{HeaderValue, header};
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::api::ApiError;

/// A directory served under a URL prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticFiles {
    pub root: PathBuf,
    /// Like `/static/`: starts and ends with a slash.
    pub url: String,
    pub cache_control: String,
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
