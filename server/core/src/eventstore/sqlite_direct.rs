//! SQLite's direct writer: a connection of its own, through rusqlite, on a
//! thread of its own, that runs a batch's end when that end is the whole
//! transaction (`batch_end_sqlite`: nothing written before it). It takes
//! the statements, runs them from `BEGIN IMMEDIATE` to `COMMIT`, and
//! answers once, with every row they returned.
//!
//! Why: sqlx's SQLite worker answers each statement of a query text (and
//! each row) with a message of its own, and the task awaiting them is
//! woken for nearly every one: a dozen thread wake-ups for the end of one
//! open (docs/benchmarks.md, "Eighth pass"). Here there is one each way.
//!
//! It writes under the same write turn as every other writer of the
//! process ([`crate::db::Db::write_turn`]), so the database lock is free
//! when it begins. Its failures come back as `sqlx::Error::Database`
//! ([`DirectError`]), so callers tell a unique violation (a version
//! conflict) from anything else as they do for sqlx's own.
//!
//! A small end ([`DirectWriter::transaction_here`], a batch of one or two
//! writes) runs on the calling thread instead, on the same connection: its
//! transaction takes less time than the two hand-offs between threads
//! would, which on an idle machine are each a sleeping thread woken
//! (docs/benchmarks.md, "Ninth pass"). A large one goes to the thread, so
//! the runtime's workers go on serving requests while it writes. A
//! transaction here never waits: if the connection is busy (a job of the
//! thread's still running) or the database's write lock is held (by
//! another process, or by a connection of a panicked batch whose close
//! has not run yet: the runtime must run it), it is handed to the thread,
//! which waits as long as the busy timeout allows. (A commit that finds
//! the WAL past 10,000 pages checkpoints it itself, wherever it runs: only
//! when the background checkpointer, `Db`'s, which speeds up while the WAL
//! grows fast, has fallen that far behind.)

use std::{
    borrow::Cow,
    fmt,
    path::{Path, PathBuf},
    sync::{mpsc, Arc, Mutex, PoisonError},
};

use rusqlite::{ffi, types::Value, Connection, OpenFlags};
use sqlx::error::{DatabaseError, ErrorKind};
use tokio::sync::oneshot;

use crate::eventstore::sql::{Arg, Stmt};

/// Statements kept prepared: a batch end's texts follow its row counts,
/// a few dozen shapes in steady use.
const PREPARED: usize = 128;

/// How long the thread's transaction waits for the database's write
/// lock, as the pool's connections do (`PRAGMA busy_timeout`).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One row a statement returned: its columns' names and values.
#[derive(Debug)]
pub struct Row {
    names: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// Whether the row has a column called `name`.
    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    fn value(&self, name: &str) -> Result<&Value, sqlx::Error> {
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| sqlx::Error::ColumnNotFound(name.to_string()))
    }

    pub fn int(&self, name: &str) -> Result<i64, sqlx::Error> {
        match self.value(name)? {
            Value::Integer(v) => Ok(*v),
            other => Err(mismatch(name, other)),
        }
    }

    pub fn text(&self, name: &str) -> Result<String, sqlx::Error> {
        match self.value(name)? {
            Value::Text(v) => Ok(v.clone()),
            other => Err(mismatch(name, other)),
        }
    }
}

fn mismatch(name: &str, found: &Value) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: name.to_string(),
        source: format!("unexpected value {found:?}").into(),
    }
}

/// A failure of the direct writer, as sqlx reports a database's own.
#[derive(Debug)]
pub struct DirectError {
    message: String,
    /// SQLite's extended result code, when SQLite gave one.
    code: Option<i32>,
}

impl fmt::Display for DirectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DirectError {}

