//! `/locker-banks` and `/compartments/{id}/grants`.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use lockstep_core::{
    identity::tokens::Ability,
    lockers::{self, BankView, CompartmentView, GrantView, NewBank, NewCompartment},
    records::{self, BankEdit, CompartmentEdit, GrantEdit, ImportRow, ImportSummary},
};
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use super::records::{etag, if_match};
use crate::{
    api_error::{ApiError, ApiJson, ApiPath, ErrorBody},
    principal::Principal,
    state::AppState,
};

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CompartmentBody {
    pub number: i64,
    /// `small`, `medium`, `large` or `xlarge`.
    pub size: String,
    pub label: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateBankBody {
    pub serial: String,
    pub name: String,
    pub location: Option<String>,
    pub compartments: Vec<CompartmentBody>,
}

/// Registers a locker bank (admin, `locker.write`).
#[utoipa::path(post, path = "/api/v1/locker-banks", tag = "lockers", request_body = CreateBankBody,
    responses((status = 201, body = BankView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_bank(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateBankBody>,
) -> Result<(StatusCode, Json<BankView>), ApiError> {
    principal.require(Ability::LockerWrite)?;
    let new = NewBank {
        serial: body.serial,
        name: body.name,
        location: body.location,
        compartments: body
            .compartments
            .into_iter()
            .map(|c| NewCompartment {
                number: c.number,
                size: c.size,
                label: c.label,
            })
            .collect(),
    };
    let bank = lockers::register_bank(&state.services, &principal.caller(), new).await?;
    Ok((StatusCode::CREATED, Json(bank)))
}

/// The tenant's locker banks (`locker.read`).
#[utoipa::path(get, path = "/api/v1/locker-banks", tag = "lockers",
    responses((status = 200, body = Vec<BankView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_banks(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<BankView>>, ApiError> {
    let user = principal.require(Ability::LockerRead)?;
    Ok(Json(
        lockers::list_banks(&state.services, user.tenant_id).await?,
    ))
}

/// One locker bank with its compartments (`locker.read`); its `ETag` is
/// the version an edit must name.
#[utoipa::path(get, path = "/api/v1/locker-banks/{id}", tag = "lockers", params(("id" = Uuid, Path)),
    responses((status = 200, body = BankView, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_bank(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let user = principal.require(Ability::LockerRead)?;
    let bank = lockers::get_bank(&state.services, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(([etag(bank.version)], Json(bank)).into_response())
}

/// A present JSON field, `null` included: `Some(None)` clears it.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// An edit of a bank's details: only the fields sent change; `null`
/// clears `location` or `notes`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditBankBody {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub location: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub notes: Option<Option<String>>,
}

/// Edits a bank's name, location or notes (admin, `locker.write`), made on
/// the version named by `If-Match: "<version>"`. Without it: 428. Made on
/// an older version: 409 with `conflict` (who changed it, when, which
/// fields), and nothing written. Answers the bank and its new `ETag`.
#[utoipa::path(patch, path = "/api/v1/locker-banks/{id}", tag = "lockers", params(("id" = Uuid, Path),
        ("If-Match" = String, Header, description = "the version edited, as its ETag gave it: \"3\"")),
    request_body = EditBankBody,
    responses((status = 200, body = BankView, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 428, body = ErrorBody)))]
pub async fn edit_bank(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EditBankBody>,
) -> Result<Response, ApiError> {
    principal.require(Ability::LockerWrite)?;
    let version = if_match(&headers)?;
    let edit = BankEdit {
        name: body.name,
        location: body.location,
        notes: body.notes,
    };
    let bank = records::edit_bank(&state.services, &principal.caller(), id, version, edit).await?;
    Ok(([etag(bank.version)], Json(bank)).into_response())
}

/// One CSV row of an import: `number,size,label` (`label` optional).
#[derive(Deserialize)]
struct CsvRow {
    number: i64,
    size: String,
    #[serde(default)]
    label: Option<String>,
}

/// Reads an import's CSV: a header naming `number` and `size` (and
/// optionally `label`), then one compartment per row. A row that does not
/// read is refused with its line number.
fn read_csv(body: &str) -> Result<Vec<ImportRow>, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(body.as_bytes());
    let mut rows = Vec::new();
    for (i, record) in reader.deserialize::<CsvRow>().enumerate() {
        if rows.len() >= records::MAX_IMPORT_ROWS {
            return Err(ApiError::Unprocessable(format!(
                "an import has at most {} rows",
                records::MAX_IMPORT_ROWS
            )));
        }
        let row = record.map_err(|e| {
            ApiError::Unprocessable(format!(
                "row {}: {e} (expected the header number,size,label)",
                i + 2
            ))
        })?;
        rows.push(ImportRow {
            number: row.number,
            size: row.size,
            label: row.label.filter(|l| !l.is_empty()),
        });
    }
    Ok(rows)
}

/// Imports compartments into a bank from CSV (admin, `locker.write`):
/// `number,size,label`, one row per compartment. A new number adds a
/// compartment; an existing one sets its size and label. All or nothing;
/// one `RecordsImported` envelope for the whole import.
#[utoipa::path(post, path = "/api/v1/locker-banks/{id}/compartments/import", tag = "lockers",
    params(("id" = Uuid, Path)),
    request_body(content = String, content_type = "text/csv",
        description = "number,size,label\n1,small,Parcels\n2,large,"),
    responses((status = 200, body = ImportSummary), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn import_compartments(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
    body: axum::body::Bytes,
) -> Result<Json<ImportSummary>, ApiError> {
    principal.require(Ability::LockerWrite)?;
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::BadRequest(format!("the CSV is not UTF-8: {e}")))?;
    let rows = read_csv(text)?;
    let summary =
        records::import_compartments(&state.services, &principal.caller(), id, rows).await?;
    Ok(Json(summary))
}

/// One compartment (`locker.read`); its `ETag` is the version an edit must
/// name.
#[utoipa::path(get, path = "/api/v1/compartments/{id}", tag = "lockers", params(("id" = Uuid, Path)),
    responses((status = 200, body = CompartmentView, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_compartment(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let user = principal.require(Ability::LockerRead)?;
    let c = lockers::get_compartment(&state.services, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(([etag(c.version)], Json(c)).into_response())
}

/// An edit of a compartment: only the fields sent change; `null` clears
/// the label.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditCompartmentBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub label: Option<Option<String>>,
    /// `small`, `medium`, `large` or `xlarge`.
    pub size: Option<String>,
}

/// Edits a compartment's label or size (admin, `locker.write`) under
/// `If-Match`, as `PATCH /locker-banks/{id}`.
#[utoipa::path(patch, path = "/api/v1/compartments/{id}", tag = "lockers", params(("id" = Uuid, Path),
        ("If-Match" = String, Header, description = "the version edited, as its ETag gave it: \"3\"")),
    request_body = EditCompartmentBody,
    responses((status = 200, body = CompartmentView, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 428, body = ErrorBody)))]
pub async fn edit_compartment(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EditCompartmentBody>,
) -> Result<Response, ApiError> {
    principal.require(Ability::LockerWrite)?;
    let version = if_match(&headers)?;
    let edit = CompartmentEdit {
        label: body.label,
        size: body.size,
    };
    let c =
        records::edit_compartment(&state.services, &principal.caller(), id, version, edit).await?;
    Ok(([etag(c.version)], Json(c)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateGrantBody {
    pub user_email: String,
    /// Milliseconds since the Unix epoch; open-ended when absent.
    pub valid_from: Option<i64>,
    pub valid_until: Option<i64>,
}

/// Grants a user access to a compartment (admin, `grant.write`).
#[utoipa::path(post, path = "/api/v1/compartments/{id}/grants", tag = "grants", params(("id" = Uuid, Path)), request_body = CreateGrantBody,
    responses((status = 201, body = GrantView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_grant(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<CreateGrantBody>,
) -> Result<(StatusCode, Json<GrantView>), ApiError> {
    principal.require(Ability::GrantWrite)?;
    let grant = lockers::grant_access(
        &state.services,
        &principal.caller(),
        id,
        &body.user_email,
        body.valid_from,
        body.valid_until,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(grant)))
}

/// The grants of a compartment, revoked ones included (admin, `grant.write`).
#[utoipa::path(get, path = "/api/v1/compartments/{id}/grants", tag = "grants", params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<GrantView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_grants(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Vec<GrantView>>, ApiError> {
    let user = principal.require(Ability::GrantWrite)?;
    let exists = sqlx_exists(&state, user.tenant_id, id).await?;
    if !exists {
        return Err(ApiError::NotFound);
    }
    Ok(Json(
        lockers::list_grants(&state.services, user.tenant_id, id).await?,
    ))
}

async fn sqlx_exists(
    state: &AppState,
    tenant_id: Uuid,
    compartment_id: Uuid,
) -> Result<bool, ApiError> {
    let mut conn = state
        .services
        .db
        .pool
        .acquire()
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(lockers::compartment_ref(&mut conn, compartment_id)
        .await?
        .is_some_and(|c| c.tenant_id == tenant_id))
}

/// One grant of the caller's tenant (admin, `grant.write`), with its
/// `ETag`.
#[utoipa::path(get, path = "/api/v1/grants/{id}", tag = "grants", params(("id" = Uuid, Path)),
    responses((status = 200, body = GrantView, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_grant(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let user = principal.require(Ability::GrantWrite)?;
    let grant = lockers::get_grant(&state.services, user.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(([etag(grant.version)], Json(grant)).into_response())
}

/// A present JSON field, `null` included: `Some(None)` makes a bound
/// open-ended.
fn present_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// A change of a grant's validity window (milliseconds since the Unix
/// epoch): only the bounds sent change; `null` makes one open-ended.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditGrantBody {
    #[serde(default, deserialize_with = "present_ms")]
    #[schema(value_type = Option<i64>)]
    pub valid_from: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present_ms")]
    #[schema(value_type = Option<i64>)]
    pub valid_until: Option<Option<i64>>,
}

/// Changes a grant's validity window (admin, `grant.write`) under
/// `If-Match`, as `PATCH /locker-banks/{id}`. A revoked grant cannot be
/// changed (422); the new window holds from the next open.
#[utoipa::path(patch, path = "/api/v1/grants/{id}", tag = "grants", params(("id" = Uuid, Path),
        ("If-Match" = String, Header, description = "the version edited, as its ETag gave it: \"3\"")),
    request_body = EditGrantBody,
    responses((status = 200, body = GrantView, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 428, body = ErrorBody)))]
pub async fn edit_grant(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EditGrantBody>,
) -> Result<Response, ApiError> {
    principal.require(Ability::GrantWrite)?;
    let version = if_match(&headers)?;
    let edit = GrantEdit {
        valid_from: body.valid_from,
        valid_until: body.valid_until,
    };
    let grant =
        records::edit_grant(&state.services, &principal.caller(), id, version, edit).await?;
    Ok(([etag(grant.version)], Json(grant)).into_response())
}

/// Revokes a grant (admin, `grant.write`).
#[utoipa::path(delete, path = "/api/v1/compartments/{id}/grants/{grant_id}", tag = "grants",
    params(("id" = Uuid, Path), ("grant_id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_grant(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((id, grant_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    principal.require(Ability::GrantWrite)?;
    lockers::revoke_access(&state.services, &principal.caller(), id, grant_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
