//! The error type of the core: every failure an adapter may have to turn
//! into an HTTP status or a UI message.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("aggregate {aggregate} changed since version {expected}; retry")]
    VersionConflict {
        aggregate: uuid::Uuid,
        expected: i64,
    },
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// An edit made on a version of a record that is no longer current:
    /// nothing was written; the verdict says who changed what since.
    #[error(
        "this {} was changed since version {} (now {}); reload it and apply your edit again",
        .0.record_type, .0.your_version, .0.current_version
    )]
    Stale(Box<lockstep_wire::record::StaleEdit>),
    /// An idempotency key sent again with a different request.
    #[error("this Idempotency-Key was used for a different request; send a new key")]
    IdempotencyKeyReused,
}

impl CoreError {
    /// True when a unique constraint rejected the write.
    pub fn is_unique_violation(err: &sqlx::Error) -> bool {
        matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
    }
}

pub type CoreResult<T> = Result<T, CoreError>;

impl From<lockstep_wire::UnknownName> for CoreError {
    fn from(e: lockstep_wire::UnknownName) -> Self {
        CoreError::Invalid(e.to_string())
    }
}

/// A wire name read back from a column (a status, a reason): a value no
/// variant knows is an error, never a silent default.
pub fn parse_wire<T>(stored: &str) -> CoreResult<T>
where
    T: std::str::FromStr<Err = lockstep_wire::UnknownName>,
{
    Ok(stored.parse()?)
}

/// The same for a nullable column.
pub fn parse_wire_opt<T>(stored: Option<String>) -> CoreResult<Option<T>>
where
    T: std::str::FromStr<Err = lockstep_wire::UnknownName>,
{
    stored.as_deref().map(parse_wire).transpose()
}
