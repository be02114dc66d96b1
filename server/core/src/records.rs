//! Records admins edit, under a version guard: each editable record has a
//! version that counts the edits of its editable fields; an edit names the
//! version it was made on, and one made on an older version is refused
//! with a [`StaleEdit`] (who changed it, when, which fields) and writes
//! nothing. Every edit appends `RecordUpdated` to the channel log in its
//! own transaction (see `projections::notifications`).
//!
//! Editable today: locker banks (name, location, notes).

use sqlx::{AnyConnection, Row};
use uuid::Uuid;

pub use lockstep_wire::{
    record::{Editor, RecordVersion, StaleEdit},
    RecordType,
};

use crate::{
    error::{CoreError, CoreResult},
    eventstore::events::{load_stream_of_type, DomainEvent},
    eventstore::store,
    identity::accounts::parse_uuid,
    identity::caller::Caller,
    lockers::{get_bank, BankView},
    now_ms,
    services::Services,
    text::{check_optional_text, check_text},
};

/// An edit of a bank's details: `None` leaves a field as it is; for the
/// optional fields, `Some(None)` clears it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BankEdit {
    pub name: Option<String>,
    pub location: Option<Option<String>>,
    pub notes: Option<Option<String>>,
}

/// The bank's editable fields as stored, with its version and last edit.
struct BankDetails {
    tenant_id: Uuid,
    name: String,
    location: Option<String>,
    notes: Option<String>,
    version: i64,
    edited_at: Option<i64>,
    edited_by: Option<Uuid>,
}

async fn bank_details(conn: &mut AnyConnection, bank_id: Uuid) -> CoreResult<Option<BankDetails>> {
    let row = sqlx::query(
        "SELECT tenant_id, name, location, notes, version, edited_at, edited_by \
         FROM locker_banks WHERE id = $1",
    )
    .bind(bank_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(BankDetails {
        tenant_id: parse_uuid(&row.try_get::<String, _>("tenant_id")?)?,
        name: row.try_get("name")?,
        location: row.try_get("location")?,
        notes: row.try_get("notes")?,
        version: row.try_get("version")?,
        edited_at: row.try_get("edited_at")?,
        edited_by: row
            .try_get::<Option<String>, _>("edited_by")?
            .as_deref()
            .map(parse_uuid)
            .transpose()?,
    }))
}

async fn editor(conn: &mut AnyConnection, id: Option<Uuid>) -> CoreResult<Option<Editor>> {
    let Some(id) = id else { return Ok(None) };
    Ok(sqlx::query("SELECT name FROM users WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| row.try_get::<String, _>("name"))
        .transpose()?
        .map(|name| Editor { id, name }))
}

/// A record's version, if it exists in `tenant_id`.
pub async fn record_version(
    s: &Services,
    tenant_id: Uuid,
    record_type: RecordType,
    record_id: Uuid,
) -> CoreResult<Option<RecordVersion>> {
    if record_type != RecordType::LockerBank {
        return Err(CoreError::Invalid(format!(
            "{record_type} records have no version yet; locker-bank records do"
        )));
    }
    let mut conn = s.db.pool.acquire().await?;
    let Some(d) = bank_details(&mut conn, record_id).await? else {
        return Ok(None);
    };
    if d.tenant_id != tenant_id {
        return Ok(None);
    }
    Ok(Some(RecordVersion {
        record_type,
        record_id,
        version: d.version,
        updated_at: d.edited_at,
        updated_by: editor(&mut conn, d.edited_by).await?,
    }))
}

/// Edits a bank's details (admin), made on `version`. A stale version is
/// refused with [`CoreError::Stale`]; an edit that changes nothing writes
/// nothing and answers the bank as it is.
pub async fn edit_bank(
    s: &Services,
    caller: &Caller,
    bank_id: Uuid,
    version: i64,
    edit: BankEdit,
) -> CoreResult<BankView> {
    if !caller.is_admin() {
        return Err(CoreError::Forbidden("only admins edit locker banks".into()));
    }
    let name = edit
        .name
        .as_deref()
        .map(|n| check_text("name", n, 120))
        .transpose()?;
    let optional = |field: &str, value: Option<Option<String>>, max: usize| {
        value
            .map(|v| check_optional_text(field, v.as_deref(), max))
            .transpose()
    };
    let location = optional("location", edit.location, 200)?;
    let notes = optional("notes", edit.notes, 2000)?;
    let tenant_id = caller.user.tenant_id;
    for _ in 0..store::MAX_RETRIES {
        let (mut tx, stream_version) = store::begin_on(&s.db, bank_id).await?;
        let current = match bank_details(&mut tx, bank_id).await? {
            Some(d) if d.tenant_id == tenant_id => d,
            _ => return Err(CoreError::NotFound),
        };
        if current.version != version {
            let stale = stale_bank_edit(&mut tx, bank_id, version, &current).await?;
            return Err(CoreError::Stale(Box::new(stale)));
        }
        let next_name = name.clone().unwrap_or_else(|| current.name.clone());
        let next_location = location.clone().unwrap_or_else(|| current.location.clone());
        let next_notes = notes.clone().unwrap_or_else(|| current.notes.clone());
        let mut changed = Vec::new();
        if next_name != current.name {
            changed.push("name".to_string());
        }
        if next_location != current.location {
            changed.push("location".to_string());
        }
        if next_notes != current.notes {
            changed.push("notes".to_string());
        }
        if changed.is_empty() {
            drop(tx);
            return get_bank(s, tenant_id, bank_id)
                .await?
                .ok_or(CoreError::NotFound);
        }
        let event = DomainEvent::LockerBankDetailsChanged {
            bank_id,
            tenant_id,
            version: version + 1,
            name: next_name,
            location: next_location,
            notes: next_notes,
            changed,
        };
        let written = store::commit_at(
            s,
            tx,
            "locker_bank",
            bank_id,
            stream_version,
            vec![event],
            &caller.metadata(),
            now_ms(),
        )
        .await?;
        if written.is_some() {
            return get_bank(s, tenant_id, bank_id)
                .await?
                .ok_or(CoreError::NotFound);
        }
        // Another event on the bank (an edit, or a heartbeat's transition)
        // came first: read again; a concurrent edit makes this one stale.
    }
    Err(CoreError::VersionConflict {
        aggregate: bank_id,
        expected: version,
    })
}

/// The verdict on an edit made on `your_version` of a bank now at
/// `current.version`: the fields its later edits changed, and the last
/// editor.
async fn stale_bank_edit(
    conn: &mut AnyConnection,
    bank_id: Uuid,
    your_version: i64,
    current: &BankDetails,
) -> CoreResult<StaleEdit> {
    let mut fields: Vec<String> = Vec::new();
    for ev in load_stream_of_type(conn, bank_id, "LockerBankDetailsChanged").await? {
        if let DomainEvent::LockerBankDetailsChanged {
            version, changed, ..
        } = ev.event
        {
            if version > your_version {
                for f in changed {
                    if !fields.contains(&f) {
                        fields.push(f);
                    }
                }
            }
        }
    }
    Ok(StaleEdit {
        record_type: RecordType::LockerBank,
        record_id: bank_id,
        your_version,
        current_version: current.version,
        updated_at: current.edited_at,
        updated_by: editor(conn, current.edited_by).await?,
        fields,
    })
}
