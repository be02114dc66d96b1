//! Group commit: the writes that arrive together are committed together.
//!
//! A writer task (one on SQLite, [`POSTGRES_WRITERS`] on PostgreSQL, each
//! write going to the one its aggregate's id falls to) takes every write
//! waiting in its queue (up to [`MAX_BATCH`]) and runs them, in arrival order, in one
//! transaction: each write's reads, its events and their projections, one
//! after the other, so each sees the ones before it. The batch plans the
//! rows per batch ([`Batch`]: what its writes read, in one query per kind
//! at its start; their events and open commands' rows, a statement per
//! kind at its end). Then the side effects and channel envelopes of the
//! whole batch are written ([`store::append_envelopes`]), the batch
//! commits once, and each caller gets its own result. Nobody waits to
//! fill a batch: while one commits, the next gathers. (After a batch of
//! several writes the writer yields a few times before cutting the next,
//! so that the callers it just answered can queue theirs: [`writer`].)
//!
//! One write's error never fails its neighbours: the batch is rolled back
//! and cut at the failing write, which runs again alone (so its caller
//! gets its own answer, a conflict or a validation failure, as if it had
//! been alone); the writes before and after it are committed together.
//! A failed *commit* is not retried that way (it may have landed): every
//! caller of the batch gets the error, as a caller of a single transaction
//! would. A write that panics loses its batch, not the writer.
//!
//! A write is a closure over the batch ([`Batch`]: the transaction's
//! connection, and the writes it defers to its end). It must only
//! read and write the database (no network, no waiting on other writes),
//! and it may run twice (the batch, then alone): everything it does
//! outside the database belongs after it returns. It must return the
//! database's errors, never swallow one (on PostgreSQL an error aborts the
//! transaction, and the batch must be cut, not committed). A write that
//! says what it will read ([`GroupCommit::write_reading`]: an open
//! command, a compartment) has it read with the batch's others, in one
//! query per kind at the batch's start.
//!
//! A write, once queued, is committed even if its caller stops waiting
//! (an HTTP client that went away): the caller learns nothing, as with a
//! reply lost after a commit. Open requests carry an `Idempotency-Key`
//! for a safe retry.
//!
//! Lock order: a batch writes its compartments' latest statuses and then
//! its channel heads last, each in one sorted order, so batches of
//! different writers never wait on each other in a cycle.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    sync::{Arc, OnceLock},
};

use futures_util::FutureExt;
use sqlx::postgres::PgSeverity;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::{
    db::{Backend, Db},
    error::{CoreError, CoreResult},
    eventstore::batch::{Batch, Held, Reads},
    eventstore::store::{self, Staged, Written},
    eventstore::{batch_end, batch_end_sqlite},
};

/// The most writes committed in one transaction.
pub const MAX_BATCH: usize = 256;
/// Writers on PostgreSQL. It runs transactions side by side, but the
/// writers' batches meet on the channel heads (written last, their row
/// locks held through the commit's flush), and a tenant's writes all move
/// its head: a second writer mostly waits there, and its batches are
/// smaller. Once a batch's end was one statement and the writer kept its
/// connection, one writer measured better than two and four, with one
/// caller and with eight, and in `open_latency` (docs/benchmarks.md,
/// "Eighth pass"; two won in the "Fourth pass", before those changes).
/// SQLite has one writer at a time, so one.
pub const POSTGRES_WRITERS: usize = 1;
/// How long a writer keeps its connection with no write to run: long
/// enough for the next write of a steady stream, short enough that a quiet
/// writer does not keep one of the pool's connections out of its upkeep
/// (sqlx's lifetime and idle checks) for long.
const HOLD_IDLE: std::time::Duration = std::time::Duration::from_secs(1);
/// Writes that may wait for a writer before callers wait to queue.
const QUEUE: usize = 8192;

/// A boxed future borrowing the batch.
pub type WriteFuture<'c, T> = Pin<Box<dyn Future<Output = CoreResult<(T, Staged)>> + Send + 'c>>;

/// One queued write, its result type erased.
trait Pending: Send {
    /// What the write will read, if it said.
    fn reads(&self) -> Option<Reads>;
    fn run<'c>(
        &'c mut self,
        batch: &'c mut Batch,
    ) -> Pin<Box<dyn Future<Output = CoreResult<Staged>> + Send + 'c>>;
    fn finish(self: Box<Self>, result: CoreResult<Written>);
}

