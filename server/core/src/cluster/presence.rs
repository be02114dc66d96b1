//! Presence channels' members across the cluster (`presence_members`):
//! one row per connection that joined, so a user is a member from their
//! first connection anywhere to their last. Every change to one channel
//! runs under that channel's lock, so "first connection" and "last
//! connection" are decided once, by exactly one node, even when nodes
//! race; a dead node's rows are removed by [`sweep`], by whichever node
//! gets there first, also exactly once.

use std::collections::HashSet;

use sqlx::Row;

use super::lock_channel;
use crate::{db::Db, error::CoreResult, eventstore::store::begin_write};

/// A member as `channel_data` named it.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub user_id: String,
    pub user_info: serde_json::Value,
}

/// What joining did.
#[derive(Clone, Debug, PartialEq)]
pub enum Joined {
    /// The channel has its maximum of distinct users; nothing written.
    Full,
    /// In; `first` when no other connection of this user was (the others
    /// hear `member_added`, unless this socket had joined as this user
    /// already); `members` is the channel's list, this user
    /// included, in the order they came.
    In {
        first: bool,
        members: Vec<Member>,
        /// When `first`: the announcement's place in the channel's order.
        version: i64,
    },
}

/// A user whose last connection left `channel`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Gone {
    pub channel: String,
    pub user_id: String,
    /// The announcement's place in the channel's order.
    pub version: i64,
}

/// The next place in `channel`'s order of announcements (inside the
/// caller's transaction, under the channel's lock).
async fn next_version(conn: &mut sqlx::AnyConnection, channel: &str) -> CoreResult<i64> {
    let row = sqlx::query(
        "INSERT INTO presence_channels (channel, version) VALUES ($1, 1) \
         ON CONFLICT (channel) DO UPDATE SET version = presence_channels.version + 1 \
         RETURNING version",
    )
    .bind(channel)
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get("version")?)
}

/// Joins `socket_id` (on `node_id`) to `channel` as `member`. The same
/// socket joining again updates its row (and the user's `user_info`).
pub async fn join(
    db: &Db,
    node_id: &str,
    channel: &str,
    socket_id: &str,
    member: &Member,
    max_members: usize,
    now: i64,
) -> CoreResult<Joined> {
    let mut tx = begin_write(db).await?;
    lock_channel(&mut tx, db.backend, channel).await?;
    // Another connection of this user (this socket's own row, from a
    // subscription made again, does not count: the caller knows whether
    // it had already been announced).
    let present = sqlx::query(
        "SELECT 1 AS here FROM presence_members \
         WHERE channel = $1 AND user_id = $2 AND socket_id <> $3 LIMIT 1",
    )
    .bind(channel)
    .bind(&member.user_id)
    .bind(socket_id)
    .fetch_optional(&mut *tx)
    .await?
    .is_some();
    if !present {
        let row = sqlx::query(
            "SELECT COUNT(DISTINCT user_id) AS n FROM presence_members WHERE channel = $1",
        )
        .bind(channel)
        .fetch_one(&mut *tx)
        .await?;
        let n: i64 = row.try_get("n")?;
        if n as usize >= max_members {
            return Ok(Joined::Full);
        }
    }
    let info = member.user_info.to_string();
    sqlx::query(
        "INSERT INTO presence_members (channel, socket_id, user_id, user_info, node_id, joined_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (channel, socket_id) DO UPDATE SET user_id = EXCLUDED.user_id, \
         user_info = EXCLUDED.user_info, node_id = EXCLUDED.node_id",
    )
    .bind(channel)
    .bind(socket_id)
    .bind(&member.user_id)
    .bind(&info)
    .bind(node_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    // A member's info is what their latest connection said.
    sqlx::query("UPDATE presence_members SET user_info = $3 WHERE channel = $1 AND user_id = $2")
        .bind(channel)
        .bind(&member.user_id)
        .bind(&info)
        .execute(&mut *tx)
        .await?;
    let members = list(&mut tx, channel).await?;
    let version = if present {
        0
    } else {
        next_version(&mut tx, channel).await?
    };
    tx.commit().await?;
    Ok(Joined::In {
        first: !present,
        members,
        version,
    })
}

/// `socket_id` left `channel`: the user and the announcement's version,
/// when that was their last connection there.
pub async fn leave(db: &Db, channel: &str, socket_id: &str) -> CoreResult<Option<(String, i64)>> {
    let mut tx = begin_write(db).await?;
    lock_channel(&mut tx, db.backend, channel).await?;
    let Some(row) = sqlx::query(
        "DELETE FROM presence_members WHERE channel = $1 AND socket_id = $2 RETURNING user_id",
    )
    .bind(channel)
    .bind(socket_id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    let user_id: String = row.try_get("user_id")?;
    if still_here(&mut tx, channel, &user_id).await? {
        tx.commit().await?;
        return Ok(None);
    }
    let version = next_version(&mut tx, channel).await?;
    tx.commit().await?;
    Ok(Some((user_id, version)))
}

/// The channel's members, in the order they came.
pub async fn members(db: &Db, channel: &str) -> CoreResult<Vec<Member>> {
    let mut conn = db.pool.acquire().await?;
    list(&mut conn, channel).await
}

/// Distinct users per occupied presence channel.
pub async fn user_counts(db: &Db) -> CoreResult<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT channel, COUNT(DISTINCT user_id) AS n FROM presence_members GROUP BY channel",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("channel")?, r.try_get("n")?)))
        .collect()
}

/// Removes the rows of every node whose lease ran out by `now` (or that
/// has none): the users whose last connection that was.
pub async fn sweep(db: &Db, now: i64) -> CoreResult<Vec<Gone>> {
    let dead: Vec<String> = sqlx::query(
        "SELECT DISTINCT node_id FROM presence_members WHERE node_id NOT IN \
         (SELECT node_id FROM cluster_nodes WHERE lease_until >= $1)",
    )
    .bind(now)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| r.try_get("node_id"))
    .collect::<Result<_, _>>()?;
    let mut gone = Vec::new();
    for node in dead {
        let channels: Vec<String> =
            sqlx::query("SELECT DISTINCT channel FROM presence_members WHERE node_id = $1")
                .bind(&node)
                .fetch_all(&db.pool)
                .await?
                .iter()
                .map(|r| r.try_get("channel"))
                .collect::<Result<_, _>>()?;
        for channel in channels {
            // One channel failing must not lose what the others committed
            // (nobody else would announce it): logged; the next sweep
            // retries it.
            match sweep_channel(db, &node, &channel).await {
                Ok(users) => gone.extend(users.into_iter().map(|(user_id, version)| Gone {
                    channel: channel.clone(),
                    user_id,
                    version,
                })),
                Err(e) => {
                    tracing::warn!(error = %e, channel = %channel, node_id = %node, "sweeping a dead node's members of one channel failed")
                }
            }
        }
    }
    Ok(gone)
}

