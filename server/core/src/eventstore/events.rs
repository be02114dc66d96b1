//! The event store: every domain event, appended to `stored_events` with
//! its aggregate's next version (a stale expected version is a typed
//! conflict), and read back upcast to the current schema.
//!
//! An event's `event_type` is its variant name and its `payload` the
//! variant's fields; `event_version` is the payload's schema version.
//! Old versions are upcast on read (see [`upcast`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::{
    error::{CoreError, CoreResult},
    eventstore::sql::{Arg, Stmt},
    identity::accounts::parse_uuid,
};

pub use lockstep_wire::Actor;
use lockstep_wire::{mqtt::ProvisioningFailure, DenialReason, FailureReason};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub actor: Actor,
    pub tenant_id: Uuid,
    /// The WebSocket connection the request came from (`X-Socket-ID`): the
    /// envelopes of this event are not pushed to it ("to others").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
    /// The browser tab the request came from (`X-Tab-ID`): the envelopes
    /// of this event are not returned to it when it polls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tab_id: Option<String>,
    /// Part of a bulk write (an import): the event's own envelope is not
    /// appended to the channel log; the bulk write's summary event is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quiet: bool,
}

impl Metadata {
    /// Metadata of an event the system records on its own (timers,
    /// reactors, device messages), correlated with `correlation_id`.
    pub fn system(tenant_id: Uuid, correlation_id: Uuid) -> Self {
        Metadata {
            correlation_id,
            causation_id: None,
            actor: Actor::System,
            tenant_id,
            socket_id: None,
            tab_id: None,
            quiet: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompartmentSpec {
    pub id: Uuid,
    pub number: i64,
    pub size: String,
    pub label: Option<String>,
}

/// Every domain event, at its current schema version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum DomainEvent {
    LockerBankRegistered {
        bank_id: Uuid,
        tenant_id: Uuid,
        serial: String,
        name: String,
        location: Option<String>,
        compartments: Vec<CompartmentSpec>,
    },
    /// An admin edited a bank's details under the version guard
    /// (`lockers::edit_bank`): every editable field's new value, which of
    /// them changed, and the bank's edit version after this edit.
    LockerBankDetailsChanged {
        bank_id: Uuid,
        tenant_id: Uuid,
        version: i64,
        name: String,
        location: Option<String>,
        notes: Option<String>,
        changed: Vec<String>,
    },
    /// An admin edited a compartment's label or size under the version
    /// guard (`records::edit_compartment`), as `LockerBankDetailsChanged`.
    CompartmentDetailsChanged {
        compartment_id: Uuid,
        bank_id: Uuid,
        tenant_id: Uuid,
        version: i64,
        label: Option<String>,
        size: String,
        changed: Vec<String>,
    },
    /// An admin edited another account's name, role or disabled flag under
    /// the version guard (`records::edit_user`). The account itself is
    /// created outside the event stream (`accounts::add_user`); its edits
    /// are events, applied to `users` by the `accounts` projector.
    UserProfileChanged {
        user_id: Uuid,
        tenant_id: Uuid,
        version: i64,
        name: String,
        role: String,
        disabled: bool,
        changed: Vec<String>,
    },
    /// An admin changed a grant's validity window under the version guard
    /// (`records::edit_grant`); on the compartment's stream, with the
    /// grant's other events.
    AccessWindowChanged {
        grant_id: Uuid,
        compartment_id: Uuid,
        bank_id: Uuid,
        tenant_id: Uuid,
        user_id: Uuid,
        version: i64,
        valid_from: Option<i64>,
        valid_until: Option<i64>,
        changed: Vec<String>,
    },
    /// A compartment added to a bank after its registration (an import).
    CompartmentAdded {
        compartment_id: Uuid,
        bank_id: Uuid,
        tenant_id: Uuid,
        number: i64,
        size: String,
        label: Option<String>,
    },
    /// An import of compartments into a bank ended: the summary its
    /// quiet per-compartment events are announced by.
    CompartmentsImported {
        bank_id: Uuid,
        tenant_id: Uuid,
        added: i64,
        updated: i64,
        unchanged: i64,
    },
    /// A locker bank went online (first heartbeat after silence) or
    /// offline (missed heartbeats). Heartbeats themselves are not events.
    DeviceStatusChanged {
        bank_id: Uuid,
        tenant_id: Uuid,
        online: bool,
    },
    /// A locker announced itself on `provisioning/register`.
    LockerProvisioningRequested {
        bank_id: Uuid,
        tenant_id: Uuid,
        attempt_id: Uuid,
        client_id: String,
        model: Option<String>,
        firmware: Option<String>,
        /// Whether a provisioning key (rather than a pre-registration)
        /// admitted it.
        via_key: bool,
    },
    LockerProvisioningValidated {
        bank_id: Uuid,
        tenant_id: Uuid,
        attempt_id: Uuid,
    },
    /// The locker's own broker account exists (its secret is never stored
    /// in an event).
    LockerCredentialsCreated {
        bank_id: Uuid,
        tenant_id: Uuid,
        attempt_id: Uuid,
        username: String,
    },
    /// The broker acknowledged the reply carrying the credentials.
    LockerCredentialsDelivered {
        bank_id: Uuid,
        tenant_id: Uuid,
        attempt_id: Uuid,
    },
    /// The first heartbeat on the locker's own credentials.
    LockerWasProvisioned {
        bank_id: Uuid,
        tenant_id: Uuid,
    },
    /// A provisioning attempt ended without credentials. `bank_id` and
    /// `tenant_id` are absent when nothing identified them (unknown serial
    /// without a valid key).
    LockerProvisioningFailed {
        bank_id: Option<Uuid>,
        tenant_id: Option<Uuid>,
        attempt_id: Uuid,
        serial: String,
        reason: ProvisioningFailure,
        detail: Option<String>,
    },
    /// Taken out of service: its broker account is disabled (a connected
    /// locker is kicked) and opens are refused.
    LockerDecommissioned {
        bank_id: Uuid,
        tenant_id: Uuid,
        reason: String,
    },
    /// An admin reset the bank's provisioning (a locker that lost its
    /// credentials, or a decommissioned bank back in service): its broker
    /// account is disabled, and the next registration (a pre-registration
    /// or a provisioning key) provisions it again, with new credentials.
    LockerProvisioningReset {
        bank_id: Uuid,
        tenant_id: Uuid,
        reason: String,
    },
    /// A compartment's door, as its locker reported it (changes only).
    CompartmentDoorChanged {
        bank_id: Uuid,
        tenant_id: Uuid,
        compartment_id: Uuid,
        number: i64,
        open: bool,
    },
    /// Whether a compartment holds something, as its locker reported it
    /// (changes only).
    CompartmentOccupancyChanged {
        bank_id: Uuid,
        tenant_id: Uuid,
        compartment_id: Uuid,
        number: i64,
        occupied: bool,
    },
    AccessGranted {
        grant_id: Uuid,
        compartment_id: Uuid,
        bank_id: Uuid,
        tenant_id: Uuid,
        user_id: Uuid,
        valid_from: Option<i64>,
        valid_until: Option<i64>,
    },
    AccessRevoked {
        grant_id: Uuid,
        compartment_id: Uuid,
        user_id: Uuid,
    },
    CompartmentOpenRequested {
        command_id: Uuid,
        compartment_id: Uuid,
        bank_id: Uuid,
        tenant_id: Uuid,
        user_id: Uuid,
        #[serde(rename = "override")]
        override_: bool,
        reason: Option<String>,
    },
    CompartmentOpenAuthorized {
        command_id: Uuid,
    },
    CompartmentOpenDenied {
        command_id: Uuid,
        reason: DenialReason,
    },
    CompartmentOpenSent {
        command_id: Uuid,
    },
    CompartmentOpened {
        command_id: Uuid,
    },
    /// v2: `reason` is a code (`device_error`, `timeout`, `send_failed`,
    /// …) and `detail` free text; v1 had only free text in `error`.
    CompartmentOpenFailed {
        command_id: Uuid,
        reason: FailureReason,
        detail: Option<String>,
    },
    /// A device result that arrived after the command had already ended.
    CompartmentOpenLateResult {
        command_id: Uuid,
        result: String,
        error: Option<String>,
    },
}

impl DomainEvent {
    /// The variant name, stored as `event_type`.
    pub fn event_type(&self) -> &'static str {
        match self {
            DomainEvent::LockerBankRegistered { .. } => "LockerBankRegistered",
            DomainEvent::LockerBankDetailsChanged { .. } => "LockerBankDetailsChanged",
            DomainEvent::CompartmentDetailsChanged { .. } => "CompartmentDetailsChanged",
            DomainEvent::UserProfileChanged { .. } => "UserProfileChanged",
            DomainEvent::AccessWindowChanged { .. } => "AccessWindowChanged",
            DomainEvent::CompartmentAdded { .. } => "CompartmentAdded",
            DomainEvent::CompartmentsImported { .. } => "CompartmentsImported",
            DomainEvent::DeviceStatusChanged { .. } => "DeviceStatusChanged",
            DomainEvent::LockerProvisioningRequested { .. } => "LockerProvisioningRequested",
            DomainEvent::LockerProvisioningValidated { .. } => "LockerProvisioningValidated",
            DomainEvent::LockerCredentialsCreated { .. } => "LockerCredentialsCreated",
            DomainEvent::LockerCredentialsDelivered { .. } => "LockerCredentialsDelivered",
            DomainEvent::LockerWasProvisioned { .. } => "LockerWasProvisioned",
            DomainEvent::LockerProvisioningFailed { .. } => "LockerProvisioningFailed",
            DomainEvent::LockerDecommissioned { .. } => "LockerDecommissioned",
            DomainEvent::LockerProvisioningReset { .. } => "LockerProvisioningReset",
            DomainEvent::CompartmentDoorChanged { .. } => "CompartmentDoorChanged",
            DomainEvent::CompartmentOccupancyChanged { .. } => "CompartmentOccupancyChanged",
            DomainEvent::AccessGranted { .. } => "AccessGranted",
            DomainEvent::AccessRevoked { .. } => "AccessRevoked",
            DomainEvent::CompartmentOpenRequested { .. } => "CompartmentOpenRequested",
            DomainEvent::CompartmentOpenAuthorized { .. } => "CompartmentOpenAuthorized",
            DomainEvent::CompartmentOpenDenied { .. } => "CompartmentOpenDenied",
            DomainEvent::CompartmentOpenSent { .. } => "CompartmentOpenSent",
            DomainEvent::CompartmentOpened { .. } => "CompartmentOpened",
            DomainEvent::CompartmentOpenFailed { .. } => "CompartmentOpenFailed",
            DomainEvent::CompartmentOpenLateResult { .. } => "CompartmentOpenLateResult",
        }
    }

    /// The current schema version of this event's payload.
    pub fn schema_version(&self) -> i64 {
        match self {
            DomainEvent::CompartmentOpenFailed { .. } => 2,
            _ => 1,
        }
    }

    fn to_payload(&self) -> CoreResult<Value> {
        let mut value = serde_json::to_value(self)
            .map_err(|e| CoreError::Invalid(format!("event does not serialize: {e}")))?;
        if let Value::Object(map) = &mut value {
            map.remove("type");
        }
        Ok(value)
    }

    fn from_stored(event_type: &str, version: i64, payload: Value) -> CoreResult<Self> {
        let mut payload = upcast(event_type, version, payload)?;
        match &mut payload {
            Value::Object(map) => {
                map.insert("type".into(), Value::String(event_type.to_string()));
            }
            _ => {
                return Err(CoreError::Invalid(format!(
                    "stored {event_type} payload is not an object"
                )))
            }
        }
        serde_json::from_value(payload)
            .map_err(|e| CoreError::Invalid(format!("stored {event_type} v{version}: {e}")))
    }
}

/// Brings a stored payload up to its event's current schema version.
pub fn upcast(event_type: &str, version: i64, payload: Value) -> CoreResult<Value> {
    match (event_type, version) {
        ("CompartmentOpenFailed", 1) => {
            // v1: {command_id, error}; v2: {command_id, reason, detail}.
            let mut map = match payload {
                Value::Object(map) => map,
                _ => {
                    return Err(CoreError::Invalid(
                        "CompartmentOpenFailed v1 is not an object".into(),
                    ))
                }
            };
            let error = map.remove("error");
            let reason = match error.as_ref().and_then(Value::as_str) {
                Some(text) if text.to_lowercase().contains("timeout") => FailureReason::Timeout,
                _ => FailureReason::DeviceError,
            };
            map.insert("reason".into(), Value::String(reason.as_str().into()));
            map.insert("detail".into(), error.unwrap_or(Value::Null));
            Ok(Value::Object(map))
        }
        _ => Ok(payload),
    }
}

/// An event as stored, with its position and metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub position: i64,
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_uuid: Uuid,
    pub aggregate_version: i64,
    pub event: DomainEvent,
    pub metadata: Metadata,
    pub occurred_at: i64,
}