struct Job<T, F> {
    write: F,
    reads: Option<Reads>,
    output: Option<T>,
    reply: oneshot::Sender<CoreResult<(T, Written)>>,
}

impl<T, F> Pending for Job<T, F>
where
    T: Send + 'static,
    F: for<'c> FnMut(&'c mut Batch) -> WriteFuture<'c, T> + Send + 'static,
{
    fn reads(&self) -> Option<Reads> {
        self.reads
    }

    fn run<'c>(
        &'c mut self,
        batch: &'c mut Batch,
    ) -> Pin<Box<dyn Future<Output = CoreResult<Staged>> + Send + 'c>> {
        Box::pin(async move {
            let (output, staged) = (self.write)(batch).await?;
            self.output = Some(output);
            Ok(staged)
        })
    }

    fn finish(self: Box<Self>, result: CoreResult<Written>) {
        let Job { output, reply, .. } = *self;
        let result = result.and_then(|written| {
            output
                .map(|o| (o, written))
                .ok_or_else(|| CoreError::Invalid("a write finished without its result".into()))
        });
        // A caller that went away does not care.
        let _ = reply.send(result);
    }
}

/// The queue of one database's group-committed writes. Cheap to clone;
/// the writer task starts with the first write.
#[derive(Clone)]
pub struct GroupCommit {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    /// One queue per writer, started with the first write.
    queues: OnceLock<Vec<mpsc::Sender<Box<dyn Pending>>>>,
    stats: Arc<Counters>,
}

/// What the writer has done so far (for tests and the benchmark's
/// report; the metrics carry the same).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Transactions of more than one write that were tried.
    pub batches: u64,
    /// Writes committed in those batches.
    pub batched: u64,
    /// Batches rolled back because one of their writes failed.
    pub splits: u64,
    /// Writes run in a transaction of their own.
    pub alone: u64,
    /// Transactions (batches or writes alone) whose end was one
    /// statement (PostgreSQL, `batch_end`).
    pub fused: u64,
    /// Times a write's read applied its batch's deferred writes before
    /// the batch's end ([`Batch::flushes`]).
    pub flushes: u64,
    /// Of the `fused`, those that were one statement in all: nothing
    /// written before the end, so no `BEGIN` and no `COMMIT` (`batch`'s
    /// module comment).
    pub single_statement: u64,
    /// Of the `single_statement`, those SQLite's direct writer ran
    /// (`sqlite_direct`): every one, on a SQLite file.
    pub direct: u64,
    /// Transactions with nothing left for their end (writes that changed
    /// nothing, or wrote all their rows themselves), which ran no end
    /// statement; those that wrote nothing before it began no transaction.
    pub empty: u64,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    batched: AtomicU64,
    splits: AtomicU64,
    alone: AtomicU64,
    fused: AtomicU64,
    flushes: AtomicU64,
    single_statement: AtomicU64,
    direct: AtomicU64,
    empty: AtomicU64,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl GroupCommit {
    pub fn new(db: Db) -> Self {
        GroupCommit {
            inner: Arc::new(Inner {
                db,
                queues: OnceLock::new(),
                stats: Arc::default(),
            }),
        }
    }

    /// Writes waiting for the writer.
    pub fn queued(&self) -> usize {
        self.inner.queues.get().map_or(0, |queues| {
            queues.iter().map(|q| q.max_capacity() - q.capacity()).sum()
        })
    }

    pub fn stats(&self) -> Stats {
        let c = &self.inner.stats;
        Stats {
            batches: c.batches.load(Relaxed),
            batched: c.batched.load(Relaxed),
            splits: c.splits.load(Relaxed),
            alone: c.alone.load(Relaxed),
            fused: c.fused.load(Relaxed),
            flushes: c.flushes.load(Relaxed),
            single_statement: c.single_statement.load(Relaxed),
            direct: c.direct.load(Relaxed),
            empty: c.empty.load(Relaxed),
        }
    }

    /// Runs `write` in the next batch of the writer `key` falls to (the
    /// aggregate it writes: writes to one aggregate are committed in the
    /// order they were asked) and returns its result with what it wrote,
    /// once committed. The caller publishes the [`Written`].
    pub async fn write<T, F>(&self, key: Uuid, write: F) -> CoreResult<(T, Written)>
    where
        T: Send + 'static,
        F: for<'c> FnMut(&'c mut Batch) -> WriteFuture<'c, T> + Send + 'static,
    {
        self.queue(key, None, write).await
    }

    /// [`GroupCommit::write`] of a write that will read `reads`: read with
    /// the batch's others at its start ([`Batch::preload`]).
    pub async fn write_reading<T, F>(
        &self,
        key: Uuid,
        reads: Reads,
        write: F,
    ) -> CoreResult<(T, Written)>
    where
        T: Send + 'static,
        F: for<'c> FnMut(&'c mut Batch) -> WriteFuture<'c, T> + Send + 'static,
    {
        self.queue(key, Some(reads), write).await
    }

    async fn queue<T, F>(
        &self,
        key: Uuid,
        reads: Option<Reads>,
        write: F,
    ) -> CoreResult<(T, Written)>
    where
        T: Send + 'static,
        F: for<'c> FnMut(&'c mut Batch) -> WriteFuture<'c, T> + Send + 'static,
    {
        let queues = self.inner.queues.get_or_init(|| {
            let writers = match self.inner.db.backend {
                Backend::Sqlite => 1,
                Backend::Postgres => POSTGRES_WRITERS,
            };
            (0..writers)
                .map(|_| {
                    let (tx, rx) = mpsc::channel(QUEUE);
                    tokio::spawn(writer(self.inner.db.clone(), self.inner.stats.clone(), rx));
                    tx
                })
                .collect()
        });
        let queue = &queues[(key.as_u128() % queues.len() as u128) as usize];
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Job {
            write,
            reads,
            output: None,
            reply,
        });
        queue
            .send(job)
            .await
            .map_err(|_| CoreError::Conflict("the writer has stopped; retry".into()))?;
        answer.await.unwrap_or_else(|_| {
            Err(CoreError::Conflict(
                "the write was abandoned before it committed; retry".into(),
            ))
        })
    }
}

