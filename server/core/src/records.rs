//! Records admins edit, under a version guard: each editable record has a
//! version that counts the edits of its editable fields; an edit names the
//! version it was made on, and one made on an older version is refused
//! with a [`StaleEdit`] (who changed it, when, which fields) and writes
//! nothing. Every edit appends `RecordUpdated` to the channel log in its
//! own transaction (see `projections::notifications`).
//!
//! Editable: locker banks (name, location, notes), compartments (label,
//! size), accounts (name, role, disabled) and access grants (validity
//! window). Compartments are also imported in bulk
//! ([`import_compartments`]): one summary broadcast for the whole import.

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
    identity::accounts::{find_account, parse_uuid, Account, Role},
    identity::caller::Caller,
    lockers::{
        check_size, check_window, get_bank, get_compartment, get_grant, BankView, CompartmentView,
        GrantView,
    },
    now_ms,
    services::Services,
    text::{check_optional_text, check_text, NAME_MAX},
};

/// An edit of a bank's details: `None` leaves a field as it is; for the
/// optional fields, `Some(None)` clears it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BankEdit {
    pub name: Option<String>,
    pub location: Option<Option<String>>,
    pub notes: Option<Option<String>>,
}

/// An edit of a compartment: `None` leaves a field as it is; `Some(None)`
/// clears the label.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompartmentEdit {
    pub label: Option<Option<String>>,
    pub size: Option<String>,
}

/// An edit of an account: `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserEdit {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

/// An edit of a grant's validity window: `None` leaves a bound as it is;
/// `Some(None)` makes it open-ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantEdit {
    pub valid_from: Option<Option<i64>>,
    pub valid_until: Option<Option<i64>>,
}

/// The guard's columns of a record: its tenant, version and last edit.
struct Guard {
    tenant_id: Uuid,
    version: i64,
    edited_at: Option<i64>,
    edited_by: Option<Uuid>,
}

impl Guard {
    fn from_row(row: &sqlx::any::AnyRow) -> CoreResult<Guard> {
        Ok(Guard {
            tenant_id: parse_uuid(&row.try_get::<String, _>("tenant_id")?)?,
            version: row.try_get("version")?,
            edited_at: row.try_get("edited_at")?,
            edited_by: row
                .try_get::<Option<String>, _>("edited_by")?
                .as_deref()
                .map(parse_uuid)
                .transpose()?,
        })
    }
}

const GUARD_COLUMNS: &str = "tenant_id, version, edited_at, edited_by";

/// The table of a record type that has a version (`None`: not yet).
fn versioned_table(record_type: RecordType) -> Option<&'static str> {
    match record_type {
        RecordType::LockerBank => Some("locker_banks"),
        RecordType::Compartment => Some("compartments"),
        RecordType::User => Some("users"),
        RecordType::Grant => Some("grants"),
    }
}

