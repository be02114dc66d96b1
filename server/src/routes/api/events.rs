//! `GET /events/since`: the channel log after a seq, the polling fallback
//! of the realtime hub (the same envelopes, with `meta.replay = true`).

use axum::{extract::State, Json};
use lockstep_core::{
    eventstore::channels::{self, Channel, Since},
    identity::tokens::Ability,
};
use serde::Deserialize;

use crate::{
    api_error::{ApiError, ApiQuery, ErrorBody},
    principal::Principal,
    state::AppState,
};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SinceQuery {
    /// e.g. `private-user.{id}`, `private-tenant.{id}.open-requests`.
    pub channel: String,
    /// The last seq the client has (0: from the start).
    pub seq: Option<i64>,
    /// 1 to 1000 (default 100).
    pub limit: Option<i64>,
}

/// Envelopes after `seq`, oldest first; `reset: true` when history no
/// longer reaches back that far (refetch, then follow from `seq`). With
/// `X-Tab-ID`, the envelopes of what that tab did itself are left out
/// (`seq` still moves past them).
#[utoipa::path(get, path = "/api/v1/events/since", tag = "events", params(SinceQuery,
        ("X-Tab-ID" = Option<String>, Header, description = "the polling tab: its own edits' envelopes are left out")),
    responses((status = 200, body = Since), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn since(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<SinceQuery>,
) -> Result<Json<Since>, ApiError> {
    let user = principal.require(Ability::EventsRead)?;
    let channel: Channel = q.channel.parse().map_err(lockstep_core::CoreError::from)?;
    if !channels::authorize(&state.services.db, user, &channel).await? {
        tracing::info!(user_id = %user.id, %channel, "channel refused");
        return Err(ApiError::Forbidden("you may not read this channel"));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(
        channels::since_for(
            &state.services.db,
            &channel,
            q.seq.unwrap_or(0),
            limit,
            principal.tab_id(),
        )
        .await?,
    ))
}
