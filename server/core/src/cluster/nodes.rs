//! Each running node's lease (`cluster_nodes`): registered at start,
//! renewed every couple of seconds, given up at a clean exit. A node
//! whose lease ran out is dead (SIGKILL, a lost machine): the others
//! sweep its presence rows ([`super::presence::sweep`]).

use sqlx::Row;

use crate::{
    db::{Db, ExecuteWrite},
    error::CoreResult,
};

/// A live node, as the others see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub node_id: String,
    pub name: String,
    pub mqtt_client_id: Option<String>,
    pub lease_until: i64,
}

/// Writes this node's lease (until `lease_until`).
pub async fn register(
    db: &Db,
    node_id: &str,
    name: &str,
    mqtt_client_id: Option<&str>,
    now: i64,
    lease_until: i64,
) -> CoreResult<()> {
    sqlx::query(
        "INSERT INTO cluster_nodes (node_id, name, mqtt_client_id, started_at, lease_until) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (node_id) DO UPDATE SET lease_until = EXCLUDED.lease_until",
    )
    .bind(node_id)
    .bind(name)
    .bind(mqtt_client_id)
    .bind(now)
    .bind(lease_until)
    .execute_write(db)
    .await?;
    Ok(())
}

/// Extends this node's lease; false when the lease was gone (it ran out
/// and the node was swept): the node's presence rows are gone too, so its
/// sockets must join again.
pub async fn renew(db: &Db, node_id: &str, now: i64, lease_until: i64) -> CoreResult<bool> {
    let done = sqlx::query(
        "UPDATE cluster_nodes SET lease_until = $2 WHERE node_id = $1 AND lease_until >= $3",
    )
    .bind(node_id)
    .bind(lease_until)
    .bind(now)
    .execute_write(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends this node's lease now (a clean exit): the next sweep, this node's
/// own last one included, removes its members.
pub async fn expire(db: &Db, node_id: &str) -> CoreResult<()> {
    sqlx::query("UPDATE cluster_nodes SET lease_until = 0 WHERE node_id = $1")
        .bind(node_id)
        .execute_write(db)
        .await?;
    Ok(())
}

/// The nodes whose lease runs at `now`.
pub async fn live(db: &Db, now: i64) -> CoreResult<Vec<Node>> {
    let rows = sqlx::query(
        "SELECT node_id, name, mqtt_client_id, lease_until FROM cluster_nodes \
         WHERE lease_until >= $1 ORDER BY started_at",
    )
    .bind(now)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Node {
                node_id: r.try_get("node_id")?,
                name: r.try_get("name")?,
                mqtt_client_id: r.try_get("mqtt_client_id")?,
                lease_until: r.try_get("lease_until")?,
            })
        })
        .collect()
}

/// Forgets nodes dead for a while whose presence rows are gone.
pub async fn forget_dead(db: &Db, before: i64) -> CoreResult<u64> {
    let done = sqlx::query(
        "DELETE FROM cluster_nodes WHERE lease_until < $1 \
         AND NOT EXISTS (SELECT 1 FROM presence_members p WHERE p.node_id = cluster_nodes.node_id) \
         AND NOT EXISTS (SELECT 1 FROM channel_nodes c WHERE c.node_id = cluster_nodes.node_id)",
    )
    .bind(before)
    .execute_write(db)
    .await?;
    Ok(done.rows_affected())
}

/// The advisory lock's key: "LOCKSTEP" in ASCII, as a bigint.
const NODES_LOCK: i64 = 0x4C4F_434B_5354_4550;

/// A PostgreSQL session of its own holding the nodes' advisory lock for
/// this process's life (a crash ends the session, and frees it).
pub struct NodeLock {
    _conn: sqlx::AnyConnection,
}

impl std::fmt::Debug for NodeLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeLock")
    }
}

/// Takes the nodes' lock on the PostgreSQL database at `url`: `shared`
/// for one of several nodes, exclusive for a node that runs alone. None
/// when another process holds it the other way.
pub async fn take_lock(url: &str, shared: bool) -> CoreResult<Option<NodeLock>> {
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    // The lock lives as long as this session: if this host dies outright,
    // PostgreSQL notices the dead connection within about 30 s (not the
    // system's default two hours), and frees the lock for a restart
    // elsewhere.
    for set in [
        "SET tcp_keepalives_idle = 10",
        "SET tcp_keepalives_interval = 5",
        "SET tcp_keepalives_count = 3",
    ] {
        sqlx::query(set).execute(&mut conn).await?;
    }
    let sql = if shared {
        "SELECT pg_try_advisory_lock_shared($1) AS got"
    } else {
        "SELECT pg_try_advisory_lock($1) AS got"
    };
    let got: bool = sqlx::query(sql)
        .bind(NODES_LOCK)
        .fetch_one(&mut conn)
        .await?
        .try_get("got")?;
    Ok(got.then_some(NodeLock { _conn: conn }))
}
