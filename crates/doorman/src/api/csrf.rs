//! Cross-site request forgery protection for the cookie mode: a state-changing request that a
//! cookie authenticates must say, in `Origin`, that it comes from a trusted origin.
//!
//! Why the `Origin` header and not a double-submit token: every browser sends `Origin` on every
//! `POST` (cross-site or not, `fetch` or form), a page can't forge or remove it, and checking
//! it needs no state, no second cookie readable by scripts (which the HttpOnly cookies exist to
//! avoid) and no token for the application to thread through its requests. Django checks it
//! the same way first (`CsrfViewMiddleware._origin_verified`); a request without it is
//! refused here rather than falling back to a token, since only non-browser clients omit it and
//! they can send the token in the body instead of relying on a cookie.
//!
//! tower-http's `CsrfLayer` was not used: it guards a whole route whatever authenticates the
//! request, and lets a request without `Origin` through, while here only a request that a
//! cookie authenticates is checked, and then `Origin` is required.
//!
//! A leaf: the comparison only. Which origins are trusted, and whether the client used https,
//! the cookie mode (`api::cookies`) finds out.

use http::{HeaderMap, header};

/// A web origin, `scheme://host[:port]`: the scheme and host lowercased and a default port
/// dropped, as browsers serialise the `Origin` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    https: bool,
    host: String,
    port: Option<u16>,
}

impl Origin {
    /// An `http` or `https` origin without user info, path, query or fragment; `None` for
    /// anything else (`null` included).
    pub fn parse(text: &str) -> Option<Origin> {
        let (scheme, rest) = text.split_once("://")?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return None;
        }
        Origin::at(https, rest)
    }

    /// The origin of `authority` (a `Host` header's `host[:port]`) reached over `https` or not.
    fn at(https: bool, authority: &str) -> Option<Origin> {
        let parsed: http::uri::Authority = authority.parse().ok()?;
        if parsed.as_str() != authority || parsed.host().is_empty() || authority.contains('@') {
            return None;
        }
        let default = if https { 443 } else { 80 };
        Some(Origin {
            https,
            host: parsed.host().to_ascii_lowercase(),
            port: parsed.port_u16().filter(|port| *port != default),
        })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        match self.port {
            Some(port) => write!(f, "{scheme}://{}:{port}", self.host),
            None => write!(f, "{scheme}://{}", self.host),
        }
    }
}

/// Why a request failed the check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CsrfRefusal {
    /// No `Origin` header.
    OriginMissing,
    /// An `Origin` (as sent) that is not a trusted origin; `null` among them.
    OriginUntrusted(String),
}

/// Refuses a request unless its `Origin` is doorman's own origin as the client reached it
/// (its `Host`, or HTTP/2's `:authority`, over `https` or not) or one of `trusted`.
pub fn check(
    headers: &HeaderMap,
    authority: Option<&http::uri::Authority>,
    https: bool,
    trusted: impl Iterator<Item = Origin>,
) -> Result<(), CsrfRefusal> {
    let own = own_origin(headers, authority, https);
    verify_origin(headers, own.into_iter().chain(trusted))
}

/// The one comparison: the request's only `Origin` header must equal one of `trusted`.
fn verify_origin(
    headers: &HeaderMap,
    mut trusted: impl Iterator<Item = Origin>,
) -> Result<(), CsrfRefusal> {
    let mut sent = headers.get_all(header::ORIGIN).iter();
    let Some(first) = sent.next() else {
        return Err(CsrfRefusal::OriginMissing);
    };
    let text = String::from_utf8_lossy(first.as_bytes()).into_owned();
    // Two `Origin` headers are no browser's: which one to believe is not for us to guess.
    let origin = match sent.next() {
        None => Origin::parse(&text),
        Some(_) => None,
    };
    match origin {
        Some(origin) if trusted.any(|t| t == origin) => Ok(()),
        _ => Err(CsrfRefusal::OriginUntrusted(text)),
    }
}

/// doorman's own origin as this request reached it: its `Host` (or HTTP/2's `:authority`),
/// over https when doorman serves TLS or a trusted proxy said the client used https.
fn own_origin(
    headers: &HeaderMap,
    authority: Option<&http::uri::Authority>,
    https: bool,
) -> Option<Origin> {
    let host = match headers.get(header::HOST) {
        Some(host) => host.to_str().ok()?,
        None => authority?.as_str(),
    };
    Origin::at(https, host)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn origins(list: &[&str]) -> Vec<Origin> {
        list.iter().map(|o| Origin::parse(o).unwrap()).collect()
    }

    fn with_origins(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::ORIGIN, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn origins_are_compared_as_browsers_serialise_them() {
        let trusted = origins(&["https://App.Example.com:443", "http://localhost:3000"]);
        assert_eq!(trusted[0].to_string(), "https://app.example.com");
        for good in [
            "https://app.example.com",
            "https://app.example.com:443",
            "HTTPS://APP.EXAMPLE.COM",
            "http://localhost:3000",
        ] {
            let headers = with_origins(&[good.as_bytes()]);
            assert_eq!(
                verify_origin(&headers, trusted.iter().cloned()),
                Ok(()),
                "{good}"
            );
        }
        for bad in [
            "https://evil.example",
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://app.example.com.evil.example",
            "https://app.example.com/",
            "http://localhost:3001",
            "null",
            "",
            "https://user@app.example.com",
        ] {
            let headers = with_origins(&[bad.as_bytes()]);
            assert_eq!(
                verify_origin(&headers, trusted.iter().cloned()),
                Err(CsrfRefusal::OriginUntrusted(bad.to_owned())),
                "{bad}"
            );
        }
        assert_eq!(
            verify_origin(&HeaderMap::new(), trusted.iter().cloned()),
            Err(CsrfRefusal::OriginMissing)
        );
        // Two headers, even both trusted, and bytes that are not text.
        let twice = with_origins(&[b"https://app.example.com", b"https://app.example.com"]);
        assert!(verify_origin(&twice, trusted.iter().cloned()).is_err());
        let bytes = with_origins(&[b"https://\xffapp.example.com"]);
        assert!(verify_origin(&bytes, trusted.iter().cloned()).is_err());
    }

    #[test]
    fn the_own_origin_is_trusted_with_the_scheme_the_client_used() {
        let mut headers = with_origins(&[b"https://auth.example.com"]);
        headers.insert(header::HOST, HeaderValue::from_static("auth.example.com"));
        assert_eq!(check(&headers, None, true, std::iter::empty()), Ok(()));
        assert!(check(&headers, None, false, std::iter::empty()).is_err());
        let listed = origins(&["https://auth.example.com"]);
        assert_eq!(check(&headers, None, false, listed.into_iter()), Ok(()));
    }

    #[test]
    fn own_origin_follows_the_host_and_the_scheme() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HOST,
            HeaderValue::from_static("Auth.Example.com:443"),
        );
        assert_eq!(
            own_origin(&headers, None, true).unwrap().to_string(),
            "https://auth.example.com"
        );
        assert_eq!(
            own_origin(&headers, None, false).unwrap().to_string(),
            "http://auth.example.com:443"
        );
        let h2: http::uri::Authority = "[::1]:8000".parse().unwrap();
        assert_eq!(
            own_origin(&HeaderMap::new(), Some(&h2), false)
                .unwrap()
                .to_string(),
            "http://[::1]:8000"
        );
        headers.insert(header::HOST, HeaderValue::from_static("a@b"));
        assert_eq!(own_origin(&headers, None, true), None);
        assert_eq!(own_origin(&HeaderMap::new(), None, true), None);
    }
}
