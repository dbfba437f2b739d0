//! DRF's `DefaultContentNegotiation.select_renderer` with only `JSONRenderer` configured, as in
//! the reference app: which Accept headers get JSON (and with what indent) and which get 406.

use http::HeaderValue;

use super::DrfError;
use super::charset::{Charset, latin1};
use super::form;
use super::media_type::{MediaType, parse_header_parameters};
use super::python;

/// DRF reads no more of the Accept header than this...
const MAX_ACCEPT_LENGTH: usize = 8192;
/// ...nor more media types than this...
const MAX_ACCEPT_TOKENS: usize = 64;
/// ...and skips media types longer than this.
const MAX_MEDIA_TYPE_LENGTH: usize = 256;

const JSON: &str = "application/json";

/// Negotiates the response for `Accept` (absent means `*/*`). Returns the indent that
/// `application/json; indent=N` asks for (clamped to 1..=8; 0 means none), or 406.
pub fn negotiate(accept: Option<&HeaderValue>) -> Result<Option<usize>, DrfError> {
    match accept.map(HeaderValue::as_bytes) {
        // What nearly every API client sends (or nothing): JSON, no indent. Settled here
        // without parsing, as it comes on every request.
        None | Some(COMMON_ANYTHING | COMMON_JSON) => Ok(None),
        Some(header) => negotiate_header(&latin1(header)),
    }
}

/// `Accept: */*`, as curl, requests and most HTTP libraries send it.
const COMMON_ANYTHING: &[u8] = b"*/*";
/// `Accept: application/json`, as API clients set it.
const COMMON_JSON: &[u8] = JSON.as_bytes();

fn negotiate_header(header: &str) -> Result<Option<usize>, DrfError> {
    let renderer = MediaType::parse(JSON);
    let accepted: Vec<MediaType> = accept_list(header)
        .iter()
        .map(|token| MediaType::parse(token))
        .collect();
    // Most specific first; DRF's buckets are sets, this keeps header order within one.
    let chosen = (0..=3u8)
        .rev()
        .flat_map(|precedence| {
            accepted
                .iter()
                .filter(move |m| m.precedence() == precedence)
        })
        .find(|media| renderer.satisfies(media))
        .ok_or(DrfError::NotAcceptable)?;
    let accepted_media_type = if renderer.precedence() > chosen.precedence() {
        // `*/*; indent=4` is answered as `application/json;indent=4`.
        std::iter::once(JSON.to_owned())
            .chain(chosen.params.iter().map(|(k, v)| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(";")
    } else {
        chosen.orig.clone()
    };
    Ok(indent(&accepted_media_type))
}

/// `get_accept_list`: comma-separated tokens, trimmed, empty and over-long ones skipped.
fn accept_list(header: &str) -> Vec<String> {
    let header: String = if header.chars().count() > MAX_ACCEPT_LENGTH {
        // Cut at the last comma within the limit so that no media type is read truncated.
        let prefix: String = header.chars().take(MAX_ACCEPT_LENGTH).collect();
        match prefix.rfind(',') {
            Some(cut) => prefix[..=cut].to_owned(),
            None => String::new(),
        }
    } else {
        header.to_owned()
    };
    header
        .split(',')
        .map(python::strip)
        .filter(|token| !token.is_empty() && token.chars().count() <= MAX_MEDIA_TYPE_LENGTH)
        .take(MAX_ACCEPT_TOKENS)
        .map(str::to_owned)
        .collect()
}

/// `JSONRenderer.get_indent`: `int(params['indent'])` clamped to 0..=8, 0 meaning none.
fn indent(accepted_media_type: &str) -> Option<usize> {
    let (_, params) = parse_header_parameters(accepted_media_type).unwrap_or_default();
    let n = python::int_value(params.get("indent")?)?.clamp(0, 8);
    usize::try_from(n).ok().filter(|n| *n > 0)
}

/// DRF's `?format=` override: a format other than `json` has no renderer here, which DRF
/// answers with 404.
pub fn format_override(query: Option<&str>) -> Result<(), DrfError> {
    let Some(query) = query else {
        return Ok(());
    };
    let pairs = form::parse(query.as_bytes(), Charset::Utf8)
        .map_err(|_| DrfError::ParseError(form::TOO_MANY_FIELDS.into()))?;
    let format = pairs
        .into_iter()
        .rev()
        .find(|(name, _)| name == "format")
        .map(|(_, value)| value);
    match format {
        Some(format) if !format.is_empty() && format != "json" => Err(DrfError::NotFound),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn with(accept: &str) -> Result<Option<usize>, DrfError> {
        negotiate(Some(&HeaderValue::from_str(accept).unwrap()))
    }

    /// DRF's limits on the Accept header, from its source (gunicorn refuses header lines over
    /// 8190 bytes, so the reference app never gets this far with the longest ones).
    #[test]
    fn accept_limits() {
        let many = |n: usize| format!("{}application/json", "text/plain,".repeat(n));
        assert_eq!(with(&many(63)).unwrap(), None);
        assert!(matches!(with(&many(64)), Err(DrfError::NotAcceptable)));
        let long_token = format!("application/json; x=\"{}\"", "y".repeat(240));
        assert!(matches!(with(&long_token), Err(DrfError::NotAcceptable)));
        assert_eq!(
            with(&format!("{long_token}, */*; indent=3")).unwrap(),
            Some(3)
        );
        // Past 8192 characters the header is cut at the last comma before the limit.
        let padded = |n: usize| format!("{},application/json", "a".repeat(n));
        assert_eq!(with(&padded(8175)).unwrap(), None);
        assert!(matches!(with(&padded(8191)), Err(DrfError::NotAcceptable)));
        assert_eq!(
            with(&format!("*/*;indent=2,{}", "a,".repeat(4100))).unwrap(),
            Some(2)
        );
    }

    #[test]
    fn missing_accept_is_anything() {
        assert_eq!(negotiate(None).unwrap(), None);
        // The headers settled without parsing get what the parse gives them.
        for common in ["*/*", "application/json"] {
            assert_eq!(with(common).unwrap(), None);
            assert_eq!(negotiate_header(common).unwrap(), None);
        }
        assert_eq!(with("*/*; indent=4").unwrap(), Some(4));
        assert!(matches!(with("*/**"), Err(DrfError::NotAcceptable)));
        assert!(format_override(None).is_ok());
        assert!(matches!(
            format_override(Some("format=api")),
            Err(DrfError::NotFound)
        ));
    }
}
