//! The `open_requests` projector: one row per open command with its
//! status, reasons and timestamps, and each compartment's latest status.

use std::collections::HashMap;

use lockstep_wire::{
    mqtt::{truncate_chars, MAX_ERROR_CHARS},
    FailureReason, OpenStatus,
};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::{
    error::{parse_wire, parse_wire_opt, CoreResult},
    eventstore::events::{DomainEvent, StoredEvent},
    eventstore::sql::{Arg, Stmt},
    identity::accounts::parse_uuid,
};

/// Who an open command concerns, as its row says: what its envelopes
/// name. Returned by the row's update, so the notification need not read
/// the row again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenParties {
    pub user: Uuid,
    pub tenant: Uuid,
    pub compartment: Uuid,
    pub bank: Uuid,
    pub override_: bool,
}

impl OpenParties {
    pub fn from_row(row: &sqlx::any::AnyRow) -> CoreResult<Self> {
        let id = |c: &str| -> CoreResult<Uuid> { parse_uuid(&row.try_get::<String, _>(c)?) };
        Ok(OpenParties {
            user: id("user_id")?,
            tenant: id("tenant_id")?,
            compartment: id("compartment_id")?,
            bank: id("bank_id")?,
            override_: row.try_get::<i64, _>("override")? != 0,
        })
    }
}

/// The columns [`OpenParties::from_row`] reads.
pub const PARTIES: &str = "user_id, tenant_id, compartment_id, bank_id, override";

pub async fn apply(conn: &mut AnyConnection, ev: &StoredEvent) -> CoreResult<()> {
    let (_, latest) = apply_row(conn, ev).await?;
    write_latest(conn, latest.as_slice()).await
}

/// What [`apply_row`] returns for an event: the command's parties, when
/// it changed the row, and the compartment's new latest status.
pub type RowChange = (Option<OpenParties>, Option<LatestStatus>);

/// Applies the events of one append in order, as [`apply_row`] would one
/// by one, except that the rows of requests are left in `inserts` for the
/// caller to insert ([`insert_rows`]: a batch's together), and a request
/// followed by its decision (how every open is appended) is one row,
/// inserted already decided. An update that follows a request here
/// inserts what is left first.
pub async fn apply_rows(
    conn: &mut AnyConnection,
    events: &[StoredEvent],
    inserts: &mut Vec<NewRow>,
) -> CoreResult<Vec<RowChange>> {
    let mut out = Vec::with_capacity(events.len());
    let mut i = 0;
    while i < events.len() {
        if let Some(next) = events.get(i + 1) {
            if let Some((row, change)) = decided_row(&events[i], next) {
                inserts.push(row);
                out.push((None, None));
                out.push(change);
                i += 2;
                continue;
            }
        }
        if let Some(row) = NewRow::of(&events[i], None) {
            inserts.push(row);
            out.push((None, None));
        } else {
            // An update sees the rows inserted before it; an event that
            // changes no command's row needs none of them.
            if !inserts.is_empty() && RowUpdate::of(&events[i]).is_some() {
                insert_rows(conn, &std::mem::take(inserts)).await?;
            }
            out.push(apply_row(conn, &events[i]).await?);
        }
        i += 1;
    }
    Ok(out)
}

/// A request and, right after it, its decision: the row as decided, and
/// the change it makes. `None` when the two are not such a pair.
/// Whether `requested` and `decided` are an open request followed by its
/// decision: one row, inserted decided ([`apply_rows`]).
pub fn decided_pair(requested: &StoredEvent, decided: &StoredEvent) -> bool {
    decided_row(requested, decided).is_some()
}

fn decided_row(requested: &StoredEvent, decided: &StoredEvent) -> Option<(NewRow, RowChange)> {
    let DomainEvent::CompartmentOpenRequested {
        command_id,
        compartment_id,
        bank_id,
        tenant_id,
        user_id,
        override_,
        ..
    } = &requested.event
    else {
        return None;
    };
    let (status, denial) = match &decided.event {
        DomainEvent::CompartmentOpenAuthorized { command_id: c } if c == command_id => {
            (OpenStatus::Accepted, None)
        }
        DomainEvent::CompartmentOpenDenied {
            command_id: c,
            reason,
        } if c == command_id => (OpenStatus::Denied, Some(reason.as_str())),
        _ => return None,
    };
    let row = NewRow::of(requested, Some((status, denial, decided.occurred_at)))?;
    let parties = OpenParties {
        user: *user_id,
        tenant: *tenant_id,
        compartment: *compartment_id,
        bank: *bank_id,
        override_: *override_,
    };
    let latest = LatestStatus {
        compartment: *compartment_id,
        status,
        command: *command_id,
        at: decided.occurred_at,
    };
    Some((row, (Some(parties), Some(latest))))
}

