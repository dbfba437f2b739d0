//! doorman's own web pages under `/ui/`: sign-in and the session's claims, a token debugger
//! (jwt.io's, without sending a production token to an outside site), the account's sessions
//! and the superuser's administration. Plain HTML, CSS and JavaScript from `web/`, built into
//! the binary; the pages call the JSON API like any other client.
//!
//! Every page answers with its own Content-Security-Policy (the edge keeps a response's own):
//! scripts, styles and connections from doorman itself only, no inline code, no framing. The
//! one value filled in at serve time is `data-token-cookies`, which tells the scripts where the
//! refresh token lives.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{MethodRouter, any};
use http::{HeaderValue, Method, Request, StatusCode, header};

use super::answer::finish;
use super::endpoint::{Endpoint, Listener};
use super::error::ApiError;
use crate::config::Config;
use crate::state::AppState;

/// Where the pages live; static files can't mount there, and the OpenAPI document, which
/// describes the JSON API, leaves it out.
pub const PREFIX: &str = "/ui/";

/// The policy of every page: nothing but doorman's own scripts, styles, images and API.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// How long a browser keeps a script or the style sheet before asking again (with its ETag):
/// short, so that after an upgrade the pages and their scripts agree again within minutes.
const ASSET_MAX_AGE_SECS: u32 = 300;

/// What the served HTML carries in place of the token keeping mode.
const TOKEN_COOKIES_SLOT: &str = "data-token-cookies=\"off\"";

/// One file of the pages, as built into the binary.
struct File {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

impl File {
    fn is_page(&self) -> bool {
        self.content_type == HTML
    }
}

const fn file(path: &'static str, content_type: &'static str, body: &'static str) -> File {
    File {
        path,
        content_type,
        body,
    }
}

/// The pages come first in [`FILES`]; the scripts, style sheet and icon after them share one
/// metrics label.
const PAGE_COUNT: usize = 4;
const ASSETS_LABEL: &str = "/ui/static/";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Every file, pages first.
const FILES: [File; 11] = [
    file("/ui/", HTML, include_str!("../../../../web/index.html")),
    file(
        "/ui/debugger/",
        HTML,
        include_str!("../../../../web/debugger.html"),
    ),
    file(
        "/ui/account/",
        HTML,
        include_str!("../../../../web/account.html"),
    ),
    file(
        "/ui/admin/",
        HTML,
        include_str!("../../../../web/admin.html"),
    ),
    file(
        "/ui/static/pages.css",
        CSS,
        include_str!("../../../../web/pages.css"),
    ),
    file(
        "/ui/static/common.js",
        JS,
        include_str!("../../../../web/common.js"),
    ),
    file(
        "/ui/static/session.js",
        JS,
        include_str!("../../../../web/session.js"),
    ),
    file(
        "/ui/static/debugger.js",
        JS,
        include_str!("../../../../web/debugger.js"),
    ),
    file(
        "/ui/static/account.js",
        JS,
        include_str!("../../../../web/account.js"),
    ),
    file(
        "/ui/static/admin.js",
        JS,
        include_str!("../../../../web/admin.js"),
    ),
    file(
        "/ui/static/icon.svg",
        SVG,
        include_str!("../../../../web/icon.svg"),
    ),
];

const fn endpoint(index: usize) -> Endpoint {
    let path = FILES[index].path;
    Endpoint {
        path,
        allow: "GET, HEAD",
        metadata: None,
        metrics_label: if index < PAGE_COUNT {
            path
        } else {
            ASSETS_LABEL
        },
        listener: Listener::Api,
        compressed: true,
        budget: super::endpoint::Budget::General,
        enabled,
        handler: route,
    }
}

pub const ENDPOINTS: &[Endpoint] = &[
    endpoint(0),
    endpoint(1),
    endpoint(2),
    endpoint(3),
    endpoint(4),
    endpoint(5),
    endpoint(6),
    endpoint(7),
    endpoint(8),
    endpoint(9),
    endpoint(10),
];

fn enabled(config: &Config) -> bool {
    config.pages.web_pages
}

fn route(endpoint: &'static Endpoint) -> MethodRouter<AppState> {
    any(move |state, request| serve(state, request, endpoint))
}

/// Whether the refresh token lives in an HttpOnly cookie, out of the scripts' reach
/// (`token_cookies`).
fn token_cookies(config: &Config) -> bool {
    config.cookies.enabled
}

async fn serve(
    State(state): State<AppState>,
    request: Request<Body>,
    endpoint: &'static Endpoint,
) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let error = ApiError::MethodNotAllowed(request.method().as_str().to_owned());
        return finish(Err(error), None, endpoint.allow, "");
    }
    let Some(file) = FILES.iter().find(|f| f.path == endpoint.path) else {
        return finish(Err(ApiError::NotFound), None, endpoint.allow, "");
    };
    if file.is_page() {
        page(file, token_cookies(&state.config))
    } else {
        asset(file, &request)
    }
}

