//! The `open_requests` projector: one row per open command with its
//! status, reasons and timestamps, and each compartment's latest status.

use lockstep_wire::{
    mqtt::{truncate_chars, MAX_ERROR_CHARS},
    OpenStatus,
};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::{
    error::CoreResult,
    eventstore::events::{DomainEvent, StoredEvent},
    identity::accounts::parse_uuid,
};

/// Who an open command concerns, as its row says: what its envelopes
/// name. Returned by the row's update, so the notification need not read
/// the row again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenParties {
    pub user: Uuid,
    pub tenant: Uuid,
    pub compartment: Uuid,
    pub bank: Uuid,
    pub override_: bool,
}

impl OpenParties {
    pub fn from_row(row: &sqlx::any::AnyRow) -> CoreResult<Self> {
        let id = |c: &str| -> CoreResult<Uuid> { parse_uuid(&row.try_get::<String, _>(c)?) };
        Ok(OpenParties {
            user: id("user_id")?,
            tenant: id("tenant_id")?,
            compartment: id("compartment_id")?,
            bank: id("bank_id")?,
            override_: row.try_get::<i64, _>("override")? != 0,
        })
    }
}

/// The columns [`OpenParties::from_row`] reads.
pub const PARTIES: &str = "user_id, tenant_id, compartment_id, bank_id, override";

pub async fn apply(conn: &mut AnyConnection, ev: &StoredEvent) -> CoreResult<()> {
    let (_, latest) = apply_row(conn, ev).await?;
    write_latest(conn, latest.as_slice()).await
}

/// What [`apply_row`] returns for an event: the command's parties, when
/// it changed the row, and the compartment's new latest status.
pub type RowChange = (Option<OpenParties>, Option<LatestStatus>);

/// Applies the events of one append in order, as [`apply_row`] would one
/// by one, but a request followed by its decision (how every open is
/// appended) becomes one INSERT of the decided row: one statement, not two.
pub async fn apply_rows(
    conn: &mut AnyConnection,
    events: &[StoredEvent],
) -> CoreResult<Vec<RowChange>> {
    let mut out = Vec::with_capacity(events.len());
    let mut i = 0;
    while i < events.len() {
        if let Some(next) = events.get(i + 1) {
            if let Some(change) = insert_decided(conn, &events[i], next).await? {
                out.push((None, None));
                out.push(change);
                i += 2;
                continue;
            }
        }
        out.push(apply_row(conn, &events[i]).await?);
        i += 1;
    }
    Ok(out)
}

/// A request and, right after it, its decision: the row inserted as
/// decided. `None` when the two are not such a pair.
async fn insert_decided(
    conn: &mut AnyConnection,
    requested: &StoredEvent,
    decided: &StoredEvent,
) -> CoreResult<Option<RowChange>> {
    let DomainEvent::CompartmentOpenRequested {
        command_id,
        compartment_id,
        bank_id,
        tenant_id,
        user_id,
        override_,
        ..
    } = &requested.event
    else {
        return Ok(None);
    };
    let (status, denial) = match &decided.event {
        DomainEvent::CompartmentOpenAuthorized { command_id: c } if c == command_id => {
            (OpenStatus::Accepted, None)
        }
        DomainEvent::CompartmentOpenDenied {
            command_id: c,
            reason,
        } if c == command_id => (OpenStatus::Denied, Some(reason.as_str())),
        _ => return Ok(None),
    };
    insert_row(conn, requested, Some((status, denial, decided.occurred_at))).await?;
    let parties = OpenParties {
        user: *user_id,
        tenant: *tenant_id,
        compartment: *compartment_id,
        bank: *bank_id,
        override_: *override_,
    };
    let latest = LatestStatus {
        compartment: *compartment_id,
        status,
        command: *command_id,
        at: decided.occurred_at,
    };
    Ok(Some((Some(parties), Some(latest))))
}