/// Removes `node`'s rows of `channel`: the users whose last connection
/// those were, with their announcements' versions.
async fn sweep_channel(db: &Db, node: &str, channel: &str) -> CoreResult<Vec<(String, i64)>> {
    let mut tx = begin_write(db).await?;
    lock_channel(&mut tx, db.backend, channel).await?;
    let users: HashSet<String> = sqlx::query(
        "DELETE FROM presence_members WHERE channel = $1 AND node_id = $2 RETURNING user_id",
    )
    .bind(channel)
    .bind(node)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| r.try_get("user_id"))
    .collect::<Result<_, _>>()?;
    let mut users: Vec<String> = users.into_iter().collect();
    users.sort();
    let mut gone = Vec::new();
    for user_id in users {
        if !still_here(&mut tx, channel, &user_id).await? {
            let version = next_version(&mut tx, channel).await?;
            gone.push((user_id, version));
        }
    }
    tx.commit().await?;
    Ok(gone)
}

async fn still_here(
    conn: &mut sqlx::AnyConnection,
    channel: &str,
    user_id: &str,
) -> CoreResult<bool> {
    Ok(sqlx::query(
        "SELECT 1 AS here FROM presence_members WHERE channel = $1 AND user_id = $2 LIMIT 1",
    )
    .bind(channel)
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?
    .is_some())
}

async fn list(conn: &mut sqlx::AnyConnection, channel: &str) -> CoreResult<Vec<Member>> {
    let rows = sqlx::query(
        "SELECT user_id, user_info FROM presence_members WHERE channel = $1 \
         ORDER BY joined_at, socket_id",
    )
    .bind(channel)
    .fetch_all(&mut *conn)
    .await?;
    let mut seen = HashSet::new();
    let mut members = Vec::new();
    for r in &rows {
        let user_id: String = r.try_get("user_id")?;
        if !seen.insert(user_id.clone()) {
            continue;
        }
        let info: String = r.try_get("user_info")?;
        members.push(Member {
            user_id,
            user_info: serde_json::from_str(&info).unwrap_or(serde_json::Value::Null),
        });
    }
    Ok(members)
}
