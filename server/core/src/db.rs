//! Connecting to the database and migrating it. One `sqlx::AnyPool` serves
//! both backends: queries use `$N` placeholders (which SQLite accepts too),
//! timestamps are integer milliseconds and ids are text, so every repository
//! runs unchanged on SQLite (the embedded default) and PostgreSQL.
//!
//! SQLite has one writer at a time. Left to itself, a second writer spins
//! in SQLite's busy handler, sleeping 1, 2, 5 … 100 ms between tries, which
//! under load costs far more than the writes. So on SQLite every write in
//! this process first takes [`Db::write_turn`], a fair async queue, and the
//! database lock is then always free when a writer gets to it.

use std::{
    ops::{Deref, DerefMut},
    path::Path,
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use sqlx::{
    any::{AnyArguments, AnyConnectOptions, AnyPoolOptions, AnyQueryResult},
    query::Query,
    Any, AnyConnection, AnyPool, Executor, Row, Transaction,
};
use thiserror::Error;

use crate::eventstore::sqlite_direct::DirectWriter;

/// Which database `DATABASE_URL` points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("DATABASE_URL must start with sqlite: or postgres:, got {0:?}")]
    UnknownScheme(String),
    #[error("DATABASE_URL {url:?} is not a valid database address: {source}")]
    BadUrl { url: String, source: sqlx::Error },
    #[error("the data directory {dir} cannot be created or written: {source}")]
    DataDir { dir: String, source: std::io::Error },
    #[error("cannot connect to the database at {url}: {source}")]
    Unreachable { url: String, source: sqlx::Error },
    #[error("migrations failed on {url}: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
}

/// A connection idle at least this long is pinged before it is handed
/// out ([`pool_options`]).
pub const PING_WHEN_IDLE: Duration = Duration::from_secs(2);

/// Pool options for both backends. sqlx pings every connection it hands
/// out by default: a round trip before each query on the pool, the most
/// frequent statement under load (docs/benchmarks.md, "Third pass"). Here
/// only a connection idle for [`PING_WHEN_IDLE`] or more is pinged (one
/// that fails is closed and another taken); one in steady use has just
/// answered, and should it have died since, its query fails as it would
/// have a moment after a ping.
fn pool_options() -> AnyPoolOptions {
    AnyPoolOptions::new()
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

fn sqlite_pool_options(max: u32) -> AnyPoolOptions {
    pool_options()
        .max_connections(max)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // Checkpoints run in the background (see
                // `spawn_checkpointer`); a committing writer starts one
                // itself only if the WAL has grown past ~40 MB. Pages of the
                // database file are read through a memory map (up to 256
                // MiB of it) rather than a `read()` each, which a writer
                // does after every commit of another connection
                // (docs/benchmarks.md, "Seventh pass").
                conn.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                     PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; \
                     PRAGMA wal_autocheckpoint = 10000; PRAGMA mmap_size = 268435456;",
                )
                .await?;
                Ok(())
            })
        })
}

/// `query.execute_write(&db)`: [`Db::write`] in method position.
pub trait ExecuteWrite {
    fn execute_write(
        self,
        db: &Db,
    ) -> impl std::future::Future<Output = Result<AnyQueryResult, sqlx::Error>> + Send;
}

impl<'q> ExecuteWrite for Query<'q, Any, AnyArguments<'q>> {
    fn execute_write(
        self,
        db: &Db,
    ) -> impl std::future::Future<Output = Result<AnyQueryResult, sqlx::Error>> + Send {
        db.write(self)
    }
}

/// A pool and the backend it talks to.
#[derive(Clone, Debug)]
pub struct Db {
    /// Reads (and, on PostgreSQL, everything).
    pub pool: AnyPool,
    pub backend: Backend,
    /// SQLite: the writer's own small pool.
    writer: AnyPool,
    /// SQLite only: the queue writers take turns in (see the module doc).
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
    /// SQLite in a file: the direct writer of group-committed batch ends
    /// (`eventstore::sqlite_direct`).
    direct: Option<DirectWriter>,
}

/// A writer's turn: held until its transaction has committed or rolled back.
pub type WriteTurn = Option<tokio::sync::OwnedMutexGuard<()>>;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

impl Backend {
    pub fn of_url(url: &str) -> Result<Self, ConnectError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(ConnectError::UnknownScheme(redact(url)))
        }
    }
}

