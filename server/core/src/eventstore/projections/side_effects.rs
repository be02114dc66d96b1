//! The side effects an event schedules in its own transaction: an outbox
//! job (send the command, disable a decommissioned locker's account) and
//! the open command's timeout, dropped once the command ended. [`schedule`]
//! only says what to write: the batch writes them all at its end, a
//! statement per kind (`store::append_envelopes`).

use crate::eventstore::{
    events::{DomainEvent, StoredEvent},
    outbox::{self, NewJob},
    timers::{self, NewTimer},
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

/// What an event schedules and ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scheduled {
    pub job: Option<NewJob>,
    pub timer: Option<NewTimer>,
    /// The timer it ends.
    pub ended_timer: Option<String>,
}

/// `ev`'s side effects.
pub fn schedule(ev: &StoredEvent, open_timeout_ms: i64) -> Scheduled {
    let job = |reactor| NewJob {
        event_id: ev.event_id,
        reactor,
        at: ev.occurred_at,
    };
    match &ev.event {
        DomainEvent::CompartmentOpenAuthorized { command_id } => Scheduled {
            job: Some(job(outbox::SEND_OPEN)),
            timer: Some(NewTimer {
                kind: timers::OPEN_TIMEOUT,
                subject: *command_id,
                due_at: ev.occurred_at + open_timeout_ms,
            }),
            ended_timer: None,
        },
        DomainEvent::CompartmentOpened { command_id }
        | DomainEvent::CompartmentOpenFailed { command_id, .. } => Scheduled {
            ended_timer: Some(timers::timer_id(timers::OPEN_TIMEOUT, *command_id)),
            ..Scheduled::default()
        },
        DomainEvent::LockerDecommissioned { .. } | DomainEvent::LockerProvisioningReset { .. } => {
            Scheduled {
                job: Some(job(outbox::DISABLE_LOCKER)),
                ..Scheduled::default()
            }
        }
        _ => Scheduled::default(),
    }
}
