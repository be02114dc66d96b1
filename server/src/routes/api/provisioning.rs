//! `/provisioning-keys` and `/locker-banks/{id}/decommission`.

use axum::{extract::State, http::StatusCode, Json};
use lockstep_core::{
    identity::tokens::Ability,
    lockers::{self, BankView},
    provisioning::{self, KeyView},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    api_error::{ApiError, ApiJson, ApiPath, ErrorBody},
    principal::Principal,
    state::AppState,
};

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateKeyBody {
    pub name: String,
    /// Milliseconds since the Unix epoch; never expires when absent.
    pub expires_at: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    pub key: KeyView,
    /// The key itself, shown only here.
    pub secret: String,
}

/// Creates a provisioning key for the caller's tenant (admin, `locker.write`).
#[utoipa::path(post, path = "/api/v1/provisioning-keys", tag = "provisioning", request_body = CreateKeyBody,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateKeyBody>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    principal.require(Ability::LockerWrite)?;
    let (key, secret) = provisioning::create_key(
        &state.services,
        &principal.caller(),
        &body.name,
        body.expires_at,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(CreatedKey { key, secret })))
}

/// The tenant's provisioning keys, without their secrets (admin, `locker.write`).
#[utoipa::path(get, path = "/api/v1/provisioning-keys", tag = "provisioning",
    responses((status = 200, body = Vec<KeyView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_keys(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    principal.require(Ability::LockerWrite)?;
    Ok(Json(
        provisioning::list_keys(&state.services, &principal.caller()).await?,
    ))
}

/// Revokes a provisioning key (admin, `locker.write`).
#[utoipa::path(delete, path = "/api/v1/provisioning-keys/{id}", tag = "provisioning", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    principal.require(Ability::LockerWrite)?;
    provisioning::revoke_key(&state.services, &principal.caller(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Why an admin changes a bank's service state (decommission, reset).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct DecommissionBody {
    pub reason: String,
}

/// The bank as it is after `change` (an admin's `locker.write` action with
/// a reason).
async fn bank_after<F, Fut>(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    change: F,
) -> Result<Json<BankView>, ApiError>
where
    F: FnOnce(lockstep_core::identity::caller::Caller) -> Fut,
    Fut: std::future::Future<Output = lockstep_core::error::CoreResult<()>>,
{
    let user = principal.require(Ability::LockerWrite)?;
    change(principal.caller()).await?;
    lockers::get_bank(&state.services, user.tenant_id, id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// Takes a locker bank out of service: its broker account is disabled (a
/// connected locker is kicked) and opens are refused (admin, `locker.write`).
#[utoipa::path(post, path = "/api/v1/locker-banks/{id}/decommission", tag = "lockers", params(("id" = Uuid, Path)),
    request_body = DecommissionBody,
    responses((status = 200, body = BankView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn decommission(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<DecommissionBody>,
) -> Result<Json<BankView>, ApiError> {
    let s = state.services.clone();
    bank_after(&state, &principal, id, |caller| async move {
        provisioning::decommission(&s, &caller, id, &body.reason).await
    })
    .await
}

/// Resets a locker bank's provisioning: its broker account is disabled
/// (a connected locker is kicked), and the next registration (its
/// pre-registration, or a provisioning key) provisions it again with new
/// credentials; a decommissioned bank is back in service (admin,
/// `locker.write`).
#[utoipa::path(post, path = "/api/v1/locker-banks/{id}/reset-provisioning", tag = "lockers", params(("id" = Uuid, Path)),
    request_body = DecommissionBody,
    responses((status = 200, body = BankView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn reset_provisioning(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<DecommissionBody>,
) -> Result<Json<BankView>, ApiError> {
    let s = state.services.clone();
    bank_after(&state, &principal, id, |caller| async move {
        provisioning::reset(&s, &caller, id, &body.reason).await
    })
    .await
}
