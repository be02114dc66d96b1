//! `Cache-Control` on what the server sends: the site's hashed assets
//! (`/pkg/…`, served precompressed) are immutable for a year, the other
//! static files (icons, the manifest) are kept an hour, pages are
//! revalidated on every visit (they are per user), and API answers are
//! left as their handlers set them.

use axum::{
    extract::Request,
    http::{header, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::Response,
};

/// Hashed asset names change with their content.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Assets whose names do not change (a build without hashed names).
pub const SHORT: &str = "public, max-age=300";
/// Icons, the manifest, the favicon.
pub const STATIC: &str = "public, max-age=3600";
/// Pages: personal, and always fresh.
pub const PAGE: &str = "private, no-cache";

/// Paths whose answers are not files (their handlers decide).
fn dynamic(path: &str) -> bool {
    [
        "/api/",
        "/sfn/",
        "/broadcasting/",
        "/apps/",
        "/metrics",
        "/healthz",
        "/readyz",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

pub async fn headers(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    let mut response = next.run(req).await;
    if response.headers().contains_key(header::CACHE_CONTROL) || !get {
        return response;
    }
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let value = if html {
        Some(PAGE)
    } else if response.status() == StatusCode::OK && !dynamic(&path) {
        Some(STATIC)
    } else {
        None
    };
    if let Some(v) = value {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(v));
    }
    response
}
