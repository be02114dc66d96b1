//! The `grants` projector: who may open which compartment, and when.
//! A new grant is a row of its own ([`NewGrant`]), so a batch inserts its
//! writes' new grants in one statement at its end.

use sqlx::AnyConnection;

use crate::{
    error::CoreResult,
    eventstore::events::{DomainEvent, StoredEvent},
    eventstore::sql::{value_rows, Arg, Stmt},
};

/// Rows per multi-row insert (8 values each, under SQLite's 32,766).
const GRANTS_PER_STATEMENT: usize = 1_000;

/// The row an `AccessGranted` inserts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewGrant {
    id: String,
    compartment: String,
    tenant: String,
    user: String,
    valid_from: Option<i64>,
    valid_until: Option<i64>,
    created_by: String,
    created_at: i64,
}

impl NewGrant {
    /// The new row `ev` inserts, if it is a grant.
    pub fn of(ev: &StoredEvent) -> Option<NewGrant> {
        let DomainEvent::AccessGranted {
            grant_id,
            compartment_id,
            tenant_id,
            user_id,
            valid_from,
            valid_until,
            ..
        } = &ev.event
        else {
            return None;
        };
        Some(NewGrant {
            id: grant_id.to_string(),
            compartment: compartment_id.to_string(),
            tenant: tenant_id.to_string(),
            user: user_id.to_string(),
            valid_from: *valid_from,
            valid_until: *valid_until,
            created_by: ev
                .metadata
                .actor
                .user_id()
                .map(|u| u.to_string())
                .unwrap_or_else(|| "system".into()),
            created_at: ev.occurred_at,
        })
    }
}

/// Whether `ev` edits a grant's row (which must then exist).
pub fn edits(ev: &StoredEvent) -> bool {
    matches!(
        ev.event,
        DomainEvent::AccessWindowChanged { .. } | DomainEvent::AccessRevoked { .. }
    )
}

/// Inserts new grants' rows, a statement per few hundred.
pub async fn insert_all(conn: &mut AnyConnection, rows: &[NewGrant]) -> CoreResult<()> {
    for stmt in insert_stmts(rows) {
        stmt.query().execute(&mut *conn).await?;
    }
    Ok(())
}

/// The statements of [`insert_all`].
pub fn insert_stmts(rows: &[NewGrant]) -> Vec<Stmt> {
    rows.chunks(GRANTS_PER_STATEMENT)
        .map(|chunk| Stmt {
            sql: format!(
                "INSERT INTO grants (id, compartment_id, tenant_id, user_id, valid_from, valid_until, \
                 created_by, created_at) VALUES {}",
                value_rows(chunk.len(), 8, "")
            ),
            args: chunk
                .iter()
                .flat_map(|g| {
                    [
                        Arg::from(g.id.as_str()),
                        g.compartment.as_str().into(),
                        g.tenant.as_str().into(),
                        g.user.as_str().into(),
                        g.valid_from.into(),
                        g.valid_until.into(),
                        g.created_by.as_str().into(),
                        g.created_at.into(),
                    ]
                })
                .collect(),
        })
        .collect()
}

pub async fn apply(conn: &mut AnyConnection, ev: &StoredEvent) -> CoreResult<()> {
    match &ev.event {
        DomainEvent::AccessGranted { .. } => {
            insert_all(conn, NewGrant::of(ev).as_slice()).await?;
        }
        DomainEvent::AccessWindowChanged {
            grant_id,
            version,
            valid_from,
            valid_until,
            ..
        } => {
            sqlx::query(
                "UPDATE grants SET valid_from = $1, valid_until = $2, version = $3, edited_at = $4, \
                 edited_by = $5 WHERE id = $6",
            )
            .bind(*valid_from)
            .bind(*valid_until)
            .bind(*version)
            .bind(ev.occurred_at)
            .bind(ev.metadata.actor.user_id().map(|u| u.to_string()))
            .bind(grant_id.to_string())
            .execute(&mut *conn)
            .await?;
        }
        DomainEvent::AccessRevoked { grant_id, .. } => {
            sqlx::query("UPDATE grants SET revoked_at = $1 WHERE id = $2")
                .bind(ev.occurred_at)
                .bind(grant_id.to_string())
                .execute(&mut *conn)
                .await?;
        }
        DomainEvent::LockerBankRegistered { .. }
        | DomainEvent::LockerBankDetailsChanged { .. }
        | DomainEvent::CompartmentDetailsChanged { .. }
        | DomainEvent::UserProfileChanged { .. }
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
        | DomainEvent::CompartmentOpenRequested { .. }
        | DomainEvent::CompartmentOpenAuthorized { .. }
        | DomainEvent::CompartmentOpenDenied { .. }
        | DomainEvent::CompartmentOpenSent { .. }
        | DomainEvent::CompartmentOpened { .. }
        | DomainEvent::CompartmentOpenFailed { .. }
        | DomainEvent::CompartmentOpenLateResult { .. } => {}
    }
    Ok(())
}