/// A page: never cached (it tells the scripts the token keeping mode, which a restart may
/// change), with its own policy.
fn page(file: &File, token_cookies: bool) -> Response {
    let mut response = Response::new(Body::from(html(file, token_cookies)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(HTML));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    // The pages' own requests are same-origin: they may say where they come from (an `Origin`
    // on their POSTs, which the cookie mode's CSRF check needs); other sites learn nothing.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A page's HTML with the token keeping mode filled in.
fn html(file: &File, token_cookies: bool) -> String {
    if token_cookies {
        file.body
            .replacen(TOKEN_COOKIES_SLOT, "data-token-cookies=\"on\"", 1)
    } else {
        file.body.to_owned()
    }
}

/// A script, the style sheet or the icon: cached briefly, revalidated by its ETag.
fn asset(file: &File, request: &Request<Body>) -> Response {
    let tag = etag(file.body.as_bytes());
    let unchanged = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == tag.trim_start_matches("W/") || t == "*")
        });
    let mut response = if unchanged {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(Body::from(file.body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(file.content_type),
        );
        response
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={ASSET_MAX_AGE_SECS}")) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    response
}

/// A weak validator (the answer may be compressed on the way out): FNV-1a of the file, which
/// only has to change when the file does.
fn etag(body: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in body {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("W/\"{hash:016x}\"")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    /// Each page's tags, as a browser's tokenizer would see their names and attributes.
    fn tags(html: &str) -> Vec<(String, String)> {
        let mut found = Vec::new();
        let mut rest = html;
        while let Some(start) = rest.find('<') {
            rest = &rest[start + 1..];
            if rest.starts_with("!--") {
                let end = rest.find("-->").unwrap();
                rest = &rest[end + 3..];
                continue;
            }
            let end = rest.find('>').unwrap();
            let inside = &rest[..end];
            let name: String = inside
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '/' || *c == '!')
                .collect();
            found.push((name.to_ascii_lowercase(), inside.to_owned()));
            rest = &rest[end + 1..];
        }
        found
    }

    fn pages() -> impl Iterator<Item = &'static File> {
        FILES.iter().filter(|f| f.is_page())
    }

    #[test]
    fn no_inline_script_or_style_anywhere() {
        for page in pages() {
            let tags = tags(page.body);
            assert!(!tags.is_empty(), "{}", page.path);
            for (name, inside) in &tags {
                let lower = inside.to_ascii_lowercase();
                if name == "script" {
                    assert!(
                        lower.contains(" src=\"/ui/static/") && lower.contains("type=\"module\""),
                        "{}: a script that isn't one of doorman's modules: <{inside}>",
                        page.path
                    );
                }
                assert_ne!(name, "style", "{}: a <style> element", page.path);
                assert!(
                    !lower.contains(" style="),
                    "{}: an inline style: <{inside}>",
                    page.path
                );
                assert!(
                    !lower.split_whitespace().any(|a| a.starts_with("on")),
                    "{}: an inline event handler: <{inside}>",
                    page.path
                );
                assert!(
                    !lower.contains("javascript:"),
                    "{}: a javascript: URL",
                    page.path
                );
            }
            // Nothing between a script's tags: the code is all in the module it names.
            for part in page.body.split("<script").skip(1) {
                let closed = part.split_once('>').unwrap().1;
                assert!(closed.starts_with("</script>"), "{}", page.path);
            }
        }
    }

    #[test]
    fn every_page_is_for_phones_and_says_its_mode_once() {
        for page in pages() {
            let body = page.body;
            assert!(
                body.contains(
                    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                ),
                "{}",
                page.path
            );
            assert_eq!(body.matches(TOKEN_COOKIES_SLOT).count(), 1, "{}", page.path);
            assert!(body.contains("role=\"alert\""), "{}", page.path);
            assert!(body.starts_with("<!doctype html>"), "{}", page.path);
        }
    }

    #[test]
    fn the_mode_is_filled_in_and_nothing_else_changes() {
        for file in pages() {
            let on = html(file, true);
            assert!(on.contains("data-token-cookies=\"on\""), "{}", file.path);
            assert_eq!(on.replace("\"on\"", "\"off\""), file.body, "{}", file.path);
            assert_eq!(html(file, false), file.body);
            let answer = page(file, true);
            assert_eq!(answer.headers()["content-security-policy"], PAGE_CSP);
            assert_eq!(answer.headers()["cache-control"], "no-store");
        }
    }

    #[test]
    fn every_file_is_served_by_its_declaration() {
        assert_eq!(ENDPOINTS.len(), FILES.len());
        for (index, (endpoint, file)) in ENDPOINTS.iter().zip(FILES.iter()).enumerate() {
            assert_eq!(endpoint.path, file.path);
            assert!(endpoint.path.starts_with(PREFIX));
            assert_eq!(file.is_page(), index < PAGE_COUNT, "{}", file.path);
            assert_eq!(file.is_page(), !file.path.starts_with(ASSETS_LABEL));
        }
        let paths: Vec<&str> = FILES.iter().map(|f| f.path).collect();
        // Each page and script names only files that are served.
        for file in &FILES {
            for reference in file.body.split("/ui/static/").skip(1) {
                let name: String = reference
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                    .collect();
                let path = format!("/ui/static/{name}");
                assert!(
                    paths.contains(&path.as_str()),
                    "{} names {path}, which isn't served",
                    file.path
                );
            }
        }
    }

    #[test]
    fn etags_follow_the_content() {
        assert_eq!(etag(b"a"), etag(b"a"));
        assert_ne!(etag(b"a"), etag(b"b"));
        assert!(etag(b"").starts_with("W/\""));
    }
}
