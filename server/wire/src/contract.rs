//! The wire names as a compile-time contract. They are stored (events,
//! read-model rows), spoken by lockers' firmware and read by clients, so
//! changing one is a data migration and a protocol change, never a
//! rename: each is checked here against its literal, and a change breaks
//! the build of this crate, and so of the core, the bridge, the simulator
//! and the app together, until this list (and docs/mqtt.md,
//! docs/realtime.md, a migration) are changed with it.

use crate::{
    mqtt::{topics, CommandAction, CommandResult, Door, LockerTopic, ProvisioningFailure},
    open::{DenialReason, FailureReason, OpenStatus},
};

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

macro_rules! contract {
    ($($value:expr => $wire:literal),+ $(,)?) => {
        $(const _: () = assert!(same($value.as_str(), $wire), concat!("wire name changed: ", $wire));)+
    };
}

contract! {
    OpenStatus::Requested => "requested",
    OpenStatus::Accepted => "accepted",
    OpenStatus::Denied => "denied",
    OpenStatus::Sent => "sent",
    OpenStatus::Opened => "opened",
    OpenStatus::Failed => "failed",
    DenialReason::NoAccess => "no_access",
    DenialReason::AccessNotYetValid => "access_not_yet_valid",
    DenialReason::AccessExpired => "access_expired",
    DenialReason::LockerOffline => "locker_offline",
    DenialReason::LockerDecommissioned => "locker_decommissioned",
    FailureReason::Timeout => "timeout",
    FailureReason::DeviceError => "device_error",
    FailureReason::SendFailed => "send_failed",
    CommandAction::Open => "open",
    CommandResult::ActionCompleted => "action_completed",
    CommandResult::ActionFailed => "action_failed",
    Door::Open => "open",
    Door::Closed => "closed",
    LockerTopic::Command => "command",
    LockerTopic::Status => "status",
    LockerTopic::State => "state",
    LockerTopic::Ack => "ack",
    ProvisioningFailure::UnknownSerial => "unknown_serial",
    ProvisioningFailure::InvalidKey => "invalid_key",
    ProvisioningFailure::InvalidRegistration => "invalid_registration",
    ProvisioningFailure::AlreadyProvisioned => "already_provisioned",
    ProvisioningFailure::Decommissioned => "decommissioned",
    ProvisioningFailure::BrokerError => "broker_error",
    ProvisioningFailure::DeliveryFailed => "delivery_failed",
    ProvisioningFailure::Superseded => "superseded",
    ProvisioningFailure::Internal => "internal",
}

const _: () = assert!(same(topics::REGISTER, "provisioning/register"));

// Every variant is in the list above: adding one without its line here
// fails these counts.
const _: () = assert!(OpenStatus::ALL.len() == 6);
const _: () = assert!(DenialReason::ALL.len() == 5);
const _: () = assert!(FailureReason::ALL.len() == 3);
const _: () = assert!(CommandResult::ALL.len() == 2);
const _: () = assert!(ProvisioningFailure::ALL.len() == 9);
const _: () = assert!(LockerTopic::ALL.len() == 4);

/// Channel names are formatted at run time; their shapes are checked by
/// this test instead.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Channel;

    #[test]
    fn channel_names_keep_their_shape() {
        let id = uuid::Uuid::nil();
        assert_eq!(
            Channel::User(id).to_string(),
            "private-user.00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            Channel::TenantLockers(id).to_string(),
            "private-tenant.00000000-0000-0000-0000-000000000000.lockers"
        );
        assert_eq!(
            Channel::TenantOpenRequests(id).to_string(),
            "private-tenant.00000000-0000-0000-0000-000000000000.open-requests"
        );
        assert_eq!(
            Channel::LockerBank(id).to_string(),
            "private-locker-bank.00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            topics::locker(id, LockerTopic::Command),
            "locker/00000000-0000-0000-0000-000000000000/command"
        );
    }
}
