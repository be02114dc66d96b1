//! The end of a group-committed batch on SQLite in one round trip to
//! sqlx's SQLite worker thread: its statements in one query text (the
//! events, the read models' rows, the outbox, timers and latest statuses,
//! the channel heads, bodies and log rows), bracketed by `BEGIN IMMEDIATE`
//! and `COMMIT` when the batch wrote nothing before its end
//! (`batch`'s module comment), else run in its transaction.
//!
//! Why: on SQLite a batch's cost is its statements' trips to and from the
//! worker thread, not the statements (docs/benchmarks.md, "Sixth pass").
//! sqlx runs a query text's statements one after the other in one worker
//! command, each seeing the ones before (unlike PostgreSQL's `WITH` parts,
//! `batch_end`), and numbers `$N` across the whole text.
//!
//! The log rows take their seqs from the heads as the upsert before them
//! left them, and their bodies' ids from the table's largest: under the
//! write lock, one insert's rows take the ids after the table's last
//! (plain rowids), in order, so a body's id is the last one less the
//! bodies after it.

use std::collections::HashMap;

use sqlx::Row;

use crate::{
    error::{CoreError, CoreResult},
    eventstore::{
        batch::Batch,
        batch_end,
        channels::{self, EnvelopePlan},
        events, outbox,
        projections::{grants, open_requests},
        sql::{bind_all, renumber, value_rows, Arg, Stmt},
        sqlite_direct::{self, DirectWriter},
        store::{self, EndWrites, Staged, Written, SQLITE_BEGIN},
        timers,
    },
};

/// The most writes a batch may have for its end to be one text. Each
/// text is prepared once per connection and kept (sqlx's statement
/// cache), but a text follows the row counts of every kind at once, so
/// large batches rarely repeat one: past this size, each kind's own
/// statement (whose text follows its count only) is kept and reused,
/// and the round trips saved no longer weigh (docs/benchmarks.md, "Sixth
/// pass").
pub const MAX_WRITES: usize = 8;

/// The most writes, and values in all, a batch's end may have for the
/// direct writer to run it on the calling thread (`sqlite_direct`'s module
/// comment): about a tenth of a millisecond of work, the most a task
/// should hold a runtime thread without yielding. (An open's end has about
/// 60 values; a write with many events goes to the thread.)
const HERE_WRITES: usize = 2;
const HERE_VALUES: usize = 256;

/// SQLite's limit on a statement's `$N` (`SQLITE_MAX_VARIABLE_NUMBER`):
/// sqlx numbers them across the text, so it bounds the whole text.
const MAX_ARGS: usize = 32_766;

/// Ends `b` in one round trip when it can: through the direct writer
/// when nothing was written before the end (the end is then the whole
/// transaction, and each statement is prepared and kept on its own, so a
/// batch of any size), else in one query text when it has at most
/// [`MAX_WRITES`] writes. `Ok(Err(staged))` hands the writes back to be
/// ended a statement at a time (a size past the statements' limits).
pub async fn ended(
    b: &mut Batch,
    staged: Vec<Staged>,
) -> CoreResult<Result<Vec<Written>, Vec<Staged>>> {
    let alone = !b.begun();
    let direct = b.direct().filter(|_| alone);
    if staged.len() > MAX_WRITES && direct.is_none() {
        batch_end::unfused::<()>("writes");
        return Ok(Err(staged));
    }
    let end = EndWrites::of(&staged);
    let plan = EnvelopePlan::of(&store::notes_of(&staged))?;
    let Some(stmts) = statements(b, &end, &plan)? else {
        return Ok(Err(staged));
    };
    if let Some(direct) = direct {
        return ended_direct(b, &direct, staged, stmts, &plan).await;
    }
    let mut texts = Vec::with_capacity(stmts.len() + 2);
    let mut args = Vec::new();
    if alone {
        texts.push(SQLITE_BEGIN.to_string());
    }
    for stmt in &stmts {
        texts.push(renumber(&stmt.sql, args.len()));
        args.extend(stmt.args.iter().cloned());
    }
    if alone {
        texts.push("COMMIT".to_string());
    }
    let sql = texts.join(";\n");
    b.running_text(alone);
    let conn = b.end_connection()?;
    let rows = match bind_all(sqlx::query(&sql), &args)
        .fetch_all(&mut *conn)
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            if alone {
                // The text stopped at its failing statement, inside the
                // transaction it began (or before it: then there is none,
                // and SQLite says so). A connection that may still be in
                // it is closed, not handed to the next writer.
                if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                    b.discard_connection();
                }
            }
            b.running_text(false);
            return Err(if events::breaks_events_key(&e) {
                events::conflict_of(e, b.deferred().events)
            } else {
                e.into()
            });
        }
    };
    b.running_text(false);
    Returned::of(&rows)?.written(b, staged, &plan)
}

