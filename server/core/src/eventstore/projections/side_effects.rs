//! The side effects an event schedules in its own transaction: an outbox
//! job (send the command, disable a decommissioned locker's account) and
//! the open command's timeout, dropped once the command ended (by the
//! batch, at its end: [`schedule`] returns the timer).

use sqlx::AnyConnection;

use crate::{
    error::CoreResult,
    eventstore::{
        events::{DomainEvent, StoredEvent},
        outbox, timers,
    },
};

/// Whether `event` queues an outbox job ([`schedule`]): what the outbox
/// worker is woken for once it committed.
pub fn queues_outbox_job(event: &DomainEvent) -> bool {
    matches!(
        event,
        DomainEvent::CompartmentOpenAuthorized { .. }
            | DomainEvent::LockerDecommissioned { .. }
            | DomainEvent::LockerProvisioningReset { .. }
    )
}

/// Schedules `ev`'s side effects; returns the timer it ends, which the
/// caller drops with the rest of its batch's (`timers::cancel_all`).
pub async fn schedule(
    conn: &mut AnyConnection,
    ev: &StoredEvent,
    open_timeout_ms: i64,
) -> CoreResult<Option<String>> {
    match &ev.event {
        DomainEvent::CompartmentOpenAuthorized { command_id } => {
            let due = ev.occurred_at + open_timeout_ms;
            if conn.backend_name() == "PostgreSQL" {
                // One round trip for both (see `open_requests`).
                outbox::enqueue_with_timer(
                    conn,
                    ev.event_id,
                    outbox::SEND_OPEN,
                    ev.occurred_at,
                    (timers::OPEN_TIMEOUT, *command_id, due),
                )
                .await?;
            } else {
                outbox::enqueue(conn, ev.event_id, outbox::SEND_OPEN, ev.occurred_at).await?;
                timers::schedule(conn, timers::OPEN_TIMEOUT, *command_id, due).await?;
            }
        }
        DomainEvent::CompartmentOpened { command_id }
        | DomainEvent::CompartmentOpenFailed { command_id, .. } => {
            return Ok(Some(timers::timer_id(timers::OPEN_TIMEOUT, *command_id)));
        }
        DomainEvent::LockerDecommissioned { .. } | DomainEvent::LockerProvisioningReset { .. } => {
            outbox::enqueue(conn, ev.event_id, outbox::DISABLE_LOCKER, ev.occurred_at).await?;
        }
        _ => {}
    }
    Ok(None)
}
