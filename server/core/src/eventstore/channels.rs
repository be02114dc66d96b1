//! The sequenced channel log: every change a person should see live is
//! appended, in the same transaction as its event, as an envelope with a
//! per-channel `seq` that is strictly increasing and gap-free. The realtime
//! hub pushes these envelopes; `events/since` replays them (polling).
//!
//! [`authorize`] is the one place that decides who may read a channel.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::{
    db::{Backend, Db},
    error::{CoreError, CoreResult},
    eventstore::events::{Actor, StoredEvent},
    eventstore::sql::{value_rows, Arg, Stmt},
    identity::accounts::{find_user, parse_uuid, Role, User},
};

pub use lockstep_wire::{
    envelope::ENVELOPE_VERSION, Channel, Envelope, EnvelopeMeta, PresenceChannel, RecordType,
    Subject,
};

impl From<lockstep_wire::channel::NotAChannel> for CoreError {
    fn from(e: lockstep_wire::channel::NotAChannel) -> Self {
        CoreError::Invalid(e.to_string())
    }
}

/// Whether `user` may read `channel`: a user their own channel; an admin
/// every channel of their own tenant (a record's too: admins are the ones
/// who read and edit records); nobody another tenant's.
pub async fn authorize(db: &Db, user: &User, channel: &Channel) -> CoreResult<bool> {
    Ok(match channel {
        Channel::User(id) if *id == user.id => true,
        Channel::User(id) => {
            user.role == Role::Admin
                && find_user(db, *id)
                    .await?
                    .is_some_and(|other| other.tenant_id == user.tenant_id)
        }
        Channel::TenantLockers(t) | Channel::TenantOpenRequests(t) | Channel::TenantUsers(t) => {
            user.role == Role::Admin && *t == user.tenant_id
        }
        Channel::LockerBank(bank) => {
            user.role == Role::Admin
                && sqlx::query("SELECT tenant_id FROM locker_banks WHERE id = $1")
                    .bind(bank.to_string())
                    .fetch_optional(&db.pool)
                    .await?
                    .map(|row| row.try_get::<String, _>("tenant_id"))
                    .transpose()?
                    .is_some_and(|t| t == user.tenant_id.to_string())
        }
        Channel::Record(kind, id) => {
            user.role == Role::Admin && record_tenant(db, *kind, *id).await? == Some(user.tenant_id)
        }
    })
}