/// The end as one transaction of the direct writer's
/// (`sqlite_direct`): the batch wrote nothing before it, so its
/// statements are the whole transaction, and the writer's connection
/// (outside any transaction) is left as it was.
async fn ended_direct(
    b: &mut Batch,
    direct: &DirectWriter,
    staged: Vec<Staged>,
    stmts: Vec<Stmt>,
    plan: &EnvelopePlan,
) -> CoreResult<Result<Vec<Written>, Vec<Staged>>> {
    let small = staged.len() <= HERE_WRITES
        && stmts.iter().map(|s| s.args.len()).sum::<usize>() <= HERE_VALUES;
    let here = if small {
        direct.transaction_here(&stmts)
    } else {
        None
    };
    let result = match here {
        Some(result) => result,
        None => direct.transaction(stmts).await,
    };
    let rows = match result {
        Ok(rows) => {
            b.set_ended_directly();
            rows
        }
        Err(e) if events::breaks_events_key(&e) => {
            return Err(events::conflict_of(e, b.deferred().events))
        }
        Err(e) => return Err(e.into()),
    };
    Returned::of(&rows)?.written(b, staged, plan)
}

/// A row the end's statements returned, from sqlx or the direct writer.
trait EndRow {
    fn has(&self, name: &str) -> bool;
    fn int(&self, name: &str) -> Result<i64, sqlx::Error>;
    fn text(&self, name: &str) -> Result<String, sqlx::Error>;
}

impl EndRow for sqlx::any::AnyRow {
    fn has(&self, name: &str) -> bool {
        self.try_column(name).is_ok()
    }
    fn int(&self, name: &str) -> Result<i64, sqlx::Error> {
        self.try_get(name)
    }
    fn text(&self, name: &str) -> Result<String, sqlx::Error> {
        self.try_get(name)
    }
}

impl EndRow for sqlite_direct::Row {
    fn has(&self, name: &str) -> bool {
        sqlite_direct::Row::has(self, name)
    }
    fn int(&self, name: &str) -> Result<i64, sqlx::Error> {
        sqlite_direct::Row::int(self, name)
    }
    fn text(&self, name: &str) -> Result<String, sqlx::Error> {
        sqlite_direct::Row::text(self, name)
    }
}

/// What the end's statements returned.
#[derive(Default)]
struct Returned {
    /// The events' positions.
    positions: Vec<i64>,
    /// The channels' new heads.
    heads: HashMap<String, i64>,
    /// How many log rows were written.
    logged: usize,
}

impl Returned {
    /// Sorts the end's rows by what they say: a channel's new head, a log
    /// row written, or an event's position.
    fn of(rows: &[impl EndRow]) -> Result<Returned, sqlx::Error> {
        let mut out = Returned::default();
        for row in rows {
            if row.has("channel") {
                out.heads.insert(row.text("channel")?, row.int("seq")?);
            } else if row.has("logged") {
                out.logged += 1;
            } else {
                out.positions.push(row.int("id")?);
            }
        }
        Ok(out)
    }