/// The record's row (guard columns plus `extra`), if it is in `tenant_id`.
async fn guarded_row(
    conn: &mut AnyConnection,
    record_type: RecordType,
    id: Uuid,
    tenant_id: Uuid,
    extra: &str,
) -> CoreResult<Option<(Guard, sqlx::any::AnyRow)>> {
    let table = versioned_table(record_type)
        .ok_or_else(|| CoreError::Invalid(format!("{record_type} records have no version")))?;
    let row = sqlx::query(&format!(
        "SELECT {GUARD_COLUMNS}{extra} FROM {table} WHERE id = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let guard = Guard::from_row(&row)?;
    Ok((guard.tenant_id == tenant_id).then_some((guard, row)))
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
    let mut conn = s.db.pool.acquire().await?;
    let Some((guard, _)) = guarded_row(&mut conn, record_type, record_id, tenant_id, "").await?
    else {
        return Ok(None);
    };
    Ok(Some(RecordVersion {
        record_type,
        record_id,
        version: guard.version,
        updated_at: guard.edited_at,
        updated_by: editor(&mut conn, guard.edited_by).await?,
    }))
}

/// The names of the fields whose value changes.
fn changed_fields(fields: &[(&str, bool)]) -> Vec<String> {
    fields
        .iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// The record, version and changed fields of an edit event.
fn edit_of(event: &DomainEvent) -> Option<(Uuid, i64, &[String])> {
    match event {
        DomainEvent::LockerBankDetailsChanged {
            bank_id: id,
            version,
            changed,
            ..
        }
        | DomainEvent::CompartmentDetailsChanged {
            compartment_id: id,
            version,
            changed,
            ..
        }
        | DomainEvent::UserProfileChanged {
            user_id: id,
            version,
            changed,
            ..
        }
        | DomainEvent::AccessWindowChanged {
            grant_id: id,
            version,
            changed,
            ..
        } => Some((*id, *version, changed)),
        _ => None,
    }
}

/// Where a record's edits are appended: its aggregate's type and id (a
/// grant's is its compartment's stream; the others their own).
#[derive(Clone, Copy)]
struct Stream<'a> {
    aggregate_type: &'a str,
    aggregate_uuid: Uuid,
    /// The event type of the record's edits.
    edit_event: &'a str,
}

/// The verdict on an edit made on `your_version` of a record now at
/// `guard.version`: the fields its later edits changed, and the last
/// editor.
async fn stale_edit(
    conn: &mut AnyConnection,
    record_type: RecordType,
    record_id: Uuid,
    stream: Stream<'_>,
    your_version: i64,
    guard: &Guard,
) -> CoreResult<StaleEdit> {
    let mut fields: Vec<String> = Vec::new();
    for ev in load_stream_of_type(conn, stream.aggregate_uuid, stream.edit_event).await? {
        if let Some((id, version, changed)) = edit_of(&ev.event) {
            if id == record_id && version > your_version {
                for f in changed {
                    if !fields.contains(f) {
                        fields.push(f.clone());
                    }
                }
            }
        }
    }
    Ok(StaleEdit {
        record_type,
        record_id,
        your_version,
        current_version: guard.version,
        updated_at: guard.edited_at,
        updated_by: editor(conn, guard.edited_by).await?,
        fields,
    })
}

/// The guarded write every edit shares: in a transaction on the record's
/// aggregate, read the record (`extra` columns too); refuse a stale
/// `version`; let `decide` turn the stored row into the edit's event
/// (`None`: nothing changes); append it at the aggregate's version,
/// retrying when another event on the aggregate came first. True when an
/// event was written.
#[allow(clippy::too_many_arguments)]
async fn guarded_edit(
    s: &Services,
    caller: &Caller,
    record_type: RecordType,
    record_id: Uuid,
    stream: Stream<'_>,
    version: i64,
    extra: &str,
    decide: impl Fn(&sqlx::any::AnyRow, i64) -> CoreResult<Option<DomainEvent>>,
) -> CoreResult<bool> {
    let tenant_id = caller.user.tenant_id;
    for _ in 0..store::MAX_RETRIES {
        let (mut tx, stream_version) = store::begin_on(&s.db, stream.aggregate_uuid).await?;
        let Some((guard, row)) =
            guarded_row(&mut tx, record_type, record_id, tenant_id, extra).await?
        else {
            return Err(CoreError::NotFound);
        };
        if guard.version != version {
            let stale =
                stale_edit(&mut tx, record_type, record_id, stream, version, &guard).await?;
            return Err(CoreError::Stale(Box::new(stale)));
        }
        let Some(event) = decide(&row, version + 1)? else {
            return Ok(false);
        };
        let written = store::commit_at(
            s,
            tx,
            stream.aggregate_type,
            stream.aggregate_uuid,
            stream_version,
            vec![event],
            &caller.metadata(),
            now_ms(),
        )
        .await?;
        if written.is_some() {
            return Ok(true);
        }
        // Another event on the aggregate (an edit, or a heartbeat's or a
        // grant's) came first: read again; a concurrent edit makes this one
        // stale.
    }
    Err(CoreError::VersionConflict {
        aggregate: stream.aggregate_uuid,
        expected: version,
    })
}

/// A record that is its own aggregate.
fn own_stream<'a>(aggregate_type: &'a str, id: Uuid, edit_event: &'a str) -> Stream<'a> {
    Stream {
        aggregate_type,
        aggregate_uuid: id,
        edit_event,
    }
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
    let location = optional("location", edit.location, 200)?;
    let notes = optional("notes", edit.notes, 2000)?;
    let tenant_id = caller.user.tenant_id;
    guarded_edit(
        s,
        caller,
        RecordType::LockerBank,
        bank_id,
        own_stream("locker_bank", bank_id, "LockerBankDetailsChanged"),
        version,
        ", name, location, notes",
        |row, next| {
            let (old_name, old_location, old_notes): (String, Option<String>, Option<String>) = (
                row.try_get("name")?,
                row.try_get("location")?,
                row.try_get("notes")?,
            );
            let name = name.clone().unwrap_or_else(|| old_name.clone());
            let location = location.clone().unwrap_or_else(|| old_location.clone());
            let notes = notes.clone().unwrap_or_else(|| old_notes.clone());
            let changed = changed_fields(&[
                ("name", name != old_name),
                ("location", location != old_location),
                ("notes", notes != old_notes),
            ]);
            Ok(
                (!changed.is_empty()).then_some(DomainEvent::LockerBankDetailsChanged {
                    bank_id,
                    tenant_id,
                    version: next,
                    name,
                    location,
                    notes,
                    changed,
                }),
            )
        },
    )
    .await?;
    get_bank(s, tenant_id, bank_id)
        .await?
        .ok_or(CoreError::NotFound)
}

/// Edits a compartment's label or size (admin), made on `version`; as
/// [`edit_bank`].
pub async fn edit_compartment(
    s: &Services,
    caller: &Caller,
    compartment_id: Uuid,
    version: i64,
    edit: CompartmentEdit,
) -> CoreResult<CompartmentView> {
    if !caller.is_admin() {
        return Err(CoreError::Forbidden("only admins edit compartments".into()));
    }
    let label = optional("label", edit.label, 64)?;
    let size = edit.size.map(|s| check_size(&s)).transpose()?;
    let tenant_id = caller.user.tenant_id;
    guarded_edit(
        s,
        caller,
        RecordType::Compartment,
        compartment_id,
        own_stream("compartment", compartment_id, "CompartmentDetailsChanged"),
        version,
        ", bank_id, label, size",
        |row, next| {
            let bank_id = parse_uuid(&row.try_get::<String, _>("bank_id")?)?;
            let (old_label, old_size): (Option<String>, String) =
                (row.try_get("label")?, row.try_get("size")?);
            let label = label.clone().unwrap_or_else(|| old_label.clone());
            let size = size.clone().unwrap_or_else(|| old_size.clone());
            let changed =
                changed_fields(&[("label", label != old_label), ("size", size != old_size)]);
            Ok(
                (!changed.is_empty()).then_some(DomainEvent::CompartmentDetailsChanged {
                    compartment_id,
                    bank_id,
                    tenant_id,
                    version: next,
                    label,
                    size,
                    changed,
                }),
            )
        },
    )
    .await?;
    get_compartment(s, tenant_id, compartment_id)
        .await?
        .ok_or(CoreError::NotFound)
}

/// Edits an account of the admin's tenant (name, role, disabled), made on
/// `version`; as [`edit_bank`]. An admin may rename themselves, but not
/// change their own role or disable themselves (a tenant must not lose its
/// last admin by a slip). A role or a disabled flag takes effect at the
/// user's next request: both are read per request.
pub async fn edit_user(
    s: &Services,
    caller: &Caller,
    user_id: Uuid,
    version: i64,
    edit: UserEdit,
) -> CoreResult<Account> {
    if !caller.is_admin() {
        return Err(CoreError::Forbidden("only admins manage accounts".into()));
    }
    if user_id == caller.user.id && (edit.role.is_some() || edit.disabled.is_some()) {
        return Err(CoreError::Invalid(
            "you cannot change your own role or disable your own account".into(),
        ));
    }
    let name = edit
        .name
        .as_deref()
        .map(|n| check_text("name", n, NAME_MAX))
        .transpose()?;
    let tenant_id = caller.user.tenant_id;
    guarded_edit(
        s,
        caller,
        RecordType::User,
        user_id,
        own_stream("user", user_id, "UserProfileChanged"),
        version,
        ", name, role, disabled_at",
        |row, next| {
            let old_name: String = row.try_get("name")?;
            let old_role: Role = row.try_get::<String, _>("role")?.parse()?;
            let old_disabled = row.try_get::<Option<i64>, _>("disabled_at")?.is_some();
            let name = name.clone().unwrap_or_else(|| old_name.clone());
            let role = edit.role.unwrap_or(old_role);
            let disabled = edit.disabled.unwrap_or(old_disabled);
            let changed = changed_fields(&[
                ("name", name != old_name),
                ("role", role != old_role),
                ("disabled", disabled != old_disabled),
            ]);
            Ok(
                (!changed.is_empty()).then_some(DomainEvent::UserProfileChanged {
                    user_id,
                    tenant_id,
                    version: next,
                    name,
                    role: role.as_str().to_string(),
                    disabled,
                    changed,
                }),
            )
        },
    )
    .await?;
    find_account(&s.db, tenant_id, user_id)
        .await?
        .ok_or(CoreError::NotFound)
}

/// Changes a grant's validity window (admin), made on `version`; as
/// [`edit_bank`]. A revoked grant stays revoked: editing it is refused.
/// The window is checked at every open, so the change holds from the
/// next one.
pub async fn edit_grant(
    s: &Services,
    caller: &Caller,
    grant_id: Uuid,
    version: i64,
    edit: GrantEdit,
) -> CoreResult<GrantView> {
    if !caller.is_admin() {
        return Err(CoreError::Forbidden("only admins change grants".into()));
    }
    let tenant_id = caller.user.tenant_id;
    // A grant's edits go on its compartment's stream, with its other
    // events; the compartment never changes.
    let row = sqlx::query(
        "SELECT g.compartment_id, c.bank_id FROM grants g \
         JOIN compartments c ON c.id = g.compartment_id WHERE g.id = $1 AND g.tenant_id = $2",
    )
    .bind(grant_id.to_string())
    .bind(tenant_id.to_string())
    .fetch_optional(&s.db.pool)
    .await?
    .ok_or(CoreError::NotFound)?;
    let compartment_id = parse_uuid(&row.try_get::<String, _>("compartment_id")?)?;
    let bank_id = parse_uuid(&row.try_get::<String, _>("bank_id")?)?;
    guarded_edit(
        s,
        caller,
        RecordType::Grant,
        grant_id,
        Stream {
            aggregate_type: "compartment",
            aggregate_uuid: compartment_id,
            edit_event: "AccessWindowChanged",
        },
        version,
        ", user_id, valid_from, valid_until, revoked_at",
        |row, next| {
            if row.try_get::<Option<i64>, _>("revoked_at")?.is_some() {
                return Err(CoreError::Invalid(
                    "this grant was revoked; grant access again".into(),
                ));
            }
            let (old_from, old_until): (Option<i64>, Option<i64>) =
                (row.try_get("valid_from")?, row.try_get("valid_until")?);
            let valid_from = edit.valid_from.unwrap_or(old_from);
            let valid_until = edit.valid_until.unwrap_or(old_until);
            check_window(valid_from, valid_until)?;
            let changed = changed_fields(&[
                ("valid_from", valid_from != old_from),
                ("valid_until", valid_until != old_until),
            ]);
            Ok(
                (!changed.is_empty()).then_some(DomainEvent::AccessWindowChanged {
                    grant_id,
                    compartment_id,
                    bank_id,
                    tenant_id,
                    user_id: parse_uuid(&row.try_get::<String, _>("user_id")?)?,
                    version: next,
                    valid_from,
                    valid_until,
                    changed,
                }),
            )
        },
    )
    .await?;
    get_grant(s, tenant_id, grant_id)
        .await?
        .ok_or(CoreError::NotFound)
}

/// An optional text field of an edit: absent stays, blank clears.
fn optional(
    field: &str,
    value: Option<Option<String>>,
    max: usize,
) -> CoreResult<Option<Option<String>>> {
    value
        .map(|v| check_optional_text(field, v.as_deref(), max))
        .transpose()
}

/// One row of a compartment import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportRow {
    pub number: i64,
    pub size: String,
    pub label: Option<String>,
}

/// What an import did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportSummary {
    pub added: i64,
    pub updated: i64,
    pub unchanged: i64,
}

