//! The `locker_banks` projector: `locker_banks` and `compartments` (their
//! door and occupancy, the bank's online state and provisioning state).

use std::collections::HashMap;

use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::{
    error::CoreResult,
    eventstore::events::{DomainEvent, StoredEvent},
    identity::accounts::parse_uuid,
};

/// A compartment with its bank, as commands need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompartmentRef {
    pub id: Uuid,
    pub bank_id: Uuid,
    pub tenant_id: Uuid,
    pub number: i64,
    pub bank_online: Option<bool>,
    pub bank_state: String,
}

pub async fn compartment_ref(
    conn: &mut AnyConnection,
    id: Uuid,
) -> CoreResult<Option<CompartmentRef>> {
    Ok(compartment_refs(conn, &[id]).await?.remove(&id))
}

/// Compartments one statement of [`compartment_refs`] reads at most.
const REFS_PER_STATEMENT: usize = 500;

/// The compartments of `ids` that exist, with their banks: one statement
/// per [`REFS_PER_STATEMENT`].
pub async fn compartment_refs(
    conn: &mut AnyConnection,
    ids: &[Uuid],
) -> CoreResult<HashMap<Uuid, CompartmentRef>> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(REFS_PER_STATEMENT) {
        let list = crate::eventstore::sql::in_list(chunk.len());
        let sql = format!(
            "SELECT c.id, c.bank_id, c.tenant_id, c.number, b.online, b.state FROM compartments c \
             JOIN locker_banks b ON b.id = c.bank_id WHERE c.id IN ({list})"
        );
        let mut read = sqlx::query(&sql);
        for id in chunk {
            read = read.bind(id.to_string());
        }
        for row in read.fetch_all(&mut *conn).await? {
            let c = CompartmentRef {
                id: parse_uuid(&row.try_get::<String, _>("id")?)?,
                bank_id: parse_uuid(&row.try_get::<String, _>("bank_id")?)?,
                tenant_id: parse_uuid(&row.try_get::<String, _>("tenant_id")?)?,
                number: row.try_get("number")?,
                bank_online: row.try_get::<Option<i64>, _>("online")?.map(|v| v != 0),
                bank_state: row.try_get("state")?,
            };
            out.insert(c.id, c);
        }
    }
    Ok(out)
}