/// The tenant a record belongs to (`None`: no such record).
async fn record_tenant(db: &Db, kind: RecordType, id: Uuid) -> CoreResult<Option<Uuid>> {
    let table = match kind {
        RecordType::LockerBank => "locker_banks",
        RecordType::Compartment => "compartments",
        RecordType::Grant => "grants",
        RecordType::User => "users",
    };
    let tenant: Option<String> =
        sqlx::query(&format!("SELECT tenant_id FROM {table} WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&db.pool)
            .await?
            .map(|row| row.try_get("tenant_id"))
            .transpose()?;
    tenant.as_deref().map(parse_uuid).transpose()
}

/// Whether `user` may join a Lockstep presence channel: an admin, on a
/// record of their own tenant (a bank's watchers; a record's editors).
pub async fn authorize_presence(
    db: &Db,
    user: &User,
    channel: &PresenceChannel,
) -> CoreResult<bool> {
    if user.role != Role::Admin {
        return Ok(false);
    }
    let (kind, id) = match channel {
        PresenceChannel::LockerBank(id) => (RecordType::LockerBank, *id),
        PresenceChannel::Record(kind, id) => (*kind, *id),
    };
    Ok(record_tenant(db, kind, id).await? == Some(user.tenant_id))
}

/// A notification a projector wants on some channels.
#[derive(Clone, Debug)]
pub struct Notification {
    pub channels: Vec<Channel>,
    pub event: &'static str,
    pub subject: Subject,
    pub data: Value,
}

/// A `(channel, seq)` just written, for the after-commit notifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub channel: String,
    pub seq: i64,
}

pub fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Appends one envelope per channel of `note`, inside the caller's
/// transaction, each with its channel's next seq.
pub async fn append(
    conn: &mut AnyConnection,
    source: &StoredEvent,
    note: &Notification,
) -> CoreResult<Vec<Appended>> {
    Ok(append_all(conn, &[(source, note)])
        .await?
        .pop()
        .unwrap_or_default())
}

/// Rows per multi-row statement: well under both backends' limits on
/// bound parameters (SQLite 32,766, PostgreSQL 65,535).
const ROWS_PER_STATEMENT: usize = 500;

/// Appends the envelopes of many notifications, in their order, inside
/// the caller's transaction: three kinds of statement whatever their
/// number (the heads in one upsert, the bodies and the log rows in
/// multi-row inserts). Returns what each notification appended.
///
/// A channel named k times in the batch moves its head by k once, and its
/// envelopes take the k seqs below the new head in batch order, so seqs
/// stay gap-free and in commit order. The row locks (PostgreSQL) or the
/// write lock (SQLite) held until commit serialise writers per channel.
pub async fn append_all(
    conn: &mut AnyConnection,
    notes: &[(&StoredEvent, &Notification)],
) -> CoreResult<Vec<Vec<Appended>>> {
    let plan = EnvelopePlan::of(notes)?;
    if plan.counts.is_empty() {
        return Ok(plan.appended(&HashMap::new())?.0);
    }
    let mut heads = HashMap::new();
    for chunk in plan.counts.chunks(ROWS_PER_STATEMENT) {
        for row in heads_stmt(chunk).query().fetch_all(&mut *conn).await? {
            heads.insert(
                row.try_get::<String, _>("channel")?,
                row.try_get::<i64, _>("seq")?,
            );
        }
    }
    let mut body_ids = Vec::with_capacity(plan.bodies.len());
    for chunk in plan.bodies.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO channel_bodies (body, occurred_at) VALUES {} RETURNING id",
            value_rows(chunk.len(), 2, "")
        );
        let mut insert = sqlx::query(&sql);
        for (body, at) in chunk {
            insert = insert.bind(body.as_str()).bind(*at);
        }
        let mut ids = insert
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| row.try_get::<i64, _>("id"))
            .collect::<Result<Vec<_>, _>>()?;
        // One statement's rows take increasing ids in VALUES order (a
        // sequence's nextval, SQLite's next rowid); RETURNING's own order
        // is not promised, so the ids are sorted back into it.
        ids.sort_unstable();
        body_ids.extend(ids);
    }
    if body_ids.len() != plan.bodies.len() {
        return Err(CoreError::Invalid("a channel body was not stored".into()));
    }
    let (out, rows) = plan.appended(&heads)?;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let log_sql = format!(
            "INSERT INTO channel_log (channel, seq, body_id, occurred_at) VALUES {}",
            value_rows(chunk.len(), 4, "")
        );
        let mut log = sqlx::query(&log_sql);
        for row in chunk {
            log = log
                .bind(row.channel.as_str())
                .bind(row.seq)
                .bind(body_ids[row.body])
                .bind(row.at);
        }
        log.execute(&mut *conn).await?;
    }
    Ok(out)
}

/// The envelopes of a batch's notifications, planned before any is
/// written: how far each channel's head moves, the bodies to store, and
/// which channels each notification goes to.
#[derive(Debug)]
pub struct EnvelopePlan {
    /// How many envelopes each channel takes, channels in name order:
    /// every transaction takes the heads' row locks in that one order, so
    /// two batches naming the same channels cannot deadlock (PostgreSQL).
    pub counts: Vec<(String, i64)>,
    /// One body per notification with channels, whatever their number,
    /// and when it occurred; each log row points at one.
    pub bodies: Vec<(String, i64)>,
    /// Each notification's channels, in order.
    names: Vec<Vec<String>>,
}

/// One log row of a plan: its channel, its seq, the index of its body in
/// [`EnvelopePlan::bodies`], and when it occurred.
#[derive(Debug)]
pub struct LogRow {
    pub channel: String,
    pub seq: i64,
    pub body: usize,
    pub at: i64,
}

