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
    let res = reqwest::get(app.url("/healthz")).await.expect("h");
    let id = res
        .headers()
        .get("x-request-id")
        .expect("request id")
        .to_str()
        .expect("ascii");
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .expect("m")
        .text()
        .await
        .expect("t");
    assert!(
        metrics.contains("http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}"),
        "{metrics}"
    );
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
    let mut taken = ServeConfig::for_tests(&db.url, db.dir.clone());
    taken.addr = app.addr;
    let err = Application::build(taken).await.err().expect("refused");
    assert!(err.to_string().contains("already in use"), "{err}");
    app.stop().await;
}