/// The most rows one import takes (a bank has at most 500 compartments).
pub const MAX_IMPORT_ROWS: usize = 500;

/// Imports compartments into a bank (admin), in one transaction: a row
/// whose number is new adds a compartment; one whose number exists sets
/// its size and label (a version-bumping edit, so an editor of it meets a
/// 409 on their next save). Each row's event is quiet; one
/// `CompartmentsImported` summary is broadcast instead (`RecordsImported`),
/// so a table refreshes once, not once per row. All or nothing: a bad row
/// refuses the whole import, naming the row.
pub async fn import_compartments(
    s: &Services,
    caller: &Caller,
    bank_id: Uuid,
    rows: Vec<ImportRow>,
) -> CoreResult<ImportSummary> {
    if !caller.is_admin() {
        return Err(CoreError::Forbidden(
            "only admins import compartments".into(),
        ));
    }
    if rows.is_empty() || rows.len() > MAX_IMPORT_ROWS {
        return Err(CoreError::Invalid(format!(
            "an import has 1 to {MAX_IMPORT_ROWS} rows"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let mut clean = Vec::with_capacity(rows.len());
    for (i, row) in rows.into_iter().enumerate() {
        let line = i + 2; // after the header, counting from 1
        let bad = |e: CoreError| CoreError::Invalid(format!("row {line}: {e}"));
        if !(1..=10_000).contains(&row.number) {
            return Err(bad(CoreError::Invalid("number must be 1 to 10000".into())));
        }
        if !seen.insert(row.number) {
            return Err(bad(CoreError::Invalid(format!(
                "number {} appears twice",
                row.number
            ))));
        }
        let size = check_size(row.size.trim()).map_err(bad)?;
        let label = check_optional_text("label", row.label.as_deref(), 64).map_err(bad)?;
        clean.push((row.number, size, label));
    }
    let tenant_id = caller.user.tenant_id;
    let mut quiet = caller.metadata();
    quiet.quiet = true;
    for _ in 0..store::MAX_RETRIES {
        let mut tx = store::begin_write(&s.db).await?;
        let owner: Option<String> = sqlx::query("SELECT tenant_id FROM locker_banks WHERE id = $1")
            .bind(bank_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("tenant_id"))
            .transpose()?;
        if owner.as_deref() != Some(tenant_id.to_string().as_str()) {
            return Err(CoreError::NotFound);
        }
        let existing = sqlx::query(
            "SELECT id, number, size, label, version FROM compartments WHERE bank_id = $1",
        )
        .bind(bank_id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let mut by_number = std::collections::HashMap::new();
        for r in &existing {
            let id = parse_uuid(&r.try_get::<String, _>("id")?)?;
            let current: (String, Option<String>, i64) = (
                r.try_get("size")?,
                r.try_get("label")?,
                r.try_get("version")?,
            );
            by_number.insert(r.try_get::<i64, _>("number")?, (id, current));
        }
        let adding = clean
            .iter()
            .filter(|(n, ..)| !by_number.contains_key(n))
            .count();
        if by_number.len() + adding > MAX_IMPORT_ROWS {
            return Err(CoreError::Invalid(format!(
                "a locker bank has at most {MAX_IMPORT_ROWS} compartments; this import would make {}",
                by_number.len() + adding
            )));
        }
        let now = now_ms();
        let mut summary = ImportSummary::default();
        let mut written = store::Written::default();
        let mut conflict = false;
        for (number, size, label) in &clean {
            let (aggregate, expected, event) = match by_number.get(number) {
                None => {
                    let id = Uuid::now_v7();
                    summary.added += 1;
                    let event = DomainEvent::CompartmentAdded {
                        compartment_id: id,
                        bank_id,
                        tenant_id,
                        number: *number,
                        size: size.clone(),
                        label: label.clone(),
                    };
                    (id, 0, event)
                }
                Some((id, (old_size, old_label, version))) => {
                    let changed = changed_fields(&[
                        ("label", label != old_label),
                        ("size", size != old_size),
                    ]);
                    if changed.is_empty() {
                        summary.unchanged += 1;
                        continue;
                    }
                    summary.updated += 1;
                    let event = DomainEvent::CompartmentDetailsChanged {
                        compartment_id: *id,
                        bank_id,
                        tenant_id,
                        version: version + 1,
                        label: label.clone(),
                        size: size.clone(),
                        changed,
                    };
                    (*id, store::stream_version(&mut tx, *id).await?, event)
                }
            };
            let kind = "compartment";
            match store::append_live(
                &mut tx,
                s.mode(),
                kind,
                aggregate,
                expected,
                vec![event],
                &quiet,
                now,
            )
            .await
            {
                Ok(w) => written.merge(w),
                Err(CoreError::VersionConflict { .. }) => {
                    conflict = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if conflict {
            drop(tx);
            continue;
        }
        let bank_version = store::stream_version(&mut tx, bank_id).await?;
        let event = DomainEvent::CompartmentsImported {
            bank_id,
            tenant_id,
            added: summary.added,
            updated: summary.updated,
            unchanged: summary.unchanged,
        };
        match store::append_live(
            &mut tx,
            s.mode(),
            "locker_bank",
            bank_id,
            bank_version,
            vec![event],
            &caller.metadata(),
            now,
        )
        .await
        {
            Ok(w) => written.merge(w),
            Err(CoreError::VersionConflict { .. }) => continue,
            Err(e) => return Err(e),
        }
        tx.commit().await?;
        s.published(&written);
        return Ok(summary);
    }
    Err(CoreError::VersionConflict {
        aggregate: bank_id,
        expected: -1,
    })
}
