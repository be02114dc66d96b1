//! Durable timers: a row per pending deadline, so a restart does not forget
//! one. A timer fires once: claiming it (`fired_at`) happens in the same
//! transaction as the command it triggers.

use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::{
    db::Db,
    error::CoreResult,
    eventstore::sql::{Arg, Stmt},
    identity::accounts::parse_uuid,
};

/// An open command's deadline for the locker's answer.
pub const OPEN_TIMEOUT: &str = "open_timeout";

/// A timer's id: one per kind and subject.
pub fn timer_id(kind: &str, subject: Uuid) -> String {
    format!("{kind}:{subject}")
}

/// A timer to insert ([`schedule_all`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewTimer {
    pub kind: &'static str,
    pub subject: Uuid,
    pub due_at: i64,
}

/// Timers one statement of [`schedule_all`] inserts at most.
const SCHEDULE_PER_STATEMENT: usize = 500;

/// Inserts timers (one already there is kept), one statement per
/// [`SCHEDULE_PER_STATEMENT`].
pub async fn schedule_all(conn: &mut AnyConnection, timers: &[NewTimer]) -> CoreResult<()> {
    for stmt in schedule_stmts(timers) {
        stmt.query().execute(&mut *conn).await?;
    }
    Ok(())
}

/// The statements of [`schedule_all`].
pub fn schedule_stmts(timers: &[NewTimer]) -> Vec<Stmt> {
    timers
        .chunks(SCHEDULE_PER_STATEMENT)
        .map(|chunk| {
            let values = crate::eventstore::sql::value_rows(chunk.len(), 4, "");
            let mut args = Vec::with_capacity(chunk.len() * 4);
            for t in chunk {
                args.extend([
                    Arg::from(timer_id(t.kind, t.subject)),
                    t.kind.into(),
                    t.subject.to_string().into(),
                    t.due_at.into(),
                ]);
            }
            Stmt {
                sql: format!(
                    "INSERT INTO timers (id, kind, subject, due_at) VALUES {values} ON CONFLICT (id) DO NOTHING"
                ),
                args,
            }
        })
        .collect()
}

/// Drops deadlines that no longer matter (their commands ended), so they
/// neither fire later nor stay in the table: a batch's in one statement.
pub async fn cancel_all(conn: &mut AnyConnection, ids: &[String]) -> CoreResult<()> {
    for stmt in cancel_stmts(ids) {
        stmt.query().execute(&mut *conn).await?;
    }
    Ok(())
}

/// The statements of [`cancel_all`].
pub fn cancel_stmts(ids: &[String]) -> Vec<Stmt> {
    ids.chunks(CANCEL_PER_STATEMENT)
        .map(|chunk| Stmt {
            sql: format!(
                "DELETE FROM timers WHERE id IN ({})",
                crate::eventstore::sql::in_list(chunk.len())
            ),
            args: chunk.iter().map(|id| Arg::from(id.as_str())).collect(),
        })
        .collect()
}

/// Timers one DELETE names at most.
const CANCEL_PER_STATEMENT: usize = 500;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueTimer {
    pub id: String,
    pub kind: String,
    pub subject: Uuid,
}

pub async fn due(db: &Db, now: i64, limit: i64) -> CoreResult<Vec<DueTimer>> {
    let rows = sqlx::query(
        "SELECT id, kind, subject FROM timers WHERE fired_at IS NULL AND due_at <= $1 ORDER BY due_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DueTimer {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                subject: parse_uuid(&r.try_get::<String, _>("subject")?)?,
            })
        })
        .collect()
}

/// Claims the timer inside the caller's transaction; false if another
/// process fired it first.
pub async fn claim(conn: &mut AnyConnection, id: &str, now: i64) -> CoreResult<bool> {
    Ok(
        sqlx::query("UPDATE timers SET fired_at = $1 WHERE id = $2 AND fired_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await?
            .rows_affected()
            == 1,
    )
}