/// The password part of a URL replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The default database: a SQLite file in the data directory.
pub fn default_sqlite_url(data_dir: &Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("lockstep.db").display()
    )
}

/// A SQLite URL that creates its file when missing (`mode=rwc`, unless
/// the URL names a mode itself), after checking that the file's directory
/// exists: a missing directory is its own clear error, not SQLite's
/// "unable to open database file".
pub fn sqlite_creating(url: &str) -> Result<String, ConnectError> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let in_memory = path.is_empty() || path == ":memory:";
    if !in_memory {
        let dir = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(ConnectError::DataDir {
                dir: dir.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the directory of the SQLite file does not exist; create it first",
                ),
            });
        }
    }
    if !in_memory && !Path::new(path).exists() {
        // Said loudly: a mistyped path is a new, empty database.
        tracing::info!(path, "no SQLite database there yet: creating an empty one");
    }
    let has_mode = query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("mode=")));
    Ok(match (has_mode || in_memory, query) {
        (true, _) => url.to_string(),
        (false, Some(_)) => format!("{url}&mode=rwc"),
        (false, None) => format!("{url}?mode=rwc"),
    })
}

/// The file a SQLite URL opens for writing, as sqlx reads the URL (its
/// path percent-decoded); `None` for an in-memory database (which another
/// connection would not share) or a read-only one.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let special = query
        .split('&')
        .any(|kv| kv == "mode=memory" || kv == "mode=ro" || kv.starts_with("vfs="));
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    let name = path.to_string_lossy();
    if special || name.is_empty() || name == ":memory:" || name.starts_with("file:") {
        return None;
    }
    Some(path.to_path_buf())
}

