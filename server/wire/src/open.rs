//! The open command's lifecycle on the wire: `accepted`/`denied` at once,
//! then `sent` and `opened`/`failed`, with the reason for a denial or a
//! failure. Stored in the read model and in events under these same names.

use serde::{Deserialize, Serialize};

wire_enum! {
    /// Where an open command stands.
    pub enum OpenStatus ("open status") {
        /// Recorded, not yet decided (only ever seen inside a transaction).
        Requested = "requested",
        /// Authorized; the send to the locker is scheduled.
        Accepted = "accepted",
        /// Refused at once (see [`DenialReason`]).
        Denied = "denied",
        /// The broker acknowledged the command (QoS 1 PUBACK).
        Sent = "sent",
        /// The locker reported the compartment open.
        Opened = "opened",
        /// It did not open (see [`FailureReason`]).
        Failed = "failed",
    }
}

impl OpenStatus {
    /// Whether nothing more will happen to the command.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OpenStatus::Denied | OpenStatus::Opened | OpenStatus::Failed
        )
    }

    /// How far along its lifecycle a command with this status is: a
    /// status never replaces one further along (the answer to an open can
    /// reach a page after the `sent` pushed on the socket).
    pub fn stage(self) -> u8 {
        match self {
            OpenStatus::Requested => 0,
            OpenStatus::Accepted => 1,
            OpenStatus::Sent => 2,
            OpenStatus::Denied | OpenStatus::Opened | OpenStatus::Failed => 3,
        }
    }
}

wire_enum! {
    /// Why an open was refused at once.
    pub enum DenialReason ("denial reason") {
        /// The user holds no grant on the compartment.
        NoAccess = "no_access",
        /// The user's grant starts later.
        AccessNotYetValid = "access_not_yet_valid",
        /// The user's grant has ended.
        AccessExpired = "access_expired",
        /// The locker bank missed its heartbeats.
        LockerOffline = "locker_offline",
        /// The locker bank was taken out of service.
        LockerDecommissioned = "locker_decommissioned",
    }
}

wire_enum! {
    /// Why an accepted open did not end `opened`.
    pub enum FailureReason ("failure reason") {
        /// No answer from the locker before the open timeout.
        Timeout = "timeout",
        /// The locker answered `action_failed`.
        DeviceError = "device_error",
        /// The command could not be handed to the broker.
        SendFailed = "send_failed",
    }
}

/// The reason that goes with a `denied` or `failed` status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum OpenReason {
    Denied(DenialReason),
    Failed(FailureReason),
}

impl OpenReason {
    pub fn as_str(self) -> &'static str {
        match self {
            OpenReason::Denied(r) => r.as_str(),
            OpenReason::Failed(r) => r.as_str(),
        }
    }
}

impl std::fmt::Display for OpenReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<DenialReason> for OpenReason {
    fn from(r: DenialReason) -> Self {
        OpenReason::Denied(r)
    }
}

impl From<FailureReason> for OpenReason {
    fn from(r: FailureReason) -> Self {
        OpenReason::Failed(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_through_serde_and_from_str() {
        for s in OpenStatus::ALL {
            let json = serde_json::to_string(s).expect("serializes");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<OpenStatus>(&json).ok(), Some(*s));
            assert_eq!(s.as_str().parse::<OpenStatus>().ok(), Some(*s));
        }
        assert_eq!(OpenStatus::Opened.to_string(), "opened");
        let err = "opend".parse::<OpenStatus>().expect_err("unknown");
        assert!(err.to_string().contains("opened"), "{err}");
    }

    #[test]
    fn a_reason_reads_as_whichever_kind_it_is() {
        let r: OpenReason = serde_json::from_str("\"locker_offline\"").expect("denial");
        assert_eq!(r, OpenReason::Denied(DenialReason::LockerOffline));
        let r: OpenReason = serde_json::from_str("\"timeout\"").expect("failure");
        assert_eq!(r, OpenReason::Failed(FailureReason::Timeout));
        assert!(serde_json::from_str::<OpenReason>("\"bored\"").is_err());
        assert_eq!(r.to_string(), "timeout");
    }
}