/// A requested command's row, to insert ([`insert_rows`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRow {
    command: Uuid,
    tenant: Uuid,
    compartment: Uuid,
    bank: Uuid,
    user: Uuid,
    actor: Uuid,
    override_: bool,
    reason: Option<String>,
    status: OpenStatus,
    requested_at: i64,
    updated_at: i64,
    authorized_at: Option<i64>,
    denied_at: Option<i64>,
    denial_reason: Option<String>,
}

impl NewRow {
    /// The row of `requested` (a request; `None` for any other event): as
    /// `requested`, or already decided (status, denial reason, when).
    pub fn of(
        requested: &StoredEvent,
        decided: Option<(OpenStatus, Option<&str>, i64)>,
    ) -> Option<NewRow> {
        let DomainEvent::CompartmentOpenRequested {
            command_id,
            compartment_id,
            bank_id,
            tenant_id,
            user_id,
            override_,
            reason,
        } = &requested.event
        else {
            return None;
        };
        let at = requested.occurred_at;
        let (status, denial, updated_at) = decided.unwrap_or((OpenStatus::Requested, None, at));
        let (authorized_at, denied_at) = match (decided, status) {
            (None, _) => (None, None),
            (Some(_), OpenStatus::Accepted) => (Some(updated_at), None),
            (Some(_), _) => (None, Some(updated_at)),
        };
        Some(NewRow {
            command: *command_id,
            tenant: *tenant_id,
            compartment: *compartment_id,
            bank: *bank_id,
            user: *user_id,
            actor: requested.metadata.actor.user_id().unwrap_or(*user_id),
            override_: *override_,
            reason: reason.clone(),
            status,
            requested_at: at,
            updated_at,
            authorized_at,
            denied_at,
            denial_reason: denial.map(str::to_string),
        })
    }

    pub fn command(&self) -> Uuid {
        self.command
    }
}

/// Rows one statement of [`insert_rows`] inserts at most (14 parameters
/// each).
const INSERTS_PER_STATEMENT: usize = 200;

/// Inserts requested commands' rows, one statement per
/// [`INSERTS_PER_STATEMENT`].
pub async fn insert_rows(conn: &mut AnyConnection, rows: &[NewRow]) -> CoreResult<()> {
    for stmt in insert_stmts(rows) {
        stmt.query().execute(&mut *conn).await?;
    }
    Ok(())
}

/// The statements of [`insert_rows`].
pub fn insert_stmts(rows: &[NewRow]) -> Vec<Stmt> {
    rows.chunks(INSERTS_PER_STATEMENT)
        .map(|chunk| {
            let values = crate::eventstore::sql::value_rows(chunk.len(), 14, "");
            let mut args = Vec::with_capacity(chunk.len() * 14);
            for r in chunk {
                args.extend([
                    Arg::from(r.command.to_string()),
                    r.tenant.to_string().into(),
                    r.compartment.to_string().into(),
                    r.bank.to_string().into(),
                    r.user.to_string().into(),
                    r.actor.to_string().into(),
                    i64::from(r.override_).into(),
                    r.reason.clone().into(),
                    r.status.as_str().into(),
                    r.requested_at.into(),
                    r.updated_at.into(),
                    r.authorized_at.into(),
                    r.denied_at.into(),
                    r.denial_reason.clone().into(),
                ]);
            }
            Stmt {
                sql: format!(
                    "INSERT INTO open_requests (command_id, tenant_id, compartment_id, bank_id, \
                     user_id, actor_id, override, override_reason, status, requested_at, \
                     updated_at, authorized_at, denied_at, denial_reason) VALUES {values}"
                ),
                args,
            }
        })
        .collect()
}

/// Applies `ev` to the command's row; for an event that changed it,
/// returns the command's parties and, for a status change, the
/// compartment's new latest status, which the caller writes
/// ([`write_latest`]: a batch writes them once, last).
pub async fn apply_row(conn: &mut AnyConnection, ev: &StoredEvent) -> CoreResult<RowChange> {
    if let Some(row) = NewRow::of(ev, None) {
        insert_rows(conn, &[row]).await?;
        return Ok((None, None));
    }
    let Some(change) = RowUpdate::of(ev) else {
        return Ok((None, None));
    };
    let Some(parties) = update_rows(conn, std::slice::from_ref(&change), true)
        .await?
        .pop()
    else {
        return Ok((None, None));
    };
    Ok((Some(parties), change.latest(&parties)))
}

