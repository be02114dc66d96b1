//! The version guard's wire types: who edited a record, the `RecordUpdated`
//! envelope body, a record's version, and the verdict on a stale edit (the
//! body of a 409).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::RecordType;

/// Who made an edit.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Editor {
    pub id: Uuid,
    pub name: String,
}

/// The body of a `RecordUpdated` envelope: a record an admin edits changed.
/// It names the fields, never their values (a client that cares refetches
/// the record), so it stays small whatever the record holds.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordUpdated {
    pub record_type: RecordType,
    pub record_id: Uuid,
    /// The record's version after the edit (what `If-Match` must carry next).
    pub version: i64,
    /// Milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// Absent for a change the system made.
    pub updated_by: Option<Editor>,
    pub fields: Vec<String>,
}

/// A record's current version, and its last edit.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordVersion {
    pub record_type: RecordType,
    pub record_id: Uuid,
    pub version: i64,
    /// When the last edit was made (ms since the Unix epoch); absent when
    /// the record was never edited.
    pub updated_at: Option<i64>,
    pub updated_by: Option<Editor>,
}

/// Why an edit was refused: the record moved on since the version the
/// editor saw. Nothing was written.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleEdit {
    pub record_type: RecordType,
    pub record_id: Uuid,
    /// The version the edit was made on.
    pub your_version: i64,
    pub current_version: i64,
    pub updated_at: Option<i64>,
    pub updated_by: Option<Editor>,
    /// The fields changed since `your_version`, in the order first changed.
    pub fields: Vec<String>,
}

/// The body of a `RecordsImported` envelope: a bulk import ended. It stands
/// for every row it wrote (their own envelopes are not sent), so a table
/// refreshes once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordsImported {
    pub record_type: RecordType,
    /// The bank the records belong to.
    pub bank_id: Uuid,
    pub added: i64,
    pub updated: i64,
    pub unchanged: i64,
}
