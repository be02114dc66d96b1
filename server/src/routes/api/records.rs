//! The version guard over HTTP: `ETag: "<version>"` on an editable record,
//! `If-Match` required on its edits (428 without it, 409 when stale), and
//! `GET /records/{type}/{id}/version` for editors that poll.

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use lockstep_core::{
    identity::tokens::Ability,
    records::{self, RecordType, RecordVersion},
};
use uuid::Uuid;

use crate::{
    api_error::{ApiError, ApiPath, ErrorBody},
    principal::Principal,
    state::AppState,
};

/// The version an edit was made on, from `If-Match: "<version>"` (a weak
/// `W/"<version>"` is taken too). Absent, or `*` (which would skip the
/// guard): 428. Not a version: 400.
pub fn if_match(headers: &HeaderMap) -> Result<i64, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Err(ApiError::VersionRequired);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::BadRequest("If-Match is not text".into()))?
        .trim();
    if text == "*" {
        return Err(ApiError::VersionRequired);
    }
    let tag = text.strip_prefix("W/").unwrap_or(text);
    tag.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|t| t.parse::<i64>().ok())
        .filter(|v| *v >= 1)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "If-Match must be one version as the ETag gave it (\"3\"), not {:?}",
                text.chars().take(40).collect::<String>()
            ))
        })
}

/// `ETag: "<version>"`.
pub fn etag(version: i64) -> (header::HeaderName, HeaderValue) {
    (
        header::ETAG,
        HeaderValue::from_str(&format!("\"{version}\""))
            .unwrap_or(HeaderValue::from_static("\"0\"")),
    )
}

/// A record's current version and last edit (admin, `locker.read`), for
/// an editor without a socket to poll.
#[utoipa::path(get, path = "/api/v1/records/{type}/{id}/version", tag = "records",
    params(("type" = RecordType, Path), ("id" = Uuid, Path)),
    responses((status = 200, body = RecordVersion, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn version(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((record_type, id)): ApiPath<(RecordType, Uuid)>,
) -> Result<Response, ApiError> {
    let user = principal.require(Ability::LockerRead)?;
    if !principal.caller().is_admin() {
        return Err(ApiError::Forbidden("records are for administrators"));
    }
    let v = records::record_version(&state.services, user.tenant_id, record_type, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(([etag(v.version)], Json(v)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::IF_MATCH, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn if_match_takes_one_version_and_nothing_else() {
        assert_eq!(if_match(&with("\"3\"")).ok(), Some(3));
        assert_eq!(if_match(&with("W/\"12\"")).ok(), Some(12));
        assert!(matches!(
            if_match(&HeaderMap::new()),
            Err(ApiError::VersionRequired)
        ));
        assert!(matches!(
            if_match(&with("*")),
            Err(ApiError::VersionRequired)
        ));
        for bad in ["3", "\"x\"", "\"0\"", "\"-1\"", "\"3\", \"4\"", "\"\""] {
            assert!(
                matches!(if_match(&with(bad)), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
    }
}
