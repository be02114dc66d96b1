//! `/tokens`: the caller's API tokens (an admin: the tenant's), and
//! revoking one.

use axum::{extract::State, http::StatusCode, Json};
use lockstep_core::identity::tokens::{self, Ability, TokenView};
use uuid::Uuid;

use crate::{
    api_error::{ApiError, ApiPath, ErrorBody},
    principal::Principal,
    state::AppState,
};

/// The caller's own tokens, without their secrets; an admin sees every
/// token of their tenant (`profile.read`).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    principal.require(Ability::ProfileRead)?;
    Ok(Json(
        tokens::list_tokens(&state.services.db, &principal.caller()).await?,
    ))
}

/// Revokes a token: the caller's own, or (an admin) one of the tenant's;
/// it stops working at once (`profile.read`). Anyone else's is a 404.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    principal.require(Ability::ProfileRead)?;
    tokens::revoke_token_of(&state.services.db, &principal.caller(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