impl EnvelopePlan {
    pub fn of(notes: &[(&StoredEvent, &Notification)]) -> CoreResult<EnvelopePlan> {
        let names: Vec<Vec<String>> = notes
            .iter()
            .map(|(_, note)| note.channels.iter().map(ToString::to_string).collect())
            .collect();
        let mut by_name = std::collections::BTreeMap::<&str, i64>::new();
        for name in names.iter().flatten() {
            *by_name.entry(name.as_str()).or_default() += 1;
        }
        let counts = by_name
            .into_iter()
            .map(|(name, n)| (name.to_string(), n))
            .collect();
        let mut bodies = Vec::new();
        for ((source, note), names) in notes.iter().zip(&names) {
            if !names.is_empty() {
                bodies.push((body_of(source, note)?, source.occurred_at));
            }
        }
        Ok(EnvelopePlan {
            counts,
            bodies,
            names,
        })
    }

    /// Given the channels' new heads: what each notification appended,
    /// and the log rows. A channel named k times in the batch moved its
    /// head by k; its envelopes take the k seqs up to the new head, in
    /// batch order.
    pub fn appended(
        &self,
        heads: &HashMap<String, i64>,
    ) -> CoreResult<(Vec<Vec<Appended>>, Vec<LogRow>)> {
        let mut next = HashMap::with_capacity(self.counts.len());
        for (name, count) in &self.counts {
            let head = heads
                .get(name)
                .ok_or_else(|| CoreError::Invalid(format!("no head returned for {name}")))?;
            next.insert(name.as_str(), head - count + 1);
        }
        let mut out = Vec::with_capacity(self.names.len());
        let mut rows = Vec::new();
        let mut body = 0;
        for names in &self.names {
            let mut appended = Vec::with_capacity(names.len());
            if !names.is_empty() {
                let at = self.bodies[body].1;
                for name in names {
                    let seq = next
                        .get_mut(name.as_str())
                        .ok_or_else(|| CoreError::Invalid(format!("unplanned channel {name}")))?;
                    rows.push(LogRow {
                        channel: name.clone(),
                        seq: *seq,
                        body,
                        at,
                    });
                    appended.push(Appended {
                        channel: name.clone(),
                        seq: *seq,
                    });
                    *seq += 1;
                }
                body += 1;
            }
            out.push(appended);
        }
        Ok((out, rows))
    }

    /// The log rows as the fused statement writes them: each row's seq
    /// counted back from its channel's new head (`head - from_end`), as
    /// (channel, from_end, body index, occurred_at).
    pub fn rows_from_end(&self) -> CoreResult<Vec<(String, i64, usize, i64)>> {
        // Seqs as if every head were its count: seq - count = -from_end.
        let heads: HashMap<String, i64> = self.counts.iter().cloned().collect();
        let counts = heads.clone();
        let (_, rows) = self.appended(&heads)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let from_end = counts.get(&r.channel).copied().unwrap_or(0) - r.seq;
                (r.channel, from_end, r.body, r.at)
            })
            .collect())
    }
}

/// The heads' upsert for `counts`: each channel's head moves by its count;
/// returns (channel, new head).
pub fn heads_stmt(counts: &[(String, i64)]) -> Stmt {
    Stmt {
        sql: format!(
            "INSERT INTO channel_heads (channel, seq) VALUES {} \
             ON CONFLICT (channel) DO UPDATE SET seq = channel_heads.seq + excluded.seq \
             RETURNING channel, seq",
            value_rows(counts.len(), 2, "")
        ),
        args: counts
            .iter()
            .flat_map(|(name, n)| [Arg::from(name.as_str()), Arg::Int(*n)])
            .collect(),
    }
}

