//! The whole open flow over HTTP with bearer tokens: bank, grant, open,
//! lifecycle in the read model and in `events/since`, revoke, deny; plus
//! the refusals around it.

use lockstep_core::{
    identity::accounts::Role,
    identity::tokens::{create_token, Abilities},
    now_ms, opens,
};
use reqwest::{Client, Method};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

pub(crate) async fn token(app: &TestApp, email: &str, abilities: &str) -> String {
    create_token(
        &app.services.db,
        email,
        "test",
        &Abilities::parse_list(abilities).expect("abilities"),
    )
    .await
    .expect("token")
    .secret
}

pub(crate) async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    bearer: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = Client::new()
        .request(method, app.url(path))
        .bearer_auth(bearer);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Waits (on the committed-log feed, not a timer) until `channel` reaches `seq`.
async fn await_seq(
    app: &TestApp,
    rx: &mut tokio::sync::broadcast::Receiver<lockstep_core::eventstore::channels::Appended>,
    channel: &str,
    seq: i64,
) {
    let deadline = tokio::time::Duration::from_secs(10);
    tokio::time::timeout(deadline, async {
        loop {
            let head = lockstep_core::eventstore::channels::since(
                &app.services.db,
                &channel.parse().expect("channel"),
                0,
                1000,
            )
            .await
            .expect("since")
            .seq;
            if head >= seq {
                return;
            }
            let _ = rx.recv().await;
        }
    })
    .await
    .expect("the channel reached the seq in time");
}

async fn setup(app: &TestApp) -> (String, String, Value) {
    add_user(app, "uma@lockstep.test", Role::User, "Default").await;
    let admin = token(app, ADMIN_EMAIL, "*").await;
    let user = token(
        app,
        "uma@lockstep.test",
        "profile.read,compartment.read,compartment.open,events.read",
    )
    .await;
    let (status, bank) = call(app, Method::POST, "/api/v1/locker-banks", &admin, Some(json!({
        "serial": "LB-0001", "name": "Lobby", "location": "Ground floor",
        "compartments": [{"number": 1, "size": "small"}, {"number": 2, "size": "large", "label": "Parcels"}]
    }))).await;
    assert_eq!(status, 201, "{bank}");
    (admin, user, bank)
}