/// Inserts a requested command's row: as `requested`, or already decided
/// (status, denial reason, when).
async fn insert_row(
    conn: &mut AnyConnection,
    requested: &StoredEvent,
    decided: Option<(OpenStatus, Option<&str>, i64)>,
) -> CoreResult<()> {
    let DomainEvent::CompartmentOpenRequested {
        command_id,
        compartment_id,
        bank_id,
        tenant_id,
        user_id,
        override_,
        reason,
    } = &requested.event
    else {
        return Ok(());
    };
    let actor = requested.metadata.actor.user_id().unwrap_or(*user_id);
    let at = requested.occurred_at;
    let (status, denial, updated_at) = decided.unwrap_or((OpenStatus::Requested, None, at));
    let (authorized_at, denied_at) = match (decided, status) {
        (None, _) => (None, None),
        (Some(_), OpenStatus::Accepted) => (Some(updated_at), None),
        (Some(_), _) => (None, Some(updated_at)),
    };
    sqlx::query(
        "INSERT INTO open_requests (command_id, tenant_id, compartment_id, bank_id, user_id, \
         actor_id, override, override_reason, status, requested_at, updated_at, \
         authorized_at, denied_at, denial_reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(command_id.to_string())
    .bind(tenant_id.to_string())
    .bind(compartment_id.to_string())
    .bind(bank_id.to_string())
    .bind(user_id.to_string())
    .bind(actor.to_string())
    .bind(i64::from(*override_))
    .bind(reason.clone())
    .bind(status.as_str())
    .bind(at)
    .bind(updated_at)
    .bind(authorized_at)
    .bind(denied_at)
    .bind(denial)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Applies `ev` to the command's row; for an event that changed it,
/// returns the command's parties and, for a status change, the
/// compartment's new latest status, which the caller writes
/// ([`write_latest`]: a batch writes them once, last).
pub async fn apply_row(conn: &mut AnyConnection, ev: &StoredEvent) -> CoreResult<RowChange> {
    let event = &ev.event;
    let at = ev.occurred_at;
    // One UPDATE of the command's row per event ($1 the time, $2 the
    // command, $3 and $4 the event's own columns), then the compartment's
    // latest status.
    let (command_id, set, status, extra): (Uuid, &str, Option<OpenStatus>, [Option<String>; 2]) =
        match event {
            DomainEvent::CompartmentOpenRequested { .. } => {
                insert_row(conn, ev, None).await?;
                return Ok((None, None));
            }
            DomainEvent::CompartmentOpenAuthorized { command_id } => (
                *command_id,
                "authorized_at = $1",
                Some(OpenStatus::Accepted),
                [None, None],
            ),
            DomainEvent::CompartmentOpenDenied { command_id, reason } => (
                *command_id,
                "denied_at = $1, denial_reason = $3",
                Some(OpenStatus::Denied),
                [Some(reason.as_str().to_string()), None],
            ),
            DomainEvent::CompartmentOpenSent { command_id } => (
                *command_id,
                "sent_at = $1",
                Some(OpenStatus::Sent),
                [None, None],
            ),
            DomainEvent::CompartmentOpened { command_id } => (
                *command_id,
                "opened_at = $1",
                Some(OpenStatus::Opened),
                [None, None],
            ),
            DomainEvent::CompartmentOpenFailed {
                command_id,
                reason,
                detail,
            } => (
                *command_id,
                "failed_at = $1, failure_reason = $3, failure_detail = $4",
                Some(OpenStatus::Failed),
                [
                    Some(reason.as_str().to_string()),
                    detail.clone().map(|d| truncate_chars(d, MAX_ERROR_CHARS)),
                ],
            ),
            DomainEvent::CompartmentOpenLateResult {
                command_id, result, ..
            } => (
                *command_id,
                "late_result_at = $1, late_result = $3",
                None,
                [Some(result.clone()), None],
            ),
            DomainEvent::LockerBankRegistered { .. }
            | DomainEvent::LockerBankDetailsChanged { .. }
            | DomainEvent::CompartmentDetailsChanged { .. }
            | DomainEvent::UserProfileChanged { .. }
            | DomainEvent::AccessWindowChanged { .. }
            | DomainEvent::CompartmentAdded { .. }
            | DomainEvent::CompartmentsImported { .. }
            | DomainEvent::DeviceStatusChanged { .. }
            | DomainEvent::CompartmentDoorChanged { .. }
            | DomainEvent::CompartmentOccupancyChanged { .. }
            | DomainEvent::LockerProvisioningRequested { .. }
            | DomainEvent::LockerProvisioningValidated { .. }
            | DomainEvent::LockerCredentialsCreated { .. }
            | DomainEvent::LockerCredentialsDelivered { .. }
            | DomainEvent::LockerWasProvisioned { .. }
            | DomainEvent::LockerProvisioningFailed { .. }
            | DomainEvent::LockerDecommissioned { .. }
            | DomainEvent::LockerProvisioningReset { .. }
            | DomainEvent::AccessGranted { .. }
            | DomainEvent::AccessRevoked { .. } => return Ok((None, None)),
        };
    let id = command_id.to_string();
    let status_set = match status {
        Some(s) => format!(", status = '{}'", s.as_str()),
        None => String::new(),
    };
    let sql = format!(
        "UPDATE open_requests SET {set}{status_set}, updated_at = $1 WHERE command_id = $2 \
         RETURNING {PARTIES}"
    );
    let mut update = sqlx::query(&sql).bind(at).bind(&id);
    // Only the parameters the statement names ($3, $4).
    let [third, fourth] = extra;
    if set.contains("$3") {
        update = update.bind(third);
    }
    if set.contains("$4") {
        update = update.bind(fourth);
    }
    let Some(row) = update.fetch_optional(&mut *conn).await? else {
        return Ok((None, None));
    };
    let parties = OpenParties::from_row(&row)?;
    let latest = status.map(|status| LatestStatus {
        compartment: parties.compartment,
        status,
        command: command_id,
        at,
    });
    Ok((Some(parties), latest))
}

/// A compartment's latest open status, as a status change leaves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatestStatus {
    pub compartment: Uuid,
    pub status: OpenStatus,
    pub command: Uuid,
    pub at: i64,
}

/// Writes compartments' latest statuses: the last one per compartment,
/// all in one statement (`UPDATE … FROM (VALUES …)`), listed in
/// compartment order. A batch writes them once, after all its events.
/// PostgreSQL locks the rows in the order its plan visits them: for a
/// batch's few rows that is the list's (an index lookup per row), so two
/// batches touching the same compartments lock them in one order; should
/// two plans ever differ and deadlock, the victim's writes run again
/// alone (`group_commit`).
pub async fn write_latest(conn: &mut AnyConnection, latest: &[LatestStatus]) -> CoreResult<()> {
    let mut last = std::collections::BTreeMap::new();
    for l in latest {
        last.insert(l.compartment, *l);
    }
    let last: Vec<LatestStatus> = last.into_values().collect();
    for chunk in last.chunks(LATEST_PER_STATEMENT) {
        let values = (0..chunk.len())
            .map(|r| {
                let p = |c: usize| format!("${}", r * 4 + c);
                format!("({}, {}, {}, {})", p(1), p(2), p(3), p(4))
            })
            .collect::<Vec<_>>()
            .join(", ");
        // VALUES columns are column1.. on both backends.
        let sql = format!(
            "UPDATE compartments SET latest_status = v.column2, latest_command_id = v.column3, \
             updated_at = v.column4 FROM (VALUES {values}) AS v WHERE compartments.id = v.column1"
        );
        let mut update = sqlx::query(&sql);
        for l in chunk {
            update = update
                .bind(l.compartment.to_string())
                .bind(l.status.as_str())
                .bind(l.command.to_string())
                .bind(l.at);
        }
        update.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Compartments one statement of [`write_latest`] names at most.
const LATEST_PER_STATEMENT: usize = 100;