/// Appends `events` to an aggregate whose current version the caller saw
/// as `expected_version`. Another writer having appended first makes this
/// a [`CoreError::VersionConflict`]; the caller's transaction must then be
/// rolled back (and the command retried from a fresh read).
pub async fn append(
    conn: &mut AnyConnection,
    aggregate_type: &str,
    aggregate_uuid: Uuid,
    expected_version: i64,
    events: Vec<DomainEvent>,
    metadata: &Metadata,
    occurred_at: i64,
) -> CoreResult<Vec<StoredEvent>> {
    let (mut stored, rows) = prepare(
        aggregate_type,
        aggregate_uuid,
        expected_version,
        events,
        metadata,
        occurred_at,
    )?;
    let positions = insert_all(conn, &rows).await?;
    for (event, position) in stored.iter_mut().zip(positions) {
        event.position = position;
    }
    Ok(stored)
}

/// An event's row as [`insert_all`] writes it.
#[derive(Clone, Debug)]
pub struct EventRow {
    event_id: Uuid,
    aggregate_type: String,
    aggregate_uuid: Uuid,
    version: i64,
    event_type: &'static str,
    schema_version: i64,
    payload: String,
    metadata: String,
    occurred_at: i64,
}

impl EventRow {
    pub fn aggregate_uuid(&self) -> Uuid {
        self.aggregate_uuid
    }
}

