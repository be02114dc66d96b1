//! The web holes a probe found, each closed and held shut: security
//! headers (a nonce CSP the page's own scripts carry), `/metrics` behind
//! a token, header and body read deadlines, the connection cap, rolling
//! session expiry, and one ability check for the API and the server
//! functions.

use std::{sync::Arc, time::Duration};

use lockstep_core::{
    identity::accounts::{find_user_by_email, Role},
    now_ms,
    testing::fresh_database,
};
use lockstep_server::{Secret, ServeConfig};
use reqwest::cookie::Jar;
use sqlx::Row;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::*;

/// Reads until the server closes the connection (or `within` passes);
/// returns what it sent.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test]
async fn pages_carry_a_nonce_csp_their_scripts_match_and_every_response_the_other_headers() {
    let (app, _db) = spawn_app().await;
    let res = reqwest::get(app.url("/login")).await.expect("login page");
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    let csp = h["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_string();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a nonce in the page's CSP")
        .to_string();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let html = res.text().await.expect("html");
    let scripts = html.matches("<script").count();
    assert!(scripts > 0, "the page hydrates with a script");
    assert_eq!(
        html.matches(&format!("nonce=\"{nonce}\"")).count(),
        scripts,
        "every inline script carries this response's nonce: {html}"
    );
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
    ] {
        assert_eq!(h[name], value, "{name} on the page");
    }
    // Each page gets a nonce of its own.
    let again = reqwest::get(app.url("/login")).await.expect("again");
    assert_ne!(
        again.headers()["content-security-policy"],
        csp.as_str(),
        "a fresh nonce per response"
    );
    // Not a page: the strict policy, and the same headers.
    let api = reqwest::get(app.url("/api/v1/me")).await.expect("api");
    assert_eq!(api.status(), 401);
    assert_eq!(
        api.headers()["content-security-policy"],
        lockstep_server::security::STRICT_CSP
    );
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
    assert_eq!(api.headers()["x-frame-options"], "DENY");
    app.stop().await;
}