impl DatabaseError for DirectError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        self.code.map(|c| Cow::Owned(c.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.code {
            Some(ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
                ErrorKind::UniqueViolation
            }
            Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => ErrorKind::ForeignKeyViolation,
            Some(ffi::SQLITE_CONSTRAINT_NOTNULL) => ErrorKind::NotNullViolation,
            Some(ffi::SQLITE_CONSTRAINT_CHECK) => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

fn failed(message: impl Into<String>) -> sqlx::Error {
    sqlx::Error::Database(Box::new(DirectError {
        message: message.into(),
        code: None,
    }))
}

impl From<rusqlite::Error> for DirectError {
    fn from(e: rusqlite::Error) -> Self {
        let code = match &e {
            rusqlite::Error::SqliteFailure(f, _) => Some(f.extended_code),
            _ => None,
        };
        let message = match &e {
            rusqlite::Error::SqliteFailure(_, Some(m)) => m.clone(),
            other => other.to_string(),
        };
        DirectError { message, code }
    }
}

fn db_error(e: rusqlite::Error) -> sqlx::Error {
    sqlx::Error::Database(Box::new(DirectError::from(e)))
}

struct Job {
    stmts: Vec<Stmt>,
    reply: oneshot::Sender<Result<Vec<Row>, sqlx::Error>>,
}

/// The direct writer of one SQLite file. Cheap to clone; its thread ends
/// when the last clone is dropped, and the connection closes with it.
#[derive(Clone)]
pub struct DirectWriter {
    jobs: mpsc::Sender<Job>,
    slot: Arc<Mutex<Slot>>,
}

/// The writer's connection, shared by its thread and
/// [`DirectWriter::transaction_here`]: one transaction at a time.
struct Slot {
    path: PathBuf,
    /// `None` once dropped (a failed `ROLLBACK`), until the next job
    /// opens a new one.
    conn: Option<Connection>,
}

impl fmt::Debug for DirectWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DirectWriter")
    }
}

impl DirectWriter {
    /// Opens `path` (an existing, migrated database in WAL mode) with the
    /// pragmas of the pool's connections, on a new thread.
    pub fn open(path: &Path) -> Result<Self, sqlx::Error> {
        let conn = connect(path).map_err(db_error)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let slot = Arc::new(Mutex::new(Slot {
            path: path.to_path_buf(),
            conn: Some(conn),
        }));
        let served = slot.clone();
        std::thread::Builder::new()
            .name("lockstep-sqlite-direct".into())
            .spawn(move || serve(&served, queue))
            .map_err(sqlx::Error::Io)?;
        Ok(DirectWriter { jobs, slot })
    }

    /// [`DirectWriter::transaction`] on the calling thread, which it
    /// blocks until the transaction ends: for a small end only (the
    /// module comment). `None` when it cannot begin at once (the
    /// connection or the database's write lock is busy): nothing ran, and
    /// the caller hands it to [`DirectWriter::transaction`].
    pub fn transaction_here(&self, stmts: &[Stmt]) -> Option<Result<Vec<Row>, sqlx::Error>> {
        let slot = match self.slot.try_lock() {
            Ok(slot) => slot,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        run_locked(slot, stmts, Wait::Not)
    }

    /// Runs `stmts` in one transaction, from `BEGIN IMMEDIATE` to
    /// `COMMIT`, and returns every row they returned, in order. A
    /// `sqlx::Error::Database` means nothing was committed: a failed
    /// statement, or a failed `COMMIT` (SQLite then either still has the
    /// transaction open, and it is rolled back before the next job, or
    /// rolled it back itself). `WorkerCrashed` means the answer was lost
    /// (the thread is gone): the outcome is not known.
    pub async fn transaction(&self, stmts: Vec<Stmt>) -> Result<Vec<Row>, sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { stmts, reply })
            .map_err(|_| sqlx::Error::WorkerCrashed)?;
        answer.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.execute_batch(
        "PRAGMA foreign_keys = ON; \
         PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 10000; \
         PRAGMA mmap_size = 268435456;",
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(PREPARED);
    Ok(conn)
}

fn serve(slot: &Mutex<Slot>, queue: mpsc::Receiver<Job>) {
    for job in queue {
        if job.reply.is_closed() {
            // Its batch was dropped (the runtime is stopping) and gave up
            // its write turn: it is not begun now.
            continue;
        }
        let result = run_job(slot, &job.stmts);
        // A caller that went away does not care.
        let _ = job.reply.send(result);
    }
}

/// Whether a transaction may wait for the database's write lock.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Up to the busy timeout (the thread).
    Busy,
    /// Not at all (the calling thread, [`DirectWriter::transaction_here`]).
    Not,
}

/// One job on the slot's connection (reopened first if it was dropped).
fn run_job(slot: &Mutex<Slot>, stmts: &[Stmt]) -> Result<Vec<Row>, sqlx::Error> {
    // A panic is caught below, inside the lock, so the lock is never
    // poisoned by one; should it be, the connection is still whole.
    let slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
    run_locked(slot, stmts, Wait::Busy).unwrap_or_else(|| {
        Err(failed(
            "the direct SQLite writer could not begin its transaction",
        ))
    })
}

/// [`run_job`] once the slot is held; `None` when `wait` is
/// [`Wait::Not`] and the write lock was busy (nothing ran).
fn run_locked(
    mut slot: std::sync::MutexGuard<'_, Slot>,
    stmts: &[Stmt],
    wait: Wait,
) -> Option<Result<Vec<Row>, sqlx::Error>> {
    if slot.conn.is_none() {
        slot.conn = connect(&slot.path)
            .inspect_err(
                |e| tracing::error!(error = %e, "the direct SQLite writer cannot reconnect"),
            )
            .ok();
    }
    let Some(open) = slot.conn.as_ref() else {
        return Some(Err(failed(
            "the direct SQLite writer has no connection to the database",
        )));
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        transaction(open, stmts, wait)
    }))
    .unwrap_or_else(|_| Some(Err(failed("the direct SQLite writer panicked"))));
    // Whatever stopped a job, the next one begins outside a transaction:
    // rolled back, or on a new connection (closing this one rolls it
    // back), before the caller hears.
    if !open.is_autocommit() && open.execute_batch("ROLLBACK").is_err() {
        slot.conn = None;
    }
    result
}

