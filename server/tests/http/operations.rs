//! Health, readiness, metrics, request ids, and clear start-up errors.

use lockstep_server::{Application, ServeConfig, StartError};

use crate::helpers::*;

#[tokio::test]
async fn readyz_follows_the_database() {
    let (app, _db) = spawn_app().await;
    assert_eq!(
        reqwest::get(app.url("/healthz")).await.expect("h").status(),
        200
    );
    assert_eq!(
        reqwest::get(app.url("/readyz")).await.expect("r").status(),
        200
    );

    app.services.db.pool.close().await;
    let res = reqwest::get(app.url("/readyz")).await.expect("r");
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["database"], "unreachable");
    // The process itself is still up.
    assert_eq!(
        reqwest::get(app.url("/healthz")).await.expect("h").status(),
        200
    );
    app.stop().await;
}

/// On PostgreSQL, the real thing: the database is dropped (its connections
/// terminated) under the running server.
#[tokio::test]
async fn readyz_fails_when_postgres_loses_the_database() {
    let (app, db) = spawn_app().await;
    if !db.is_postgres() {
        eprintln!("SQLite run: covered by readyz_follows_the_database");
        app.stop().await;
        return;
    }
    assert_eq!(
        reqwest::get(app.url("/readyz")).await.expect("r").status(),
        200
    );
    let (base, name) = db.url.rsplit_once('/').expect("a database name");
    let admin = lockstep_core::db::Db::connect(&format!("{base}/postgres"))
        .await
        .expect("admin connection");
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin.pool)
        .await
        .expect("drop");
    let res = reqwest::get(app.url("/readyz")).await.expect("r");
    assert_eq!(res.status(), 503);
    app.stop().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_is_counted() {
    let (app, _db) = spawn_app().await;
    let series = "http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}";
    let before = metric(&app, series).await;
    let res = reqwest::get(app.url("/healthz")).await.expect("h");
    let id = res
        .headers()
        .get("x-request-id")
        .expect("request id")
        .to_str()
        .expect("ascii");
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert!(metric(&app, series).await >= before + 1.0);
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .expect("m")
        .text()
        .await
        .expect("t");
    assert!(metrics.contains("http_request_duration_seconds_bucket"));
    if std::env::var("LOCKSTEP_TEST_DATABASE_URL").is_err() {
        // SQLite: start-up's writes queued for their turn and were timed.
        assert!(
            metrics.contains("lockstep_db_write_wait_seconds_bucket"),
            "{metrics}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn start_up_failures_are_one_clear_sentence() {
    let dir = std::env::temp_dir();
    let bad_scheme = ServeConfig::for_tests("mysql://localhost/x", dir.clone());
    let err = Application::build(bad_scheme).await.err().expect("refused");
    assert!(
        err.to_string()
            .contains("must start with sqlite: or postgres:"),
        "{err}"
    );

    let unreachable = ServeConfig::for_tests("postgres://nobody:secret@127.0.0.1:1/x", dir.clone());
    let err = Application::build(unreachable)
        .await
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("cannot connect to the database"), "{msg}");
    assert!(!msg.contains("secret"), "passwords are redacted: {msg}");

    let mut unwritable = ServeConfig::for_tests("", "/proc/lockstep-cannot-write".into());
    unwritable.storage.database_url = None;
    let err = Application::build(unwritable).await.err().expect("refused");
    assert!(matches!(err, StartError::Storage(_)));
    assert!(
        err.to_string().contains("cannot be created or written"),
        "{err}"
    );

    let (app, db) = spawn_app().await;
    // A second server on the same database: SQLite is single-process (the
    // file's serve lock); on PostgreSQL, several nodes need NATS.
    let err = Application::build(ServeConfig::for_tests(&db.url, db.dir.clone()))
        .await
        .err()
        .expect("refused");
    let why = if db.url.starts_with("sqlite") {
        "another Lockstep server is already running on the SQLite database"
    } else {
        "set NATS_URL on every node"
    };
    assert!(err.to_string().contains(why), "{err}");
    let other = lockstep_core::testing::fresh_database().await;
    let mut taken = ServeConfig::for_tests(&other.url, other.dir.clone());
    taken.addr = app.addr;
    let err = Application::build(taken).await.err().expect("refused");
    assert!(err.to_string().contains("already in use"), "{err}");
    app.stop().await;
}

/// Polls `/readyz` until its status is `want`; returns the body.
async fn readyz_until(app: &TestApp, want: u16, within: std::time::Duration) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + within;
    let mut every = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        every.tick().await;
        let res = reqwest::get(app.url("/readyz")).await.expect("readyz");
        let status = res.status().as_u16();
        let body: serde_json::Value = res.json().await.expect("json");
        if status == want {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz still {status} after {within:?}: {body}"
        );
    }
}

/// Issue 10's stall, made visible: another connection holds the outbox
/// locked, so the outbox worker can claim nothing. `/readyz` fails within
/// `stall_after` with the reason in its JSON, and recovers once the lock
/// is gone.
#[tokio::test]
async fn readyz_reports_a_stalled_worker_and_recovers() {
    let db = lockstep_core::testing::fresh_database().await;
    let mut config = ServeConfig::for_tests(&db.url, db.dir.clone());
    config.stall_after_secs = 1;
    let app = start(config).await;
    let ready = readyz_until(&app, 200, std::time::Duration::from_secs(5)).await;
    assert_eq!(ready["status"], "ready");
    assert!(
        ready["workers"]["worker_tick_age_secs"]["outbox"].is_number(),
        "{ready}"
    );

    let other = lockstep_core::db::Db::connect(&db.url)
        .await
        .expect("second connection");
    let mut lock = other.pool.acquire().await.expect("a connection");
    let statements: &[&str] = if db.is_postgres() {
        &["BEGIN", "LOCK TABLE outbox IN EXCLUSIVE MODE"]
    } else {
        &["BEGIN IMMEDIATE"]
    };
    for sql in statements {
        sqlx::query(sql).execute(&mut *lock).await.expect("lock");
    }
    let stalled = readyz_until(&app, 503, std::time::Duration::from_secs(15)).await;
    assert_eq!(stalled["status"], "stalled");
    let reasons = stalled["workers"]["stalls"].to_string();
    assert!(
        reasons.contains("the outbox worker has made no progress"),
        "{stalled}"
    );

    sqlx::query("ROLLBACK")
        .execute(&mut *lock)
        .await
        .expect("unlock");
    drop(lock);
    let recovered = readyz_until(&app, 200, std::time::Duration::from_secs(30)).await;
    assert_eq!(recovered["status"], "ready");
    app.stop().await;
}
