//! A user's notification list (Filament's database notifications): the
//! commands they issued that ended (`opened` or `failed`), newest first,
//! and how many of them ended after the user last marked the list read.
//! Derived from the `open_requests` read model; the only state of its own
//! is each user's `read_until`.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use crate::{
    db::{Db, ExecuteWrite},
    error::{parse_wire, parse_wire_opt, CoreResult},
    identity::accounts::parse_uuid,
    now_ms,
};
use lockstep_wire::{FailureReason, OpenStatus};

/// One ended command in the list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxItem {
    pub command_id: Uuid,
    pub bank_id: Uuid,
    pub bank_name: String,
    pub compartment_number: i64,
    pub status: OpenStatus,
    pub failure_reason: Option<FailureReason>,
    pub ended_at: i64,
    pub unread: bool,
}

/// The newest items and the unread count (which may exceed the items
/// shown).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbox {
    pub items: Vec<InboxItem>,
    pub unread: i64,
    pub read_until: i64,
}

const ENDED: &str = "COALESCE(o.opened_at, o.failed_at)";

/// The user's `limit` newest ended commands and their unread count.
pub async fn inbox(db: &Db, user_id: Uuid, limit: i64) -> CoreResult<Inbox> {
    let read_until: i64 =
        sqlx::query("SELECT read_until FROM notification_reads WHERE user_id = $1")
            .bind(user_id.to_string())
            .fetch_optional(&db.pool)
            .await?
            .map(|r| r.try_get("read_until"))
            .transpose()?
            .unwrap_or(0);
    let unread: i64 = sqlx::query(&format!(
        "SELECT COUNT(*) AS n FROM open_requests o \
         WHERE o.user_id = $1 AND o.status IN ('opened', 'failed') AND {ENDED} > $2"
    ))
    .bind(user_id.to_string())
    .bind(read_until)
    .fetch_one(&db.pool)
    .await?
    .try_get("n")?;
    let rows = sqlx::query(&format!(
        "SELECT o.command_id, o.bank_id, b.name AS bank_name, c.number, o.status, \
         o.failure_reason, {ENDED} AS ended_at \
         FROM open_requests o \
         JOIN compartments c ON c.id = o.compartment_id \
         JOIN locker_banks b ON b.id = o.bank_id \
         WHERE o.user_id = $1 AND o.status IN ('opened', 'failed') \
         ORDER BY {ENDED} DESC, o.command_id DESC LIMIT {}",
        limit.clamp(1, 200)
    ))
    .bind(user_id.to_string())
    .fetch_all(&db.pool)
    .await?;
    let items = rows
        .iter()
        .map(|r| {
            let ended_at: i64 = r.try_get("ended_at")?;
            Ok(InboxItem {
                command_id: parse_uuid(&r.try_get::<String, _>("command_id")?)?,
                bank_id: parse_uuid(&r.try_get::<String, _>("bank_id")?)?,
                bank_name: r.try_get("bank_name")?,
                compartment_number: r.try_get("number")?,
                status: parse_wire(&r.try_get::<String, _>("status")?)?,
                failure_reason: parse_wire_opt(r.try_get("failure_reason")?)?,
                ended_at,
                unread: ended_at > read_until,
            })
        })
        .collect::<CoreResult<_>>()?;
    Ok(Inbox {
        items,
        unread,
        read_until,
    })
}

/// Marks read what ended up to `until` (the newest item the user was
/// shown, so that one ending meanwhile stays unread); never moves back,
/// never past now.
pub async fn mark_read(db: &Db, user_id: Uuid, until: i64) -> CoreResult<()> {
    let until = until.min(now_ms());
    sqlx::query(
        "INSERT INTO notification_reads (user_id, read_until) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE SET read_until = CASE \
         WHEN excluded.read_until > notification_reads.read_until THEN excluded.read_until \
         ELSE notification_reads.read_until END",
    )
    .bind(user_id.to_string())
    .bind(until)
    .execute_write(db)
    .await?;
    Ok(())
}
