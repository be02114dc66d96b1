//! Locker banks, their compartments, and access grants: the commands that
//! change them and the read-model queries behind the API.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use lockstep_wire::OpenStatus;

use crate::{
    db::ExecuteWrite,
    error::{parse_wire_opt, CoreError, CoreResult},
    eventstore::events::{CompartmentSpec, DomainEvent},
    eventstore::store::{self, begin_write},
    identity::accounts::{find_user_by_email, parse_uuid},
    identity::caller::Caller,
    now_ms,
    services::Services,
};

pub const SIZES: [&str; 4] = ["small", "medium", "large", "xlarge"];

#[derive(Clone, Debug, Deserialize)]
pub struct NewCompartment {
    pub number: i64,
    pub size: String,
    pub label: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct NewBank {
    pub serial: String,
    pub name: String,
    pub location: Option<String>,
    pub compartments: Vec<NewCompartment>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompartmentView {
    pub id: Uuid,
    pub locker_bank_id: Uuid,
    pub number: i64,
    pub size: String,
    pub label: Option<String>,
    pub latest_status: Option<OpenStatus>,
    pub latest_command_id: Option<Uuid>,
    /// As the locker last reported it; `None` until it did.
    pub door_open: Option<bool>,
    pub occupied: Option<bool>,
    /// The version of the editable fields (label, size): what an edit's
    /// `If-Match` names (see `records`).
    pub version: i64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankView {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub serial: String,
    pub name: String,
    pub location: Option<String>,
    pub state: String,
    /// `None` until the locker has been heard from.
    pub online: Option<bool>,
    pub last_seen_at: Option<i64>,
    /// What the locker reported when it provisioned itself.
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub provisioned_at: Option<i64>,
    /// The reason code of the last failed provisioning attempt.
    pub provisioning_error: Option<String>,
    /// Free text for the operators.
    pub notes: Option<String>,
    /// The version of the editable fields (name, location, notes): what
    /// an edit's `If-Match` names (see `records`).
    pub version: i64,
    pub compartments: Vec<CompartmentView>,
}

pub(crate) use crate::text::check_text;

/// A compartment size: one of [`SIZES`].
pub(crate) fn check_size(size: &str) -> CoreResult<String> {
    if SIZES.contains(&size) {
        Ok(size.to_string())
    } else {
        Err(CoreError::Invalid(format!(
            "compartment size {size:?} must be one of {}",
            SIZES.join(", ")
        )))
    }
}

pub(crate) fn validate(new: &NewBank) -> CoreResult<Vec<CompartmentSpec>> {
    if new.compartments.is_empty() || new.compartments.len() > 500 {
        return Err(CoreError::Invalid(
            "a locker bank has 1 to 500 compartments".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    new.compartments
        .iter()
        .map(|c| {
            if !(1..=10_000).contains(&c.number) {
                return Err(CoreError::Invalid(format!(
                    "compartment number {} must be 1 to 10000",
                    c.number
                )));
            }
            if !seen.insert(c.number) {
                return Err(CoreError::Invalid(format!(
                    "compartment number {} appears twice",
                    c.number
                )));
            }
            check_size(&c.size)?;
            let label = c
                .label
                .as_deref()
                .map(|l| check_text("label", l, 64))
                .transpose()?;
            Ok(CompartmentSpec {
                id: Uuid::now_v7(),
                number: c.number,
                size: c.size.clone(),
                label,
            })
        })
        .collect()
}

/// Registers a locker bank (admin).
pub async fn register_bank(s: &Services, caller: &Caller, new: NewBank) -> CoreResult<BankView> {
    if !caller.is_admin() {
        return Err(CoreError::Forbidden(
            "only admins register locker banks".into(),
        ));
    }
    let serial = check_text("serial", &new.serial, 64)?;
    let name = check_text("name", &new.name, 120)?;
    let location = new
        .location
        .as_deref()
        .map(|l| check_text("location", l, 200))
        .transpose()?;
    let compartments = validate(&new)?;
    let bank_id = Uuid::now_v7();
    let mut tx = begin_write(&s.db).await?;
    let taken = sqlx::query("SELECT 1 AS x FROM locker_banks WHERE serial = $1")
        .bind(&serial)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    if taken {
        return Err(CoreError::Conflict(format!(
            "a locker bank with serial {serial} exists"
        )));
    }
    let event = DomainEvent::LockerBankRegistered {
        bank_id,
        tenant_id: caller.user.tenant_id,
        serial,
        name,
        location,
        compartments,
    };
    let written = store::append_live(
        &mut tx,
        s.mode(),
        "locker_bank",
        bank_id,
        0,
        vec![event],
        &caller.metadata(),
        now_ms(),
    )
    .await?;
    tx.commit().await?;
    s.published(&written);
    get_bank(s, caller.user.tenant_id, bank_id)
        .await?
        .ok_or(CoreError::NotFound)
}

fn compartment_from_row(row: &sqlx::any::AnyRow) -> CoreResult<CompartmentView> {
    Ok(CompartmentView {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        locker_bank_id: parse_uuid(&row.try_get::<String, _>("bank_id")?)?,
        number: row.try_get("number")?,
        size: row.try_get("size")?,
        label: row.try_get("label")?,
        latest_status: parse_wire_opt(row.try_get("latest_status")?)?,
        latest_command_id: row
            .try_get::<Option<String>, _>("latest_command_id")?
            .map(|s| parse_uuid(&s))
            .transpose()?,
        door_open: row.try_get::<Option<i64>, _>("door_open")?.map(|v| v != 0),
        occupied: row.try_get::<Option<i64>, _>("occupied")?.map(|v| v != 0),
        version: row.try_get("version")?,
    })
}

const COMPARTMENT_COLUMNS: &str = "c.id, c.bank_id, c.number, c.size, c.label, c.latest_status, \
     c.latest_command_id, c.door_open, c.occupied, c.version";

async fn bank_from_row(s: &Services, row: &sqlx::any::AnyRow) -> CoreResult<BankView> {
    let id: String = row.try_get("id")?;
    let compartments = sqlx::query(&format!(
        "SELECT {COMPARTMENT_COLUMNS} FROM compartments c WHERE c.bank_id = $1 ORDER BY c.number"
    ))
    .bind(&id)
    .fetch_all(&s.db.pool)
    .await?
    .iter()
    .map(compartment_from_row)
    .collect::<CoreResult<_>>()?;
    bank_with(row, compartments)
}

/// A bank's row with its compartments.
fn bank_with(row: &sqlx::any::AnyRow, compartments: Vec<CompartmentView>) -> CoreResult<BankView> {
    Ok(BankView {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        tenant_id: parse_uuid(&row.try_get::<String, _>("tenant_id")?)?,
        serial: row.try_get("serial")?,
        name: row.try_get("name")?,
        location: row.try_get("location")?,
        state: row.try_get("state")?,
        online: row.try_get::<Option<i64>, _>("online")?.map(|v| v != 0),
        last_seen_at: row.try_get("last_seen_at")?,
        model: row.try_get("model")?,
        firmware: row.try_get("firmware")?,
        provisioned_at: row.try_get("provisioned_at")?,
        provisioning_error: row.try_get("provisioning_error")?,
        notes: row.try_get("notes")?,
        version: row.try_get("version")?,
        compartments,
    })
}

const BANK_COLUMNS: &str = "id, tenant_id, serial, name, location, state, online, last_seen_at, \
     model, firmware, provisioned_at, provisioning_error, notes, version";

pub async fn get_bank(s: &Services, tenant_id: Uuid, id: Uuid) -> CoreResult<Option<BankView>> {
    let row = sqlx::query(&format!(
        "SELECT {BANK_COLUMNS} FROM locker_banks WHERE id = $1 AND tenant_id = $2"
    ))
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .fetch_optional(&s.db.pool)
    .await?;
    match row {
        Some(row) => Ok(Some(bank_from_row(s, &row).await?)),
        None => Ok(None),
    }
}

/// One compartment of `tenant_id`.
pub async fn get_compartment(
    s: &Services,
    tenant_id: Uuid,
    id: Uuid,
) -> CoreResult<Option<CompartmentView>> {
    sqlx::query(&format!(
        "SELECT {COMPARTMENT_COLUMNS} FROM compartments c WHERE c.id = $1 AND c.tenant_id = $2"
    ))
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .fetch_optional(&s.db.pool)
    .await?
    .as_ref()
    .map(compartment_from_row)
    .transpose()
}

pub async fn list_banks(s: &Services, tenant_id: Uuid) -> CoreResult<Vec<BankView>> {
    let rows = sqlx::query(&format!(
        "SELECT {BANK_COLUMNS} FROM locker_banks WHERE tenant_id = $1 ORDER BY name, serial"
    ))
    .bind(tenant_id.to_string())
    .fetch_all(&s.db.pool)
    .await?;
    // Every compartment of the tenant in one query, not one per bank.
    let mut by_bank = std::collections::HashMap::<Uuid, Vec<CompartmentView>>::new();
    for row in sqlx::query(&format!(
        "SELECT {COMPARTMENT_COLUMNS} FROM compartments c WHERE c.tenant_id = $1 ORDER BY c.number"
    ))
    .bind(tenant_id.to_string())
    .fetch_all(&s.db.pool)
    .await?
    .iter()
    {
        let c = compartment_from_row(row)?;
        by_bank.entry(c.locker_bank_id).or_default().push(c);
    }
    rows.iter()
        .map(|row| {
            let id = parse_uuid(&row.try_get::<String, _>("id")?)?;
            bank_with(row, by_bank.remove(&id).unwrap_or_default())
        })
        .collect()
}

pub use crate::eventstore::projections::locker_banks::{compartment_ref, CompartmentRef};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantView {
    pub id: Uuid,
    pub compartment_id: Uuid,
    pub user_id: Uuid,
    pub user_email: String,
    pub valid_from: Option<i64>,
    pub valid_until: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
    /// The version of the validity window: what an edit's `If-Match`
    /// names (see `records`).
    pub version: i64,
}

const GRANT_COLUMNS: &str = "g.id, g.compartment_id, g.user_id, u.email, g.valid_from, \
     g.valid_until, g.revoked_at, g.created_at, g.version";

fn grant_from_row(r: &sqlx::any::AnyRow) -> CoreResult<GrantView> {
    Ok(GrantView {
        id: parse_uuid(&r.try_get::<String, _>("id")?)?,
        compartment_id: parse_uuid(&r.try_get::<String, _>("compartment_id")?)?,
        user_id: parse_uuid(&r.try_get::<String, _>("user_id")?)?,
        user_email: r.try_get("email")?,
        valid_from: r.try_get("valid_from")?,
        valid_until: r.try_get("valid_until")?,
        revoked_at: r.try_get("revoked_at")?,
        created_at: r.try_get("created_at")?,
        version: r.try_get("version")?,
    })
}

/// Refuses a window that ends before it starts.
pub(crate) fn check_window(valid_from: Option<i64>, valid_until: Option<i64>) -> CoreResult<()> {
    match (valid_from, valid_until) {
        (Some(from), Some(until)) if until <= from => Err(CoreError::Invalid(
            "valid_until must be after valid_from".into(),
        )),
        _ => Ok(()),
    }
}

/// Grants `user_email` access to a compartment of the caller's tenant.
pub async fn grant_access(
    s: &Services,
    caller: &Caller,
    compartment_id: Uuid,
    user_email: &str,
    valid_from: Option<i64>,
    valid_until: Option<i64>,
) -> CoreResult<GrantView> {
    if !caller.is_admin() {
        return Err(CoreError::Forbidden("only admins grant access".into()));
    }
    check_window(valid_from, valid_until)?;
    let user = find_user_by_email(&s.db, user_email)
        .await?
        .filter(|u| u.tenant_id == caller.user.tenant_id)
        .ok_or_else(|| {
            CoreError::Invalid(format!("no user with email {user_email:?} in this tenant"))
        })?;
    let grant_id = Uuid::now_v7();
    for _ in 0..store::MAX_RETRIES {
        let (mut tx, version) = store::begin_on(&s.db, compartment_id).await?;
        let c = compartment_ref(&mut tx, compartment_id)
            .await?
            .filter(|c| c.tenant_id == caller.user.tenant_id)
            .ok_or(CoreError::NotFound)?;
        let event = DomainEvent::AccessGranted {
            grant_id,
            compartment_id,
            bank_id: c.bank_id,
            tenant_id: c.tenant_id,
            user_id: user.id,
            valid_from,
            valid_until,
        };
        let written = store::commit_at(
            s,
            tx,
            "compartment",
            compartment_id,
            version,
            vec![event],
            &caller.metadata(),
            now_ms(),
        )
        .await?;
        if written.is_some() {
            return list_grants(s, caller.user.tenant_id, compartment_id)
                .await?
                .into_iter()
                .find(|g| g.id == grant_id)
                .ok_or(CoreError::NotFound);
        }
    }
    Err(CoreError::VersionConflict {
        aggregate: compartment_id,
        expected: -1,
    })
}

pub async fn revoke_access(
    s: &Services,
    caller: &Caller,
    compartment_id: Uuid,
    grant_id: Uuid,
) -> CoreResult<()> {
    if !caller.is_admin() {
        return Err(CoreError::Forbidden("only admins revoke access".into()));
    }
    for _ in 0..store::MAX_RETRIES {
        let (mut tx, version) = store::begin_on(&s.db, compartment_id).await?;
        let row = sqlx::query(
            "SELECT user_id FROM grants WHERE id = $1 AND compartment_id = $2 AND tenant_id = $3 AND revoked_at IS NULL",
        )
        .bind(grant_id.to_string())
        .bind(compartment_id.to_string())
        .bind(caller.user.tenant_id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(CoreError::NotFound)?;
        let user_id = parse_uuid(&row.try_get::<String, _>("user_id")?)?;
        let event = DomainEvent::AccessRevoked {
            grant_id,
            compartment_id,
            user_id,
        };
        if store::commit_at(
            s,
            tx,
            "compartment",
            compartment_id,
            version,
            vec![event],
            &caller.metadata(),
            now_ms(),
        )
        .await?
        .is_some()
        {
            return Ok(());
        }
    }
    Err(CoreError::VersionConflict {
        aggregate: compartment_id,
        expected: -1,
    })
}

pub async fn list_grants(
    s: &Services,
    tenant_id: Uuid,
    compartment_id: Uuid,
) -> CoreResult<Vec<GrantView>> {
    let rows = sqlx::query(&format!(
        "SELECT {GRANT_COLUMNS} FROM grants g JOIN users u ON u.id = g.user_id \
         WHERE g.compartment_id = $1 AND g.tenant_id = $2 ORDER BY g.created_at, g.id"
    ))
    .bind(compartment_id.to_string())
    .bind(tenant_id.to_string())
    .fetch_all(&s.db.pool)
    .await?;
    rows.iter().map(grant_from_row).collect()
}

/// One grant of `tenant_id`, revoked or not.
pub async fn get_grant(s: &Services, tenant_id: Uuid, id: Uuid) -> CoreResult<Option<GrantView>> {
    sqlx::query(&format!(
        "SELECT {GRANT_COLUMNS} FROM grants g JOIN users u ON u.id = g.user_id \
         WHERE g.id = $1 AND g.tenant_id = $2"
    ))
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .fetch_optional(&s.db.pool)
    .await?
    .as_ref()
    .map(grant_from_row)
    .transpose()
}

/// A grant of the tenant with what an admin reads it by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantGrant {
    pub grant: GrantView,
    pub bank_id: Uuid,
    pub bank_name: String,
    pub compartment_number: i64,
}

/// Every grant of a tenant (the access page), newest first; revoked ones
/// only when `include_revoked`.
pub async fn list_tenant_grants(
    s: &Services,
    tenant_id: Uuid,
    include_revoked: bool,
) -> CoreResult<Vec<TenantGrant>> {
    let revoked = if include_revoked {
        ""
    } else {
        " AND g.revoked_at IS NULL"
    };
    let rows = sqlx::query(&format!(
        "SELECT {GRANT_COLUMNS}, c.bank_id, b.name AS bank_name, c.number \
         FROM grants g JOIN users u ON u.id = g.user_id \
         JOIN compartments c ON c.id = g.compartment_id \
         JOIN locker_banks b ON b.id = c.bank_id \
         WHERE g.tenant_id = $1{revoked} ORDER BY g.created_at DESC, g.id DESC"
    ))
    .bind(tenant_id.to_string())
    .fetch_all(&s.db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TenantGrant {
                grant: grant_from_row(r)?,
                bank_id: parse_uuid(&r.try_get::<String, _>("bank_id")?)?,
                bank_name: r.try_get("bank_name")?,
                compartment_number: r.try_get("number")?,
            })
        })
        .collect()
}

/// The compartments a user may open now or later (active grants), with
/// their latest status.
pub async fn my_compartments(
    s: &Services,
    user_id: Uuid,
    now: i64,
) -> CoreResult<Vec<(CompartmentView, GrantView, String)>> {
    let rows = sqlx::query(&format!(
        "SELECT {COMPARTMENT_COLUMNS}, b.name AS bank_name, g.id AS grant_id, g.valid_from, g.valid_until, \
         g.created_at AS granted_at, g.version AS grant_version, u.email \
         FROM grants g JOIN compartments c ON c.id = g.compartment_id \
         JOIN locker_banks b ON b.id = c.bank_id JOIN users u ON u.id = g.user_id \
         WHERE g.user_id = $1 AND g.revoked_at IS NULL AND (g.valid_until IS NULL OR g.valid_until > $2) \
         ORDER BY b.name, c.number"
    ))
    .bind(user_id.to_string())
    .bind(now)
    .fetch_all(&s.db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let c = compartment_from_row(r)?;
            let g = GrantView {
                id: parse_uuid(&r.try_get::<String, _>("grant_id")?)?,
                compartment_id: c.id,
                user_id,
                user_email: r.try_get("email")?,
                valid_from: r.try_get("valid_from")?,
                valid_until: r.try_get("valid_until")?,
                revoked_at: None,
                created_at: r.try_get("granted_at")?,
                version: r.try_get("grant_version")?,
            };
            Ok((c, g, r.try_get("bank_name")?))
        })
        .collect()
}

/// Records `events` at the bank's `version` (from `store::begin_on`) and
/// commits; false when another writer got there first.
async fn commit_bank_events(
    s: &Services,
    tx: store::WriteTx,
    bank_id: Uuid,
    version: i64,
    tenant_id: Uuid,
    events: Vec<DomainEvent>,
    now: i64,
) -> CoreResult<bool> {
    let meta = crate::eventstore::events::Metadata::system(tenant_id, Uuid::now_v7());
    Ok(
        store::commit_at(s, tx, "locker_bank", bank_id, version, events, &meta, now)
            .await?
            .is_some(),
    )
}

/// A heartbeat from a locker bank: `last_seen_at` moves (no event); the
/// first one after silence records `DeviceStatusChanged { online: true }`,
/// and the first one on freshly delivered credentials `LockerWasProvisioned`.
/// `None` when no such bank exists (or it was decommissioned).
pub async fn heartbeat(s: &Services, bank_id: Uuid, now: i64) -> CoreResult<Option<bool>> {
    // The common case, a bank already provisioned and online, is one
    // statement; only a transition takes the read-decide-append path.
    let touched = sqlx::query(
        "UPDATE locker_banks SET last_seen_at = $1 \
         WHERE id = $2 AND online = 1 AND state = 'provisioned'",
    )
    .bind(now)
    .bind(bank_id.to_string())
    .execute_write(&s.db)
    .await?;
    if touched.rows_affected() == 1 {
        return Ok(Some(false));
    }
    for _ in 0..store::MAX_RETRIES {
        let (mut tx, version) = store::begin_on(&s.db, bank_id).await?;
        let Some(row) =
            sqlx::query("SELECT tenant_id, online, state FROM locker_banks WHERE id = $1")
                .bind(bank_id.to_string())
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(None);
        };
        let tenant_id = parse_uuid(&row.try_get::<String, _>("tenant_id")?)?;
        let online: Option<i64> = row.try_get("online")?;
        let state: String = row.try_get("state")?;
        if state == "decommissioned" {
            return Ok(None);
        }
        sqlx::query("UPDATE locker_banks SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(bank_id.to_string())
            .execute(&mut *tx)
            .await?;
        let mut events = Vec::new();
        if matches!(
            state.as_str(),
            "credentials_created" | "credentials_delivered"
        ) {
            events.push(DomainEvent::LockerWasProvisioned { bank_id, tenant_id });
        }
        if online != Some(1) {
            events.push(DomainEvent::DeviceStatusChanged {
                bank_id,
                tenant_id,
                online: true,
            });
        }
        if events.is_empty() {
            tx.commit().await?;
            return Ok(Some(false));
        }
        if commit_bank_events(s, tx, bank_id, version, tenant_id, events, now).await? {
            tracing::info!(%bank_id, %state, "locker bank online");
            return Ok(Some(true));
        }
    }
    Err(CoreError::Conflict(format!(
        "locker bank {bank_id} kept changing"
    )))
}

/// One compartment in a locker's state report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompartmentReport {
    pub number: i64,
    pub door_open: Option<bool>,
    pub occupied: Option<bool>,
}

/// Records what changed in a locker's door and occupancy report (nothing
/// when nothing changed). Returns the numbers the bank does not have.
pub async fn compartment_report(
    s: &Services,
    bank_id: Uuid,
    reports: &[CompartmentReport],
    now: i64,
) -> CoreResult<Vec<i64>> {
    for _ in 0..store::MAX_RETRIES {
        let (mut tx, version) = store::begin_on(&s.db, bank_id).await?;
        let rows = sqlx::query(
            "SELECT id, tenant_id, number, door_open, occupied FROM compartments WHERE bank_id = $1",
        )
        .bind(bank_id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let mut known = std::collections::HashMap::new();
        for r in &rows {
            let number: i64 = r.try_get("number")?;
            known.insert(
                number,
                (
                    parse_uuid(&r.try_get::<String, _>("id")?)?,
                    parse_uuid(&r.try_get::<String, _>("tenant_id")?)?,
                    r.try_get::<Option<i64>, _>("door_open")?.map(|v| v != 0),
                    r.try_get::<Option<i64>, _>("occupied")?.map(|v| v != 0),
                ),
            );
        }
        let mut unknown = Vec::new();
        let mut events = Vec::new();
        let mut tenant = None;
        for rep in reports {
            let Some(&(compartment_id, tenant_id, door, occupied)) = known.get(&rep.number) else {
                unknown.push(rep.number);
                continue;
            };
            tenant = Some(tenant_id);
            if let Some(open) = rep.door_open.filter(|o| door != Some(*o)) {
                events.push(DomainEvent::CompartmentDoorChanged {
                    bank_id,
                    tenant_id,
                    compartment_id,
                    number: rep.number,
                    open,
                });
            }
            if let Some(now_occupied) = rep.occupied.filter(|o| occupied != Some(*o)) {
                events.push(DomainEvent::CompartmentOccupancyChanged {
                    bank_id,
                    tenant_id,
                    compartment_id,
                    number: rep.number,
                    occupied: now_occupied,
                });
            }
        }
        let Some(tenant_id) = tenant.filter(|_| !events.is_empty()) else {
            return Ok(unknown);
        };
        if commit_bank_events(s, tx, bank_id, version, tenant_id, events, now).await? {
            return Ok(unknown);
        }
    }
    Err(CoreError::Conflict(format!(
        "locker bank {bank_id} kept changing"
    )))
}

/// How many locker banks are online now (a `/metrics` gauge).
pub async fn online_count(s: &Services) -> CoreResult<i64> {
    Ok(
        sqlx::query("SELECT COUNT(*) AS n FROM locker_banks WHERE online = 1")
            .fetch_one(&s.db.pool)
            .await?
            .try_get("n")?,
    )
}

/// Marks offline every online bank not heard from since `now - offline_after_ms`.
pub async fn sweep_offline(s: &Services, now: i64, offline_after_ms: i64) -> CoreResult<usize> {
    let cutoff = now - offline_after_ms;
    let rows = sqlx::query(
        "SELECT id, tenant_id FROM locker_banks WHERE online = 1 AND last_seen_at < $1",
    )
    .bind(cutoff)
    .fetch_all(&s.db.pool)
    .await?;
    let mut marked = 0;
    for row in rows {
        let bank_id = parse_uuid(&row.try_get::<String, _>("id")?)?;
        let tenant_id = parse_uuid(&row.try_get::<String, _>("tenant_id")?)?;
        let (mut tx, version) = store::begin_on(&s.db, bank_id).await?;
        // Re-check inside the write lock: a heartbeat may have just arrived.
        let still = sqlx::query(
            "SELECT 1 AS x FROM locker_banks WHERE id = $1 AND online = 1 AND last_seen_at < $2",
        )
        .bind(bank_id.to_string())
        .bind(cutoff)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        if !still {
            continue;
        }
        let offline = DomainEvent::DeviceStatusChanged {
            bank_id,
            tenant_id,
            online: false,
        };
        if commit_bank_events(s, tx, bank_id, version, tenant_id, vec![offline], now).await? {
            tracing::warn!(%bank_id, "locker bank offline: missed heartbeats");
            marked += 1;
        }
    }
    Ok(marked)
}