/// The stored body of `note`'s envelopes.
fn body_of(source: &StoredEvent, note: &Notification) -> CoreResult<String> {
    let body = Body {
        v: ENVELOPE_VERSION,
        event: note.event,
        event_id: source.event_id,
        occurred_at: rfc3339_ms(source.occurred_at),
        tenant: source.metadata.tenant_id,
        subject: &note.subject,
        sender: &source.metadata.actor,
        correlation_id: source.metadata.correlation_id,
        data: &note.data,
        except_socket: source.metadata.socket_id.as_deref(),
        except_tab: source.metadata.tab_id.as_deref(),
    };
    serde_json::to_string(&body)
        .map_err(|e| CoreError::Invalid(format!("envelope does not serialize: {e}")))
}

/// What `channel_bodies` stores: an envelope without its channel, seq and
/// meta, which each log row supplies.
#[derive(Serialize)]
struct Body<'a> {
    v: u8,
    event: &'a str,
    event_id: Uuid,
    occurred_at: String,
    tenant: Uuid,
    subject: &'a Subject,
    sender: &'a Actor,
    correlation_id: Uuid,
    data: &'a Value,
    /// Not pushed to this WebSocket connection (the request's own);
    /// never shown to clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    except_socket: Option<&'a str>,
    /// Not returned to this tab when it polls (`X-Tab-ID`).
    #[serde(skip_serializing_if = "Option::is_none")]
    except_tab: Option<&'a str>,
}

/// The entry of one log row: its stored body with the row's channel and
/// seq (older bodies, whole envelopes, read the same way).
fn entry_of(body: &str, channel: &str, seq: i64) -> CoreResult<Logged> {
    let mut value: Value = serde_json::from_str(body)
        .map_err(|e| CoreError::Invalid(format!("stored envelope: {e}")))?;
    let fields = value
        .as_object_mut()
        .ok_or_else(|| CoreError::Invalid("stored envelope is not an object".into()))?;
    let except_socket = match fields.remove("except_socket") {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let except_tab = match fields.remove("except_tab") {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    fields.insert("channel".into(), Value::from(channel));
    fields.insert("seq".into(), Value::from(seq));
    fields.insert("meta".into(), serde_json::json!({ "replay": true }));
    let envelope = serde_json::from_value(value)
        .map_err(|e| CoreError::Invalid(format!("stored envelope: {e}")))?;
    Ok(Logged {
        envelope,
        except_socket,
        except_tab,
    })
}

/// One log entry as the hub reads it: the envelope, and the WebSocket
/// connection it is not pushed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub envelope: Envelope,
    pub except_socket: Option<String>,
    /// The tab that caused it, spared it when polling.
    pub except_tab: Option<String>,
}

/// [`since`] with each entry's `except_socket` (the hub's read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRead {
    pub channel: String,
    pub seq: i64,
    pub reset: bool,
    pub entries: Vec<Logged>,
}

/// The answer to "what happened on this channel after `seq`" (a wire
/// type: the browser's polling fallback reads it too).
pub use lockstep_wire::envelope::Since;

/// The channels appended to at or after `since_ms` (by any process): what
/// a hub of several reads when a wake-up from another node may have been
/// lost. One indexed query, however many channels the hub follows.
pub async fn appended_since(db: &Db, since_ms: i64) -> CoreResult<Vec<String>> {
    sqlx::query("SELECT DISTINCT channel FROM channel_log WHERE occurred_at >= $1")
        .bind(since_ms)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| Ok(r.try_get("channel")?))
        .collect()
}

/// The channel's current seq (0 when nothing was ever written).
pub async fn head(db: &Db, channel: &Channel) -> CoreResult<i64> {
    Ok(
        sqlx::query("SELECT seq FROM channel_heads WHERE channel = $1")
            .bind(channel.to_string())
            .fetch_optional(&db.pool)
            .await?
            .map(|r| r.try_get("seq"))
            .transpose()?
            .unwrap_or(0),
    )
}

pub async fn since(db: &Db, channel: &Channel, after: i64, limit: i64) -> CoreResult<Since> {
    since_for(db, channel, after, limit, None).await
}

