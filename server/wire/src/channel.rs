//! The channels of the channel log, named as Pusher clients subscribe to
//! them (`private-…`), and Lockstep's presence channels (`presence-…`).
//! Who may read or join which is decided in the core
//! (`lockstep_core::eventstore::channels::authorize`, `authorize_presence`).

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
    /// `private-tenant.{tenant_id}.users`: the tenant's accounts edited.
    TenantUsers(Uuid),
    /// `private-locker-bank.{bank_id}`: provisioning, compartments.
    LockerBank(Uuid),
    /// `private-record.{type}.{id}`: `RecordUpdated` for one record, for
    /// the admins editing or viewing it.
    Record(RecordType, Uuid),
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
const USERS: &str = ".users";
const RECORD: &str = "private-record.";

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::User(id) => write!(f, "{USER}{id}"),
            Channel::TenantLockers(id) => write!(f, "{TENANT}{id}{LOCKERS}"),
            Channel::TenantOpenRequests(id) => write!(f, "{TENANT}{id}{OPEN_REQUESTS}"),
            Channel::TenantUsers(id) => write!(f, "{TENANT}{id}{USERS}"),
            Channel::LockerBank(id) => write!(f, "{LOCKER_BANK}{id}"),
            Channel::Record(kind, id) => write!(f, "{RECORD}{kind}.{id}"),
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
        if let Some(rest) = s.strip_prefix(RECORD) {
            let (kind, id) = rest.split_once('.').ok_or_else(bad)?;
            let kind = kind.parse::<RecordType>().map_err(|_| bad())?;
            return Ok(Channel::Record(kind, uuid(id)?));
        }
        if let Some(rest) = s.strip_prefix(TENANT) {
            if let Some(id) = rest.strip_suffix(LOCKERS) {
                return Ok(Channel::TenantLockers(uuid(id)?));
            }
            if let Some(id) = rest.strip_suffix(OPEN_REQUESTS) {
                return Ok(Channel::TenantOpenRequests(uuid(id)?));
            }
            if let Some(id) = rest.strip_suffix(USERS) {
                return Ok(Channel::TenantUsers(uuid(id)?));
            }
        }
        Err(bad())
    }
}

/// The header a browser tab names itself with (`X-Tab-ID`): the polling
/// path's `X-Socket-ID`, so a tab without a socket is not sent the echo of
/// its own edits either.
pub const TAB_ID_HEADER: &str = "X-Tab-ID";

/// Whether `id` is a tab id: 8 to 64 letters, digits, `-` or `_` (the tab
/// makes it up; the server only compares it).
pub fn valid_tab_id(id: &str) -> bool {
    (8..=64).contains(&id.len())
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// Whether `id` is a WebSocket socket id as the hub hands them out and
/// every Pusher library checks them (`\d+\.\d+`): what `X-Socket-ID`
/// and `socket_id` parameters must look like.
pub fn valid_socket_id(id: &str) -> bool {
    match id.split_once('.') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.len() <= 20
                && b.len() <= 20
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

wire_enum! {
    /// The records admins edit (under a version guard), whose changes go
    /// to `private-record.{type}.{id}` and whose editors see each other on
    /// `presence-record.{type}.{id}`.
    pub enum RecordType ("record type") {
        LockerBank = "locker-bank",
        Compartment = "compartment",
        Grant = "grant",
        User = "user",
    }
}

/// One of Lockstep's presence channels: who is here, not a log (nothing is
/// appended to them; members come and go with their connections).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PresenceChannel {
    /// `presence-locker-bank.{bank_id}`: the admins watching a bank.
    LockerBank(Uuid),
    /// `presence-record.{type}.{id}`: who has this record open.
    Record(RecordType, Uuid),
}

/// The client event a record's editor sends on `presence-record.…` when
/// its form turns dirty or clean (`{"editing": bool}`); the hub relays it
/// even where client events are otherwise off.
pub const EDITING_MARK: &str = "client-editing";

const PRESENCE_LOCKER_BANK: &str = "presence-locker-bank.";
const PRESENCE_RECORD: &str = "presence-record.";

impl fmt::Display for PresenceChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PresenceChannel::LockerBank(id) => write!(f, "{PRESENCE_LOCKER_BANK}{id}"),
            PresenceChannel::Record(kind, id) => write!(f, "{PRESENCE_RECORD}{kind}.{id}"),
        }
    }
}

impl FromStr for PresenceChannel {
    type Err = NotAChannel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || NotAChannel(s.chars().take(200).collect());
        let uuid = |t: &str| Uuid::parse_str(t).map_err(|_| bad());
        if let Some(rest) = s.strip_prefix(PRESENCE_LOCKER_BANK) {
            return Ok(PresenceChannel::LockerBank(uuid(rest)?));
        }
        if let Some(rest) = s.strip_prefix(PRESENCE_RECORD) {
            let (kind, id) = rest.split_once('.').ok_or_else(bad)?;
            let kind = kind.parse::<RecordType>().map_err(|_| bad())?;
            return Ok(PresenceChannel::Record(kind, uuid(id)?));
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
            Channel::TenantUsers(id),
            Channel::LockerBank(id),
            Channel::Record(RecordType::LockerBank, id),
            Channel::Record(RecordType::User, id),
        ] {
            assert_eq!(c.to_string().parse::<Channel>().ok(), Some(c));
        }
        assert_eq!(
            Channel::Record(RecordType::Compartment, id).to_string(),
            format!("private-record.compartment.{id}")
        );
        assert_eq!(
            Channel::TenantLockers(id).to_string(),
            format!("private-tenant.{id}.lockers")
        );
        for bad in [
            "",
            "private-user.x",
            "presence-user.1",
            "private-tenant.lockers",
            "private-record.widget.00000000-0000-0000-0000-000000000000",
            "private-record.locker-bank",
        ] {
            assert!(bad.parse::<Channel>().is_err(), "{bad}");
        }
    }

    #[test]
    fn presence_channels_round_trip_and_garbage_is_refused() {
        let id = Uuid::now_v7();
        for c in std::iter::once(PresenceChannel::LockerBank(id)).chain(
            RecordType::ALL
                .iter()
                .map(|kind| PresenceChannel::Record(*kind, id)),
        ) {
            assert_eq!(c.to_string().parse::<PresenceChannel>().ok(), Some(c));
        }
        assert_eq!(
            PresenceChannel::Record(RecordType::LockerBank, id).to_string(),
            format!("presence-record.locker-bank.{id}")
        );
        for bad in [
            "presence-record.widget.{id}",
            "presence-record.user",
            "presence-locker-bank.1",
            "private-locker-bank.{id}",
        ] {
            let bad = bad.replace("{id}", &id.to_string());
            assert!(bad.parse::<PresenceChannel>().is_err(), "{bad}");
        }
    }
}
