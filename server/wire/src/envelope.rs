//! What a client receives from the channel log, pushed live or polled
//! (`docs/realtime.md`): the envelope, the actor that caused it, the names
//! of the events clients act on, and the typed bodies they read.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::open::{OpenReason, OpenStatus};

/// Who caused an event.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    User { id: Uuid },
    Token { id: Uuid, user_id: Uuid },
    System,
}

impl Actor {
    /// The user behind the actor, if any.
    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Actor::User { id } | Actor::Token { user_id: id, .. } => Some(*id),
            Actor::System => None,
        }
    }
}

/// What an envelope is about.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Uuid,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeMeta {
    pub replay: bool,
}

/// The envelope's schema version.
pub const ENVELOPE_VERSION: u8 = 1;

/// One change on one channel, with the channel's gap-free `seq`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u8,
    pub event: String,
    pub event_id: Uuid,
    pub channel: String,
    pub seq: i64,
    pub occurred_at: String,
    pub tenant: Uuid,
    pub subject: Subject,
    pub sender: Actor,
    pub correlation_id: Uuid,
    pub data: Value,
    pub meta: EnvelopeMeta,
}

impl Envelope {
    /// The body as `T` when the envelope carries event `name`; `None` for
    /// another event or a body that does not match (logged by the caller
    /// if it matters).
    pub fn data_as<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        (self.event == name)
            .then(|| serde_json::from_value(self.data.clone()).ok())
            .flatten()
    }
}

/// The answer to "what happened on this channel after `seq`"
/// (`GET /api/v1/events/since`, the polling fallback of the hub).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Since {
    pub channel: String,
    /// The channel's current seq (0 when nothing was ever written).
    pub seq: i64,
    /// True when history no longer reaches back to the asked seq: the
    /// client must refetch its resources, then follow from `seq`.
    pub reset: bool,
    pub events: Vec<Envelope>,
}

/// The event names of the envelopes clients act on. Provisioning, door
/// and occupancy envelopes carry the domain event's own name.
pub mod names {
    /// Body: [`OpenStatusUpdated`](super::OpenStatusUpdated).
    pub const OPEN_STATUS_UPDATED: &str = "CompartmentOpenStatusUpdated";
    /// A locker answered after its command had ended.
    pub const OPEN_LATE_RESULT: &str = "CompartmentOpenLateResult";
    pub const LOCKER_BANK_REGISTERED: &str = "LockerBankRegistered";
    pub const DEVICE_STATUS_CHANGED: &str = "DeviceStatusChanged";
    pub const ACCESS_GRANTED: &str = "AccessGranted";
    pub const ACCESS_REVOKED: &str = "AccessRevoked";
    /// Body: [`RecordUpdated`](crate::record::RecordUpdated).
    pub const RECORD_UPDATED: &str = "RecordUpdated";
    /// Body: [`RecordsImported`](crate::record::RecordsImported).
    pub const RECORDS_IMPORTED: &str = "RecordsImported";
}

/// The body of a `CompartmentOpenStatusUpdated` envelope: an open
/// command's new status.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenStatusUpdated {
    pub command_id: Uuid,
    pub compartment_id: Uuid,
    pub locker_bank_id: Uuid,
    pub status: OpenStatus,
    pub reason: Option<OpenReason>,
    /// With `failed`: what the locker said (`device_error`) or why the
    /// send failed; at most 500 characters.
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(rename = "override")]
    pub override_: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::open::FailureReason;

    #[test]
    fn an_open_status_body_reads_back_typed() {
        let body = OpenStatusUpdated {
            command_id: Uuid::now_v7(),
            compartment_id: Uuid::now_v7(),
            locker_bank_id: Uuid::now_v7(),
            status: OpenStatus::Failed,
            reason: Some(FailureReason::Timeout.into()),
            detail: None,
            override_: false,
        };
        let json = serde_json::to_value(&body).expect("json");
        assert_eq!(json["status"], "failed");
        assert_eq!(json["reason"], "timeout");
        assert_eq!(json["override"], false);
        let env = Envelope {
            v: ENVELOPE_VERSION,
            event: names::OPEN_STATUS_UPDATED.into(),
            event_id: Uuid::now_v7(),
            channel: "private-user.x".into(),
            seq: 1,
            occurred_at: String::new(),
            tenant: Uuid::now_v7(),
            subject: Subject {
                kind: "open_request".into(),
                id: body.command_id,
            },
            sender: Actor::System,
            correlation_id: body.command_id,
            data: json,
            meta: EnvelopeMeta { replay: false },
        };
        assert_eq!(
            env.data_as::<OpenStatusUpdated>(names::OPEN_STATUS_UPDATED),
            Some(body)
        );
        assert_eq!(
            env.data_as::<OpenStatusUpdated>(names::ACCESS_GRANTED),
            None
        );
    }
}