    /// The writes' results, once what was returned is checked against
    /// what the end was to write.
    fn written(
        self,
        b: &mut Batch,
        mut staged: Vec<Staged>,
        plan: &EnvelopePlan,
    ) -> CoreResult<Result<Vec<Written>, Vec<Staged>>> {
        let Returned {
            mut positions,
            heads,
            logged,
        } = self;
        let (appended, log) = plan.appended(&heads)?;
        if logged != log.len() {
            return Err(CoreError::Invalid(format!(
                "the batch's end wrote {logged} of {} log rows",
                log.len()
            )));
        }
        // One statement's rows take increasing positions in VALUES order;
        // RETURNING's own order is not promised, so they are sorted back.
        positions.sort_unstable();
        b.ended(positions, &mut staged)?;
        Ok(Ok(store::written_of(staged, appended)))
    }
}

/// The batch's end, a statement per kind in the order the statement-at-
/// a-time end runs them (`Batch::finish`, `store::append_envelopes`);
/// `None` when it is too large for one text.
fn statements(b: &Batch, end: &EndWrites, plan: &EnvelopePlan) -> CoreResult<Option<Vec<Stmt>>> {
    let deferred = b.deferred();
    if deferred.events.len() > events::EVENTS_PER_STATEMENT {
        return Ok(batch_end::unfused("events"));
    }
    let mut stmts = Vec::new();
    if !deferred.events.is_empty() {
        stmts.push(events::insert_stmt(deferred.events));
    }
    for kind in [
        grants::insert_stmts(deferred.grants),
        open_requests::insert_stmts(deferred.inserts),
        open_requests::update_stmts(deferred.rows, false),
        outbox::complete_stmts(deferred.outbox_done),
        timers::cancel_stmts(&end.ended_timers),
        timers::schedule_stmts(&end.timers),
        outbox::enqueue_stmts(&end.jobs),
        open_requests::latest_stmts(&end.latest),
    ] {
        stmts.extend(kind);
    }
    if !plan.counts.is_empty() {
        stmts.extend(envelope_stmts(plan)?);
    }
    if stmts.is_empty() {
        // Not reached: `group_commit::finish` ends a batch with nothing
        // left for its end before it comes here.
        return Ok(batch_end::unfused("empty"));
    }
    if stmts.iter().map(|s| s.args.len()).sum::<usize>() > MAX_ARGS {
        return Ok(batch_end::unfused("values"));
    }
    Ok(Some(stmts))
}

/// The heads' upsert (returning the new heads), the bodies, and the log
/// rows, whose seqs count back from their channel's new head and whose
/// bodies' ids count back from the last one taken.
fn envelope_stmts(plan: &EnvelopePlan) -> CoreResult<Vec<Stmt>> {
    let bodies = Stmt {
        sql: format!(
            "INSERT INTO channel_bodies (body, occurred_at) VALUES {}",
            value_rows(plan.bodies.len(), 2, "")
        ),
        args: plan
            .bodies
            .iter()
            .flat_map(|(body, at)| [Arg::from(body.as_str()), Arg::Int(*at)])
            .collect(),
    };
    let last_body = plan.bodies.len().saturating_sub(1);
    let rows = plan.rows_from_end()?;
    let log = Stmt {
        sql: format!(
            "INSERT INTO channel_log (channel, seq, body_id, occurred_at) \
             SELECT r.column1, h.seq - r.column2, s.seq - r.column3, r.column4 FROM (VALUES {}) AS r \
             JOIN channel_heads AS h ON h.channel = r.column1 \
             JOIN (SELECT max(id) AS seq FROM channel_bodies) AS s \
             RETURNING 1 AS logged",
            value_rows(rows.len(), 4, "")
        ),
        args: rows
            .into_iter()
            .flat_map(|(channel, from_end, body, at)| {
                [
                    Arg::Text(channel),
                    Arg::Int(from_end),
                    Arg::Int((last_body - body) as i64),
                    Arg::Int(at),
                ]
            })
            .collect(),
    };
    Ok(vec![channels::heads_stmt(&plan.counts), bodies, log])
}