/// `None`: `wait` was [`Wait::Not`] and the write lock was busy.
fn transaction(
    conn: &Connection,
    stmts: &[Stmt],
    wait: Wait,
) -> Option<Result<Vec<Row>, sqlx::Error>> {
    if wait == Wait::Not {
        let begun = conn
            .busy_timeout(std::time::Duration::ZERO)
            .and_then(|()| conn.execute_batch("BEGIN IMMEDIATE"));
        let restored = conn.busy_timeout(BUSY_TIMEOUT);
        match begun.and(restored) {
            Ok(()) => {}
            Err(rusqlite::Error::SqliteFailure(f, _)) if f.code == ffi::ErrorCode::DatabaseBusy => {
                return None
            }
            Err(e) => return Some(Err(db_error(e))),
        }
    } else if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        return Some(Err(db_error(e)));
    }
    Some(in_transaction(conn, stmts))
}

/// Runs `stmts` and commits, once begun.
fn in_transaction(conn: &Connection, stmts: &[Stmt]) -> Result<Vec<Row>, sqlx::Error> {
    let mut rows = Vec::new();
    for stmt in stmts {
        run(conn, stmt, &mut rows).map_err(|e| match e {
            Run::Db(e) => db_error(e),
            Run::Shape(m) => failed(m),
        })?;
    }
    conn.execute_batch("COMMIT").map_err(db_error)?;
    Ok(rows)
}

enum Run {
    Db(rusqlite::Error),
    Shape(String),
}

impl From<rusqlite::Error> for Run {
    fn from(e: rusqlite::Error) -> Self {
        Run::Db(e)
    }
}

/// `sql` with each `$N` written `?N`: the same parameter, whose index
/// SQLite then takes from its number. (A `$N` is a named parameter to
/// SQLite, indexed in order of first appearance, and finding each one's
/// name is a scan of them all.) The statements built here have no `$`
/// but in placeholders.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('$', Some(d)) if d.is_ascii_digit() => out.push('?'),
            _ => out.push(c),
        }
    }
    out
}

