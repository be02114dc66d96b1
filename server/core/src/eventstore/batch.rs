//! A group-committed batch: its transaction, and the writes it plans for
//! the whole batch instead of one by one. The events of all its writes are
//! inserted in one statement, the new open commands' rows in another, the
//! open commands' row changes applied in one set-based update and the
//! outbox rows its sends completed marked done in one more, all at its
//! end; the open commands its transitions read are read in one query at
//! its start. (The outbox jobs, timers, latest statuses and envelopes its
//! writes leave are written once per batch too: `store::append_envelopes`.)
//!
//! A write reads what the writes before it in the batch did. A command
//! the batch moved by a transition it could follow (its row known, the
//! version the one it knew) is answered from the row as the transition
//! left it ([`CommandRow::apply`]); reading any other command the batch
//! already wrote first applies what is deferred ([`Batch::flush`]) and
//! then reads it afresh. So deferring never changes what a write sees,
//! only how many statements the batch costs.
//!
//! The transaction begins at the batch's first write, not at its start
//! ([`Batch::writer`]): its reads run before on the same connection, as
//! they would inside. On PostgreSQL (READ COMMITTED) each statement sees
//! what was committed when it began, in a transaction or not; on SQLite
//! the batch holds this process's write turn from its start, so nothing
//! else writes between its reads and its `BEGIN IMMEDIATE`. A batch that
//! writes nothing before its end ends in one round trip: on PostgreSQL
//! one statement (`batch_end`), which commits by itself; on SQLite one
//! query text from `BEGIN IMMEDIATE` to `COMMIT` (`batch_end_sqlite`).
//! The `BEGIN` and `COMMIT` round trips are gone, and all or none of the
//! batch lands, as before.

use std::collections::{HashMap, HashSet};

use sqlx::{pool::PoolConnection, Any, AnyConnection};
use uuid::Uuid;

use crate::{
    db::{Backend, Db, WriteTurn},
    error::{CoreError, CoreResult},
    eventstore::events::{self, DomainEvent, EventRow, Metadata},
    eventstore::projections::{
        self,
        grants::{self, NewGrant},
        locker_banks::{self, CompartmentRef},
        open_requests::{self, CommandRow, NewRow, OpenParties, RowUpdate},
        Mode,
    },
    eventstore::sqlite_direct::DirectWriter,
    eventstore::store::{Staged, SQLITE_BEGIN},
};

/// The writer's connection between its batches ([`Batch::open`],
/// [`Batch::release`]). A pooled connection given back costs a round trip
/// (sqlx pings it on release) that the next batch would wait for, so the
/// writer keeps its own while writes keep coming (`group_commit`).
pub type Held = Option<PoolConnection<Any>>;

/// A batch's connection, in its transaction or not yet. The transaction
/// is begun and ended by statements of its own, not sqlx's `Transaction`,
/// so that the connection outlives it.
struct Conn {
    /// `None` once lost: a `BEGIN` or `COMMIT` failed, or the batch's end
    /// discarded it.
    conn: Option<PoolConnection<Any>>,
    /// `BEGIN` sent, no `COMMIT` yet.
    begun: bool,
    /// A text from `BEGIN` to `COMMIT` is running (`batch_end_sqlite`):
    /// dropped meanwhile, the connection may be inside it.
    in_text: bool,
    backend: Backend,
    /// This process's write turn (SQLite), held until the batch is done.
    _turn: WriteTurn,
}

impl Drop for Conn {
    /// A connection left inside its transaction (a write panicked, or a
    /// caller returned early) is closed, which rolls the transaction back,
    /// never pooled as it is.
    fn drop(&mut self) {
        if let (true, Some(conn)) = (self.begun || self.in_text, self.conn.as_mut()) {
            conn.close_on_drop();
        }
    }
}

impl Conn {
    /// The connection as it is, in the transaction or not.
    fn current(&mut self) -> CoreResult<&mut AnyConnection> {
        match self.conn.as_mut() {
            Some(conn) => Ok(&mut **conn),
            None => Err(CoreError::Conflict(
                "the batch lost its connection; retry".into(),
            )),
        }
    }

