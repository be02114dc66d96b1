//! Two request guards around the whole app:
//! - `pages`: a signed-out visitor asking for an app page is sent to the
//!   sign-in page (and `/` goes to the visitor's home);
//! - `same_origin`: a state-changing request authenticated by the session
//!   cookie must come from this site (its `Origin`, or failing that its
//!   `Referer`, names this host). Only `/api/v1` requests with a bearer
//!   token are exempt: the API then authenticates by that token alone, so
//!   no ambient credential is used. Any other `Authorization` header (or
//!   one on a server function, which authenticates by the cookie) is no
//!   exemption.

use axum::{
    extract::{Request, State},
    http::{header, Method},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use lockstep_core::{identity::accounts::Role, identity::session_auth};
use tower_sessions::Session;

use crate::{api_error::ApiError, state::AppState};

fn is_app_page(path: &str) -> bool {
    ["/admin", "/my"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

pub async fn pages(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if req.method() != Method::GET || !(path == "/" || is_app_page(path)) {
        return next.run(req).await;
    }
    let user = match req.extensions().get::<Session>() {
        // Only GETs get here: a page load renews the session.
        Some(session) => session_auth::session_user_renewing(&state.services.db, session, true)
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "reading the session failed");
                None
            }),
        None => None,
    };
    match (path, user) {
        ("/", Some(user)) if user.role == Role::Admin => Redirect::to("/admin").into_response(),
        ("/", Some(_)) => Redirect::to("/my").into_response(),
        (_, None) => {
            let wanted = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let next_param = if wanted == "/" {
                String::new()
            } else {
                format!("?next={}", urlencode(wanted))
            };
            Redirect::to(&format!("/login{next_param}")).into_response()
        }
        _ => next.run(req).await,
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `scheme://host[:port]` of a URL, lower-cased.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() {
        return None;
    }
    Some(format!(
        "{}://{}",
        scheme.to_lowercase(),
        authority.to_lowercase()
    ))
}

pub async fn same_origin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if safe || bearer_api_call(&req) {
        return next.run(req).await;
    }
    let headers = req.headers();
    let claimed = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok())
        .and_then(origin_of);
    let allowed = match (&state.public_origin, claimed.as_deref()) {
        (_, None) => false,
        (Some(public), Some(claimed)) => public == claimed,
        (None, Some(claimed)) => headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|host| {
                let host = host.to_lowercase();
                claimed == format!("http://{host}") || claimed == format!("https://{host}")
            }),
    };
    if allowed {
        next.run(req).await
    } else {
        tracing::info!(origin = ?claimed, path = %req.uri().path(), "cross-origin request refused");
        ApiError::CrossOrigin.into_response()
    }
}

/// An `/api/v1` (or `/broadcasting/auth`) request carrying
/// `Authorization: Bearer …`, which `Principal` then authenticates by the
/// token alone (never the cookie).
fn bearer_api_call(req: &Request) -> bool {
    (req.uri().path().starts_with("/api/") || req.uri().path() == "/broadcasting/auth")
        && req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer "))
}

/// The origin part of `LOCKSTEP_PUBLIC_URL`, if set and well-formed.
pub fn public_origin(url: Option<&str>) -> Option<String> {
    url.and_then(origin_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized() {
        assert_eq!(
            origin_of("HTTP://Example.com:8080/path?x").as_deref(),
            Some("http://example.com:8080")
        );
        assert_eq!(origin_of("null"), None);
        assert_eq!(origin_of("http://"), None);
    }

    #[test]
    fn app_pages_are_recognised() {
        assert!(is_app_page("/admin"));
        assert!(is_app_page("/admin/users"));
        assert!(is_app_page("/my"));
        assert!(!is_app_page("/mystery"));
        // `/app/{key}` is the hub's WebSocket, not a page.
        assert!(!is_app_page("/app/some-key"));
        assert!(!is_app_page("/login"));
    }

    #[test]
    fn next_param_is_encoded() {
        assert_eq!(urlencode("/admin?x=1&y"), "/admin%3Fx%3D1%26y");
    }
}