/// Makes sure the data directory exists and is writable.
pub fn ensure_data_dir(dir: &Path) -> Result<(), ConnectError> {
    let err = |source| ConnectError::DataDir {
        dir: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok").map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)?;
    Ok(())
}

impl Db {
    /// Opens a pool (creating the SQLite file if needed) and checks that the
    /// database answers.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let creating;
        let url = if backend == Backend::Sqlite {
            creating = sqlite_creating(url)?;
            creating.as_str()
        } else {
            url
        };
        let options = AnyConnectOptions::from_str(url).map_err(|source| ConnectError::BadUrl {
            url: redact(url),
            source,
        })?;
        let unreachable = |source| ConnectError::Unreachable {
            url: redact(url),
            source,
        };
        let (pool, writer) = match backend {
            Backend::Sqlite => {
                // Readers and the writer apart: the one whose turn it is to
                // write never waits for a connection behind readers.
                let pool = sqlite_pool_options(8)
                    .connect_with(options.clone())
                    .await
                    .map_err(unreachable)?;
                let writer = sqlite_pool_options(2)
                    .min_connections(1)
                    .connect_with(options)
                    .await
                    .map_err(unreachable)?;
                (pool, writer)
            }
            Backend::Postgres => {
                let pool = pool_options()
                    .max_connections(16)
                    .connect_with(options)
                    .await
                    .map_err(unreachable)?;
                (pool.clone(), pool)
            }
        };
        let mut db = Db::with_writer(pool, writer, backend);
        if backend == Backend::Sqlite {
            db.spawn_checkpointer();
            // Without it, batch ends run on the writer's sqlx connection:
            // slower, not wrong.
            db.direct = sqlite_file(url).and_then(|path| {
                DirectWriter::open(&path)
                    .inspect_err(|e| {
                        tracing::warn!(error = %e, path = %path.display(), "SQLite's direct writer did not open; batch ends run through sqlx")
                    })
                    .ok()
            });
        }
        Ok(db)
    }

    /// SQLite: copies the WAL back into the database in a passive
    /// checkpoint, which waits for no writer and holds none up, every
    /// 50 ms, or sooner while the WAL grows fast ([`next_checkpoint`]).
    /// Left to SQLite, the writer whose commit crosses the autocheckpoint
    /// size runs the checkpoint (and its fsyncs) itself, and every writer
    /// queued behind it waits: under load that was the slowest step of an
    /// open, and at 200 ms apart a writer still did it whenever the WAL
    /// grew past 10,000 pages in between (docs/benchmarks.md, "Tenth
    /// pass").
    fn spawn_checkpointer(&self) {
        let pool = self.pool.clone();
        // Gone with the last clone of this `Db` (the pool's clone here
        // would keep the pool open).
        let alive = self.write_gate.as_ref().map(Arc::downgrade);
        tokio::spawn(async move {
            let mut wait = CHECKPOINT_EVERY;
            loop {
                tokio::time::sleep(wait).await;
                if pool.is_closed() || alive.as_ref().is_some_and(|a| a.strong_count() == 0) {
                    break;
                }
                // `log`: the WAL's pages when the checkpoint began.
                match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&pool)
                    .await
                    .and_then(|row| row.try_get::<i64, _>(1))
                {
                    Ok(log) => wait = next_checkpoint(wait, log),
                    Err(e) => {
                        wait = CHECKPOINT_EVERY;
                        tracing::debug!(error = %e, "background checkpoint skipped");
                    }
                }
            }
        });
    }

    /// Wraps an existing pool (which then also serves the writes).
    pub fn new(pool: AnyPool, backend: Backend) -> Self {
        Db::with_writer(pool.clone(), pool, backend)
    }

    fn with_writer(pool: AnyPool, writer: AnyPool, backend: Backend) -> Self {
        let write_gate =
            (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(())));
        Db {
            pool,
            backend,
            writer,
            write_gate,
            direct: None,
        }
    }

    /// SQLite in a file: the direct writer of group-committed batch ends.
    pub fn direct(&self) -> Option<&DirectWriter> {
        self.direct.as_ref()
    }

    /// The pool writes run on (on PostgreSQL the same as `pool`).
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// Waits for this process's turn to write (SQLite); free on PostgreSQL,
    /// whose row locks order writers themselves.
    pub async fn write_turn(&self) -> WriteTurn {
        let gate = self.write_gate.as_ref()?;
        let asked = std::time::Instant::now();
        let turn = gate.clone().lock_owned().await;
        // How long writers queue: the first sign that SQLite is the limit.
        metrics::histogram!("lockstep_db_write_wait_seconds").record(asked.elapsed().as_secs_f64());
        Some(turn)
    }

    /// The write turn if no other writer has it now (always on
    /// PostgreSQL); `None` otherwise.
    pub fn try_write_turn(&self) -> Option<WriteTurn> {
        match &self.write_gate {
            None => Some(None),
            Some(gate) => gate.clone().try_lock_owned().ok().map(Some),
        }
    }

    /// Runs one writing statement on its own (autocommit), in turn.
    pub async fn write<'q>(
        &self,
        query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Result<AnyQueryResult, sqlx::Error> {
        let _turn = self.write_turn().await;
        query.execute(&self.writer).await
    }

    /// Applies the backend's migrations from `migrations/`.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await,
        }
    }

    /// Connects and migrates, with the URL in any error.
    pub async fn open(url: &str) -> Result<Self, ConnectError> {
        let db = Self::connect(url).await?;
        db.migrate().await.map_err(|source| ConnectError::Migrate {
            url: redact(url),
            source,
        })?;
        Ok(db)
    }

    /// True when the database answers a trivial query within two seconds.
    pub async fn ping(&self) -> bool {
        if self.pool.is_closed() {
            return false;
        }
        let probe = sqlx::query("SELECT 1").execute(&self.pool);
        matches!(
            tokio::time::timeout(Duration::from_secs(2), probe).await,
            Ok(Ok(_))
        )
    }
}

/// A transaction that will write, holding this process's write turn
/// ([`Db::write_turn`]) until it commits or is dropped. It dereferences to
/// the connection, so queries run on `&mut *tx`.
pub struct WriteTx {
    tx: Transaction<'static, Any>,
    _turn: WriteTurn,
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let WriteTx { tx, _turn } = self;
        tx.commit().await
        // The turn passes on only now, with the lock released.
    }
}

impl Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

/// How a write transaction begins on SQLite: with the write lock, so that
/// it never fails to upgrade a read lock later.
pub const SQLITE_BEGIN: &str = "BEGIN IMMEDIATE";

/// The background checkpointer's pace when the WAL grows slowly. A
/// checkpoint with nothing to copy costs a query and no `fsync`.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// Its fastest pace.
const CHECKPOINT_AT_MOST_EVERY: Duration = Duration::from_millis(10);
/// The WAL pages it aims to find at a checkpoint: well under the 10,000
/// past which a committing writer checkpoints itself (`PRAGMA
/// wal_autocheckpoint`).
const CHECKPOINT_PAGES: i64 = 2_500;

