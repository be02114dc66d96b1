//! `/me`, `/me/compartments`, `/users`: who is calling, what they may
//! open, and (admins) the tenant's accounts.

use axum::{extract::State, Json};
use lockstep_core::{identity::accounts, identity::tokens::Ability, lockers, now_ms};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    api_error::{ApiError, ErrorBody},
    principal::Principal,
    state::AppState,
};

#[derive(Serialize, utoipa::ToSchema)]
pub struct MeBody {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    /// `admin` or `user`.
    pub role: String,
    pub tenant_id: Uuid,
}

impl From<&accounts::User> for MeBody {
    fn from(u: &accounts::User) -> Self {
        MeBody {
            id: u.id,
            email: u.email.clone(),
            name: u.name.clone(),
            role: u.role.to_string(),
            tenant_id: u.tenant_id,
        }
    }
}

/// The caller's own account (`profile.read`).
#[utoipa::path(get, path = "/api/v1/me", tag = "me",
    responses((status = 200, body = MeBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn me(principal: Principal) -> Result<Json<MeBody>, ApiError> {
    let user = principal.require(Ability::ProfileRead)?;
    Ok(Json(MeBody::from(user)))
}

/// A compartment the caller may open, with its latest status.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MyCompartment {
    pub compartment: lockers::CompartmentView,
    pub locker_bank_name: String,
    pub grant_id: Uuid,
    pub valid_from: Option<i64>,
    pub valid_until: Option<i64>,
}

/// What the caller may open (`compartment.read`).
#[utoipa::path(get, path = "/api/v1/me/compartments", tag = "me",
    responses((status = 200, body = Vec<MyCompartment>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn my_compartments(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<MyCompartment>>, ApiError> {
    let user = principal.require(Ability::CompartmentRead)?;
    let rows = lockers::my_compartments(&state.services, user.id, now_ms()).await?;
    Ok(Json(
        rows.into_iter()
            .map(|(c, g, bank)| MyCompartment {
                compartment: c,
                locker_bank_name: bank,
                grant_id: g.id,
                valid_from: g.valid_from,
                valid_until: g.valid_until,
            })
            .collect(),
    ))
}

/// The accounts of the caller's tenant (admin, `user.read`).
#[utoipa::path(get, path = "/api/v1/users", tag = "me",
    responses((status = 200, body = Vec<MeBody>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<MeBody>>, ApiError> {
    let user = principal.require(Ability::UserRead)?;
    let users = accounts::list_users(&state.services.db, user.tenant_id).await?;
    Ok(Json(users.iter().map(MeBody::from).collect()))
}
