//! What several nodes share through the database: each node's lease
//! ([`nodes`]), the presence channels' members ([`presence`]) and which
//! nodes follow which channel, for webhooks ([`occupancy`]). The
//! realtime traffic between nodes (wake-ups, client events, publishes)
//! is the server's business (NATS); this is the part that must be true
//! after any node dies.

pub mod nodes;
pub mod occupancy;
pub mod presence;

use crate::{db::Backend, eventstore::store::WriteTx};

/// Serializes writers of one presence channel across the cluster
/// (PostgreSQL: a transaction-scoped advisory lock on the channel's name;
/// SQLite: the write transaction is already exclusive).
async fn lock_channel(
    tx: &mut WriteTx,
    backend: Backend,
    channel: &str,
) -> Result<(), sqlx::Error> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(hashtext($1))) AS l")
            .bind(channel)
            .fetch_one(&mut **tx)
            .await?;
    }
    Ok(())
}