/// The events of one append at `expected_version`: as stored events
/// without their position (0 until inserted) and as the rows to insert.
pub fn prepare(
    aggregate_type: &str,
    aggregate_uuid: Uuid,
    expected_version: i64,
    events: Vec<DomainEvent>,
    metadata: &Metadata,
    occurred_at: i64,
) -> CoreResult<(Vec<StoredEvent>, Vec<EventRow>)> {
    let meta_json = serde_json::to_string(metadata)
        .map_err(|e| CoreError::Invalid(format!("metadata does not serialize: {e}")))?;
    let mut stored = Vec::with_capacity(events.len());
    let mut rows = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        let event_id = Uuid::now_v7();
        let version = expected_version + 1 + i as i64;
        rows.push(EventRow {
            event_id,
            aggregate_type: aggregate_type.to_string(),
            aggregate_uuid,
            version,
            event_type: event.event_type(),
            schema_version: event.schema_version(),
            payload: event.to_payload()?.to_string(),
            metadata: meta_json.clone(),
            occurred_at,
        });
        stored.push(StoredEvent {
            position: 0,
            event_id,
            aggregate_type: aggregate_type.to_string(),
            aggregate_uuid,
            aggregate_version: version,
            event,
            metadata: metadata.clone(),
            occurred_at,
        });
    }
    Ok((stored, rows))
}

