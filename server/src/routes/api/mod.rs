//! `/api/v1`: the JSON API for scripts, devices and the browser. Every
//! handler starts from a [`Principal`](crate::principal::Principal) and the
//! ability it needs; `GET /api/v1/openapi.json` describes it all.

pub mod events;
pub mod lockers;
pub mod me;
pub mod opens;
pub mod provisioning;
pub mod records;
pub mod tokens;
pub mod users;

use axum::{
    routing::{delete, get, post},
    Json, Router,
};
use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use crate::{api_error::api_not_found, state::AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/me", get(me::me))
        .route("/me/compartments", get(me::my_compartments))
        .route("/users", get(me::list_users))
        .route("/users/{id}", get(users::get_user).patch(users::edit_user))
        .route(
            "/locker-banks",
            post(lockers::create_bank).get(lockers::list_banks),
        )
        .route(
            "/locker-banks/{id}",
            get(lockers::get_bank).patch(lockers::edit_bank),
        )
        .route(
            "/compartments/{id}",
            get(lockers::get_compartment).patch(lockers::edit_compartment),
        )
        .route(
            "/locker-banks/{id}/compartments/import",
            post(lockers::import_compartments),
        )
        .route(
            "/grants/{id}",
            get(lockers::get_grant).patch(lockers::edit_grant),
        )
        .route("/records/{type}/{id}/version", get(records::version))
        .route(
            "/locker-banks/{id}/decommission",
            post(provisioning::decommission),
        )
        .route(
            "/locker-banks/{id}/reset-provisioning",
            post(provisioning::reset_provisioning),
        )
        .route(
            "/provisioning-keys",
            post(provisioning::create_key).get(provisioning::list_keys),
        )
        .route("/provisioning-keys/{id}", delete(provisioning::revoke_key))
        .route(
            "/compartments/{id}/grants",
            post(lockers::create_grant).get(lockers::list_grants),
        )
        .route(
            "/compartments/{id}/grants/{grant_id}",
            delete(lockers::delete_grant),
        )
        .route("/compartments/{id}/open", post(opens::open))
        .route("/compartments/open-requests", get(opens::history))
        .route(
            "/compartments/open-requests/{command_id}",
            get(opens::get_one),
        )
        .route("/tokens", get(tokens::list_tokens))
        .route("/tokens/{id}", delete(tokens::revoke_token))
        .route("/events/since", get(events::since))
        .route("/openapi.json", get(openapi))
        .fallback(api_not_found)
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lockstep API",
        version = "1",
        description = "Locker banks, access grants and the compartment open flow. \
            Authenticate with `Authorization: Bearer <token>` (`lockstep token create`) \
            or the browser session. Timestamps are milliseconds since the Unix epoch."
    ),
    paths(
        me::me, me::my_compartments, me::list_users, users::get_user, users::edit_user,
        lockers::create_bank, lockers::list_banks, lockers::get_bank, lockers::edit_bank,
        lockers::get_compartment, lockers::edit_compartment,
        records::version,
        lockers::create_grant, lockers::list_grants, lockers::delete_grant,
        lockers::get_grant, lockers::edit_grant, lockers::import_compartments,
        opens::open, opens::get_one, opens::history,
        events::since,
        provisioning::create_key, provisioning::list_keys, provisioning::revoke_key,
        provisioning::decommission,
        provisioning::reset_provisioning,
        tokens::list_tokens, tokens::revoke_token,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// `GET /api/v1/openapi.json`: this API, as OpenAPI 3.1.
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
