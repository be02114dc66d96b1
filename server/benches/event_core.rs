//! Event-core benchmark: `cargo bench -p lockstep --bench event_core`.
//!
//! For each backend (SQLite file; PostgreSQL when reachable at
//! `LOCKSTEP_BENCH_PG`, default `postgres://postgres@127.0.0.1:5432`), in
//! the same database and the same run:
//! 1. baseline: a plain single-row INSERT loop, one transaction per row;
//! 2. appends: one event each through the real write path (append +
//!    projector + channel log with its seq, group-committed: the writes
//!    that arrive together share a transaction), the same count;
//!    the figure is the ratio appends/s ÷ inserts/s;
//! 3. both again with 8 concurrent writers;
//! 4. opens/s through the HTTP API (admin override opens, 16 clients),
//!    against `GET /healthz` through the same clients as the baseline.

/// The server's allocator, as the shipped binary has it (src/main.rs).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::time::Instant;

use lockstep_core::{
    db::Db,
    eventstore::events::{Actor, DomainEvent},
    eventstore::store,
    identity::accounts::{self, NewUser, Role},
    identity::caller::Caller,
    identity::tokens::{create_token, Abilities},
    lockers::{self, NewBank, NewCompartment},
    now_ms,
    testing::fresh_database,
};
use lockstep_server::{Application, ServeConfig};
use uuid::Uuid;

const N: usize = 2000;
const WRITERS: usize = 8;
const OPENS: usize = 1000;
const CLIENTS: usize = 16;

