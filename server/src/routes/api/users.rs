//! `/users/{id}`: one account of the caller's tenant, and its edits under
//! the version guard (admin).

use axum::{
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
    Json,
};
use lockstep_core::{
    identity::{accounts, tokens::Ability},
    records::{self, UserEdit},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::records::{etag, if_match};
use crate::{
    api_error::{ApiError, ApiJson, ApiPath, ErrorBody},
    principal::Principal,
    state::AppState,
};

/// An account as its tenant's admins see it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AccountBody {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    /// `admin` or `user`.
    pub role: String,
    pub disabled: bool,
    /// What an edit's `If-Match` names.
    pub version: i64,
}

impl From<accounts::Account> for AccountBody {
    fn from(a: accounts::Account) -> Self {
        AccountBody {
            id: a.user.id,
            email: a.user.email,
            name: a.user.name,
            role: a.user.role.to_string(),
            disabled: a.disabled_at.is_some(),
            version: a.version,
        }
    }
}

fn answer(account: accounts::Account) -> Response {
    ([etag(account.version)], Json(AccountBody::from(account))).into_response()
}

/// One account of the caller's tenant (admin, `user.read`), with its `ETag`.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "me", params(("id" = Uuid, Path)),
    responses((status = 200, body = AccountBody, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_user(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let user = principal.require(Ability::UserRead)?;
    let account = accounts::find_account(&state.services.db, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(answer(account))
}

/// An edit of an account: only the fields sent change.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditUserBody {
    pub name: Option<String>,
    /// `admin` or `user`.
    pub role: Option<String>,
    pub disabled: Option<bool>,
}

/// Edits an account's name, role or disabled flag (admin, `user.write`)
/// under `If-Match`, as `PATCH /locker-banks/{id}`. An admin cannot
/// change their own role or disable themselves (422).
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "me", params(("id" = Uuid, Path),
        ("If-Match" = String, Header, description = "the version edited, as its ETag gave it: \"3\"")),
    request_body = EditUserBody,
    responses((status = 200, body = AccountBody, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 428, body = ErrorBody)))]
pub async fn edit_user(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EditUserBody>,
) -> Result<Response, ApiError> {
    principal.require(Ability::UserWrite)?;
    let version = if_match(&headers)?;
    let edit = UserEdit {
        name: body.name,
        role: body.role.as_deref().map(str::parse).transpose()?,
        disabled: body.disabled,
    };
    let account =
        records::edit_user(&state.services, &principal.caller(), id, version, edit).await?;
    Ok(answer(account))
}