    /// Closes the connection instead of reusing it: it may be inside a
    /// transaction, or broken.
    fn discard(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.close_on_drop();
        }
        self.begun = false;
    }

    /// Runs `sql` (a `BEGIN`, `COMMIT` or `ROLLBACK`); on error the
    /// connection is discarded, its state unknown.
    async fn control(&mut self, sql: &'static str) -> CoreResult<()> {
        let result = sqlx::query(sql).execute(self.current()?).await;
        if let Err(e) = result {
            self.discard();
            return Err(e.into());
        }
        Ok(())
    }

    /// Begins the transaction, if it has not begun.
    async fn begin(&mut self) -> CoreResult<()> {
        if !self.begun {
            self.control(match self.backend {
                Backend::Sqlite => SQLITE_BEGIN,
                Backend::Postgres => "BEGIN",
            })
            .await?;
            self.begun = true;
        }
        Ok(())
    }

    /// Begins if need be, then writes the new grants deferred so far.
    async fn write_grants(&mut self, grants: &mut Vec<NewGrant>) -> CoreResult<()> {
        if !grants.is_empty() {
            self.begin().await?;
            let rows = std::mem::take(grants);
            grants::insert_all(self.current()?, &rows).await?;
        }
        Ok(())
    }
}

/// A write transaction whose writes are planned per batch.
pub struct Batch {
    conn: Conn,
    /// SQLite's direct writer ([`Batch::direct`]).
    direct: Option<DirectWriter>,
    /// The direct writer ran the batch's end ([`Batch::ended_directly`]).
    ended_directly: bool,
    /// Event rows not inserted yet, in append order.
    events: Vec<EventRow>,
    /// The positions of the rows inserted so far, in append order.
    positions: Vec<i64>,
    /// New open commands' rows not inserted yet.
    inserts: Vec<NewRow>,
    /// New grants' rows not inserted yet (read models only this batch
    /// writes: any read through [`Batch::reader`] writes them first).
    grants: Vec<NewGrant>,
    /// Row changes not applied yet, one per command.
    rows: Vec<RowUpdate>,
    /// Outbox rows to mark done: (id, when).
    outbox_done: Vec<(i64, i64)>,
    /// Aggregates this batch appended to without following them: their
    /// rows in `known` are stale.
    written: HashSet<Uuid>,
    /// Aggregates with writes not applied yet.
    unflushed: HashSet<Uuid>,
    /// Commands as the batch sees them (`None`: no such command): read at
    /// its start or since, and moved on by the transitions it staged.
    known: HashMap<Uuid, Option<CommandRow>>,
    /// Times a write's read applied what was deferred before the end.
    flushes: u64,
    /// Compartments read at the batch's start (`None`: no such
    /// compartment). A batch writes no compartment's row or bank before
    /// its end, so these stay true through it.
    compartments: HashMap<Uuid, Option<CompartmentRef>>,
}

/// What a batch deferred, as [`Batch::deferred`] shows it.
pub struct Deferred<'a> {
    pub events: &'a [EventRow],
    pub inserts: &'a [NewRow],
    pub grants: &'a [NewGrant],
    pub rows: &'a [RowUpdate],
    pub outbox_done: &'a [(i64, i64)],
}

/// What a write will read, said when it is queued so that a batch reads
/// its writes' in one query per kind ([`Batch::preload`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// An open command ([`Batch::command_row`]).
    Command(Uuid),
    /// A compartment with its bank ([`Batch::compartment`]).
    Compartment(Uuid),
}

impl Batch {
    /// A batch on `db`'s writer, on the writer's `held` connection (one of
    /// the writer pool's when it has none), its transaction begun at its
    /// first write (see the module comment). [`Batch::release`] gives
    /// the connection back to `held`.
    pub async fn open(db: &Db, held: &mut Held) -> CoreResult<Batch> {
        // The turn first. A writer that must wait for it does not wait
        // holding a connection: the writer whose turn it is may be waiting
        // for one of SQLite's two writer connections.
        let turn = match db.try_write_turn() {
            Some(turn) => turn,
            None => {
                drop(held.take());
                db.write_turn().await
            }
        };
        let conn = match held.take() {
            Some(conn) => conn,
            None => db.writer().acquire().await?,
        };
        let mut batch = Batch::with(Conn {
            conn: Some(conn),
            begun: false,
            in_text: false,
            backend: db.backend,
            _turn: turn,
        });
        batch.direct = db.direct().cloned();
        Ok(batch)
    }