#[tokio::test]
async fn the_whole_flow_with_bearer_tokens() {
    let (app, _db) = spawn_app().await;
    let mut rx = app.services.log_tail.subscribe();
    let (admin, user, bank) = setup(&app).await;
    let c1 = bank["compartments"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(
        call(
            &app,
            Method::GET,
            &format!("/api/v1/locker-banks/{}", bank["id"].as_str().unwrap_or("")),
            &admin,
            None
        )
        .await
        .1["serial"],
        "LB-0001"
    );
    assert_eq!(
        call(&app, Method::GET, "/api/v1/locker-banks", &admin, None)
            .await
            .1
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let (status, grant) = call(
        &app,
        Method::POST,
        &format!("/api/v1/compartments/{c1}/grants"),
        &admin,
        Some(json!({"user_email": "uma@lockstep.test"})),
    )
    .await;
    assert_eq!(status, 201, "{grant}");
    let (_, mine) = call(&app, Method::GET, "/api/v1/me/compartments", &user, None).await;
    assert_eq!(mine.as_array().map(Vec::len), Some(1));
    assert_eq!(mine[0]["compartment"]["id"], c1.as_str());

    let (status, opened) = call(
        &app,
        Method::POST,
        &format!("/api/v1/compartments/{c1}/open"),
        &user,
        None,
    )
    .await;
    assert_eq!(status, 202, "{opened}");
    assert_eq!(opened["status"], "accepted");
    let command_id: Uuid = opened["command_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");

    // The server's workers send it (to the recording gateway): `sent`.
    let me = call(&app, Method::GET, "/api/v1/me", &user, None).await.1;
    let user_channel = format!("private-user.{}", me["id"].as_str().expect("id"));
    await_seq(&app, &mut rx, &user_channel, 3).await; // granted, accepted, sent
                                                      // The locker answers (the MQTT bridge will call this).
    opens::record_result(&app.services, command_id, true, None, now_ms())
        .await
        .expect("result");

    let (status, view) = call(
        &app,
        Method::GET,
        &format!("/api/v1/compartments/open-requests/{command_id}"),
        &user,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(view["status"], "opened");
    for field in ["requested_at", "authorized_at", "sent_at", "opened_at"] {
        assert!(view[field].is_i64(), "{field} in {view}");
    }

    let (status, since) = call(
        &app,
        Method::GET,
        &format!("/api/v1/events/since?channel={user_channel}&seq=0"),
        &user,
        None,
    )
    .await;
    assert_eq!(status, 200, "{since}");
    let events = since["events"].as_array().expect("events");
    let seqs: Vec<i64> = events.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1) && seqs[0] == 1,
        "{seqs:?}"
    );
    let statuses: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "CompartmentOpenStatusUpdated")
        .filter_map(|e| e["data"]["status"].as_str())
        .collect();
    assert_eq!(statuses, ["accepted", "sent", "opened"]);
    assert!(events.iter().all(|e| e["meta"]["replay"] == true));
    let head = since["seq"].as_i64().expect("seq");
    let (_, nothing) = call(
        &app,
        Method::GET,
        &format!("/api/v1/events/since?channel={user_channel}&seq={head}"),
        &user,
        None,
    )
    .await;
    assert_eq!(
        (
            nothing["events"].as_array().map(Vec::len),
            nothing["reset"].as_bool()
        ),
        (Some(0), Some(false))
    );

    // Revoked: the next open is denied, and recorded under its own command_id.
    let grant_id = grant["id"].as_str().expect("grant id");
    assert_eq!(
        call(
            &app,
            Method::DELETE,
            &format!("/api/v1/compartments/{c1}/grants/{grant_id}"),
            &admin,
            None
        )
        .await
        .0,
        204
    );
    let (status, denied) = call(
        &app,
        Method::POST,
        &format!("/api/v1/compartments/{c1}/open"),
        &user,
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        (denied["status"].as_str(), denied["reason"].as_str()),
        (Some("denied"), Some("no_access"))
    );
    let denied_id = denied["command_id"].as_str().expect("id");
    assert_eq!(
        call(
            &app,
            Method::GET,
            &format!("/api/v1/compartments/open-requests/{denied_id}"),
            &user,
            None
        )
        .await
        .1["status"],
        "denied"
    );

    // The admin's history, filtered.
    let (_, failed_or_denied) = call(
        &app,
        Method::GET,
        "/api/v1/compartments/open-requests?status=denied",
        &admin,
        None,
    )
    .await;
    assert_eq!(failed_or_denied["total"], 1);
    let (_, all) = call(
        &app,
        Method::GET,
        "/api/v1/compartments/open-requests?per_page=1&page=2",
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (all["total"].as_i64(), all["items"].as_array().map(Vec::len)),
        (Some(2), Some(1))
    );
    app.stop().await;
}