/// The writer: a batch of whatever is queued, committed, then the next.
///
/// The writer keeps its connection from batch to batch ([`Held`]) and
/// gives it back to the pool once no write came for [`HOLD_IDLE`].
async fn writer(db: Db, stats: Arc<Counters>, mut queue: mpsc::Receiver<Box<dyn Pending>>) {
    let mut held: Held = None;
    // The size of the last batch.
    let mut last = 0;
    loop {
        let next = match held {
            Some(_) => match tokio::time::timeout(HOLD_IDLE, queue.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    held = None;
                    queue.recv().await
                }
            },
            None => queue.recv().await,
        };
        let Some(first) = next else { break };
        let mut batch = vec![first];
        drain(&mut queue, &mut batch);
        // The callers the last batch answered are runnable now, and in a
        // steady stream most write again at once: yielding lets them queue
        // before this batch is cut, rather than the first of them starting
        // a batch alone and the rest the next. Not a wait: the yields stop
        // at the first that brings no write, and a writer whose last batch
        // was one write does not yield (docs/benchmarks.md, "Ninth pass").
        if last > 1 && batch.len() < MAX_BATCH {
            for _ in 0..YIELDS {
                let before = batch.len();
                tokio::task::yield_now().await;
                drain(&mut queue, &mut batch);
                if batch.len() == before {
                    break;
                }
            }
        }
        last = batch.len();
        metrics::histogram!("lockstep_group_commit_batch_size").record(batch.len() as f64);
        // A write that panics loses its batch (its callers hear so), not
        // the writer. The batch's connection goes with it: a batch in its
        // transaction when it panics closes it (`batch::Conn`). Run here
        // rather than in a task of its own: that cost a task and a wake-up
        // per batch.
        let mut conn = held.take();
        let run = AssertUnwindSafe(commit_batch(&db, &stats, batch, &mut conn))
            .catch_unwind()
            .await;
        match run {
            Ok(()) => held = conn,
            Err(panic) => {
                drop(conn);
                let reason = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                metrics::counter!("lockstep_group_commit_panics_total").increment(1);
                tracing::error!(panic = %reason, "a group-committed batch panicked; its writes were not committed");
            }
        }
    }
}

/// Times a writer yields, at most, for the writes of the callers its last
/// batch answered ([`writer`]).
const YIELDS: usize = 4;