/// Event rows one statement of [`insert_all`] writes at most (nine
/// parameters each, well under both backends' limits).
pub const EVENTS_PER_STATEMENT: usize = 500;

/// The insert of `rows` (at most [`EVENTS_PER_STATEMENT`]), returning
/// their positions.
pub fn insert_stmt(rows: &[EventRow]) -> Stmt {
    let values = crate::eventstore::sql::value_rows(rows.len(), 9, "");
    let mut args = Vec::with_capacity(rows.len() * 9);
    for row in rows {
        args.extend([
            Arg::from(row.event_id.to_string()),
            row.aggregate_type.as_str().into(),
            row.aggregate_uuid.to_string().into(),
            row.version.into(),
            row.event_type.into(),
            row.schema_version.into(),
            row.payload.as_str().into(),
            row.metadata.as_str().into(),
            row.occurred_at.into(),
        ]);
    }
    Stmt {
        sql: format!(
            "INSERT INTO stored_events (event_id, aggregate_type, aggregate_uuid, \
             aggregate_version, event_type, event_version, payload, metadata, occurred_at) \
             VALUES {values} RETURNING id"
        ),
        args,
    }
}

/// Whether `e`, from a statement of a batch's end that writes more than
/// the events, broke a unique key of `stored_events` (another writer
/// appended at the same version first), rather than another table's: a
/// log row's seq or a command's id broken is an integrity fault, and stays
/// the database error it is. PostgreSQL names the table; SQLite only in
/// its message ("UNIQUE constraint failed: stored_events.…").
pub fn breaks_events_key(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.is_unique_violation()
            && (db.table() == Some("stored_events") || db.message().contains("stored_events.")))
}

