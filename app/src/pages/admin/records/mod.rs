//! Editing a record under the version guard, for every record an admin
//! edits (locker banks, compartments, accounts, grants): its editable
//! fields as text, the two server functions the editors call (read a
//! record's form; save the fields changed on a version), and the pieces
//! built on them.
//!
//! - [`merge`]: the three-way comparison behind the conflict dialog;
//! - [`editor`]: the form (dirty state per field, the "updated by someone
//!   else" banner, the conflict dialog, who else is here, version polling).

pub mod editor;
pub mod merge;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{error::AppError, realtime::client::SocketClient};
pub use lockstep_wire::RecordType;
pub use merge::Values;

/// How a field is edited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One line of text, required or not.
    Line { required: bool },
    /// Several lines.
    Notes,
    /// One of these values.
    Choice(&'static [&'static str]),
    /// Yes or no ("true" / "false").
    Flag,
    /// A UTC time to the minute (`datetime-local`), empty for none.
    Time,
}

/// One editable field of a record type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub kind: Kind,
}

const fn field(name: &'static str, label: &'static str, kind: Kind) -> Field {
    Field { name, label, kind }
}

const BANK: [Field; 3] = [
    field("name", "Name", Kind::Line { required: true }),
    field("location", "Location", Kind::Line { required: false }),
    field("notes", "Notes", Kind::Notes),
];
const COMPARTMENT: [Field; 2] = [
    field("label", "Label", Kind::Line { required: false }),
    field(
        "size",
        "Size",
        Kind::Choice(&["small", "medium", "large", "xlarge"]),
    ),
];
const USER: [Field; 3] = [
    field("name", "Name", Kind::Line { required: true }),
    field("role", "Role", Kind::Choice(&["user", "admin"])),
    field("disabled", "Disabled", Kind::Flag),
];
const GRANT: [Field; 2] = [
    field("valid_from", "Valid from (UTC)", Kind::Time),
    field("valid_until", "Valid until (UTC)", Kind::Time),
];

/// The editable fields of a record type, in form order.
pub fn fields_of(record_type: RecordType) -> &'static [Field] {
    match record_type {
        RecordType::LockerBank => &BANK,
        RecordType::Compartment => &COMPARTMENT,
        RecordType::User => &USER,
        RecordType::Grant => &GRANT,
    }
}

/// A record as its editor shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordForm {
    /// The wire name of its type (`locker-bank`, `compartment`, …).
    pub record_type: String,
    pub id: String,
    /// What the next save names (the version guard).
    pub version: i64,
    pub values: Values,
    pub updated_at: Option<i64>,
    pub updated_by: Option<String>,
    /// `private-record.{type}.{id}` and its head when read.
    pub channel: String,
    pub seq: i64,
    /// `presence-record.{type}.{id}`: who else has it open.
    pub presence: String,
    /// The signed-in admin (not shown among the others here).
    pub me: String,
    /// The server's clock when read.
    pub now: i64,
}

/// Reads a record's form.
#[server(prefix = "/sfn", endpoint = "read_record", output = crate::codec::Json)]
pub async fn read_record(record_type: String, record_id: String) -> Result<RecordForm, AppError> {
    use crate::auth::ssr as auth;
    let (kind, id) = ssr::parse(&record_type, &record_id)?;
    let principal = auth::require(ssr::read_ability(kind)).await?;
    let services = auth::services()?;
    ssr::form(&services, principal.user(), kind, id).await
}

/// Saves the fields in `values` (the ones changed) on `version`. A stale
/// version is refused ([`AppError::Stale`], with the stored values) and
/// nothing is written; the answer is the record as saved.
#[server(prefix = "/sfn", endpoint = "save_record", client = SocketClient, input = leptos::server_fn::codec::Json, output = crate::codec::Json)]
pub async fn save_record(
    record_type: String,
    record_id: String,
    version: i64,
    values: Values,
) -> Result<RecordForm, AppError> {
    use crate::auth::ssr as auth;
    let (kind, id) = ssr::parse(&record_type, &record_id)?;
    let principal = auth::require(ssr::write_ability(kind)).await?;
    let caller = auth::caller(&principal)?;
    let services = auth::services()?;
    let user = principal.user();
    match ssr::save(&services, &caller, kind, id, version, &values).await {
        Err(AppError::Stale(mut stale)) => {
            // The values and their version read together (another edit
            // may have landed since the guard's verdict).
            if let Some((version, values)) = ssr::load(&services, user.tenant_id, kind, id).await? {
                stale.version = version;
                stale.values = values;
            }
            Err(AppError::Stale(stale))
        }
        Err(e) => Err(e),
        Ok(()) => {
            tracing::info!(record_type, record_id, "record saved");
            ssr::form(&services, user, kind, id).await
        }
    }
}

#[cfg(feature = "ssr")]
mod ssr {
    use lockstep_core::{
        eventstore::channels::{Channel, PresenceChannel},
        identity::{accounts::User, caller::Caller, tokens::Ability},
        lockers, now_ms,
        records::{self, BankEdit, CompartmentEdit, GrantEdit, RecordType, UserEdit},
        Services, UuidAlias as Uuid,
    };

    use super::{RecordForm, Values};
    use crate::{error::AppError, format};

    pub fn parse(record_type: &str, record_id: &str) -> Result<(RecordType, Uuid), AppError> {
        let kind = record_type.parse().map_err(|_| AppError::NotFound)?;
        Ok((kind, super::super::id_of(record_id)?))
    }