/// Moves what is queued into `batch`, up to [`MAX_BATCH`].
fn drain(queue: &mut mpsc::Receiver<Box<dyn Pending>>, batch: &mut Vec<Box<dyn Pending>>) {
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// Where a batch went wrong.
enum Failed {
    /// No transaction: nothing ran.
    Begin(CoreError),
    /// Before commit, nothing committed: in the write at this index, or
    /// (`None`) in beginning or in appending the envelopes.
    Before(Option<usize>, CoreError),
    /// At commit: it may have landed.
    Commit(CoreError),
}

/// Commits `batch`. When one write fails, the batch is rolled back and
/// cut there: the writes before it are committed together again, the
/// failing one alone (it gets its own answer), the ones after it together.
/// So an error costs one rollback, not the batch's grouping.
async fn commit_batch(db: &Db, stats: &Counters, batch: Vec<Box<dyn Pending>>, held: &mut Held) {
    let mut segments = std::collections::VecDeque::from([batch]);
    while let Some(mut segment) = segments.pop_front() {
        if segment.len() == 1 {
            for mut job in segment {
                stats.alone.fetch_add(1, Relaxed);
                let result = alone(db, stats, job.as_mut(), held).await;
                job.finish(result);
            }
            continue;
        }
        stats.batches.fetch_add(1, Relaxed);
        match together(db, stats, &mut segment, held).await {
            Ok(written) => {
                stats.batched.fetch_add(segment.len() as u64, Relaxed);
                for (job, written) in segment.into_iter().zip(written) {
                    job.finish(Ok(written));
                }
            }
            Err(Failed::Begin(e)) => {
                // The database is not there: each caller hears so now,
                // rather than after every write of the batch waited for it.
                tracing::warn!(error = %e, writes = segment.len(), "a batch could not begin");
                let message = e.to_string();
                let mut first = Some(e);
                for job in segment {
                    let e = first.take().unwrap_or_else(|| {
                        CoreError::Conflict(format!("the write could not begin: {message}"))
                    });
                    job.finish(Err(e));
                }
            }
            Err(Failed::Commit(e)) => {
                tracing::warn!(error = %e, writes = segment.len(), "a batch's commit failed");
                let message = e.to_string();
                let mut first = Some(e);
                for job in segment {
                    let e = first.take().unwrap_or_else(|| {
                        CoreError::Conflict(format!("the commit failed: {message}"))
                    });
                    job.finish(Err(e));
                }
            }
            Err(Failed::Before(at, e)) => {
                stats.splits.fetch_add(1, Relaxed);
                metrics::counter!("lockstep_group_commit_split_total").increment(1);
                tracing::debug!(error = %e, writes = segment.len(), ?at, "a batch failed before commit; split");
                match at {
                    Some(k) if k < segment.len() => {
                        let mut after = segment.split_off(k);
                        let rest = after.split_off(1);
                        for part in [rest, after, segment] {
                            if !part.is_empty() {
                                segments.push_front(part);
                            }
                        }
                    }
                    // Not one write's fault: each runs alone.
                    _ => {
                        for job in segment.into_iter().rev() {
                            segments.push_front(vec![job]);
                        }
                    }
                }
            }
        }
    }
}

/// The whole batch in one transaction, on the writer's `held` connection.
async fn together(
    db: &Db,
    stats: &Counters,
    batch: &mut [Box<dyn Pending>],
    held: &mut Held,
) -> Result<Vec<Written>, Failed> {
    let mut b = Batch::open(db, held).await.map_err(Failed::Begin)?;
    let result = together_on(db, stats, batch, &mut b).await;
    b.release(held, result.is_err()).await;
    result
}

async fn together_on(
    db: &Db,
    stats: &Counters,
    batch: &mut [Box<dyn Pending>],
    b: &mut Batch,
) -> Result<Vec<Written>, Failed> {
    let reads: Vec<Reads> = batch.iter().filter_map(|job| job.reads()).collect();
    b.preload(&reads)
        .await
        .map_err(|e| Failed::Before(None, e))?;
    let mut staged = Vec::with_capacity(batch.len());
    let mut failed = None;
    for (i, job) in batch.iter_mut().enumerate() {
        match job.run(b).await {
            Ok(s) => staged.push(s),
            Err(e) => {
                failed = Some(Failed::Before(Some(i), e));
                break;
            }
        }
    }
    // Counted whether or not the batch goes on: a cut batch flushed too.
    stats.flushes.fetch_add(b.flushes(), Relaxed);
    if let Some(failed) = failed {
        return Err(failed);
    }
    let written = finish(db.backend, stats, b, staged).await.map_err(|e| {
        if b.begun() || refused(&e) {
            Failed::Before(None, e)
        } else {
            // The end ran alone, outside a transaction: it may have
            // committed before its answer was lost.
            Failed::Commit(e)
        }
    })?;
    b.commit().await.map_err(Failed::Commit)?;
    Ok(written)
}

/// Whether the database refused a statement (so nothing of it landed),
/// rather than the answer going missing: an error of the statement, not
/// one of the session (PostgreSQL's FATAL, say an administrator's
/// shutdown, may come after the statement committed).
fn refused(e: &CoreError) -> bool {
    match e {
        CoreError::VersionConflict { .. } => true,
        CoreError::Database(sqlx::Error::Database(db)) => !db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|pg| matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic)),
        _ => false,
    }
}