/// What an event insert's error means: a version conflict when it broke
/// a unique key of `stored_events` (reported on the first of `rows`).
pub fn conflict_of(e: sqlx::Error, rows: &[EventRow]) -> CoreError {
    if CoreError::is_unique_violation(&e) {
        if let Some(first) = rows.first() {
            return CoreError::VersionConflict {
                aggregate: first.aggregate_uuid,
                expected: first.version - 1,
            };
        }
    }
    e.into()
}

/// Inserts event rows, of one aggregate or many, in multi-row statements;
/// returns their positions in row order. A row whose aggregate already
/// has its version makes this a [`CoreError::VersionConflict`] (naming
/// the first row's aggregate of the statement that failed).
pub async fn insert_all(conn: &mut AnyConnection, rows: &[EventRow]) -> CoreResult<Vec<i64>> {
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(EVENTS_PER_STATEMENT) {
        let stmt = insert_stmt(chunk);
        let mut positions = match stmt.query().fetch_all(&mut *conn).await {
            Ok(found) => found
                .iter()
                .map(|row| row.try_get::<i64, _>("id"))
                .collect::<Result<Vec<_>, _>>()?,
            Err(e) => return Err(conflict_of(e, chunk)),
        };
        if positions.len() != chunk.len() {
            return Err(CoreError::Invalid("an event was not stored".into()));
        }
        // One statement's rows take increasing positions in VALUES order;
        // RETURNING's own order is not promised, so they are sorted back.
        positions.sort_unstable();
        out.extend(positions);
    }
    Ok(out)
}

fn stored_from_row(row: &sqlx::any::AnyRow) -> CoreResult<StoredEvent> {
    let event_type: String = row.try_get("event_type")?;
    let version: i64 = row.try_get("event_version")?;
    let payload: String = row.try_get("payload")?;
    let payload: Value = serde_json::from_str(&payload)
        .map_err(|e| CoreError::Invalid(format!("stored payload is not JSON: {e}")))?;
    let metadata: String = row.try_get("metadata")?;
    Ok(StoredEvent {
        position: row.try_get("id")?,
        event_id: parse_uuid(&row.try_get::<String, _>("event_id")?)?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_uuid: parse_uuid(&row.try_get::<String, _>("aggregate_uuid")?)?,
        aggregate_version: row.try_get("aggregate_version")?,
        event: DomainEvent::from_stored(&event_type, version, payload)?,
        metadata: serde_json::from_str(&metadata)
            .map_err(|e| CoreError::Invalid(format!("stored metadata: {e}")))?,
        occurred_at: row.try_get("occurred_at")?,
    })
}

