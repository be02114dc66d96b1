//! The write path every command takes: open a write transaction, append
//! events, run the projectors (read models, channel log, outbox, timers) in
//! that same transaction, commit, then wake whoever follows the log.

use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::{
    db::Db,
    error::CoreError,
    error::CoreResult,
    eventstore::channels::{self, Appended, Notification},
    eventstore::events::{self, DomainEvent, Metadata, StoredEvent},
    eventstore::outbox::{self, NewJob},
    eventstore::projections::{self, open_requests, open_requests::LatestStatus, Mode, Projected},
    eventstore::timers::{self, NewTimer},
};

/// What committing needs from its caller: how to project (live or
/// replay), and whom to tell once the transaction committed. `Services`
/// is the one implementation; the store knows nothing more of it.
pub trait Committer {
    fn mode(&self) -> Mode;
    fn published(&self, written: &Written);
}

/// How many times a command is retried after a version conflict: enough
/// for a dozen writers racing on one aggregate (each conflict pauses a
/// random few milliseconds, see [`commit_at`]).
pub const MAX_RETRIES: usize = 12;

// The write transaction lives with the database handle (`db`), where
// modules below the store (the channel log's prune) can take one too.
pub use crate::db::{begin_write, WriteTx, SQLITE_BEGIN};

/// What one append wrote.
#[derive(Debug, Default)]
pub struct Written {
    pub events: Vec<StoredEvent>,
    pub appended: Vec<Appended>,
}

impl Written {
    pub fn merge(&mut self, other: Written) {
        self.events.extend(other.events);
        self.appended.extend(other.appended);
    }
}

/// The aggregate's current version (0 when it has no events).
pub async fn stream_version(conn: &mut AnyConnection, aggregate_uuid: Uuid) -> CoreResult<i64> {
    let row = sqlx::query("SELECT COALESCE(MAX(aggregate_version), 0) AS v FROM stored_events WHERE aggregate_uuid = $1")
        .bind(aggregate_uuid.to_string())
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get("v")?)
}

/// What a write did before its channel envelopes: its events, stored and
/// projected, and the notifications they ask for (with the index of the
/// event each came from). [`append_envelopes`] turns it into [`Written`].
#[derive(Debug, Default)]
pub struct Staged {
    pub events: Vec<StoredEvent>,
    pub notes: Vec<(usize, Notification)>,
    /// Compartments' latest open statuses, written with the envelopes.
    pub latest: Vec<LatestStatus>,
    /// Timers the events ended, dropped with the envelopes.
    pub ended_timers: Vec<String>,
    /// Outbox jobs and timers the events scheduled, inserted with the
    /// envelopes.
    pub jobs: Vec<NewJob>,
    pub timers: Vec<NewTimer>,
}

/// Appends and projects, inside the caller's transaction, leaving the
/// channel envelopes to [`append_envelopes`]: so a batch of writes appends
/// all of its envelopes in three statements (see `group_commit`).
#[allow(clippy::too_many_arguments)]
pub async fn stage_live(
    conn: &mut AnyConnection,
    mode: Mode,
    aggregate_type: &str,
    aggregate_uuid: Uuid,
    expected_version: i64,
    events: Vec<DomainEvent>,
    metadata: &Metadata,
    now: i64,
) -> CoreResult<Staged> {
    let stored = events::append(
        conn,
        aggregate_type,
        aggregate_uuid,
        expected_version,
        events,
        metadata,
        now,
    )
    .await?;
    let (mut inserts, mut grants) = (Vec::new(), Vec::new());
    let projected =
        projections::project_live(conn, &stored, mode, &mut inserts, &mut grants).await?;
    open_requests::insert_rows(conn, &inserts).await?;
    projections::grants::insert_all(conn, &grants).await?;
    Ok(Staged::of(stored, projected))
}

impl Staged {
    /// Stored events and what projecting each left for the end.
    pub fn of(events: Vec<StoredEvent>, projected: Vec<Projected>) -> Staged {
        let mut staged = Staged {
            events,
            ..Staged::default()
        };
        for (i, projected) in projected.into_iter().enumerate() {
            staged.notes.extend(projected.note.map(|n| (i, n)));
            staged.latest.extend(projected.latest);
            let scheduled = projected.scheduled;
            staged.ended_timers.extend(scheduled.ended_timer);
            staged.jobs.extend(scheduled.job);
            staged.timers.extend(scheduled.timer);
        }
        staged
    }
}

/// Writes what staged writes left for the end (the ended timers, the
/// compartments' latest statuses, then the channel envelopes, each in one
/// lock order) and says what each wrote. Last in a transaction: the
/// channel heads are the rows every writer of a channel waits on.
pub async fn append_envelopes(
    conn: &mut AnyConnection,
    staged: Vec<Staged>,
) -> CoreResult<Vec<Written>> {
    let end = EndWrites::of(&staged);
    timers::cancel_all(conn, &end.ended_timers).await?;
    timers::schedule_all(conn, &end.timers).await?;
    outbox::enqueue_all(conn, &end.jobs).await?;
    open_requests::write_latest(conn, &end.latest).await?;
    let appended = channels::append_all(conn, &notes_of(&staged)).await?;
    Ok(written_of(staged, appended))
}