/// What an event after the request changes in its command's row. The
/// changes of several events fold into one ([`RowUpdate::then`]), so a
/// batch updates each command's row once ([`update_rows`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowUpdate {
    pub command: Uuid,
    /// The new status (a late result keeps it).
    pub status: Option<OpenStatus>,
    authorized_at: Option<i64>,
    /// When, and why.
    denied: Option<(i64, String)>,
    sent_at: Option<i64>,
    opened_at: Option<i64>,
    /// When, why, and the device's detail.
    failed: Option<(i64, String, Option<String>)>,
    /// When, and what the locker said.
    late: Option<(i64, String)>,
    updated_at: i64,
}

impl RowUpdate {
    /// The change `ev` makes; `None` for an event that is not an open
    /// command's, or is its request (an insert, not an update).
    pub fn of(ev: &StoredEvent) -> Option<RowUpdate> {
        let at = ev.occurred_at;
        let change = |command: &Uuid, status: Option<OpenStatus>| RowUpdate {
            command: *command,
            status,
            authorized_at: None,
            denied: None,
            sent_at: None,
            opened_at: None,
            failed: None,
            late: None,
            updated_at: at,
        };
        Some(match &ev.event {
            DomainEvent::CompartmentOpenAuthorized { command_id } => RowUpdate {
                authorized_at: Some(at),
                ..change(command_id, Some(OpenStatus::Accepted))
            },
            DomainEvent::CompartmentOpenDenied { command_id, reason } => RowUpdate {
                denied: Some((at, reason.as_str().to_string())),
                ..change(command_id, Some(OpenStatus::Denied))
            },
            DomainEvent::CompartmentOpenSent { command_id } => RowUpdate {
                sent_at: Some(at),
                ..change(command_id, Some(OpenStatus::Sent))
            },
            DomainEvent::CompartmentOpened { command_id } => RowUpdate {
                opened_at: Some(at),
                ..change(command_id, Some(OpenStatus::Opened))
            },
            DomainEvent::CompartmentOpenFailed {
                command_id,
                reason,
                detail,
            } => RowUpdate {
                failed: Some((
                    at,
                    reason.as_str().to_string(),
                    detail.clone().map(|d| truncate_chars(d, MAX_ERROR_CHARS)),
                )),
                ..change(command_id, Some(OpenStatus::Failed))
            },
            DomainEvent::CompartmentOpenLateResult {
                command_id, result, ..
            } => RowUpdate {
                late: Some((at, result.clone())),
                ..change(command_id, None)
            },
            DomainEvent::CompartmentOpenRequested { .. }
            | DomainEvent::LockerBankRegistered { .. }
            | DomainEvent::LockerBankDetailsChanged { .. }
            | DomainEvent::CompartmentDetailsChanged { .. }
            | DomainEvent::UserProfileChanged { .. }
            | DomainEvent::AccessWindowChanged { .. }
            | DomainEvent::CompartmentAdded { .. }
            | DomainEvent::CompartmentsImported { .. }
            | DomainEvent::DeviceStatusChanged { .. }
            | DomainEvent::CompartmentDoorChanged { .. }
            | DomainEvent::CompartmentOccupancyChanged { .. }
            | DomainEvent::LockerProvisioningRequested { .. }
            | DomainEvent::LockerProvisioningValidated { .. }
            | DomainEvent::LockerCredentialsCreated { .. }
            | DomainEvent::LockerCredentialsDelivered { .. }
            | DomainEvent::LockerWasProvisioned { .. }
            | DomainEvent::LockerProvisioningFailed { .. }
            | DomainEvent::LockerDecommissioned { .. }
            | DomainEvent::LockerProvisioningReset { .. }
            | DomainEvent::AccessGranted { .. }
            | DomainEvent::AccessRevoked { .. } => return None,
        })
    }

    /// This change followed by `next` (of the same command): what both
    /// applied one after the other leave.
    pub fn then(&mut self, next: RowUpdate) {
        self.status = next.status.or(self.status);
        self.authorized_at = next.authorized_at.or(self.authorized_at);
        self.denied = next.denied.or(self.denied.take());
        self.sent_at = next.sent_at.or(self.sent_at);
        self.opened_at = next.opened_at.or(self.opened_at);
        self.failed = next.failed.or(self.failed.take());
        self.late = next.late.or(self.late.take());
        self.updated_at = next.updated_at;
    }