#[tokio::test]
async fn metrics_with_a_token_set_answer_only_that_bearer() {
    let db = fresh_database().await;
    let mut config = ServeConfig::for_tests(&db.url, db.dir.clone());
    config.metrics_token = Some(Secret::new("scrape-me-0123456789"));
    let app = start(config).await;
    let client = reqwest::Client::new();
    let refused_before = rejections(&app, "metrics_refused").await;
    let plain = client.get(app.url("/metrics")).send().await.expect("plain");
    assert_eq!(plain.status(), 403);
    let wrong = client
        .get(app.url("/metrics"))
        .bearer_auth("scrape-me-wrong")
        .send()
        .await
        .expect("wrong");
    assert_eq!(wrong.status(), 403);
    let right = client
        .get(app.url("/metrics"))
        .bearer_auth("scrape-me-0123456789")
        .send()
        .await
        .expect("right");
    assert_eq!(right.status(), 200);
    let text = right.text().await.expect("text");
    assert!(text.contains("lockstep_rejections_total"), "{text}");
    let refused = text
        .lines()
        .find_map(|l| l.strip_prefix("lockstep_rejections_total{reason=\"metrics_refused\"} "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(refused >= refused_before + 2, "both refusals counted");
    app.stop().await;
}

#[tokio::test]
async fn metrics_without_a_token_answer_loopback_but_never_a_relayed_request() {
    let (app, _db) = spawn_app().await;
    let client = reqwest::Client::new();
    let direct = client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("direct");
    assert_eq!(direct.status(), 200);
    // A proxy on this host relaying a stranger: refused.
    let relayed = client
        .get(app.url("/metrics"))
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .await
        .expect("relayed");
    assert_eq!(relayed.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn a_silent_or_trickling_client_is_cut_off_and_holds_nothing() {
    let db = fresh_database().await;
    let mut config = ServeConfig::for_tests(&db.url, db.dir.clone());
    config.header_timeout_secs = 1;
    config.request_timeout_secs = 1;
    let app = start(config).await;

    // Connected, silent: closed once the head's deadline passed.
    let mut silent = TcpStream::connect(app.addr).await.expect("connect");
    let said = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(said.is_some(), "an idle connection is closed");

    // Half a request head, then nothing: closed too.
    let mut half = TcpStream::connect(app.addr).await.expect("connect");
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    assert!(
        read_until_closed(&mut half, Duration::from_secs(5))
            .await
            .is_some(),
        "a trickled head is cut off"
    );

    // A body promised and not sent: an error answer within the body's
    // deadline, not a handler held for good.
    let mut body = TcpStream::connect(app.addr).await.expect("connect");
    body.write_all(
        format!(
            "POST /sfn/login HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\
             Connection: close\r\n\r\nemail=a",
            addr = app.addr
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let answer = read_until_closed(&mut body, Duration::from_secs(5))
        .await
        .expect("answered and closed within the body deadline");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4") || answer.starts_with("HTTP/1.1 5"),
        "{answer}"
    );

    // And the server is fine.
    let ok = reqwest::get(app.url("/healthz")).await.expect("healthz");
    assert_eq!(ok.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_one_to_close() {
    let db = fresh_database().await;
    let mut config = ServeConfig::for_tests(&db.url, db.dir.clone());
    config.max_connections = 2;
    config.header_timeout_secs = 30;
    let app = start(config).await;
    let limit_before = metric(&app, "lockstep_http_connection_limit_total").await;
    // Two idle connections take both slots (the metrics read above closed).
    let held_a = TcpStream::connect(app.addr).await.expect("a");
    let held_b = TcpStream::connect(app.addr).await.expect("b");
    // The kernel accepts a third; the server serves it only once a slot is free.
    let mut third = TcpStream::connect(app.addr).await.expect("third");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut first = [0u8; 12];
    let early = tokio::time::timeout(Duration::from_millis(700), third.read(&mut first)).await;
    assert!(
        early.is_err(),
        "not served while two connections hold the cap"
    );
    drop(held_a);
    let answer = read_until_closed(&mut third, Duration::from_secs(10))
        .await
        .expect("served once a slot is free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held_b);
    assert!(metric(&app, "lockstep_http_connection_limit_total").await > limit_before);
    app.stop().await;
}

#[tokio::test]
async fn an_active_session_is_renewed_an_idle_one_is_not_written() {
    let (app, _db) = spawn_app().await;
    let client = browser(Arc::new(Jar::default()));
    login(&app, &client, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(me_status(&app, &client).await, 200);
    // Leaked for the test's length, so a small async helper can borrow it.
    let pool: &'static sqlx::AnyPool = Box::leak(Box::new(app.services.db.pool.clone()));
    let (id, data): (String, String) = {
        let row = sqlx::query("SELECT id, data FROM sessions")
            .fetch_one(pool)
            .await
            .expect("one session");
        (row.get("id"), row.get("data"))
    };
    let expiry = |pool: &'static sqlx::AnyPool| async move {
        sqlx::query("SELECT expiry_date FROM sessions")
            .fetch_one(pool)
            .await
            .expect("session")
            .get::<i64, _>("expiry_date")
    };
    // Within a minute of its last renewal a request writes nothing.
    let unchanged = expiry(pool).await;
    assert_eq!(me_status(&app, &client).await, 200);
    assert_eq!(expiry(pool).await, unchanged);

    // Make the session old: renewed two minutes ago, ending in a minute.
    let mut value: serde_json::Value = serde_json::from_str(&data).expect("json");
    value["renewed_at"] = serde_json::json!(now_ms() - 120_000);
    sqlx::query("UPDATE sessions SET data = $1, expiry_date = $2 WHERE id = $3")
        .bind(value.to_string())
        .bind(now_ms() + 60_000)
        .bind(&id)
        .execute(pool)
        .await
        .expect("age it");
    // Used now: its expiry moves a whole session lifetime (1 h in tests) on.
    assert_eq!(me_status(&app, &client).await, 200);
    let renewed = expiry(pool).await;
    assert!(
        renewed > now_ms() + 55 * 60_000,
        "renewed to about an hour from now, got {} ms from now",
        renewed - now_ms()
    );
    app.stop().await;
}

/// Calls a server function the way the browser does.
async fn server_fn(app: &TestApp, client: &reqwest::Client, name: &str) -> u16 {
    client
        .post(app.url(&format!("/sfn/{name}")))
        .header("Origin", app.origin())
        .header("Accept", "application/json")
        .send()
        .await
        .expect("server fn")
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_api_and_the_server_functions_refuse_the_same_caller_for_the_same_ability() {
    let (app, _db) = spawn_app().await;
    add_user(&app, "uma@lockstep.test", Role::User, "Lockstep").await;
    let user = browser(Arc::new(Jar::default()));
    login(&app, &user, "uma@lockstep.test", USER_PASSWORD).await;
    assert_eq!(me_status(&app, &user).await, 200);
    let admin = browser(Arc::new(Jar::default()));
    login(&app, &admin, ADMIN_EMAIL, ADMIN_PASSWORD).await;

    let get = |client: &reqwest::Client, path: &str| {
        let req = client.get(app.url(path));
        async move { req.send().await.expect("api").status().as_u16() }
    };
    // user.read: the admin dashboard's server function and GET /users.
    assert_eq!(server_fn(&app, &user, "admin_overview").await, 403);
    assert_eq!(get(&user, "/api/v1/users").await, 403);
    assert_eq!(server_fn(&app, &admin, "admin_overview").await, 200);
    assert_eq!(get(&admin, "/api/v1/users").await, 200);
    // compartment.read and events.read: a user has them on both paths.
    assert_eq!(server_fn(&app, &user, "user_home").await, 200);
    assert_eq!(get(&user, "/api/v1/me/compartments").await, 200);
    let me = find_user_by_email(&app.services.db, "uma@lockstep.test")
        .await
        .expect("q")
        .expect("uma");
    let channel = format!("/api/v1/events/since?channel=private-user.{}&seq=0", me.id);
    assert_eq!(get(&user, &channel).await, 200);
    // Signed out: refused on both, as unauthenticated.
    let nobody = browser(Arc::new(Jar::default()));
    assert_eq!(server_fn(&app, &nobody, "admin_overview").await, 401);
    assert_eq!(get(&nobody, "/api/v1/users").await, 401);
    app.stop().await;
}