pub async fn apply(conn: &mut AnyConnection, ev: &StoredEvent) -> CoreResult<()> {
    match &ev.event {
        DomainEvent::LockerBankRegistered {
            bank_id,
            tenant_id,
            serial,
            name,
            location,
            compartments,
        } => {
            sqlx::query(
                "INSERT INTO locker_banks (id, tenant_id, serial, name, location, state, online, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'registered', NULL, $6, $6)",
            )
            .bind(bank_id.to_string())
            .bind(tenant_id.to_string())
            .bind(serial)
            .bind(name)
            .bind(location.clone())
            .bind(ev.occurred_at)
            .execute(&mut *conn)
            .await?;
            for c in compartments {
                sqlx::query(
                    "INSERT INTO compartments (id, bank_id, tenant_id, number, size, label, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(c.id.to_string())
                .bind(bank_id.to_string())
                .bind(tenant_id.to_string())
                .bind(c.number)
                .bind(&c.size)
                .bind(c.label.clone())
                .bind(ev.occurred_at)
                .execute(&mut *conn)
                .await?;
            }
        }
        DomainEvent::LockerBankDetailsChanged {
            bank_id,
            version,
            name,
            location,
            notes,
            ..
        } => {
            sqlx::query(
                "UPDATE locker_banks SET name = $1, location = $2, notes = $3, version = $4, \
                 edited_at = $5, edited_by = $6, updated_at = $5 WHERE id = $7",
            )
            .bind(name)
            .bind(location.clone())
            .bind(notes.clone())
            .bind(*version)
            .bind(ev.occurred_at)
            .bind(ev.metadata.actor.user_id().map(|u| u.to_string()))
            .bind(bank_id.to_string())
            .execute(&mut *conn)
            .await?;
        }
        DomainEvent::CompartmentDetailsChanged {
            compartment_id,
            version,
            label,
            size,
            ..
        } => {
            sqlx::query(
                "UPDATE compartments SET label = $1, size = $2, version = $3, edited_at = $4, \
                 edited_by = $5, updated_at = $4 WHERE id = $6",
            )
            .bind(label.clone())
            .bind(size)
            .bind(*version)
            .bind(ev.occurred_at)
            .bind(ev.metadata.actor.user_id().map(|u| u.to_string()))
            .bind(compartment_id.to_string())
            .execute(&mut *conn)
            .await?;
        }
        DomainEvent::DeviceStatusChanged {
            bank_id, online, ..
        } => {
            let sql = if *online {
                "UPDATE locker_banks SET online = 1, last_seen_at = $1, updated_at = $1 WHERE id = $2"
            } else {
                "UPDATE locker_banks SET online = 0, updated_at = $1 WHERE id = $2"
            };
            sqlx::query(sql)
                .bind(ev.occurred_at)
                .bind(bank_id.to_string())
                .execute(&mut *conn)
                .await?;
        }
        DomainEvent::CompartmentDoorChanged {
            compartment_id,
            open,
            ..
        } => {
            sqlx::query("UPDATE compartments SET door_open = $1, updated_at = $2 WHERE id = $3")
                .bind(i64::from(*open))
                .bind(ev.occurred_at)
                .bind(compartment_id.to_string())
                .execute(&mut *conn)
                .await?;
        }
        DomainEvent::CompartmentOccupancyChanged {
            compartment_id,
            occupied,
            ..
        } => {
            sqlx::query("UPDATE compartments SET occupied = $1, updated_at = $2 WHERE id = $3")
                .bind(i64::from(*occupied))
                .bind(ev.occurred_at)
                .bind(compartment_id.to_string())
                .execute(&mut *conn)
                .await?;
        }
        DomainEvent::LockerProvisioningRequested { .. }
        | DomainEvent::LockerProvisioningValidated { .. }
        | DomainEvent::LockerCredentialsCreated { .. }
        | DomainEvent::LockerCredentialsDelivered { .. }
        | DomainEvent::LockerWasProvisioned { .. }
        | DomainEvent::LockerProvisioningFailed { .. }
        | DomainEvent::LockerDecommissioned { .. }
        | DomainEvent::LockerProvisioningReset { .. } => {
            apply_provisioning(conn, ev, &ev.event).await?
        }
        DomainEvent::CompartmentAdded {
            compartment_id,
            bank_id,
            tenant_id,
            number,
            size,
            label,
        } => {
            sqlx::query(
                "INSERT INTO compartments (id, bank_id, tenant_id, number, size, label, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(compartment_id.to_string())
            .bind(bank_id.to_string())
            .bind(tenant_id.to_string())
            .bind(*number)
            .bind(size)
            .bind(label.clone())
            .bind(ev.occurred_at)
            .execute(&mut *conn)
            .await?;
        }
        DomainEvent::UserProfileChanged { .. }
        | DomainEvent::CompartmentsImported { .. }
        | DomainEvent::AccessWindowChanged { .. }
        | DomainEvent::AccessGranted { .. }
        | DomainEvent::AccessRevoked { .. }
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

/// A provisioning or decommissioning event's bank, tenant, and the bank
/// state it moves to.
pub(super) fn provisioning_step(event: &DomainEvent) -> Option<(Uuid, Uuid, &'static str)> {
    Some(match event {
        DomainEvent::LockerProvisioningRequested {
            bank_id, tenant_id, ..
        } => (*bank_id, *tenant_id, "provisioning"),
        DomainEvent::LockerProvisioningValidated {
            bank_id, tenant_id, ..
        } => (*bank_id, *tenant_id, "validated"),
        DomainEvent::LockerCredentialsCreated {
            bank_id, tenant_id, ..
        } => (*bank_id, *tenant_id, "credentials_created"),
        DomainEvent::LockerCredentialsDelivered {
            bank_id, tenant_id, ..
        } => (*bank_id, *tenant_id, "credentials_delivered"),
        DomainEvent::LockerWasProvisioned { bank_id, tenant_id } => {
            (*bank_id, *tenant_id, "provisioned")
        }
        DomainEvent::LockerProvisioningFailed {
            bank_id: Some(bank_id),
            tenant_id: Some(tenant_id),
            ..
        } => (*bank_id, *tenant_id, "provisioning_failed"),
        DomainEvent::LockerDecommissioned {
            bank_id, tenant_id, ..
        } => (*bank_id, *tenant_id, "decommissioned"),
        DomainEvent::LockerProvisioningReset {
            bank_id, tenant_id, ..
        } => (*bank_id, *tenant_id, "registered"),
        _ => return None,
    })
}

/// Moves a bank along its provisioning states. A provisioned bank is not
/// moved back by a later (refused) attempt, and a decommissioned one stays
/// decommissioned.
async fn apply_provisioning(
    conn: &mut AnyConnection,
    ev: &StoredEvent,
    event: &DomainEvent,
) -> CoreResult<()> {
    let Some((bank_id, _, state)) = provisioning_step(event) else {
        return Ok(());
    };
    let bank = bank_id.to_string();
    let at = ev.occurred_at;
    let guard = "id = $2 AND state NOT IN ('provisioned', 'decommissioned')";
    match event {
        DomainEvent::LockerProvisioningRequested {
            model, firmware, ..
        } => {
            sqlx::query(&format!(
                "UPDATE locker_banks SET state = 'provisioning', updated_at = $1, provisioning_error = NULL, \
                 model = COALESCE($3, model), firmware = COALESCE($4, firmware) WHERE {guard}"
            ))
            .bind(at)
            .bind(&bank)
            .bind(model.clone())
            .bind(firmware.clone())
            .execute(&mut *conn)
            .await?;
        }
        DomainEvent::LockerCredentialsCreated { username, .. } => {
            sqlx::query(&format!(
                "UPDATE locker_banks SET state = 'credentials_created', updated_at = $1, mqtt_username = $3 WHERE {guard}"
            ))
            .bind(at)
            .bind(&bank)
            .bind(username)
            .execute(&mut *conn)
            .await?;
        }
        DomainEvent::LockerWasProvisioned { .. } => {
            sqlx::query(&format!(
                "UPDATE locker_banks SET state = 'provisioned', updated_at = $1, provisioned_at = $1 WHERE {guard}"
            ))
            .bind(at)
            .bind(&bank)
            .execute(&mut *conn)
            .await?;
        }
        DomainEvent::LockerProvisioningFailed { reason, .. } => {
            sqlx::query(&format!(
                "UPDATE locker_banks SET state = 'provisioning_failed', updated_at = $1, provisioning_error = $3 WHERE {guard}"
            ))
            .bind(at)
            .bind(&bank)
            .bind(reason.as_str())
            .execute(&mut *conn)
            .await?;
        }
        DomainEvent::LockerProvisioningReset { .. } => {
            // Back to registered, whatever it was: provisioned, failed or
            // decommissioned. The old account is disabled by the reactor.
            sqlx::query(
                "UPDATE locker_banks SET state = 'registered', online = NULL, updated_at = $1, \
                 provisioned_at = NULL, decommissioned_at = NULL, provisioning_error = NULL, \
                 mqtt_username = NULL WHERE id = $2",
            )
            .bind(at)
            .bind(&bank)
            .execute(&mut *conn)
            .await?;
        }
        DomainEvent::LockerDecommissioned { .. } => {
            sqlx::query(
                "UPDATE locker_banks SET state = 'decommissioned', online = 0, updated_at = $1, \
                 decommissioned_at = $1 WHERE id = $2",
            )
            .bind(at)
            .bind(&bank)
            .execute(&mut *conn)
            .await?;
        }
        _ => {
            sqlx::query(&format!(
                "UPDATE locker_banks SET state = $3, updated_at = $1 WHERE {guard}"
            ))
            .bind(at)
            .bind(&bank)
            .bind(state)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}
