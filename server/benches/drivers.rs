//! The database driver under a plain INSERT loop (issue 17's first
//! question: does sqlx's `Any` driver cost what it seems to?):
//! `cargo bench -p lockstep --bench drivers`.
//!
//! For each backend (a SQLite file; PostgreSQL when reachable at
//! `LOCKSTEP_BENCH_PG`, default `postgres://postgres@127.0.0.1:5432`), in
//! the same database and the same run, a one-row INSERT per transaction:
//! - through `sqlx::Any`, as lockstep-core runs it (`Db`: on SQLite its
//!   write turn, `BEGIN IMMEDIATE`, the writer pool of two);
//! - through sqlx's own typed driver (`SqlitePool` / `PgPool`), with the
//!   same pragmas, pool size and write turn.
//!
//! With 1 and 8 writers, each twice, alternating (the better of the two
//! is kept); prints rows/s and the ratio typed ÷ Any.

use std::{str::FromStr, sync::Arc, time::Instant};

use lockstep_core::{db::Db, eventstore::store, now_ms, testing::fresh_database};
use sqlx::{
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    PgPool, SqlitePool,
};
use tokio::sync::Mutex;
use uuid::Uuid;

const N: usize = 4000;
const PAYLOAD: &str = r#"{"command_id":"00000000-0000-0000-0000-000000000000"}"#;

fn create(table: &str) -> String {
    format!("CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, payload TEXT NOT NULL, at BIGINT NOT NULL)")
}

fn insert(table: &str) -> String {
    format!("INSERT INTO {table} (id, payload, at) VALUES ($1, $2, $3)")
}

/// Rows/s through `Any` (lockstep-core's `Db` and its write path).
async fn through_any(db: &Db, writers: usize) -> f64 {
    sqlx::query(&create("bench_any"))
        .execute(&db.pool)
        .await
        .expect("create");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let sql = insert("bench_any");
            for _ in 0..N / writers {
                let mut tx = store::begin_write(&db).await.expect("tx");
                sqlx::query(&sql)
                    .bind(Uuid::now_v7().to_string())
                    .bind(PAYLOAD)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await
                    .expect("insert");
                tx.commit().await.expect("commit");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    N as f64 / started.elapsed().as_secs_f64()
}

/// Rows/s through sqlx's SQLite driver, with `Db`'s pragmas, pool size and
/// write turn.
async fn through_sqlite(pool: &SqlitePool, turn: &Arc<Mutex<()>>, writers: usize) -> f64 {
    sqlx::query(&create("bench_typed"))
        .execute(pool)
        .await
        .expect("create");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (pool, turn) = (pool.clone(), turn.clone());
        tasks.push(tokio::spawn(async move {
            let sql = insert("bench_typed");
            for _ in 0..N / writers {
                let _turn = turn.lock().await;
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.expect("tx");
                sqlx::query(&sql)
                    .bind(Uuid::now_v7().to_string())
                    .bind(PAYLOAD)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await
                    .expect("insert");
                tx.commit().await.expect("commit");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    N as f64 / started.elapsed().as_secs_f64()
}

/// Rows/s through sqlx's PostgreSQL driver, with `Db`'s pool size.
async fn through_pg(pool: &PgPool, writers: usize) -> f64 {
    sqlx::query(&create("bench_typed"))
        .execute(pool)
        .await
        .expect("create");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let sql = insert("bench_typed");
            for _ in 0..N / writers {
                let mut tx = pool.begin().await.expect("tx");
                sqlx::query(&sql)
                    .bind(Uuid::now_v7().to_string())
                    .bind(PAYLOAD)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await
                    .expect("insert");
                tx.commit().await.expect("commit");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    N as f64 / started.elapsed().as_secs_f64()
}

enum Typed {
    Sqlite(SqlitePool, Arc<Mutex<()>>),
    Pg(PgPool),
}

impl Typed {
    async fn run(&self, writers: usize) -> f64 {
        match self {
            Typed::Sqlite(pool, turn) => through_sqlite(pool, turn, writers).await,
            Typed::Pg(pool) => through_pg(pool, writers).await,
        }
    }
}

async fn compare(name: &str, db: &Db, typed: &Typed) {
    println!("\n## {name}: one-row INSERT per transaction, {N} rows per run");
    println!("| writers | Any (rows/s) | typed (rows/s) | typed ÷ Any |");
    println!("|---|---|---|---|");
    for writers in [1, 8] {
        let (mut any, mut own) = (0f64, 0f64);
        for _ in 0..2 {
            any = any.max(through_any(db, writers).await);
            own = own.max(typed.run(writers).await);
        }
        println!(
            "| {writers} | {any:.0} | {own:.0} | **{:.2}x** |",
            own / any
        );
    }
}

#[tokio::main]
async fn main() {
    println!(
        "# Lockstep driver benchmark ({} cores): sqlx Any against sqlx's typed drivers",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let sqlite = fresh_database().await;
    let db = Db::open(&sqlite.url).await.expect("sqlite");
    let options = SqliteConnectOptions::from_str(&sqlite.url)
        .expect("url")
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(std::time::Duration::from_secs(10))
        .foreign_keys(true)
        .pragma("wal_autocheckpoint", "10000");
    let pool = SqlitePoolOptions::new()
        .max_connections(2)
        .min_connections(1)
        .connect_with(options)
        .await
        .expect("sqlite pool");
    compare(
        "SQLite (file, WAL, synchronous=NORMAL)",
        &db,
        &Typed::Sqlite(pool, Arc::default()),
    )
    .await;

    let pg = std::env::var("LOCKSTEP_BENCH_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    std::env::set_var("LOCKSTEP_TEST_DATABASE_URL", &pg);
    match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        Db::connect(&format!("{pg}/postgres")),
    )
    .await
    {
        Ok(Ok(_)) => {
            let t = fresh_database().await;
            let db = Db::open(&t.url).await.expect("pg");
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .connect(&t.url)
                .await
                .expect("pg pool");
            compare(
                "PostgreSQL (local, default settings)",
                &db,
                &Typed::Pg(pool),
            )
            .await;
        }
        _ => println!("\n(PostgreSQL not reachable at {pg}: skipped)"),
    }
}