/// The wait before the next background checkpoint, given the last wait
/// and the WAL's pages the checkpoint after it found (written since the
/// one before, or longer if that one could not copy them all; -1 when
/// not in WAL mode): the wait in which, at that pace, the WAL would reach
/// [`CHECKPOINT_PAGES`], between [`CHECKPOINT_AT_MOST_EVERY`] and
/// [`CHECKPOINT_EVERY`]. It follows the pace both ways, a step at a time.
fn next_checkpoint(last: Duration, pages: i64) -> Duration {
    last.mul_f64(CHECKPOINT_PAGES as f64 / pages.max(1) as f64)
        .clamp(CHECKPOINT_AT_MOST_EVERY, CHECKPOINT_EVERY)
}

/// A transaction that will write. It waits for the write turn first (so a
/// writer never holds a pooled connection while it queues); on SQLite it
/// then takes the write lock at once (`BEGIN IMMEDIATE`).
pub async fn begin_write(db: &Db) -> Result<WriteTx, sqlx::Error> {
    let turn = db.write_turn().await;
    let tx = match db.backend {
        Backend::Sqlite => db.writer().begin_with(SQLITE_BEGIN).await?,
        Backend::Postgres => db.writer().begin().await?,
    };
    Ok(WriteTx { tx, _turn: turn })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpointer_speeds_up_while_the_wal_grows_fast() {
        let slow = CHECKPOINT_EVERY;
        assert_eq!(next_checkpoint(slow, 0), slow, "a quiet WAL");
        assert_eq!(next_checkpoint(slow, -1), slow, "not in WAL mode");
        assert_eq!(next_checkpoint(slow, CHECKPOINT_PAGES), slow);
        // Twice the aim in 50 ms: next in 25 ms.
        let fast = next_checkpoint(slow, 2 * CHECKPOINT_PAGES);
        assert_eq!(fast, Duration::from_millis(25));
        // Still too many: faster, down to the floor.
        assert_eq!(
            next_checkpoint(fast, 2 * CHECKPOINT_PAGES),
            Duration::from_micros(12_500)
        );
        assert_eq!(
            next_checkpoint(CHECKPOINT_AT_MOST_EVERY, 100_000),
            CHECKPOINT_AT_MOST_EVERY
        );
        // Half the aim: twice the wait, back up to the slow pace.
        assert_eq!(
            next_checkpoint(Duration::from_millis(20), CHECKPOINT_PAGES / 2),
            Duration::from_millis(40)
        );
        assert_eq!(next_checkpoint(fast, 1), slow);
    }

    #[tokio::test]
    async fn a_sqlite_url_without_mode_creates_its_file() {
        let dir = std::env::temp_dir().join(format!("lockstep-db-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("new.db");
        let db = Db::open(&format!("sqlite://{}", file.display()))
            .await
            .expect("a missing file is created");
        assert!(db.ping().await);
        assert!(file.exists());
        assert!(db.direct().is_some(), "a SQLite file has its direct writer");
        // A missing directory is said plainly.
        let err = Db::open(&format!("sqlite://{}/nope/x.db", dir.display()))
            .await
            .expect_err("no directory");
        assert!(err.to_string().contains("nope"), "{err}");
        assert_eq!(
            sqlite_creating("sqlite://x.db?mode=ro").ok().as_deref(),
            Some("sqlite://x.db?mode=ro")
        );
        assert_eq!(
            sqlite_creating("sqlite::memory:").ok().as_deref(),
            Some("sqlite::memory:")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_direct_writer_opens_the_file_sqlx_opens_and_no_other() {
        let file = |url: &str| sqlite_file(url).map(|p| p.display().to_string());
        assert_eq!(
            file("sqlite:///tmp/a%20b.db?mode=rwc").as_deref(),
            Some("/tmp/a b.db")
        );
        assert_eq!(file("sqlite://data/x.db").as_deref(), Some("data/x.db"));
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("sqlite://x.db?mode=memory"), None);
        assert_eq!(file("sqlite://x.db?mode=ro"), None);
    }

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact("postgres://bob:secret@db:5432/x"),
            "postgres://bob:***@db:5432/x"
        );
        assert_eq!(
            redact("postgres://bob@db:5432/x"),
            "postgres://bob@db:5432/x"
        );
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn backend_from_scheme() {
        assert_eq!(
            Backend::of_url("sqlite::memory:").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::of_url("postgresql://x").ok(),
            Some(Backend::Postgres)
        );
        assert!(Backend::of_url("mysql://x").is_err());
    }
}
