//! The end of a group-committed batch on PostgreSQL as one statement:
//! the events, the open commands' new rows and changes, the outbox rows
//! done and new, the timers ended and new, the compartments' latest
//! statuses, the channel heads, bodies and log rows, each a part of one
//! `WITH …` statement instead of a round trip of its own.
//!
//! Why: the channel heads are the rows every writer of a channel waits
//! on, and a batch holds their locks from its heads upsert to its commit.
//! One statement shortens that hold from three round trips and the commit
//! to the rest of the statement and the commit (docs/benchmarks.md,
//! "Fourth pass").
//!
//! The parts run with one snapshot and cannot see each other's writes, so
//! a batch is fused only when they touch distinct rows: no command both
//! inserted and changed, no timer both ended and scheduled (otherwise the
//! batch ends one statement at a time, `store::append_envelopes`). A kind
//! that needs several statements (a batch of more than a hundred
//! compartments' latest statuses, say) is several parts: each names its
//! own rows (one per command, compartment, timer or outbox row). They
//! run in the order listed, which is the order of the statements they
//! replace: the final `SELECT` reads each part to its end in turn (one
//! `UNION ALL`, an Append that PostgreSQL runs child by child; a
//! statement with data-modifying `WITH` parts is never planned parallel),
//! so locks are taken in the same order. PostgreSQL's documentation does not promise that order for such
//! parts; should it change, the cost is a deadlock, whose writes run
//! again alone (`group_commit`), never a wrong row.
//! The log rows take their seqs from the heads part's new heads, and
//! their bodies' ids from a sequence read in the statement itself.

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use crate::{
    error::{CoreError, CoreResult},
    eventstore::{
        batch::Batch,
        channels::{self, EnvelopePlan},
        events, outbox,
        projections::{grants, open_requests},
        sql::{bind_all, renumber, value_rows, Arg, Stmt},
        store::{self, EndWrites, Staged, Written},
        timers,
    },
};

/// PostgreSQL's limit on one statement's bound values.
const MAX_ARGS: usize = 65_535;

/// One part of the fused statement: its SQL (numbered from `$1`), its
/// values, and what the final `SELECT` reads of it.
struct Part {
    /// The part's name in the statement when others refer to it (else
    /// `p{index}`), and whether it is `MATERIALIZED` (computed once).
    name: Option<&'static str>,
    materialized: bool,
    stmt: Stmt,
    read: Read,
}

impl Part {
    fn new(stmt: Stmt, read: Read) -> Part {
        Part {
            name: None,
            materialized: false,
            stmt,
            read,
        }
    }
}

