//! The open flow over HTTP: `POST /compartments/{id}/open` answers at once
//! (`202 accepted` / `403 denied`, both with the `command_id`), and the
//! read model behind `/compartments/open-requests`.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use lockstep_core::{
    identity::tokens::Ability,
    now_ms,
    opens::{self, HistoryFilter, OpenCommandInput, OpenDecision, OpenRequestView},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    api_error::{ApiError, ApiPath, ApiQuery, ErrorBody},
    principal::Principal,
    state::AppState,
};

#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    /// Admins only: open without a grant. Needs a `reason`.
    #[serde(rename = "override", default)]
    pub override_: bool,
    pub reason: Option<String>,
}

/// What a 403 from the open endpoint carries: a recorded denial, or an
/// API error (e.g. a missing ability).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum OpenRefusal {
    Denied(OpenDecision),
    Error(ErrorBody),
}

/// Requests to open a compartment (`compartment.open`). Send an
/// `Idempotency-Key` header to make retries return the same command.
#[utoipa::path(post, path = "/api/v1/compartments/{id}/open", tag = "open",
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body(content = Option<OpenBody>),
    responses((status = 202, body = OpenDecision, description = "accepted"),
        (status = 403, body = OpenRefusal, description = "denied (recorded, with a reason) or not allowed"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn open(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(compartment_id): ApiPath<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    principal.require(Ability::CompartmentOpen)?;
    let body: OpenBody = if body.iter().all(u8::is_ascii_whitespace) {
        OpenBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                ApiError::Unprocessable(format!("invalid open request: {e}"))
            }
            _ => ApiError::BadRequest(format!("the body is not valid JSON: {e}")),
        })?
    };
    let idempotency_key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::BadRequest("Idempotency-Key must be visible ASCII".into()))?
                .to_string(),
        ),
        None => None,
    };
    let input = OpenCommandInput {
        compartment_id,
        override_: body.override_,
        reason: body.reason,
        idempotency_key,
    };
    let decision =
        opens::request_open(&state.services, &principal.caller(), input, now_ms()).await?;
    tracing::info!(command_id = %decision.command_id, status = %decision.status, reason = ?decision.reason, "open answered");
    let status = if decision.accepted() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::FORBIDDEN
    };
    Ok((status, Json(decision)).into_response())
}

/// One command's lifecycle. Only its requester or an admin of its tenant
/// may read it; anyone else gets 404.
#[utoipa::path(get, path = "/api/v1/compartments/open-requests/{command_id}", tag = "open",
    params(("command_id" = Uuid, Path)),
    responses((status = 200, body = OpenRequestView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(command_id): ApiPath<Uuid>,
) -> Result<Json<OpenRequestView>, ApiError> {
    principal.require(Ability::CompartmentRead)?;
    opens::get_open_request(&state.services, &principal.caller(), command_id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// requested, accepted, denied, sent, opened or failed.
    pub status: Option<String>,
    pub locker_bank: Option<Uuid>,
    pub user: Option<Uuid>,
    /// Requested at or after (ms since the epoch).
    pub from: Option<i64>,
    /// Requested before (ms since the epoch).
    pub to: Option<i64>,
    /// From 1.
    pub page: Option<i64>,
    /// 1 to 200 (default 50).
    pub per_page: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HistoryPage {
    pub items: Vec<OpenRequestView>,
    pub page: i64,
    pub per_page: i64,
    pub total: i64,
}

/// The tenant's command history, newest first (admin, `locker.read`).
#[utoipa::path(get, path = "/api/v1/compartments/open-requests", tag = "open", params(HistoryQuery),
    responses((status = 200, body = HistoryPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<HistoryPage>, ApiError> {
    let user = principal.require(Ability::LockerRead)?;
    let page = q.page.unwrap_or(1).clamp(1, 1_000_000);
    let per_page = q.per_page.unwrap_or(50).clamp(1, 200);
    let filter = HistoryFilter {
        status: q
            .status
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(lockstep_core::CoreError::from)?,
        locker_bank: q.locker_bank,
        user: q.user,
        from: q.from,
        to: q.to,
        page,
        per_page,
    };
    let (items, total) = opens::history(&state.services, user.tenant_id, &filter).await?;
    Ok(Json(HistoryPage {
        items,
        page,
        per_page,
        total,
    }))
}
