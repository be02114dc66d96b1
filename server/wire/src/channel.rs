//! The channels of the channel log, named as Pusher clients subscribe to
//! them (`private-…`). Who may read which is decided in the core
//! (`lockstep_core::eventstore::channels::authorize`).

use std::{fmt, str::FromStr};

use uuid::Uuid;

/// One channel.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// `private-user.{user_id}`: that user's own commands and access.
    User(Uuid),
    /// `private-tenant.{tenant_id}.lockers`
    TenantLockers(Uuid),
    /// `private-tenant.{tenant_id}.open-requests`
    TenantOpenRequests(Uuid),
    /// `private-locker-bank.{bank_id}`: provisioning, compartments.
    LockerBank(Uuid),
}

/// A string that names no Lockstep channel.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Lockstep channel")]
pub struct NotAChannel(pub String);

const USER: &str = "private-user.";
const LOCKER_BANK: &str = "private-locker-bank.";
const TENANT: &str = "private-tenant.";
const LOCKERS: &str = ".lockers";
const OPEN_REQUESTS: &str = ".open-requests";

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::User(id) => write!(f, "{USER}{id}"),
            Channel::TenantLockers(id) => write!(f, "{TENANT}{id}{LOCKERS}"),
            Channel::TenantOpenRequests(id) => write!(f, "{TENANT}{id}{OPEN_REQUESTS}"),
            Channel::LockerBank(id) => write!(f, "{LOCKER_BANK}{id}"),
        }
    }
}

impl FromStr for Channel {
    type Err = NotAChannel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || NotAChannel(s.chars().take(200).collect());
        let uuid = |t: &str| Uuid::parse_str(t).map_err(|_| bad());
        if let Some(rest) = s.strip_prefix(USER) {
            return Ok(Channel::User(uuid(rest)?));
        }
        if let Some(rest) = s.strip_prefix(LOCKER_BANK) {
            return Ok(Channel::LockerBank(uuid(rest)?));
        }
        if let Some(rest) = s.strip_prefix(TENANT) {
            if let Some(id) = rest.strip_suffix(LOCKERS) {
                return Ok(Channel::TenantLockers(uuid(id)?));
            }
            if let Some(id) = rest.strip_suffix(OPEN_REQUESTS) {
                return Ok(Channel::TenantOpenRequests(uuid(id)?));
            }
        }
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_trip_and_garbage_is_refused() {
        let id = Uuid::now_v7();
        for c in [
            Channel::User(id),
            Channel::TenantLockers(id),
            Channel::TenantOpenRequests(id),
            Channel::LockerBank(id),
        ] {
            assert_eq!(c.to_string().parse::<Channel>().ok(), Some(c));
        }
        assert_eq!(
            Channel::TenantLockers(id).to_string(),
            format!("private-tenant.{id}.lockers")
        );
        for bad in [
            "",
            "private-user.x",
            "presence-user.1",
            "private-tenant.lockers",
        ] {
            assert!(bad.parse::<Channel>().is_err(), "{bad}");
        }
    }
}