enum Read {
    /// The events' positions (`RETURNING id`).
    Positions,
    /// The channels' new heads (`RETURNING channel, seq`).
    Heads,
    /// Only that it ran (`RETURNING 1 AS x`, counted).
    Ran,
    /// How many rows it wrote, read back under this name.
    Counted(&'static str),
}

/// The counts the bodies' and the log rows' parts are read back as.
const BODIES_WRITTEN: &str = "bodies";
const LOG_WRITTEN: &str = "log rows";

/// Ends `b` in one statement when its parts allow (see the module
/// comment): `Ok(Err(staged))` hands the writes back to be ended one
/// statement at a time.
pub async fn fused(
    b: &mut Batch,
    mut staged: Vec<Staged>,
) -> CoreResult<Result<Vec<Written>, Vec<Staged>>> {
    let end = EndWrites::of(&staged);
    let plan = EnvelopePlan::of(&store::notes_of(&staged))?;
    let Some(parts) = parts(b, &end, &plan)? else {
        return Ok(Err(staged));
    };
    let (sql, args) = statement(&parts);
    // In the transaction if the batch began one, else alone (it commits
    // as it runs: `batch`'s module comment).
    let rows = match bind_all(sqlx::query(&sql), &args)
        .fetch_all(b.end_connection()?)
        .await
    {
        Ok(rows) => rows,
        // A version conflict is a unique key of the events broken; any
        // other (a log row's seq, a command's id) is an integrity fault and
        // stays the database error it is.
        Err(e) if events::breaks_events_key(&e) => {
            return Err(events::conflict_of(e, b.deferred().events))
        }
        Err(e) => return Err(e.into()),
    };
    let mut positions = Vec::new();
    let mut heads = HashMap::new();
    let mut counts = HashMap::new();
    for row in rows {
        let kind: String = row.try_get("k")?;
        match kind.as_str() {
            "e" => positions.push(row.try_get::<i64, _>("n")?),
            "h" => {
                heads.insert(row.try_get::<String, _>("c")?, row.try_get::<i64, _>("n")?);
            }
            _ => {
                counts.insert(kind, row.try_get::<i64, _>("n")?);
            }
        }
    }
    // The bodies and log rows are written through joins: every one
    // planned must have been written.
    let (appended, log) = plan.appended(&heads)?;
    for (kind, expected) in [
        (BODIES_WRITTEN, plan.bodies.len()),
        (LOG_WRITTEN, log.len()),
    ] {
        let written = counts.get(kind).copied().unwrap_or(0);
        if written != expected as i64 {
            return Err(CoreError::Invalid(format!(
                "the batch's end wrote {written} of {expected} {kind}"
            )));
        }
    }
    // One statement's rows take increasing positions in VALUES order;
    // RETURNING's own order is not promised, so they are sorted back.
    positions.sort_unstable();
    b.ended(positions, &mut staged)?;
    Ok(Ok(store::written_of(staged, appended)))
}

/// The parts of `b`'s end, in the order they must run; `None` when the
/// batch cannot be fused.
fn parts(b: &Batch, end: &EndWrites, plan: &EnvelopePlan) -> CoreResult<Option<Vec<Part>>> {
    let deferred = b.deferred();
    // Parts that would touch one row twice.
    let inserted: HashSet<_> = deferred.inserts.iter().map(|r| r.command()).collect();
    if deferred.rows.iter().any(|r| inserted.contains(&r.command)) {
        return Ok(unfused("command_inserted_and_changed"));
    }
    let scheduled: HashSet<String> = end
        .timers
        .iter()
        .map(|t| timers::timer_id(t.kind, t.subject))
        .collect();
    if end.ended_timers.iter().any(|id| scheduled.contains(id)) {
        return Ok(unfused("timer_ended_and_scheduled"));
    }
    let mut parts = Vec::new();
    if deferred.events.len() > events::EVENTS_PER_STATEMENT {
        return Ok(unfused("events"));
    }
    if !deferred.events.is_empty() {
        parts.push(Part::new(
            events::insert_stmt(deferred.events),
            Read::Positions,
        ));
    }
    let kinds = [
        open_requests::insert_stmts(deferred.inserts),
        grants::insert_stmts(deferred.grants),
        open_requests::update_stmts(deferred.rows, false),
        outbox::complete_stmts(deferred.outbox_done),
        timers::cancel_stmts(&end.ended_timers),
        timers::schedule_stmts(&end.timers),
        outbox::enqueue_stmts(&end.jobs),
        open_requests::latest_stmts(&end.latest),
    ];
    for stmts in kinds {
        parts.extend(stmts.into_iter().map(|mut stmt| {
            stmt.sql.push_str(" RETURNING 1 AS x");
            Part::new(stmt, Read::Ran)
        }));
    }
    if !plan.counts.is_empty() {
        parts.extend(envelope_parts(plan)?);
    }
    if parts.is_empty() {
        // Not reached: `group_commit::finish` ends a batch with nothing
        // left for its end before it comes here.
        return Ok(unfused("empty"));
    }
    if parts.iter().map(|p| p.stmt.args.len()).sum::<usize>() > MAX_ARGS {
        return Ok(unfused("values"));
    }
    Ok(Some(parts))
}

/// Counts a batch whose end could not be one statement, by why
/// (`lockstep_group_commit_unfused_total`); it ends a statement at a time.
pub fn unfused<T>(reason: &'static str) -> Option<T> {
    metrics::counter!("lockstep_group_commit_unfused_total", "reason" => reason).increment(1);
    None
}

/// The heads' upsert, the bodies with ids drawn from their sequence, and
/// the log rows, whose seqs count back from their channel's new head and
/// whose bodies are found by their index in the plan.
fn envelope_parts(plan: &EnvelopePlan) -> CoreResult<Vec<Part>> {
    let heads = Part {
        name: Some(HEADS),
        ..Part::new(channels::heads_stmt(&plan.counts), Read::Heads)
    };
    // `o`: the body's index; `MATERIALIZED` draws each id once.
    let bodies = Stmt {
        sql: format!(
            "SELECT v.column1 AS o, v.column2 AS body, v.column3 AS at, \
             nextval('channel_bodies_id_seq') AS id FROM (VALUES {}) AS v",
            value_rows(plan.bodies.len(), 3, "")
        ),
        args: plan
            .bodies
            .iter()
            .enumerate()
            .flat_map(|(i, (body, at))| {
                [Arg::Int(i as i64), Arg::from(body.as_str()), Arg::Int(*at)]
            })
            .collect(),
    };
    let rows = plan.rows_from_end()?;
    let log = Stmt {
        sql: format!(
            "INSERT INTO channel_log (channel, seq, body_id, occurred_at) \
             SELECT r.column1, h.seq - r.column2, b.id, r.column4 FROM (VALUES {}) AS r \
             JOIN {HEADS} AS h ON h.channel = r.column1 JOIN {BODY_IDS} AS b ON b.o = r.column3 \
             RETURNING 1 AS x",
            value_rows(rows.len(), 4, "")
        ),
        args: rows
            .into_iter()
            .flat_map(|(channel, from_end, body, at)| {
                [
                    Arg::Text(channel),
                    Arg::Int(from_end),
                    Arg::Int(body as i64),
                    Arg::Int(at),
                ]
            })
            .collect(),
    };
    Ok(vec![
        heads,
        Part {
            name: Some(BODY_IDS),
            materialized: true,
            ..Part::new(bodies, Read::Ran)
        },
        Part::new(
            Stmt {
                sql: format!(
                    "INSERT INTO channel_bodies (id, body, occurred_at) \
                     SELECT id, body, at FROM {BODY_IDS} RETURNING 1 AS x"
                ),
                args: Vec::new(),
            },
            Read::Counted(BODIES_WRITTEN),
        ),
        Part::new(log, Read::Counted(LOG_WRITTEN)),
    ])
}

/// The names the envelope parts refer to each other by: the heads' upsert
/// and the bodies' ids drawn from their sequence.
const HEADS: &str = "new_heads";
const BODY_IDS: &str = "body_ids";

/// The one statement: `WITH p0 AS (…), p1 AS (…) … SELECT …` reading
/// each part in turn, and its values.
fn statement(parts: &[Part]) -> (String, Vec<Arg>) {
    let mut ctes = Vec::with_capacity(parts.len());
    let mut selects = Vec::with_capacity(parts.len());
    let mut args = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let name = part.name.map_or_else(|| format!("p{i}"), str::to_string);
        let sql = renumber(&part.stmt.sql, args.len());
        args.extend(part.stmt.args.iter().cloned());
        let materialized = if part.materialized {
            "MATERIALIZED "
        } else {
            ""
        };
        ctes.push(format!("{name} AS {materialized}({sql})"));
        selects.push(match part.read {
            Read::Positions => {
                format!("SELECT 'e'::text AS k, id AS n, NULL::text AS c FROM {name}")
            }
            Read::Heads => format!("SELECT 'h'::text AS k, seq AS n, channel AS c FROM {name}"),
            Read::Ran => {
                format!("SELECT 'x'::text AS k, count(*) AS n, NULL::text AS c FROM {name}")
            }
            Read::Counted(what) => {
                format!("SELECT '{what}'::text AS k, count(*) AS n, NULL::text AS c FROM {name}")
            }
        });
    }
    (
        format!("WITH {} {}", ctes.join(", "), selects.join(" UNION ALL ")),
        args,
    )
}