    pub fn read_ability(kind: RecordType) -> Ability {
        match kind {
            RecordType::User => Ability::UserRead,
            _ => Ability::LockerRead,
        }
    }

    pub fn write_ability(kind: RecordType) -> Ability {
        match kind {
            RecordType::User => Ability::UserWrite,
            RecordType::Grant => Ability::GrantWrite,
            _ => Ability::LockerWrite,
        }
    }

    fn text(v: Option<String>) -> String {
        v.unwrap_or_default()
    }

    fn time(v: Option<i64>) -> String {
        v.map(format::minute_input).unwrap_or_default()
    }

    /// The record's version and editable values; `None` when it is not
    /// the tenant's.
    pub async fn load(
        s: &Services,
        tenant: Uuid,
        kind: RecordType,
        id: Uuid,
    ) -> Result<Option<(i64, Values)>, AppError> {
        let vals = |v: Vec<(&str, String)>| -> Values {
            v.into_iter().map(|(f, v)| (f.to_string(), v)).collect()
        };
        Ok(match kind {
            RecordType::LockerBank => lockers::get_bank(s, tenant, id).await?.map(|b| {
                let v = vals(vec![
                    ("name", b.name),
                    ("location", text(b.location)),
                    ("notes", text(b.notes)),
                ]);
                (b.version, v)
            }),
            RecordType::Compartment => lockers::get_compartment(s, tenant, id).await?.map(|c| {
                (
                    c.version,
                    vals(vec![("label", text(c.label)), ("size", c.size)]),
                )
            }),
            RecordType::Grant => lockers::get_grant(s, tenant, id).await?.map(|g| {
                let v = vals(vec![
                    ("valid_from", time(g.valid_from)),
                    ("valid_until", time(g.valid_until)),
                ]);
                (g.version, v)
            }),
            RecordType::User => lockstep_core::identity::accounts::find_account(&s.db, tenant, id)
                .await?
                .map(|a| {
                    let v = vals(vec![
                        ("name", a.user.name),
                        ("role", a.user.role.to_string()),
                        ("disabled", a.disabled_at.is_some().to_string()),
                    ]);
                    (a.version, v)
                }),
        })
    }

    pub async fn form(
        s: &Services,
        me: &User,
        kind: RecordType,
        id: Uuid,
    ) -> Result<RecordForm, AppError> {
        let (version, values) = load(s, me.tenant_id, kind, id)
            .await?
            .ok_or(AppError::NotFound)?;
        let last = records::record_version(s, me.tenant_id, kind, id).await?;
        let live = super::super::followed(s, Channel::Record(kind, id)).await?;
        Ok(RecordForm {
            record_type: kind.as_str().to_string(),
            id: id.to_string(),
            version,
            values,
            updated_at: last.as_ref().and_then(|l| l.updated_at),
            updated_by: last.and_then(|l| l.updated_by).map(|e| e.name),
            channel: live.channel,
            seq: live.seq,
            presence: PresenceChannel::Record(kind, id).to_string(),
            me: me.id.to_string(),
            now: now_ms(),
        })
    }

    fn unknown(kind: RecordType, field: &str) -> AppError {
        AppError::Invalid(format!("{field} is not a field of a {kind}"))
    }

    /// "" is no value.
    fn optional(v: &str) -> Option<String> {
        Some(v.to_string()).filter(|v| !v.trim().is_empty())
    }

    fn moment(field: &str, v: &str) -> Result<Option<i64>, AppError> {
        if v.trim().is_empty() {
            return Ok(None);
        }
        format::minute_ms(v)
            .map(Some)
            .ok_or_else(|| AppError::Invalid(format!("{field} is not a date and time")))
    }

    pub async fn save(
        s: &Services,
        caller: &Caller,
        kind: RecordType,
        id: Uuid,
        version: i64,
        values: &Values,
    ) -> Result<(), AppError> {
        match kind {
            RecordType::LockerBank => {
                let mut e = BankEdit::default();
                for (f, v) in values {
                    match f.as_str() {
                        "name" => e.name = Some(v.clone()),
                        "location" => e.location = Some(optional(v)),
                        "notes" => e.notes = Some(optional(v)),
                        f => return Err(unknown(kind, f)),
                    }
                }
                records::edit_bank(s, caller, id, version, e).await?;
            }
            RecordType::Compartment => {
                let mut e = CompartmentEdit::default();
                for (f, v) in values {
                    match f.as_str() {
                        "label" => e.label = Some(optional(v)),
                        "size" => e.size = Some(v.clone()),
                        f => return Err(unknown(kind, f)),
                    }
                }
                records::edit_compartment(s, caller, id, version, e).await?;
            }
            RecordType::User => {
                let mut e = UserEdit::default();
                for (f, v) in values {
                    match f.as_str() {
                        "name" => e.name = Some(v.clone()),
                        "role" => e.role = Some(v.parse()?),
                        "disabled" => e.disabled = Some(v == "true"),
                        f => return Err(unknown(kind, f)),
                    }
                }
                records::edit_user(s, caller, id, version, e).await?;
            }
            RecordType::Grant => {
                let mut e = GrantEdit::default();
                for (f, v) in values {
                    match f.as_str() {
                        "valid_from" => e.valid_from = Some(moment(f, v)?),
                        "valid_until" => e.valid_until = Some(moment(f, v)?),
                        f => return Err(unknown(kind, f)),
                    }
                }
                records::edit_grant(s, caller, id, version, e).await?;
            }
        }
        Ok(())
    }
}