/// [`since`] as tab `tab` polls it: without the envelopes of what that tab
/// did itself (the polling path's "to others"). `seq` still moves past
/// them, so the tab's cursor never stalls on its own echo.
pub async fn since_for(
    db: &Db,
    channel: &Channel,
    after: i64,
    limit: i64,
    tab: Option<&str>,
) -> CoreResult<Since> {
    let read = read(db, channel, after, limit).await?;
    Ok(Since {
        channel: read.channel,
        seq: read.seq,
        reset: read.reset,
        events: read
            .entries
            .into_iter()
            .filter(|l| tab.is_none() || l.except_tab.as_deref() != tab)
            .map(|l| l.envelope)
            .collect(),
    })
}

/// What happened on the channel after `seq`, each entry with the socket
/// it spares.
pub async fn read(db: &Db, channel: &Channel, after: i64, limit: i64) -> CoreResult<LogRead> {
    let name = channel.to_string();
    // The head and the oldest entry kept, in one statement (one snapshot).
    let ends = sqlx::query(
        "SELECT (SELECT seq FROM channel_heads WHERE channel = $1) AS head, \
         (SELECT MIN(seq) FROM channel_log WHERE channel = $1) AS oldest",
    )
    .bind(&name)
    .fetch_one(&db.pool)
    .await?;
    let head: i64 = ends.try_get::<Option<i64>, _>("head")?.unwrap_or(0);
    let oldest: Option<i64> = ends.try_get("oldest")?;
    let after = after.max(0);
    // Entries after `after` were pruned when the oldest kept one is later
    // than after + 1 (or none is kept while the head has moved on).
    let reset = after < head
        && match oldest {
            Some(oldest) => oldest > after + 1,
            None => true,
        };
    if reset || after > head {
        return Ok(LogRead {
            channel: name,
            seq: head,
            reset: true,
            entries: Vec::new(),
        });
    }
    let rows = sqlx::query(
        "SELECT l.seq, b.body FROM channel_log l JOIN channel_bodies b ON b.id = l.body_id \
         WHERE l.channel = $1 AND l.seq > $2 ORDER BY l.seq LIMIT $3",
    )
    .bind(&name)
    .bind(after)
    .bind(limit.clamp(1, 1000))
    .fetch_all(&db.pool)
    .await?;
    // A prune between the statements above and this one: the first row
    // no longer follows `after`, so this is a reset, not a silent gap.
    if let Some(first) = rows.first() {
        let seq: i64 = first.try_get("seq")?;
        if seq != after + 1 {
            return Ok(LogRead {
                channel: name,
                seq: head,
                reset: true,
                entries: Vec::new(),
            });
        }
    }
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let body: String = row.try_get("body")?;
        entries.push(entry_of(&body, &name, row.try_get("seq")?)?);
    }
    Ok(LogRead {
        channel: name,
        seq: head,
        reset: false,
        entries,
    })
}

/// Deletes log entries older than `cutoff_ms` and their bodies; returns
/// how many entries. No body still referenced goes.
pub async fn prune(db: &Db, cutoff_ms: i64) -> CoreResult<u64> {
    match db.backend {
        Backend::Postgres => prune_by_age(db, cutoff_ms).await,
        Backend::Sqlite => prune_in_commit_order(db, cutoff_ms).await,
    }
}