    /// Gives the connection back to the writer (`held`) for its next
    /// batch: rolled back first if the batch is still in its transaction,
    /// and, when the batch `failed`, only if it still answers (what sqlx
    /// checks when a connection returns to the pool). Otherwise it is
    /// closed, and the next batch takes a fresh one.
    pub async fn release(mut self, held: &mut Held, failed: bool) {
        if self.conn.begun {
            if self.conn.control("ROLLBACK").await.is_err() {
                return;
            }
            self.conn.begun = false;
        }
        let Some(mut conn) = self.conn.conn.take() else {
            return;
        };
        if failed && sqlx::Connection::ping(&mut *conn).await.is_err() {
            conn.close_on_drop();
            return;
        }
        *held = Some(conn);
    }

    fn with(conn: Conn) -> Self {
        Batch {
            conn,
            events: Vec::new(),
            positions: Vec::new(),
            inserts: Vec::new(),
            grants: Vec::new(),
            rows: Vec::new(),
            outbox_done: Vec::new(),
            written: HashSet::new(),
            unflushed: HashSet::new(),
            known: HashMap::new(),
            flushes: 0,
            compartments: HashMap::new(),
            direct: None,
            ended_directly: false,
        }
    }

    /// SQLite's direct writer, for an end that is the whole transaction
    /// (`batch_end_sqlite`); `None` on PostgreSQL and in-memory SQLite.
    pub fn direct(&self) -> Option<DirectWriter> {
        self.direct.clone()
    }

    /// Whether the direct writer ran (and committed) the batch's end.
    pub fn ended_directly(&self) -> bool {
        self.ended_directly
    }

    /// Says the direct writer committed the batch's end.
    pub fn set_ended_directly(&mut self) {
        self.ended_directly = true;
    }

    /// The connection for a read of the caller's own: what it could read
    /// of this batch's deferred read-model rows (its new grants) is written
    /// first. (Open commands' rows are the caller's to settle:
    /// [`Batch::command_row`], [`Batch::settle`].)
    pub async fn reader(&mut self) -> CoreResult<&mut AnyConnection> {
        self.conn.write_grants(&mut self.grants).await?;
        self.conn.current()
    }

    /// The connection for a write of the caller's own, in the batch's
    /// transaction (begun now if it had not), after the new grants.
    pub async fn writer(&mut self) -> CoreResult<&mut AnyConnection> {
        self.conn.begin().await?;
        self.conn.write_grants(&mut self.grants).await?;
        self.conn.current()
    }

    /// The connection as it is, for the batch's end (`batch_end`,
    /// `batch_end_sqlite`): in the transaction, or (nothing written
    /// before) not, when the end commits by itself.
    pub fn end_connection(&mut self) -> CoreResult<&mut AnyConnection> {
        self.conn.current()
    }

    /// Has the connection closed rather than returned to the pool: the
    /// batch's end failed and could not be rolled back
    /// (`batch_end_sqlite`), so it may still be inside a transaction.
    pub fn discard_connection(&mut self) {
        self.conn.discard();
    }

    /// Says a text that begins and commits its own transaction is running
    /// on the connection (`batch_end_sqlite`), or no longer: a batch
    /// dropped meanwhile closes its connection rather than pool it.
    pub fn running_text(&mut self, running: bool) {
        self.conn.in_text = running;
    }

    /// Whether the batch's transaction has begun (not before its first
    /// write).
    pub fn begun(&self) -> bool {
        self.conn.begun
    }

    /// Reads what the batch's writes said they will read, in one query
    /// per kind; a kind only one write reads is left to it (one query
    /// either way).
    pub async fn preload(&mut self, reads: &[Reads]) -> CoreResult<()> {
        let mut commands = Vec::new();
        let mut compartments = Vec::new();
        for r in reads {
            match *r {
                Reads::Command(id) => commands.push(id),
                Reads::Compartment(id) => compartments.push(id),
            }
        }
        for ids in [&mut commands, &mut compartments] {
            ids.sort_unstable();
            ids.dedup();
        }
        if commands.len() > 1 {
            let mut found = open_requests::command_rows(self.reader().await?, &commands).await?;
            for id in commands {
                self.known.insert(id, found.remove(&id));
            }
        }
        if compartments.len() > 1 {
            let mut found =
                locker_banks::compartment_refs(self.reader().await?, &compartments).await?;
            for id in compartments {
                self.compartments.insert(id, found.remove(&id));
            }
        }
        Ok(())
    }

