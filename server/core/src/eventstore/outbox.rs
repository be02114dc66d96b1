//! The outbox: side effects recorded in the same transaction as the event
//! that causes them, then run after commit, at least once. A row is
//! claimed with a lease (so several processes can share the work), retried
//! with exponential backoff, and after `MAX_ATTEMPTS` left `dead` with its
//! last error: visible in the table, the metrics and the log.

use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::{
    db::{Db, ExecuteWrite},
    error::CoreResult,
    eventstore::sql::{Arg, Stmt},
    identity::accounts::parse_uuid,
};

/// The reactor that sends an authorized open command to the locker.
pub const SEND_OPEN: &str = "send_open";
/// Disables a decommissioned locker's broker account.
pub const DISABLE_LOCKER: &str = "disable_locker";
/// Delivers a stored Pusher webhook batch (`crate::webhooks`).
pub const PUSHER_WEBHOOK: &str = "pusher_webhook";
pub const MAX_ATTEMPTS: i64 = 5;
/// How long a claim holds a job; `CoreSettings::job_deadline` stays under it.
pub const LEASE_MS: i64 = 30_000;

pub async fn enqueue(
    conn: &mut AnyConnection,
    event_id: Uuid,
    reactor: &str,
    now: i64,
) -> CoreResult<()> {
    sqlx::query(
        "INSERT INTO outbox (event_id, reactor, status, attempts, next_attempt_at, created_at) \
         VALUES ($1, $2, 'pending', 0, $3, $3) ON CONFLICT (event_id, reactor) DO NOTHING",
    )
    .bind(event_id.to_string())
    .bind(reactor)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An outbox row to insert ([`enqueue_all`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewJob {
    /// The event that caused it.
    pub event_id: Uuid,
    pub reactor: &'static str,
    /// When it is first due.
    pub at: i64,
}

/// Outbox rows one statement of [`enqueue_all`] inserts at most.
const ENQUEUE_PER_STATEMENT: usize = 500;

/// [`enqueue`] of many rows, one statement per [`ENQUEUE_PER_STATEMENT`].
pub async fn enqueue_all(conn: &mut AnyConnection, jobs: &[NewJob]) -> CoreResult<()> {
    for stmt in enqueue_stmts(jobs) {
        stmt.query().execute(&mut *conn).await?;
    }
    Ok(())
}

/// The statements of [`enqueue_all`].
pub fn enqueue_stmts(jobs: &[NewJob]) -> Vec<Stmt> {
    let mut out = Vec::new();
    for chunk in jobs.chunks(ENQUEUE_PER_STATEMENT) {
        let values = (0..chunk.len())
            .map(|r| {
                format!(
                    "(${}, ${}, 'pending', 0, ${}, ${})",
                    r * 3 + 1,
                    r * 3 + 2,
                    r * 3 + 3,
                    r * 3 + 3
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO outbox (event_id, reactor, status, attempts, next_attempt_at, created_at) \
             VALUES {values} ON CONFLICT (event_id, reactor) DO NOTHING"
        );
        let mut args = Vec::with_capacity(chunk.len() * 3);
        for job in chunk {
            args.extend([
                Arg::from(job.event_id.to_string()),
                job.reactor.into(),
                job.at.into(),
            ]);
        }
        out.push(Stmt { sql, args });
    }
    out
}

/// A claimed outbox row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub event_id: Uuid,
    pub reactor: String,
    pub attempts: i64,
}

/// Claims up to `limit` due rows for this process (a lease: a crash
/// releases them after `LEASE_MS`), in one statement. Two processes
/// claiming at once cannot both get a row: the second one's update finds
/// its `next_attempt_at` already moved past `now`.
pub async fn claim_due(db: &Db, now: i64, limit: i64) -> CoreResult<Vec<Job>> {
    let rows = {
        let _turn = db.write_turn().await;
        sqlx::query(
            "UPDATE outbox SET next_attempt_at = $1 \
             WHERE status = 'pending' AND next_attempt_at <= $2 AND id IN ( \
               SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $2 \
               ORDER BY id LIMIT $3) \
             RETURNING id, event_id, reactor, attempts",
        )
        .bind(now + LEASE_MS)
        .bind(now)
        .bind(limit)
        .fetch_all(db.writer())
        .await?
    };
    let mut jobs = rows
        .iter()
        .map(|row| {
            Ok(Job {
                id: row.try_get("id")?,
                event_id: parse_uuid(&row.try_get::<String, _>("event_id")?)?,
                reactor: row.try_get("reactor")?,
                attempts: row.try_get("attempts")?,
            })
        })
        .collect::<CoreResult<Vec<_>>>()?;
    jobs.sort_by_key(|j| j.id);
    Ok(jobs)
}

pub async fn complete(db: &Db, id: i64, now: i64) -> CoreResult<()> {
    sqlx::query("UPDATE outbox SET status = 'done', attempts = attempts + 1, finished_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute_write(db)
        .await?;
    Ok(())
}

/// [`complete`] inside the caller's transaction (a group-committed write).
pub async fn complete_in(conn: &mut AnyConnection, id: i64, now: i64) -> CoreResult<()> {
    sqlx::query("UPDATE outbox SET status = 'done', attempts = attempts + 1, finished_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Outbox rows one statement of [`complete_all`] names at most.
const DONE_PER_STATEMENT: usize = 500;

/// Marks outbox rows done, inside the caller's transaction: `(id, when)`,
/// one statement per [`DONE_PER_STATEMENT`].
pub async fn complete_all(conn: &mut AnyConnection, done: &[(i64, i64)]) -> CoreResult<()> {
    for stmt in complete_stmts(done) {
        stmt.query().execute(&mut *conn).await?;
    }
    Ok(())
}

/// The statements of [`complete_all`].
pub fn complete_stmts(done: &[(i64, i64)]) -> Vec<Stmt> {
    done.chunks(DONE_PER_STATEMENT)
        .map(|chunk| {
            let values = crate::eventstore::sql::value_rows(chunk.len(), 2, "");
            let args = chunk
                .iter()
                .flat_map(|(id, at)| [Arg::Int(*id), Arg::Int(*at)])
                .collect();
            // VALUES columns are column1.. on both backends.
            Stmt {
                sql: format!(
                    "UPDATE outbox SET status = 'done', attempts = attempts + 1, finished_at = v.column2 \
                     FROM (VALUES {values}) AS v WHERE outbox.id = v.column1"
                ),
                args,
            }
        })
        .collect()
}

/// Delay before attempt `attempts + 1`: 0.5 s doubling, at most a minute.
pub fn backoff_ms(attempts: i64) -> i64 {
    let exp = attempts.clamp(0, 7) as u32;
    (500_i64 * 2_i64.pow(exp)).min(60_000)
}

/// Gives a claimed job back, due again at `at`, without counting an
/// attempt (it did not run).
pub async fn postpone(db: &Db, id: i64, at: i64) -> CoreResult<()> {
    sqlx::query("UPDATE outbox SET next_attempt_at = $1 WHERE id = $2 AND status = 'pending'")
        .bind(at)
        .bind(id)
        .execute_write(db)
        .await?;
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    RetryAt(i64),
    Dead,
}

/// Records a failed attempt: a retry later, or the dead letter.
pub async fn fail(db: &Db, job: &Job, error: &str, now: i64) -> CoreResult<Failure> {
    fail_within(db, job, error, now, MAX_ATTEMPTS).await
}

/// [`fail`] for a job allowed `max_attempts`.
pub async fn fail_within(
    db: &Db,
    job: &Job,
    error: &str,
    now: i64,
    max_attempts: i64,
) -> CoreResult<Failure> {
    let attempts = job.attempts + 1;
    if attempts >= max_attempts {
        sqlx::query(
            "UPDATE outbox SET status = 'dead', attempts = $1, last_error = $2, finished_at = $3 WHERE id = $4",
        )
        .bind(attempts)
        .bind(error)
        .bind(now)
        .bind(job.id)
        .execute_write(db)
        .await?;
        Ok(Failure::Dead)
    } else {
        let at = now + backoff_ms(attempts - 1);
        sqlx::query(
            "UPDATE outbox SET attempts = $1, last_error = $2, next_attempt_at = $3 WHERE id = $4",
        )
        .bind(attempts)
        .bind(error)
        .bind(at)
        .bind(job.id)
        .execute_write(db)
        .await?;
        Ok(Failure::RetryAt(at))
    }
}

/// Counts of outbox rows by status, for metrics and tests.
pub async fn counts(db: &Db) -> CoreResult<(i64, i64, i64)> {
    let row = sqlx::query(
        "SELECT \
           COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0) AS pending, \
           COALESCE(SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END), 0) AS done, \
           COALESCE(SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END), 0) AS dead \
         FROM outbox",
    )
    .fetch_one(&db.pool)
    .await?;
    Ok((
        row.try_get("pending")?,
        row.try_get("done")?,
        row.try_get("dead")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_ms(0), 500);
        assert_eq!(backoff_ms(1), 1000);
        assert_eq!(backoff_ms(3), 4000);
        assert_eq!(backoff_ms(50), 60_000);
    }
}
