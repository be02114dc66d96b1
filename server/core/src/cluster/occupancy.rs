//! Which nodes have sockets on which channel (`channel_nodes`), for the
//! webhooks `channel_occupied` and `channel_vacated`: a channel is
//! occupied when its first node row appears and vacated when its last one
//! goes, decided under the channel's lock, so once for the cluster however
//! many nodes its subscribers are spread over (the peers report per node,
//! and vacate channels that are still followed elsewhere).

use std::collections::HashSet;

use sqlx::Row;

use super::lock_channel;
use crate::{db::Db, error::CoreResult, eventstore::store::begin_write};

/// This node now has sockets on `channel`: true when no node had.
pub async fn occupy(db: &Db, node_id: &str, channel: &str) -> CoreResult<bool> {
    let mut tx = begin_write(db).await?;
    lock_channel(&mut tx, db.backend, channel).await?;
    let before = sqlx::query("SELECT node_id FROM channel_nodes WHERE channel = $1")
        .bind(channel)
        .fetch_all(&mut *tx)
        .await?;
    if before
        .iter()
        .any(|r| r.try_get::<String, _>("node_id").ok().as_deref() == Some(node_id))
    {
        return Ok(false);
    }
    sqlx::query("INSERT INTO channel_nodes (channel, node_id) VALUES ($1, $2)")
        .bind(channel)
        .bind(node_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(before.is_empty())
}

/// This node has no socket left on `channel`: true when no node has.
pub async fn vacate(db: &Db, node_id: &str, channel: &str) -> CoreResult<bool> {
    let mut tx = begin_write(db).await?;
    lock_channel(&mut tx, db.backend, channel).await?;
    let done = sqlx::query("DELETE FROM channel_nodes WHERE channel = $1 AND node_id = $2")
        .bind(channel)
        .bind(node_id)
        .execute(&mut *tx)
        .await?;
    let empty = sqlx::query("SELECT 1 AS here FROM channel_nodes WHERE channel = $1 LIMIT 1")
        .bind(channel)
        .fetch_optional(&mut *tx)
        .await?
        .is_none();
    tx.commit().await?;
    Ok(done.rows_affected() == 1 && empty)
}

/// Removes the rows of nodes whose lease ran out by `now` (or that have
/// none): the channels no node follows any more.
pub async fn sweep(db: &Db, now: i64) -> CoreResult<Vec<String>> {
    let rows = sqlx::query(
        "SELECT channel, node_id FROM channel_nodes WHERE node_id NOT IN \
         (SELECT node_id FROM cluster_nodes WHERE lease_until >= $1)",
    )
    .bind(now)
    .fetch_all(&db.pool)
    .await?;
    let mut vacated = Vec::new();
    let mut seen = HashSet::new();
    for r in &rows {
        let channel: String = r.try_get("channel")?;
        let node_id: String = r.try_get("node_id")?;
        // One failing must not lose what the others committed: logged;
        // the next sweep retries it.
        match vacate(db, &node_id, &channel).await {
            Ok(true) if seen.insert(channel.clone()) => vacated.push(channel),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, channel = %channel, node_id = %node_id, "sweeping a dead node's channel failed")
            }
        }
    }
    Ok(vacated)
}