    /// The compartment with its bank: preloaded, or read now.
    pub async fn compartment(&mut self, id: Uuid) -> CoreResult<Option<CompartmentRef>> {
        if let Some(c) = self.compartments.get(&id) {
            return Ok(c.clone());
        }
        locker_banks::compartment_ref(self.reader().await?, id).await
    }

    /// The command's row and stream version as this batch sees them:
    /// known (preloaded, read or followed), unless the batch wrote the
    /// command since without following it; then read afresh.
    pub async fn command_row(&mut self, command: Uuid) -> CoreResult<Option<CommandRow>> {
        if !self.written.contains(&command) {
            if let Some(row) = self.known.get(&command) {
                return Ok(row.clone());
            }
        }
        self.settle(command).await?;
        let row = open_requests::command_rows(self.reader().await?, &[command])
            .await?
            .remove(&command);
        self.written.remove(&command);
        self.known.insert(command, row.clone());
        Ok(row)
    }

    /// Applies what is deferred if some of it is `aggregate`'s, so that a
    /// statement of the caller's own sees all this batch wrote of it.
    pub async fn settle(&mut self, aggregate: Uuid) -> CoreResult<()> {
        if self.unflushed.contains(&aggregate) {
            self.flushes += 1;
            self.flush().await?;
        }
        Ok(())
    }

    /// Times a write's read applied what was deferred before the end.
    pub fn flushes(&self) -> u64 {
        self.flushes
    }

    /// Marks an outbox row done with the batch's other writes.
    pub fn complete_outbox(&mut self, id: i64, now: i64) {
        self.outbox_done.push((id, now));
    }

    /// Appends `events` at `expected_version` and projects them, inside
    /// the batch ([`crate::eventstore::store::stage_live`] with the event
    /// rows inserted at the batch's end). Given the command's parties (from
    /// [`Batch::command_row`]), an open command's transition costs no
    /// statement of its own: its row change joins the batch's, and its
    /// envelopes name the parties read. When the batch knows the command's
    /// row at `expected_version`, it follows the transition (the row as it
    /// leaves it, at the version after its events), so the next write's
    /// read of it costs nothing either.
    #[allow(clippy::too_many_arguments)]
    pub async fn stage(
        &mut self,
        mode: Mode,
        aggregate_type: &str,
        aggregate_uuid: Uuid,
        expected_version: i64,
        events: Vec<DomainEvent>,
        metadata: &Metadata,
        now: i64,
        parties: Option<OpenParties>,
    ) -> CoreResult<Staged> {
        let (stored, rows) = events::prepare(
            aggregate_type,
            aggregate_uuid,
            expected_version,
            events,
            metadata,
            now,
        )?;
        if stored.is_empty() {
            return Ok(Staged::default());
        }
        let transition = match (mode, parties) {
            (Mode::Live { open_timeout_ms }, Some(parties))
                if stored.iter().all(|e| RowUpdate::of(e).is_some()) =>
            {
                Some((open_timeout_ms, parties))
            }
            _ => None,
        };
        // The row this transition moves, when the batch knows it as of
        // the version the write decided on: then it is followed, and
        // nothing deferred need be applied first.
        let followed = match (&transition, self.known.get(&aggregate_uuid)) {
            (Some(_), Some(Some(row)))
                if row.version == expected_version && !self.written.contains(&aggregate_uuid) =>
            {
                Some(row.clone())
            }
            _ => None,
        };
        if followed.is_none() {
            self.settle(aggregate_uuid).await?;
            self.written.insert(aggregate_uuid);
        }
        self.unflushed.insert(aggregate_uuid);
        self.events.extend(rows);
        let projected = match transition {
            Some((open_timeout_ms, parties)) => {
                // A transition writes nothing before the batch's end
                // (`projections::project_transition`): no transaction yet.
                let (projected, changes) = projections::project_transition(
                    self.conn.current()?,
                    &stored,
                    parties,
                    open_timeout_ms,
                )
                .await?;
                if let Some(mut row) = followed {
                    for change in &changes {
                        row.apply(change)?;
                    }
                    row.version = expected_version + stored.len() as i64;
                    self.known.insert(aggregate_uuid, Some(row));
                }
                for change in changes {
                    self.defer_row(change);
                }
                projected
            }
            None => {
                // Only what the batch defers to its end (a grant, an open
                // request with its decision): no transaction yet.
                if !matches!(mode, Mode::Live { .. }) || !projections::writes_only_deferred(&stored)
                {
                    self.conn.begin().await?;
                    self.conn.write_grants(&mut self.grants).await?;
                }
                let projected = projections::project_live(
                    self.conn.current()?,
                    &stored,
                    mode,
                    &mut self.inserts,
                    &mut self.grants,
                )
                .await?;
                for row in &self.inserts {
                    self.unflushed.insert(row.command());
                }
                projected
            }
        };
        Ok(Staged::of(stored, projected))
    }