/// PostgreSQL: the old entries by the log's age index (`channel_log_age`),
/// and their bodies through them (bodies have no age index of their own),
/// in one transaction. All of a body's entries share its `occurred_at`, so
/// a body goes with all of them.
async fn prune_by_age(db: &Db, cutoff_ms: i64) -> CoreResult<u64> {
    let mut tx = crate::db::begin_write(db).await?;
    sqlx::query(
        "DELETE FROM channel_bodies WHERE id IN \
         (SELECT body_id FROM channel_log WHERE occurred_at < $1)",
    )
    .bind(cutoff_ms)
    .execute(&mut *tx)
    .await?;
    let entries = sqlx::query("DELETE FROM channel_log WHERE occurred_at < $1")
        .bind(cutoff_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(entries)
}

/// Channels whose old entries one transaction of
/// [`prune_in_commit_order`] deletes: a statement each, so the write lock
/// is held a few milliseconds at a time.
const PRUNED_CHANNELS_PER_TRANSACTION: usize = 256;

/// SQLite: its log has no age index (an index page fewer written with
/// every envelope: docs/benchmarks.md, "Tenth pass"). It has one writer at
/// a time, so the bodies' ids and each channel's seqs both follow commit
/// order: the bodies before the first one not old (by id) are old, and a
/// channel's entries of those bodies are its first ones. So each channel
/// whose first entry is of an old body (one read over the heads finds
/// them) loses the entries before its first of a later body, then the
/// bodies go. An old entry stored after a newer one (clocks a few
/// milliseconds apart) goes at a later prune.
async fn prune_in_commit_order(db: &Db, cutoff_ms: i64) -> CoreResult<u64> {
    // Bodies below `bound` are old, and stay so; a body stored from now on
    // takes an id above the largest, so at least `bound`.
    let bound: i64 = sqlx::query(
        "SELECT COALESCE( \
         (SELECT id FROM channel_bodies WHERE occurred_at >= $1 ORDER BY id LIMIT 1), \
         (SELECT COALESCE(MAX(id), 0) + 1 FROM channel_bodies)) AS bound",
    )
    .bind(cutoff_ms)
    .fetch_one(&db.pool)
    .await?
    .try_get("bound")?;
    // Only channels whose first entry is of an old body have any: a
    // channel's entries follow its bodies' order. One read, outside the
    // write lock (a seek per channel inside SQLite); a channel skipped
    // here cannot gain an old entry later, as new ones take new bodies.
    let channels: Vec<String> = sqlx::query(
        "SELECT h.channel FROM channel_heads AS h WHERE \
         (SELECT l.body_id FROM channel_log AS l WHERE l.channel = h.channel \
         ORDER BY l.seq LIMIT 1) < $1 ORDER BY h.channel",
    )
    .bind(bound)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|row| row.try_get("channel"))
    .collect::<Result<_, _>>()?;
    let mut entries = 0;
    for chunk in channels.chunks(PRUNED_CHANNELS_PER_TRANSACTION) {
        let mut tx = crate::db::begin_write(db).await?;
        for channel in chunk {
            // The channel's first entry of a body not old, by its key; the
            // ones before it are old. None: all are.
            entries += sqlx::query(
                "DELETE FROM channel_log WHERE channel = $1 AND seq < COALESCE( \
                 (SELECT seq FROM channel_log WHERE channel = $1 AND body_id >= $2 \
                 ORDER BY seq LIMIT 1), 9223372036854775807)",
            )
            .bind(channel.as_str())
            .bind(bound)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
    }
    // No entry points at these any more: each channel's went above.
    db.write(sqlx::query("DELETE FROM channel_bodies WHERE id < $1").bind(bound))
        .await?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies written before they were shared are whole envelopes: they
    /// read back with the row's own channel and seq.
    #[test]
    fn an_older_whole_envelope_reads_with_its_rows_channel_and_seq() {
        let id = Uuid::now_v7();
        let old = Envelope {
            v: 1,
            event: "open_request.accepted".into(),
            event_id: id,
            channel: "private-user.old".into(),
            seq: 7,
            occurred_at: rfc3339_ms(0),
            tenant: id,
            subject: Subject {
                kind: "open_request".into(),
                id,
            },
            sender: Actor::System,
            correlation_id: id,
            data: serde_json::json!({"status": "accepted"}),
            meta: EnvelopeMeta { replay: false },
        };
        let text = serde_json::to_string(&old).expect("json");
        let entry = entry_of(&text, "private-user.new", 9).expect("read");
        assert_eq!(entry.except_socket, None);
        let read = entry.envelope;
        assert_eq!((read.channel.as_str(), read.seq), ("private-user.new", 9));
        assert!(read.meta.replay);
        assert_eq!((read.event, read.data), (old.event, old.data));
    }
}