#[tokio::test]
async fn idempotency_key_and_overrides_over_http() {
    let (app, _db) = spawn_app().await;
    let (admin, user, bank) = setup(&app).await;
    let c2 = bank["compartments"][1]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let send = |key: &'static str| {
        let (url, user) = (
            app.url(&format!("/api/v1/compartments/{c2}/open")),
            user.clone(),
        );
        async move {
            Client::new()
                .post(url)
                .bearer_auth(user)
                .header("Idempotency-Key", key)
                .send()
                .await
                .expect("post")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let (a, b) = (send("k-1").await, send("k-1").await);
    assert_eq!(
        a["command_id"], b["command_id"],
        "a retried request is the same command"
    );
    assert_ne!(send("k-2").await["command_id"], a["command_id"]);
    // The same key for another compartment is another request: refused,
    // not answered with the first command.
    let c1 = bank["compartments"][0]["id"].as_str().expect("id");
    let reused = Client::new()
        .post(app.url(&format!("/api/v1/compartments/{c1}/open")))
        .bearer_auth(&user)
        .header("Idempotency-Key", "k-1")
        .send()
        .await
        .expect("post");
    assert_eq!(reused.status(), 422);
    let body: Value = reused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "idempotency_key_reused");
    assert_eq!(
        send("k-1").await["command_id"],
        a["command_id"],
        "and the key still answers its own request"
    );

    let path = format!("/api/v1/compartments/{c2}/open");
    assert_eq!(
        call(
            &app,
            Method::POST,
            &path,
            &user,
            Some(json!({"override": true, "reason": "x"}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &app,
            Method::POST,
            &path,
            &admin,
            Some(json!({"override": true}))
        )
        .await
        .0,
        422
    );
    let (status, ok) = call(
        &app,
        Method::POST,
        &path,
        &admin,
        Some(json!({"override": true, "reason": "stuck door"})),
    )
    .await;
    assert_eq!((status, ok["status"].as_str()), (202, Some("accepted")));
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_clear_errors_never_a_500() {
    let (app, _db) = spawn_app().await;
    let (admin, user, bank) = setup(&app).await;
    let c1 = bank["compartments"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let raw = |method: Method, path: String, body: &'static str| {
        let (url, admin) = (app.url(&path), admin.clone());
        async move {
            let res = Client::new()
                .request(method, url)
                .bearer_auth(admin)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("send");
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for (method, path, body, want) in [
        (
            Method::POST,
            "/api/v1/locker-banks".to_string(),
            "{not json",
            400,
        ),
        (
            Method::POST,
            "/api/v1/locker-banks".to_string(),
            r#"{"serial": 5}"#,
            422,
        ),
        (
            Method::POST,
            "/api/v1/locker-banks".to_string(),
            r#"{"serial":"x","name":"y","compartments":[]}"#,
            422,
        ),
        (
            Method::POST,
            "/api/v1/locker-banks".to_string(),
            r#"{"serial":"LB-0001","name":"y","compartments":[{"number":1,"size":"small"}]}"#,
            409,
        ),
        (
            Method::POST,
            "/api/v1/locker-banks".to_string(),
            r#"{"serial":"x","name":"y","compartments":[{"number":1,"size":"huge"}]}"#,
            422,
        ),
        (
            Method::POST,
            format!("/api/v1/compartments/{c1}/open"),
            r#"{"override": "yes"}"#,
            422,
        ),
        (
            Method::POST,
            format!("/api/v1/compartments/{c1}/grants"),
            r#"{"user_email": "nobody@x.io"}"#,
            422,
        ),
        (
            Method::GET,
            "/api/v1/locker-banks/not-a-uuid".to_string(),
            "",
            404,
        ),
        (
            Method::GET,
            format!("/api/v1/locker-banks/{}", Uuid::now_v7()),
            "",
            404,
        ),
        (
            Method::POST,
            format!("/api/v1/compartments/{}/open", Uuid::now_v7()),
            "",
            404,
        ),
        (
            Method::GET,
            "/api/v1/compartments/open-requests?status=exploded".to_string(),
            "",
            422,
        ),
        (
            Method::GET,
            "/api/v1/compartments/open-requests?locker_bank=zzz".to_string(),
            "",
            400,
        ),
        (
            Method::GET,
            "/api/v1/events/since?channel=private-nope".to_string(),
            "",
            422,
        ),
        (Method::GET, "/api/v1/events/since".to_string(), "", 400),
    ] {
        let (status, body) = raw(method.clone(), path.clone(), body).await;
        assert_eq!(status, want, "{method} {path} {body}");
        assert!(
            body["error"]["code"].is_string(),
            "{method} {path}: the error shape: {body}"
        );
    }
    // Users are no admins: no banks, no grants, no history.
    assert_eq!(
        call(&app, Method::GET, "/api/v1/locker-banks", &user, None)
            .await
            .0,
        403
    );
    assert_eq!(
        call(
            &app,
            Method::GET,
            "/api/v1/compartments/open-requests",
            &user,
            None
        )
        .await
        .0,
        403
    );
    app.stop().await;
}

#[tokio::test]
async fn other_tenants_see_nothing() {
    let (app, _db) = spawn_app().await;
    let (_admin, user, bank) = setup(&app).await;
    let c1 = bank["compartments"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    add_user(&app, "eve@other.test", Role::Admin, "Other").await;
    let eve = token(&app, "eve@other.test", "*").await;
    let (_, denied) = call(
        &app,
        Method::POST,
        &format!("/api/v1/compartments/{c1}/open"),
        &user,
        None,
    )
    .await;
    let command_id = denied["command_id"].as_str().expect("id");
    assert_eq!(
        call(
            &app,
            Method::GET,
            &format!("/api/v1/compartments/open-requests/{command_id}"),
            &eve,
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            &app,
            Method::GET,
            &format!("/api/v1/locker-banks/{}", bank["id"].as_str().unwrap_or("")),
            &eve,
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            &app,
            Method::POST,
            &format!("/api/v1/compartments/{c1}/open"),
            &eve,
            Some(json!({"override": true, "reason": "x"}))
        )
        .await
        .0,
        404
    );
    let tenant = bank["tenant_id"].as_str().expect("tenant");
    let (status, body) = call(
        &app,
        Method::GET,
        &format!("/api/v1/events/since?channel=private-tenant.{tenant}.open-requests"),
        &eve,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let me: Value = call(&app, Method::GET, "/api/v1/me", &user, None).await.1;
    assert_eq!(
        call(
            &app,
            Method::GET,
            &format!(
                "/api/v1/events/since?channel=private-user.{}",
                me["id"].as_str().unwrap_or("")
            ),
            &eve,
            None
        )
        .await
        .0,
        403
    );
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_covers_every_endpoint() {
    let (app, _db) = spawn_app().await;
    let doc: Value = reqwest::get(app.url("/api/v1/openapi.json"))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3.1"));
    for path in [
        "/api/v1/me",
        "/api/v1/me/compartments",
        "/api/v1/users",
        "/api/v1/locker-banks",
        "/api/v1/locker-banks/{id}",
        "/api/v1/compartments/{id}/grants",
        "/api/v1/compartments/{id}/grants/{grant_id}",
        "/api/v1/compartments/{id}/open",
        "/api/v1/compartments/open-requests",
        "/api/v1/compartments/open-requests/{command_id}",
        "/api/v1/events/since",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["paths"]["/api/v1/compartments/{id}/open"]["post"]["responses"]["403"].is_object());
    app.stop().await;
}

/// The open `reason` cannot fill the disk: a user's denied open keeps no
/// reason at all, however long, and an override's reason is bounded.
#[tokio::test]
async fn the_open_reason_is_bounded_and_kept_only_for_overrides() {
    let (app, _db) = spawn_app().await;
    let (admin, user, bank) = setup(&app).await;
    let c1 = bank["compartments"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let path = format!("/api/v1/compartments/{c1}/open");
    let huge = "x".repeat(1_900_000);
    // No grant: denied, and the megabytes are not stored anywhere.
    let (status, denied) = call(
        &app,
        Method::POST,
        &path,
        &user,
        Some(json!({"reason": huge})),
    )
    .await;
    assert_eq!(
        (status, denied["reason"].as_str()),
        (403, Some("no_access")),
        "{denied}"
    );
    let command_id = denied["command_id"].as_str().expect("command id");
    let (_, view) = call(
        &app,
        Method::GET,
        &format!("/api/v1/compartments/open-requests/{command_id}"),
        &admin,
        None,
    )
    .await;
    assert!(
        view["override_reason"].is_null(),
        "{}",
        view.to_string().len()
    );
    let stored: i64 = sqlx::query_scalar::<_, i64>(
        "SELECT CAST(COALESCE(MAX(LENGTH(payload)), 0) AS BIGINT) FROM stored_events",
    )
    .fetch_one(&app.services.db.pool)
    .await
    .expect("sizes");
    assert!(stored < 10_000, "an event of {stored} bytes was stored");
    // An override's reason: at most 500 characters, with a clear 4xx.
    let (status, err) = call(
        &app,
        Method::POST,
        &path,
        &admin,
        Some(json!({"override": true, "reason": "y".repeat(501)})),
    )
    .await;
    assert_eq!(status, 422, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("reason"),
        "{err}"
    );
    let (status, ok) = call(
        &app,
        Method::POST,
        &path,
        &admin,
        Some(json!({"override": true, "reason": "y".repeat(500)})),
    )
    .await;
    assert_eq!(status, 202, "{ok}");
    app.stop().await;
}