    fn defer_row(&mut self, change: RowUpdate) {
        match self.rows.iter_mut().find(|r| r.command == change.command) {
            Some(pending) => pending.then(change),
            None => {
                self.unflushed.insert(change.command);
                self.rows.push(change);
            }
        }
    }

    /// Applies what is deferred: the events, then the new rows, their
    /// changes, then the outbox rows, a statement each (per few hundred
    /// rows).
    pub async fn flush(&mut self) -> CoreResult<()> {
        self.conn.begin().await?;
        self.conn.write_grants(&mut self.grants).await?;
        let conn = self.conn.current()?;
        let events = std::mem::take(&mut self.events);
        let positions = events::insert_all(conn, &events).await?;
        self.positions.extend(positions);
        let inserts = std::mem::take(&mut self.inserts);
        open_requests::insert_rows(conn, &inserts).await?;
        let rows = std::mem::take(&mut self.rows);
        open_requests::update_rows(conn, &rows, false).await?;
        let done = std::mem::take(&mut self.outbox_done);
        crate::eventstore::outbox::complete_all(conn, &done).await?;
        self.unflushed.clear();
        Ok(())
    }

    /// Applies what is deferred and gives the staged writes' events their
    /// positions: `staged` must be every write staged in this batch, in
    /// order.
    pub async fn finish(&mut self, staged: &mut [Staged]) -> CoreResult<()> {
        self.flush().await?;
        self.assign_positions(staged)
    }

    fn assign_positions(&mut self, staged: &mut [Staged]) -> CoreResult<()> {
        let mut positions = std::mem::take(&mut self.positions).into_iter();
        for event in staged
            .iter_mut()
            .flat_map(|s| s.events.iter_mut())
            .filter(|e| e.position == 0)
        {
            event.position = positions
                .next()
                .ok_or_else(|| CoreError::Invalid("a staged event has no inserted row".into()))?;
        }
        if positions.next().is_some() {
            return Err(CoreError::Invalid(
                "an inserted event belongs to no staged write".into(),
            ));
        }
        Ok(())
    }

    /// Has the batch nothing deferred left to write?
    pub fn nothing_deferred(&self) -> bool {
        let d = self.deferred();
        d.events.is_empty()
            && d.inserts.is_empty()
            && d.grants.is_empty()
            && d.rows.is_empty()
            && d.outbox_done.is_empty()
    }

    /// What the batch deferred and has not written yet.
    pub fn deferred(&self) -> Deferred<'_> {
        Deferred {
            events: &self.events,
            inserts: &self.inserts,
            grants: &self.grants,
            rows: &self.rows,
            outbox_done: &self.outbox_done,
        }
    }

    /// The deferred writes were written by the caller (`batch_end`), their
    /// events taking `positions`: gives the staged writes' events their
    /// positions as [`Batch::finish`] does.
    pub fn ended(&mut self, positions: Vec<i64>, staged: &mut [Staged]) -> CoreResult<()> {
        if positions.len() != self.events.len() {
            return Err(CoreError::Invalid("an event was not stored".into()));
        }
        self.events.clear();
        self.inserts.clear();
        self.grants.clear();
        self.rows.clear();
        self.outbox_done.clear();
        self.unflushed.clear();
        self.positions.extend(positions);
        self.assign_positions(staged)
    }

    /// Commits the transaction; a batch that never began has nothing to
    /// commit (its end, if any, committed as it ran).
    pub async fn commit(&mut self) -> CoreResult<()> {
        self.conn.current()?;
        if self.conn.begun {
            // A failed COMMIT discards the connection (`Conn::control`).
            self.conn.control("COMMIT").await?;
            self.conn.begun = false;
        }
        Ok(())
    }
}
