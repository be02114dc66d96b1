//! The provisioning reply a locker reads on
//! `provisioning/{client_id}/reply`, and the reasons an attempt fails.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The schema version of a provisioning reply.
pub const REPLY_VERSION: u8 = 1;

wire_enum! {
    /// Why a provisioning attempt ended without credentials.
    pub enum ProvisioningFailure ("provisioning failure") {
        /// No bank has the serial and no provisioning key was given.
        UnknownSerial = "unknown_serial",
        /// The key is unknown, revoked, expired, or another tenant's.
        InvalidKey = "invalid_key",
        /// The registration's content cannot be used.
        InvalidRegistration = "invalid_registration",
        /// The bank is provisioned; an admin must reset it first.
        AlreadyProvisioned = "already_provisioned",
        /// The bank was taken out of service.
        Decommissioned = "decommissioned",
        /// The broker refused to create the account.
        BrokerError = "broker_error",
        /// The reply could not be delivered.
        DeliveryFailed = "delivery_failed",
        /// An admin reset the bank's provisioning while this attempt ran:
        /// ask again.
        Superseded = "superseded",
        /// Something failed on the server's side.
        Internal = "internal",
    }
}

/// What the locker reads on its reply topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisioningReply {
    pub v: u8,
    pub ok: bool,
    pub attempt_id: Uuid,
    pub locker_bank_id: Option<Uuid>,
    /// Username, also the client id the locker must connect with.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Why, when `ok` is false.
    pub error: Option<ProvisioningFailure>,
    pub detail: Option<String>,
    /// Where the locker listener is (`mqtt://host:port`), when the server
    /// knows (`LOCKSTEP_LOCKER_MQTT_URL`, or the embedded broker).
    #[serde(default)]
    pub broker_url: Option<String>,
}

impl ProvisioningReply {
    pub fn refused(
        attempt_id: Uuid,
        bank_id: Option<Uuid>,
        reason: ProvisioningFailure,
        detail: Option<String>,
    ) -> Self {
        ProvisioningReply {
            v: REPLY_VERSION,
            ok: false,
            attempt_id,
            locker_bank_id: bank_id,
            username: None,
            password: None,
            error: Some(reason),
            detail,
            broker_url: None,
        }
    }
}
