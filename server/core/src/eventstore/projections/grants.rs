//! The `grants` projector: who may open which compartment, and when.

use sqlx::AnyConnection;

use crate::{
    error::CoreResult,
    eventstore::events::{DomainEvent, StoredEvent},
};

pub async fn apply(conn: &mut AnyConnection, ev: &StoredEvent) -> CoreResult<()> {
    match &ev.event {
        DomainEvent::AccessGranted {
            grant_id,
            compartment_id,
            tenant_id,
            user_id,
            valid_from,
            valid_until,
            ..
        } => {
            let actor = ev
                .metadata
                .actor
                .user_id()
                .map(|u| u.to_string())
                .unwrap_or_else(|| "system".into());
            sqlx::query(
                "INSERT INTO grants (id, compartment_id, tenant_id, user_id, valid_from, valid_until, \
                 created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(grant_id.to_string())
            .bind(compartment_id.to_string())
            .bind(tenant_id.to_string())
            .bind(user_id.to_string())
            .bind(*valid_from)
            .bind(*valid_until)
            .bind(actor)
            .bind(ev.occurred_at)
            .execute(&mut *conn)
            .await?;
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
