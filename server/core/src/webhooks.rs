//! Outgoing webhooks (the hub's Pusher webhooks): a batch is stored with
//! an outbox row in one transaction, so it survives a restart and is
//! retried with backoff by the outbox workers; the [`WebhookSender`]
//! (the server's HTTP client, which signs) delivers it.

use async_trait::async_trait;
use sqlx::Row;
use uuid::Uuid;

use crate::{db::Db, error::CoreResult, eventstore::outbox, eventstore::store::begin_write};

/// Attempts before a webhook batch is left dead: with the outbox's
/// backoff (0.5 s doubling, at most a minute) about five minutes, as
/// Pusher retries.
pub const MAX_ATTEMPTS: i64 = 12;

/// Deliveries in flight at once, in this process (the outbox workers run
/// up to 256 jobs; a black-holed receiver must not hold them).
pub static IN_FLIGHT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(8);

/// How long a delivery waits when all of [`IN_FLIGHT`] are taken.
pub const POSTPONE_MS: i64 = 250;

/// Delivers one webhook body to a URL; an `Err` is retried.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    async fn deliver(&self, url: &str, body: &str) -> Result<(), String>;
}

/// Stores `body` for each of `urls`, each with its outbox row.
pub async fn enqueue(db: &Db, urls: &[String], body: &str, now: i64) -> CoreResult<()> {
    if urls.is_empty() {
        return Ok(());
    }
    let mut tx = begin_write(db).await?;
    for url in urls {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, url, body, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id.to_string())
        .bind(url)
        .bind(body)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        outbox::enqueue(&mut tx, id, outbox::PUSHER_WEBHOOK, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A stored delivery: (url, body), if still waiting.
pub async fn pending(db: &Db, id: Uuid) -> CoreResult<Option<(String, String)>> {
    let row = sqlx::query("SELECT url, body FROM webhook_deliveries WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&db.pool)
        .await?;
    Ok(match row {
        Some(r) => Some((r.try_get("url")?, r.try_get("body")?)),
        None => None,
    })
}

/// A delivered batch's row goes.
pub async fn delivered(db: &Db, id: Uuid) -> CoreResult<()> {
    db.write(sqlx::query("DELETE FROM webhook_deliveries WHERE id = $1").bind(id.to_string()))
        .await?;
    Ok(())
}
