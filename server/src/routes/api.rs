//! `/api/v1`: the JSON API for scripts, devices and the browser. Every
//! handler starts from a [`Principal`] and the ability it needs.

use axum::{extract::State, routing::get, Json, Router};
use lockstep_core::{accounts, tokens::Ability};
use serde::Serialize;

use crate::{
    api_error::{api_not_found, ApiError},
    application::AppState,
    principal::Principal,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/me", get(me))
        .route("/users", get(list_users))
        .fallback(api_not_found)
}

#[derive(Serialize)]
pub struct MeBody {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub tenant_id: String,
}

impl From<&accounts::User> for MeBody {
    fn from(u: &accounts::User) -> Self {
        MeBody {
            id: u.id.to_string(),
            email: u.email.clone(),
            name: u.name.clone(),
            role: u.role.to_string(),
            tenant_id: u.tenant_id.to_string(),
        }
    }
}

/// `GET /api/v1/me`: the caller's own account.
async fn me(principal: Principal) -> Result<Json<MeBody>, ApiError> {
    let user = principal.require(Ability::ProfileRead)?;
    Ok(Json(MeBody::from(user)))
}

/// `GET /api/v1/users` (admin, `user.read`): the accounts of the caller's
/// tenant.
async fn list_users(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<MeBody>>, ApiError> {
    let user = principal.require(Ability::UserRead)?;
    let users = accounts::list_users(&state.services.db, user.tenant_id).await?;
    Ok(Json(users.iter().map(MeBody::from).collect()))
}
