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

/// Applies `ev` to the command's row; for an event that changed it,
/// returns the command's parties and, for a status change, the
/// compartment's new latest status, which the caller writes
/// ([`write_latest`]: a batch writes them once, last).
pub async fn apply_row(
    conn: &mut AnyConnection,
    ev: &StoredEvent,
) -> CoreResult<(Option<OpenParties>, Option<LatestStatus>)> {
    let event = &ev.event;
    let at = ev.occurred_at;
    // One UPDATE of the command's row per event ($1 the time, $2 the
    // command, $3 and $4 the event's own columns), then the compartment's
    // latest status.
    let (command_id, set, status, extra): (Uuid, &str, Option<OpenStatus>, [Option<String>; 2]) =
        match event {
            DomainEvent::CompartmentOpenRequested {
                command_id,
                compartment_id,
                bank_id,
                tenant_id,
                user_id,
                override_,
                reason,
            } => {
                let actor = ev.metadata.actor.user_id().unwrap_or(*user_id);
                sqlx::query(
                    "INSERT INTO open_requests (command_id, tenant_id, compartment_id, bank_id, user_id, \
                     actor_id, override, override_reason, status, requested_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'requested', $9, $9)",
                )
                .bind(command_id.to_string())
                .bind(tenant_id.to_string())
                .bind(compartment_id.to_string())
                .bind(bank_id.to_string())
                .bind(user_id.to_string())
                .bind(actor.to_string())
                .bind(i64::from(*override_))
                .bind(reason.clone())
                .bind(at)
                .execute(&mut *conn)
                .await?;
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
/// in compartment order. A batch writes them once, after all its events,
/// and in that one order: two batches that touch the same compartments
/// take their row locks in the same order (PostgreSQL), so they cannot
/// deadlock.
pub async fn write_latest(conn: &mut AnyConnection, latest: &[LatestStatus]) -> CoreResult<()> {
    let mut last = std::collections::BTreeMap::new();
    for l in latest {
        last.insert(l.compartment, *l);
    }
    for l in last.values() {
        sqlx::query(
            "UPDATE compartments SET latest_status = $1, latest_command_id = $2, updated_at = $3 \
             WHERE id = $4",
        )
        .bind(l.status.as_str())
        .bind(l.command.to_string())
        .bind(l.at)
        .bind(l.compartment.to_string())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