/// Runs one statement, its `$N` bound to `args[N - 1]`, appending its rows.
fn run(conn: &Connection, stmt: &Stmt, rows: &mut Vec<Row>) -> Result<(), Run> {
    let mut prepared = conn.prepare_cached(&numbered(&stmt.sql))?;
    let count = prepared.parameter_count();
    if count != stmt.args.len() {
        return Err(Run::Shape(format!(
            "{:?} takes {count} values, given {}",
            stmt.sql,
            stmt.args.len()
        )));
    }
    for (i, arg) in stmt.args.iter().take(count).enumerate() {
        let i = i + 1;
        match arg {
            Arg::Text(v) => prepared.raw_bind_parameter(i, v)?,
            Arg::Int(v) => prepared.raw_bind_parameter(i, v)?,
            Arg::OptText(v) => prepared.raw_bind_parameter(i, v)?,
            Arg::OptInt(v) => prepared.raw_bind_parameter(i, v)?,
        }
    }
    let width = prepared.column_count();
    let names: Arc<[String]> = prepared
        .column_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let mut results = prepared.raw_query();
    while let Some(row) = results.next()? {
        let values = (0..width)
            .map(|i| row.get::<_, Value>(i))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.push(Row {
            names: names.clone(),
            values,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory removed when the test ends.
    struct Dir(std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A database file with one table, in a directory of its own.
    fn database() -> (Dir, std::path::PathBuf, DirectWriter) {
        let dir = std::env::temp_dir().join(format!("lockstep-direct-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join("t.db");
        let conn = Connection::open(&path).expect("create");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; \
             CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, k TEXT NOT NULL UNIQUE, v INTEGER)",
        )
        .expect("schema");
        let direct = DirectWriter::open(&path).expect("open");
        (Dir(dir), path, direct)
    }

    fn keys(path: &std::path::Path) -> Vec<String> {
        let conn = Connection::open(path).expect("open");
        let mut stmt = conn.prepare("SELECT k FROM t ORDER BY k").expect("prepare");
        let rows = stmt.query_map([], |r| r.get(0)).expect("query");
        rows.collect::<rusqlite::Result<_>>().expect("rows")
    }

    fn insert(k: &str, v: Option<i64>) -> Stmt {
        // `$2` first: values are bound by their names, not their order.
        Stmt {
            sql: "INSERT INTO t (v, k) VALUES ($2, $1) RETURNING id, k".into(),
            args: vec![Arg::Text(k.into()), Arg::OptInt(v)],
        }
    }

    #[test]
    fn placeholders_are_numbered_for_sqlite() {
        assert_eq!(
            numbered("INSERT INTO t VALUES ($12, $1, '$') RETURNING $2"),
            "INSERT INTO t VALUES (?12, ?1, '$') RETURNING ?2"
        );
    }

    #[tokio::test]
    async fn statements_commit_together_and_return_their_rows_in_order() {
        let (_dir, path, direct) = database();
        let rows = direct
            .transaction(vec![
                insert("a", Some(1)),
                Stmt {
                    sql: "UPDATE t SET v = v + $1".into(),
                    args: vec![Arg::Int(10)],
                },
                insert("b", None),
            ])
            .await
            .expect("committed");
        let got: Vec<(i64, String)> = rows
            .iter()
            .map(|r| (r.int("id").expect("id"), r.text("k").expect("k")))
            .collect();
        assert_eq!(got, vec![(1, "a".to_string()), (2, "b".to_string())]);
        assert!(rows[0].has("k") && !rows[0].has("v"));
        assert!(
            rows[0].text("id").is_err(),
            "an integer is not read as text"
        );
        assert_eq!(keys(&path), vec!["a", "b"]);
        let conn = Connection::open(&path).expect("open");
        let v: i64 = conn
            .query_row("SELECT v FROM t WHERE k = 'a'", [], |r| r.get(0))
            .expect("a");
        assert_eq!(v, 11);
    }

    #[tokio::test]
    async fn a_failing_statement_commits_nothing_and_the_next_transaction_runs() {
        let (_dir, path, direct) = database();
        direct
            .transaction(vec![insert("a", None)])
            .await
            .expect("first");
        let e = direct
            .transaction(vec![insert("b", None), insert("a", None)])
            .await
            .expect_err("a duplicate key");
        assert_unique_violation(&e);
        assert_eq!(
            keys(&path),
            vec!["a"],
            "the batch's first row was rolled back"
        );
        direct
            .transaction(vec![insert("c", None)])
            .await
            .expect("the writer goes on");
        assert_eq!(keys(&path), vec!["a", "c"]);
    }

    /// On the calling thread, on the same connection as the thread's:
    /// the same answers, and a failure there leaves the next transaction,
    /// on either path, outside any transaction.
    #[tokio::test]
    async fn a_transaction_here_shares_the_connection_and_its_failures_roll_back() {
        let (_dir, path, direct) = database();
        let rows = direct
            .transaction_here(&[insert("a", Some(1)), insert("b", None)])
            .expect("begun here")
            .expect("committed here");
        let ids: Vec<i64> = rows.iter().map(|r| r.int("id").expect("id")).collect();
        assert_eq!(ids, [1, 2]);
        let e = direct
            .transaction_here(&[insert("c", None), insert("a", None)])
            .expect("begun here")
            .expect_err("a duplicate key");
        assert_unique_violation(&e);
        assert_eq!(keys(&path), vec!["a", "b"], "c was rolled back");
        // The thread's next transaction is not inside the failed one.
        direct
            .transaction(vec![insert("d", None)])
            .await
            .expect("the thread goes on");
        direct
            .transaction_here(&[insert("e", None)])
            .expect("begun here")
            .expect("and here");
        assert_eq!(keys(&path), vec!["a", "b", "d", "e"]);
    }

    /// While another connection holds the database's write lock, a
    /// transaction here does not wait for it: it says so at once, having
    /// run nothing, and the thread's (which may wait) commits once the
    /// lock is let go.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_here_never_waits_for_the_write_lock() {
        let (_dir, path, direct) = database();
        let other = Connection::open(&path).expect("open");
        other.execute_batch("BEGIN IMMEDIATE").expect("the lock");
        let started = std::time::Instant::now();
        assert!(
            direct.transaction_here(&[insert("a", None)]).is_none(),
            "busy, so handed back"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "it did not wait out the busy timeout"
        );
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _ = released.blocking_recv();
            other.execute_batch("COMMIT").expect("let go");
        });
        let thread = tokio::spawn({
            let direct = direct.clone();
            async move { direct.transaction(vec![insert("a", None)]).await }
        });
        release.send(()).expect("holder");
        thread
            .await
            .expect("task")
            .expect("committed by the thread");
        holder.join().expect("holder");
        assert_eq!(keys(&path), vec!["a"]);
        direct
            .transaction_here(&[insert("b", None)])
            .expect("free again")
            .expect("committed here");
        assert_eq!(keys(&path), vec!["a", "b"]);
    }

    fn assert_unique_violation(e: &sqlx::Error) {
        match e {
            sqlx::Error::Database(db) => {
                assert!(db.is_unique_violation(), "{e}");
                assert!(db.message().contains("t.k"), "{e}");
            }
            other => panic!("not a database error: {other}"),
        }
    }

    #[tokio::test]
    async fn a_statement_without_its_values_is_an_error_not_a_panic() {
        let (_dir, path, direct) = database();
        let e = direct
            .transaction(vec![
                insert("a", None),
                Stmt {
                    sql: "INSERT INTO t (k) VALUES ($3)".into(),
                    args: vec![Arg::Text("x".into())],
                },
            ])
            .await
            .expect_err("$3 has no value");
        assert!(e.to_string().contains("$3"), "{e}");
        assert!(keys(&path).is_empty(), "nothing committed");
        direct
            .transaction(vec![insert("b", None)])
            .await
            .expect("the writer goes on");
        assert_eq!(keys(&path), vec!["b"]);
    }
}