const COLUMNS: &str = "id, event_id, aggregate_type, aggregate_uuid, aggregate_version, \
                       event_type, event_version, payload, metadata, occurred_at";

/// One aggregate's events, oldest first.
pub async fn load_stream(
    conn: &mut AnyConnection,
    aggregate_uuid: Uuid,
) -> CoreResult<Vec<StoredEvent>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM stored_events WHERE aggregate_uuid = $1 ORDER BY aggregate_version"
    ))
    .bind(aggregate_uuid.to_string())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(stored_from_row).collect()
}

/// One aggregate's events of one type, oldest first.
pub async fn load_stream_of_type(
    conn: &mut AnyConnection,
    aggregate_uuid: Uuid,
    event_type: &str,
) -> CoreResult<Vec<StoredEvent>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM stored_events WHERE aggregate_uuid = $1 AND event_type = $2 \
         ORDER BY aggregate_version"
    ))
    .bind(aggregate_uuid.to_string())
    .bind(event_type)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(stored_from_row).collect()
}

/// Up to `limit` events after global position `after`, in order.
pub async fn read_all(
    conn: &mut AnyConnection,
    after: i64,
    limit: i64,
) -> CoreResult<Vec<StoredEvent>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM stored_events WHERE id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(stored_from_row).collect()
}

pub async fn count(conn: &mut AnyConnection) -> CoreResult<i64> {
    Ok(sqlx::query("SELECT COUNT(*) AS n FROM stored_events")
        .fetch_one(&mut *conn)
        .await?
        .try_get("n")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_through_type_and_payload() {
        let e = DomainEvent::CompartmentOpenRequested {
            command_id: Uuid::now_v7(),
            compartment_id: Uuid::now_v7(),
            bank_id: Uuid::now_v7(),
            tenant_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            override_: true,
            reason: Some("stuck door".into()),
        };
        let payload = e.to_payload().expect("payload");
        assert!(payload.get("type").is_none());
        assert_eq!(payload["override"], true);
        let back = DomainEvent::from_stored(e.event_type(), 1, payload).expect("back");
        assert_eq!(back, e);
    }

    #[test]
    fn open_failed_v1_is_upcast_to_v2() {
        let id = Uuid::now_v7();
        let v1 = json!({"command_id": id, "error": "motor jammed"});
        let e = DomainEvent::from_stored("CompartmentOpenFailed", 1, v1).expect("upcast");
        assert_eq!(
            e,
            DomainEvent::CompartmentOpenFailed {
                command_id: id,
                reason: FailureReason::DeviceError,
                detail: Some("motor jammed".into()),
            }
        );
        let v1_timeout = json!({"command_id": id, "error": "Timeout waiting for locker"});
        match DomainEvent::from_stored("CompartmentOpenFailed", 1, v1_timeout).expect("upcast") {
            DomainEvent::CompartmentOpenFailed { reason, .. } => {
                assert_eq!(reason, FailureReason::Timeout)
            }
            other => panic!("unexpected {other:?}"),
        }
        // The current version is read as it is.
        let v2 = json!({"command_id": id, "reason": "timeout", "detail": null});
        assert!(DomainEvent::from_stored("CompartmentOpenFailed", 2, v2).is_ok());
    }

    #[test]
    fn unknown_or_malformed_stored_events_are_errors_not_panics() {
        assert!(DomainEvent::from_stored("NoSuchEvent", 1, json!({})).is_err());
        assert!(DomainEvent::from_stored("CompartmentOpened", 1, json!([1, 2])).is_err());
        assert!(
            DomainEvent::from_stored("CompartmentOpened", 1, json!({"command_id": 5})).is_err()
        );
    }
}