async fn plain_inserts(db: &Db, n: usize, writers: usize) -> f64 {
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_plain (id TEXT PRIMARY KEY, payload TEXT NOT NULL, at BIGINT NOT NULL)")
        .execute(&db.pool)
        .await
        .expect("create");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..n / writers {
                let mut tx = store::begin_write(&db).await.expect("tx");
                sqlx::query("INSERT INTO bench_plain (id, payload, at) VALUES ($1, $2, $3)")
                    .bind(Uuid::now_v7().to_string())
                    .bind(r#"{"command_id":"00000000-0000-0000-0000-000000000000"}"#)
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
    n as f64 / started.elapsed().as_secs_f64()
}

/// The plain loop through the raw drivers, the limit under sqlx: rusqlite
/// (one connection, the writers taking turns on it as ours take the write
/// turn) or tokio-postgres (a connection per writer).
async fn raw_inserts(
    url: &str,
    sqlite_file: Option<std::path::PathBuf>,
    n: usize,
    writers: usize,
) -> f64 {
    const CREATE: &str = "CREATE TABLE IF NOT EXISTS bench_raw (id TEXT PRIMARY KEY, payload TEXT NOT NULL, at BIGINT NOT NULL)";
    const PAYLOAD: &str = r#"{"command_id":"00000000-0000-0000-0000-000000000000"}"#;
    if let Some(file) = sqlite_file {
        return tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(file).expect("open");
            conn.execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; {CREATE};"
            ))
            .expect("setup");
            let conn = std::sync::Mutex::new(conn);
            let started = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..writers {
                    scope.spawn(|| {
                        for _ in 0..n / writers {
                            let mut c = conn.lock().expect("turn");
                            let tx = c
                                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                                .expect("begin");
                            tx.prepare_cached("INSERT INTO bench_raw (id, payload, at) VALUES (?1, ?2, ?3)")
                                .expect("prepare")
                                .execute(rusqlite::params![Uuid::now_v7().to_string(), PAYLOAD, now_ms()])
                                .expect("insert");
                            tx.commit().expect("commit");
                        }
                    });
                }
            });
            n as f64 / started.elapsed().as_secs_f64()
        })
        .await
        .expect("raw sqlite");
    }
    let mut clients = Vec::new();
    for _ in 0..writers {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("raw connect");
        tokio::spawn(conn);
        clients.push(client);
    }
    clients[0].batch_execute(CREATE).await.expect("create");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut client in clients {
        tasks.push(tokio::spawn(async move {
            let insert = client
                .prepare("INSERT INTO bench_raw (id, payload, at) VALUES ($1, $2, $3)")
                .await
                .expect("prepare");
            for _ in 0..n / writers {
                let tx = client.transaction().await.expect("begin");
                tx.execute(&insert, &[&Uuid::now_v7().to_string(), &PAYLOAD, &now_ms()])
                    .await
                    .expect("insert");
                tx.commit().await.expect("commit");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn appends(
    services: &lockstep_core::Services,
    caller: &Caller,
    bank: &lockers::BankView,
    n: usize,
    writers: usize,
) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (s, caller, bank) = (services.clone(), caller.clone(), bank.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..n / writers {
                // One event, its projection and its channel envelopes (two
                // channels) in one transaction, each on a fresh aggregate.
                let compartment = bank.compartments[w % bank.compartments.len()].id;
                let grant_id = Uuid::now_v7();
                let event = DomainEvent::AccessGranted {
                    grant_id,
                    compartment_id: compartment,
                    bank_id: bank.id,
                    tenant_id: caller.user.tenant_id,
                    user_id: caller.user.id,
                    valid_from: None,
                    valid_until: None,
                };
                // Through the group commit, as the open path writes.
                let (mode, meta, now) = (s.mode(), caller.metadata(), now_ms());
                let ((), written) = s
                    .writes
                    .write(grant_id, move |conn| {
                        let (event, meta) = (event.clone(), meta.clone());
                        Box::pin(async move {
                            let staged = conn
                                .stage(mode, "bench", grant_id, 0, vec![event], &meta, now, None)
                                .await?;
                            Ok(((), staged))
                        })
                    })
                    .await
                    .expect("append");
                s.published(&written);
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// PostgreSQL's WAL position in bytes (`None` on SQLite): what a phase
/// wrote to the WAL is the difference (the whole server's, so other
/// sessions' writes count too; there are none during the benchmark).
async fn wal_position(db: &Db) -> Option<i64> {
    if db.backend != lockstep_core::db::Backend::Postgres {
        return None;
    }
    sqlx::query_scalar::<_, i64>("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::BIGINT")
        .fetch_one(&db.pool)
        .await
        .ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn http_rate(url: String, bearer: Option<String>, post: bool, n: usize) -> (f64, Vec<f64>) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let per = n / CLIENTS;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, url, bearer) = (client.clone(), url.clone(), bearer.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for _ in 0..per {
                let t = Instant::now();
                let mut req = if post {
                    client
                        .post(&url)
                        .json(&serde_json::json!({"override": true, "reason": "benchmark"}))
                } else {
                    client.get(&url)
                };
                if let Some(b) = &bearer {
                    req = req.bearer_auth(b);
                }
                let res = req.send().await.expect("request");
                assert!(res.status().is_success(), "status {}", res.status());
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    (rate, all)
}

async fn backend(name: &str, url: &str, dir: std::path::PathBuf) {
    let sqlite_file = url.starts_with("sqlite:").then(|| dir.join("test.db"));
    let db = Db::open(url).await.expect("open");
    let admin = accounts::add_user(
        &db,
        NewUser {
            email: "bench@x.io".into(),
            name: None,
            role: Role::Admin,
            tenant_name: "Bench".into(),
            password: "bench-password".into(),
        },
    )
    .await
    .expect("admin");
    let caller = Caller::new(admin.clone(), Actor::User { id: admin.id });
    let services = lockstep_core::Services::new(db.clone(), Default::default());
    let bank = lockers::register_bank(
        &services,
        &caller,
        NewBank {
            serial: format!("BENCH-{}", Uuid::now_v7().simple()),
            name: "Bench".into(),
            location: None,
            compartments: (1..=16)
                .map(|n| NewCompartment {
                    number: n,
                    size: "small".into(),
                    label: None,
                })
                .collect(),
        },
    )
    .await
    .expect("bank");

    println!("\n## {name}");
    for writers in [1, WRITERS] {
        let raw = raw_inserts(url, sqlite_file.clone(), N, writers).await;
        let wal_start = wal_position(&db).await;
        let plain = plain_inserts(&db, N, writers).await;
        let wal_plain = wal_position(&db).await;
        let before = services.writes.stats();
        let append = appends(&services, &caller, &bank, N, writers).await;
        let after = services.writes.stats();
        let wal_append = wal_position(&db).await;
        let wal = match (wal_start, wal_plain, wal_append) {
            (Some(a), Some(b), Some(c)) => format!(
                " | WAL bytes per row: plain {}, append {}",
                (b - a) / N as i64,
                (c - b) / N as i64
            ),
            _ => String::new(),
        };
        println!(
            "{writers} writer(s), {N} rows: raw driver INSERT {raw:>8.0}/s | plain INSERT (sqlx Any, the baseline) {plain:>8.0}/s ({:.2}x raw) | event append + projection + channel log {append:>8.0}/s | ratio to the baseline {:.2} | {} of {N} appends shared a transaction ({} transactions, {} of them one statement with no BEGIN/COMMIT, {} by SQLite's direct writer){wal}",
            plain / raw,
            append / plain,
            after.batched - before.batched,
            (after.batches - before.batches) + (after.alone - before.alone),
            after.single_statement - before.single_statement,
            after.direct - before.direct,
        );
    }

    // Opens through the HTTP API, on the same database.
    let app = Application::build(ServeConfig::for_tests(url, dir))
        .await
        .expect("app");
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let token = create_token(
        &db,
        "bench@x.io",
        "bench",
        &Abilities::parse_list("*").expect("abilities"),
    )
    .await
    .expect("token")
    .secret;
    let (health, _) = http_rate(format!("http://{addr}/healthz"), None, false, OPENS).await;
    let compartment = bank.compartments[0].id;
    let (opens, lat) = http_rate(
        format!("http://{addr}/api/v1/compartments/{compartment}/open"),
        Some(token),
        true,
        OPENS,
    )
    .await;
    println!(
        "HTTP, {CLIENTS} clients, {OPENS} requests: GET /healthz {health:>7.0}/s | POST open (202) {opens:>7.0}/s | ratio {:.2} | open latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        opens / health,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    let _ = stop.send(());
    let _ = server.await;
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    println!(
        "# Lockstep event-core benchmark ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    std::env::remove_var("LOCKSTEP_TEST_DATABASE_URL");
    let sqlite = fresh_database().await;
    backend(
        "SQLite (file, WAL, synchronous=NORMAL)",
        &sqlite.url,
        sqlite.dir.clone(),
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
            backend(
                "PostgreSQL (local, default settings)",
                &t.url,
                t.dir.clone(),
            )
            .await;
        }
        _ => println!("\n## PostgreSQL: not reachable at {pg}; skipped"),
    }
}