    /// The compartment's latest status after this change, if it set one.
    pub fn latest(&self, parties: &OpenParties) -> Option<LatestStatus> {
        self.status.map(|status| LatestStatus {
            compartment: parties.compartment,
            status,
            command: self.command,
            at: self.updated_at,
        })
    }
}

/// Command rows one statement of [`update_rows`] names at most (13
/// parameters each).
const UPDATES_PER_STATEMENT: usize = 200;

/// Applies row changes, one per command, in one `UPDATE … FROM (VALUES
/// …)` per [`UPDATES_PER_STATEMENT`]: a column the change leaves unset
/// keeps its value. With `returning`, the parties of the rows changed, in
/// no particular order (a caller of one change gets its own).
pub async fn update_rows(
    conn: &mut AnyConnection,
    changes: &[RowUpdate],
    returning: bool,
) -> CoreResult<Vec<OpenParties>> {
    let mut out = Vec::new();
    for stmt in update_stmts(changes, returning) {
        let update = stmt.query();
        if returning {
            for row in update.fetch_all(&mut *conn).await? {
                out.push(OpenParties::from_row(&row)?);
            }
        } else {
            update.execute(&mut *conn).await?;
        }
    }
    Ok(out)
}

/// The statements of [`update_rows`].
pub fn update_stmts(changes: &[RowUpdate], returning: bool) -> Vec<Stmt> {
    let mut out = Vec::new();
    for chunk in changes.chunks(UPDATES_PER_STATEMENT) {
        let values = crate::eventstore::sql::value_rows(chunk.len(), 13, "");
        // VALUES columns are column1.. on both backends. A time set means
        // its reason and detail are set too, even to nothing.
        let sql = format!(
            "UPDATE open_requests SET \
             status = COALESCE(v.column2, open_requests.status), \
             authorized_at = COALESCE(v.column3, open_requests.authorized_at), \
             denied_at = COALESCE(v.column4, open_requests.denied_at), \
             denial_reason = CASE WHEN v.column4 IS NULL THEN open_requests.denial_reason ELSE v.column5 END, \
             sent_at = COALESCE(v.column6, open_requests.sent_at), \
             opened_at = COALESCE(v.column7, open_requests.opened_at), \
             failed_at = COALESCE(v.column8, open_requests.failed_at), \
             failure_reason = CASE WHEN v.column8 IS NULL THEN open_requests.failure_reason ELSE v.column9 END, \
             failure_detail = CASE WHEN v.column8 IS NULL THEN open_requests.failure_detail ELSE v.column10 END, \
             late_result_at = COALESCE(v.column11, open_requests.late_result_at), \
             late_result = CASE WHEN v.column11 IS NULL THEN open_requests.late_result ELSE v.column12 END, \
             updated_at = v.column13 \
             FROM (VALUES {values}) AS v WHERE open_requests.command_id = v.column1{}",
            if returning {
                format!(" RETURNING {PARTIES}")
            } else {
                String::new()
            }
        );
        let mut args = Vec::with_capacity(chunk.len() * 13);
        for c in chunk {
            let (denied_at, denial) = c.denied.clone().unzip();
            let (failed_at, failure, detail) = match c.failed.clone() {
                Some((at, reason, detail)) => (Some(at), Some(reason), detail),
                None => (None, None, None),
            };
            let (late_at, late) = c.late.clone().unzip();
            args.extend([
                Arg::from(c.command.to_string()),
                c.status.map(|s| s.as_str()).into(),
                c.authorized_at.into(),
                denied_at.into(),
                denial.into(),
                c.sent_at.into(),
                c.opened_at.into(),
                failed_at.into(),
                failure.into(),
                detail.into(),
                late_at.into(),
                late.into(),
                c.updated_at.into(),
            ]);
        }
        out.push(Stmt { sql, args });
    }
    out
}

/// An open command as its transitions read it: its stream version and
/// row, in one snapshot (a decision made on them and appended at that
/// version conflicts with any event committed meanwhile).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandRow {
    pub version: i64,
    pub status: OpenStatus,
    pub parties: OpenParties,
    pub sent_at: Option<i64>,
    pub failure: Option<FailureReason>,
    pub late_result: Option<String>,
}