/// What a batch deferred, then its envelopes: what each write wrote. On
/// PostgreSQL in one statement when the batch allows (`batch_end`).
async fn finish(
    backend: Backend,
    stats: &Counters,
    b: &mut Batch,
    mut staged: Vec<Staged>,
) -> CoreResult<Vec<Written>> {
    let alone = !b.begun();
    if b.nothing_deferred() && store::end_is_empty(&staged) {
        // Nothing to end: no statement, and no empty transaction either
        // (`Batch::commit` commits what a flush began, if anything).
        b.ended(Vec::new(), &mut staged)?;
        stats.empty.fetch_add(1, Relaxed);
        return Ok(store::written_of(staged, Vec::new()));
    }
    let ended = match backend {
        Backend::Postgres => batch_end::fused(b, staged).await?,
        Backend::Sqlite => batch_end_sqlite::ended(b, staged).await?,
    };
    let mut staged = match ended {
        Ok(written) => {
            stats.fused.fetch_add(1, Relaxed);
            if alone {
                stats.single_statement.fetch_add(1, Relaxed);
            }
            if b.ended_directly() {
                stats.direct.fetch_add(1, Relaxed);
            }
            return Ok(written);
        }
        Err(staged) => staged,
    };
    b.finish(&mut staged).await?;
    store::append_envelopes(b.writer().await?, staged).await
}

/// Times a write alone is tried again after PostgreSQL chose it as a
/// deadlock's victim (several nodes' batches can take compartment rows in
/// opposite orders; one process's cannot).
const DEADLOCK_RETRIES: usize = 3;

/// One write in its own transaction.
async fn alone(
    db: &Db,
    stats: &Counters,
    job: &mut dyn Pending,
    held: &mut Held,
) -> CoreResult<Written> {
    let mut tries = 0;
    loop {
        match alone_once(db, stats, job, held).await {
            Err(e) if is_deadlock(&e) && tries < DEADLOCK_RETRIES => {
                tries += 1;
                metrics::counter!("lockstep_group_commit_deadlocks_total").increment(1);
                tracing::debug!(error = %e, "a write was a deadlock's victim; tried again");
            }
            other => return other,
        }
    }
}

fn is_deadlock(e: &CoreError) -> bool {
    matches!(e, CoreError::Database(sqlx::Error::Database(db)) if db.code().as_deref() == Some("40P01"))
}

async fn alone_once(
    db: &Db,
    stats: &Counters,
    job: &mut dyn Pending,
    held: &mut Held,
) -> CoreResult<Written> {
    let mut b = Batch::open(db, held).await?;
    let result = alone_on(db, stats, job, &mut b).await;
    b.release(held, result.is_err()).await;
    result
}

async fn alone_on(
    db: &Db,
    stats: &Counters,
    job: &mut dyn Pending,
    b: &mut Batch,
) -> CoreResult<Written> {
    let staged = job.run(b).await;
    stats.flushes.fetch_add(b.flushes(), Relaxed);
    let staged = staged?;
    let written = finish(db.backend, stats, b, vec![staged])
        .await?
        .pop()
        .unwrap_or_default();
    b.commit().await?;
    Ok(written)
}