/// Do `staged` leave nothing for a batch's end (no envelopes, timers,
/// outbox jobs or latest statuses)? Writes that changed nothing, such as
/// a repeated request or a heartbeat with no transition.
pub fn end_is_empty(staged: &[Staged]) -> bool {
    staged.iter().all(|s| {
        s.notes.is_empty()
            && s.latest.is_empty()
            && s.ended_timers.is_empty()
            && s.jobs.is_empty()
            && s.timers.is_empty()
    })
}

/// What a batch's staged writes leave for its end, gathered in batch
/// order (the ended timers sorted: one lock order).
pub struct EndWrites {
    pub ended_timers: Vec<String>,
    pub timers: Vec<NewTimer>,
    pub jobs: Vec<NewJob>,
    pub latest: Vec<LatestStatus>,
}

impl EndWrites {
    pub fn of(staged: &[Staged]) -> EndWrites {
        let mut ended_timers: Vec<String> = staged
            .iter()
            .flat_map(|s| s.ended_timers.iter().cloned())
            .collect();
        ended_timers.sort_unstable();
        EndWrites {
            ended_timers,
            timers: staged
                .iter()
                .flat_map(|s| s.timers.iter().copied())
                .collect(),
            jobs: staged.iter().flat_map(|s| s.jobs.iter().copied()).collect(),
            latest: staged
                .iter()
                .flat_map(|s| s.latest.iter().copied())
                .collect(),
        }
    }
}

/// The staged writes' notifications with their events, in batch order.
pub fn notes_of(staged: &[Staged]) -> Vec<(&StoredEvent, &Notification)> {
    staged
        .iter()
        .flat_map(|s| s.notes.iter().map(|(i, n)| (&s.events[*i], n)))
        .collect()
}

/// Each write's result, given what each notification appended (in the
/// order of [`notes_of`]).
pub fn written_of(staged: Vec<Staged>, appended: Vec<Vec<Appended>>) -> Vec<Written> {
    let mut appended = appended.into_iter();
    staged
        .into_iter()
        .map(|s| Written {
            appended: appended.by_ref().take(s.notes.len()).flatten().collect(),
            events: s.events,
        })
        .collect()
}

/// Appends and projects, inside the caller's transaction.
#[allow(clippy::too_many_arguments)]
pub async fn append_live(
    conn: &mut AnyConnection,
    mode: Mode,
    aggregate_type: &str,
    aggregate_uuid: Uuid,
    expected_version: i64,
    events: Vec<DomainEvent>,
    metadata: &Metadata,
    now: i64,
) -> CoreResult<Written> {
    let staged = stage_live(
        conn,
        mode,
        aggregate_type,
        aggregate_uuid,
        expected_version,
        events,
        metadata,
        now,
    )
    .await?;
    Ok(append_envelopes(conn, vec![staged])
        .await?
        .pop()
        .unwrap_or_default())
}

/// A write transaction on `aggregate` and the aggregate's version, read
/// as the transaction's first statement. Every read the caller makes after
/// it sees at least that state, so a decision made on those reads and
/// appended at this version (with [`commit_at`]) conflicts with any event
/// committed meanwhile, instead of landing after it. (Reading the version
/// only when appending would let a decision made on a stale read slip in
/// behind a concurrent one: on PostgreSQL, under READ COMMITTED, a `sent`
/// was recorded after the locker's `opened` that way.)
pub async fn begin_on(db: &Db, aggregate_uuid: Uuid) -> CoreResult<(WriteTx, i64)> {
    let mut tx = begin_write(db).await?;
    let version = stream_version(&mut tx, aggregate_uuid).await?;
    Ok((tx, version))
}

/// Appends `events` at `expected_version` (from [`begin_on`]), commits and
/// publishes. `Ok(None)` means another writer got there first: the caller
/// starts again from a fresh read (at most [`MAX_RETRIES`] times).
#[allow(clippy::too_many_arguments)]
pub async fn commit_at(
    s: &impl Committer,
    mut tx: WriteTx,
    aggregate_type: &str,
    aggregate_uuid: Uuid,
    expected_version: i64,
    events: Vec<DomainEvent>,
    metadata: &Metadata,
    now: i64,
) -> CoreResult<Option<Written>> {
    match append_live(
        &mut tx,
        s.mode(),
        aggregate_type,
        aggregate_uuid,
        expected_version,
        events,
        metadata,
        now,
    )
    .await
    {
        Ok(written) => {
            tx.commit().await?;
            s.published(&written);
            Ok(Some(written))
        }
        Err(CoreError::VersionConflict { .. }) => {
            // Roll back first, so the winner is not held up, then pause a
            // random few milliseconds: writers that collided must not all
            // come back at the same instant and collide again.
            drop(tx);
            let pause = rand::Rng::gen_range(&mut rand::thread_rng(), 1..=8u64);
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