impl CommandRow {
    /// The row as `change` leaves it (what [`update_rows`] writes of the
    /// columns read here): a batch follows the commands it moves instead
    /// of writing and reading them again.
    pub fn apply(&mut self, change: &RowUpdate) -> CoreResult<()> {
        if let Some(status) = change.status {
            self.status = status;
        }
        if let Some(at) = change.sent_at {
            self.sent_at = Some(at);
        }
        if let Some((_, reason, _)) = &change.failed {
            self.failure = Some(parse_wire(reason)?);
        }
        if let Some((_, result)) = &change.late {
            self.late_result = Some(result.clone());
        }
        Ok(())
    }
}

/// Commands one statement of [`command_rows`] reads at most.
const READS_PER_STATEMENT: usize = 500;

/// The rows and stream versions of `commands` (those that exist), in one
/// statement per [`READS_PER_STATEMENT`].
pub async fn command_rows(
    conn: &mut AnyConnection,
    commands: &[Uuid],
) -> CoreResult<HashMap<Uuid, CommandRow>> {
    let mut out = HashMap::with_capacity(commands.len());
    for chunk in commands.chunks(READS_PER_STATEMENT) {
        let list = crate::eventstore::sql::in_list(chunk.len());
        let sql = format!(
            "SELECT o.command_id, o.status, o.sent_at, o.failure_reason, o.late_result, \
             o.user_id, o.tenant_id, o.compartment_id, o.bank_id, o.override, \
             (SELECT COALESCE(MAX(e.aggregate_version), 0) FROM stored_events e \
              WHERE e.aggregate_uuid = o.command_id) AS v \
             FROM open_requests o WHERE o.command_id IN ({list})"
        );
        let mut read = sqlx::query(&sql);
        for id in chunk {
            read = read.bind(id.to_string());
        }
        for row in read.fetch_all(&mut *conn).await? {
            let command = parse_uuid(&row.try_get::<String, _>("command_id")?)?;
            out.insert(
                command,
                CommandRow {
                    version: row.try_get("v")?,
                    status: parse_wire(&row.try_get::<String, _>("status")?)?,
                    parties: OpenParties::from_row(&row)?,
                    sent_at: row.try_get("sent_at")?,
                    failure: parse_wire_opt(row.try_get("failure_reason")?)?,
                    late_result: row.try_get("late_result")?,
                },
            );
        }
    }
    Ok(out)
}

/// A compartment's latest open status, as a status change leaves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatestStatus {
    pub compartment: Uuid,
    pub status: OpenStatus,
    pub command: Uuid,
    pub at: i64,
}

/// Writes compartments' latest statuses: the last one per compartment,
/// all in one statement (`UPDATE … FROM (VALUES …)`), listed in
/// compartment order. A batch writes them once, after all its events.
/// PostgreSQL locks the rows in the order its plan visits them: for a
/// batch's few rows that is the list's (an index lookup per row), so two
/// batches touching the same compartments lock them in one order; should
/// two plans ever differ and deadlock, the victim's writes run again
/// alone (`group_commit`).
pub async fn write_latest(conn: &mut AnyConnection, latest: &[LatestStatus]) -> CoreResult<()> {
    for stmt in latest_stmts(latest) {
        stmt.query().execute(&mut *conn).await?;
    }
    Ok(())
}

/// The statements of [`write_latest`]: the last status of each
/// compartment, in compartment order.
pub fn latest_stmts(latest: &[LatestStatus]) -> Vec<Stmt> {
    let mut last = std::collections::BTreeMap::new();
    for l in latest {
        last.insert(l.compartment, *l);
    }
    let last: Vec<LatestStatus> = last.into_values().collect();
    last.chunks(LATEST_PER_STATEMENT)
        .map(|chunk| {
            let values = crate::eventstore::sql::value_rows(chunk.len(), 4, "");
            let mut args = Vec::with_capacity(chunk.len() * 4);
            for l in chunk {
                args.extend([
                    Arg::from(l.compartment.to_string()),
                    l.status.as_str().into(),
                    l.command.to_string().into(),
                    l.at.into(),
                ]);
            }
            // VALUES columns are column1.. on both backends.
            Stmt {
                sql: format!(
                    "UPDATE compartments SET latest_status = v.column2, latest_command_id = v.column3, \
                     updated_at = v.column4 FROM (VALUES {values}) AS v WHERE compartments.id = v.column1"
                ),
                args,
            }
        })
        .collect()
}

/// Compartments one statement of [`write_latest`] names at most.
const LATEST_PER_STATEMENT: usize = 100;
