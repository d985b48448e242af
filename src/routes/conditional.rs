//! Conditional GETs: `If-None-Match` read as RFC 9110 (13.1.2) asks, with weak comparison
//! (`W/"x"` matches `"x"`: proxies that recompress a response mark its tag weak), over every
//! header line, `*` matching anything; and small JSON documents (TileJSON, styles) answered
//! with an `ETag` of their content, or 304 when the client's copy is current; and the
//! preconditions of a write (`If-Match`, `If-None-Match`) as the fence registry checks them.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::fence_registry::Expected;

/// Whether `If-None-Match` names a tag that `current` accepts (or `*`).
pub fn client_has(headers: &HeaderMap, current: impl Fn(&[u8]) -> bool) -> bool {
    headers.get_all(header::IF_NONE_MATCH).iter().any(|tags| {
        tags.as_bytes()
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .map(|tag| tag.strip_prefix(b"W/").unwrap_or(tag))
            .any(|tag| tag == b"*" || current(tag))
    })
}

/// A JSON document that clients revalidate (`Cache-Control: public, no-cache`), with a strong
/// `ETag` of its bytes; 304 without a body when `If-None-Match` names it.
pub fn json_document(headers: &HeaderMap, body: Vec<u8>) -> Response {
    let tag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&body));
    let etag = HeaderValue::try_from(tag).unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    let cache = (
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, no-cache"),
    );
    if client_has(headers, |t| t == etag.as_bytes()) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag), cache]).into_response();
    }
    let content_type = (header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    ([(header::ETAG, etag), cache, content_type], body).into_response()
}

/// The `If-Match` and `If-None-Match` of a write (absent headers ask nothing). A tag that is
/// not ASCII is kept as it is and matches nothing, so the write is refused, not let through.
pub fn expected(headers: &HeaderMap) -> Expected {
    let tags = |name: HeaderName| {
        let mut values = headers.get_all(name).iter().peekable();
        values.peek()?;
        Some(
            values
                .flat_map(|v| {
                    String::from_utf8_lossy(v.as_bytes())
                        .split(',')
                        .map(|tag| tag.trim().to_owned())
                        .filter(|tag| !tag.is_empty())
                        .collect::<Vec<_>>()
                })
                .collect(),
        )
    };
    Expected {
        if_match: tags(header::IF_MATCH),
        if_none_match: tags(header::IF_NONE_MATCH),
    }
}

/// The `ETag` header of a stored version.
pub fn etag(version: &str) -> (HeaderName, HeaderValue) {
    let value = HeaderValue::try_from(crate::fence_registry::entity_tag(version))
        .unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    (header::ETAG, value)
}
