//! The realtime hub over a real WebSocket (tokio-tungstenite): Pusher
//! protocol 7 handshake, ping, unknown app, `/broadcasting/auth`, signed
//! subscriptions, log envelopes pushed live, resume by `seq` racing with
//! appends, and `lockstep:reset` for a pruned seq.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lockstep_core::{
    eventstore::channels,
    identity::accounts::Role,
    identity::caller::Caller,
    identity::tokens::{create_token, Abilities},
    lockers::{self, NewBank, NewCompartment},
    now_ms,
    opens::{self, OpenCommandInput},
};
use lockstep_server::hub::{protocol, AppKeys};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::helpers::*;

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn keys(app: &TestApp) -> AppKeys {
    AppKeys::load(&app.services.db, None, None, None)
        .await
        .expect("keys")
}

/// Connects as pusher-js does; returns the socket and its socket_id.
pub(crate) async fn connect(app: &TestApp, key: &str) -> (Ws, String) {
    let url = format!(
        "ws://{}/app/{key}?protocol=7&client=js&version=8.4.0&flash=false",
        app.addr
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let hello = next_frame(&mut ws).await;
    assert_eq!(hello["event"], "pusher:connection_established");
    let data: Value =
        serde_json::from_str(hello["data"].as_str().expect("data is a string")).expect("json");
    let socket_id = data["socket_id"].as_str().expect("socket_id").to_string();
    assert!(protocol::valid_socket_id(&socket_id), "{socket_id}");
    assert_eq!(data["activity_timeout"], protocol::ACTIVITY_TIMEOUT_SECS);
    (ws, socket_id)
}

/// The next text frame as JSON (within 10 s).
pub(crate) async fn next_frame(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).expect("json frame");
        }
    }
}

pub(crate) async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .expect("send");
}

/// `/broadcasting/auth` with a bearer token, form-encoded as pusher-js
/// sends it.
pub(crate) async fn auth(
    app: &TestApp,
    token: &str,
    socket_id: &str,
    channel: &str,
) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(app.url("/broadcasting/auth"))
        .bearer_auth(token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("socket_id={socket_id}&channel_name={channel}"))
        .send()
        .await
        .expect("auth");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn token_of(app: &TestApp, email: &str) -> String {
    create_token(
        &app.services.db,
        email,
        "hub test",
        &Abilities::parse_list("*").expect("abilities"),
    )
    .await
    .expect("token")
    .secret
}

struct World {
    app: TestApp,
    _db: lockstep_core::testing::TestDb,
    user: lockstep_core::identity::accounts::User,
    user_token: String,
    compartment: Uuid,
}

/// A user with a grant on a bank's compartment (MQTT off: opens go
/// `accepted` → `sent`, then `failed/timeout`).
async fn world() -> World {
    let (app, db) = spawn_app().await;
    world_on(app, db).await
}

async fn world_on(app: TestApp, db: lockstep_core::testing::TestDb) -> World {
    let admin_user =
        lockstep_core::identity::accounts::find_user_by_email(&app.services.db, ADMIN_EMAIL)
            .await
            .expect("q")
            .expect("admin");
    let admin = Caller::new(
        admin_user.clone(),
        lockstep_core::eventstore::events::Actor::User { id: admin_user.id },
    );
    let bank = lockers::register_bank(
        &app.services,
        &admin,
        NewBank {
            serial: "HUB-1".into(),
            name: "Hub".into(),
            location: None,
            compartments: vec![NewCompartment {
                number: 1,
                size: "small".into(),
                label: None,
            }],
        },
    )
    .await
    .expect("bank");
    let user = add_user(&app, "hub-user@lockstep.test", Role::User, "Default").await;
    lockers::grant_access(
        &app.services,
        &admin,
        bank.compartments[0].id,
        "hub-user@lockstep.test",
        None,
        None,
    )
    .await
    .expect("grant");
    let user_token = token_of(&app, "hub-user@lockstep.test").await;
    World {
        app,
        _db: db,
        user,
        user_token,
        compartment: bank.compartments[0].id,
    }
}

async fn open(w: &World) -> Uuid {
    let caller = Caller::new(
        w.user.clone(),
        lockstep_core::eventstore::events::Actor::User { id: w.user.id },
    );
    opens::request_open(
        &w.app.services,
        &caller,
        OpenCommandInput {
            compartment_id: w.compartment,
            ..Default::default()
        },
        now_ms(),
    )
    .await
    .expect("open")
    .command_id
}

/// Subscribes to the user's channel with a signature from
/// `/broadcasting/auth`, optionally resuming after `seq`.
async fn subscribe_user(w: &World, ws: &mut Ws, socket_id: &str, seq: Option<i64>) -> String {
    let channel = format!("private-user.{}", w.user.id);
    let (status, body) = auth(&w.app, &w.user_token, socket_id, &channel).await;
    assert_eq!(status, 200, "{body}");
    let mut data = json!({"channel": channel, "auth": body["auth"]});
    if let Some(seq) = seq {
        data["seq"] = json!(seq);
    }
    send(ws, json!({"event": "pusher:subscribe", "data": data})).await;
    let ok = next_frame(ws).await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    assert_eq!(ok["channel"], channel);
    channel
}

/// The envelope inside a Pusher message on a log channel.
fn envelope(frame: &Value) -> Value {
    serde_json::from_str(frame["data"].as_str().expect("data is a string")).expect("envelope")
}

#[tokio::test]
async fn the_handshake_ping_and_an_unknown_app_are_as_pusher_js_expects() {
    let (app, _db) = spawn_app().await;
    let keys = keys(&app).await;
    let (mut ws, _) = connect(&app, &keys.key).await;
    send(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(next_frame(&mut ws).await["event"], "pusher:pong");
    // Garbage gets an error frame; the connection stays.
    ws.send(Message::Text("{not json".into()))
        .await
        .expect("send");
    assert_eq!(next_frame(&mut ws).await["event"], "pusher:error");
    send(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(next_frame(&mut ws).await["event"], "pusher:pong");
    // A frame over 10 KB: refused with 4301, the connection stays.
    let big = json!({"event": "client-x", "channel": "private-x", "data": "e".repeat(11 * 1024)});
    send(&mut ws, big).await;
    let err = next_frame(&mut ws).await;
    assert_eq!(
        (err["event"].as_str(), err["data"]["code"].as_u64()),
        (Some("pusher:error"), Some(4301))
    );
    send(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(next_frame(&mut ws).await["event"], "pusher:pong");

    // An unknown key: pusher:error 4001, then a close with 4001 (pusher-js
    // then stops retrying).
    let url = format!("ws://{}/app/no-such-key?protocol=7", app.addr);
    let (mut staying, _) = connect(&app, &keys.key).await;
    let (mut bad, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let err = next_frame(&mut bad).await;
    assert_eq!(err["event"], "pusher:error");
    assert_eq!(err["data"]["code"], 4001);
    let close = tokio::time::timeout(Duration::from_secs(10), bad.next())
        .await
        .expect("in time");
    match close {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4001),
        other => panic!("expected a close with 4001, got {other:?}"),
    }
    // Shutting down closes every connection with 4200: pusher-js comes
    // straight back (to another process).
    let stopping = tokio::spawn(app.stop());
    let close = tokio::time::timeout(Duration::from_secs(10), staying.next())
        .await
        .expect("in time");
    match close {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4200),
        other => panic!("expected a close with 4200, got {other:?}"),
    }
    stopping.await.expect("stopped");
}

#[tokio::test]
async fn broadcasting_auth_signs_only_what_the_caller_may_read() {
    let w = world().await;
    let keys = keys(&w.app).await;
    let own = format!("private-user.{}", w.user.id);
    let (status, body) = auth(&w.app, &w.user_token, "123.456", &own).await;
    assert_eq!(status, 200);
    assert_eq!(body["auth"], keys.log_channel_auth("123.456", &own));
    // JSON bodies are taken too.
    let res = reqwest::Client::new()
        .post(w.app.url("/broadcasting/auth"))
        .bearer_auth(&w.user_token)
        .json(&json!({"socket_id": "123.456", "channel_name": own}))
        .send()
        .await
        .expect("auth");
    assert_eq!(res.status().as_u16(), 200);
    // Another user's channel, another tenant's, an unknown channel: 403.
    let other = add_user(&w.app, "other@lockstep.test", Role::User, "Default").await;
    let stranger = add_user(&w.app, "admin@elsewhere.test", Role::Admin, "Elsewhere").await;
    for channel in [
        format!("private-user.{}", other.id),
        format!("private-tenant.{}.lockers", stranger.tenant_id),
        format!("private-tenant.{}.lockers", w.user.tenant_id),
        "private-anything".to_string(),
    ] {
        let (status, _) = auth(&w.app, &w.user_token, "123.456", &channel).await;
        assert_eq!(status, 403, "{channel}");
    }
    let stranger_token = token_of(&w.app, "admin@elsewhere.test").await;
    let (status, _) = auth(&w.app, &stranger_token, "123.456", &own).await;
    assert_eq!(status, 403, "another tenant's admin");
    // A bad socket id: 400; no caller: 401.
    let (status, _) = auth(&w.app, &w.user_token, "abc", &own).await;
    assert_eq!(status, 400);
    let res = reqwest::Client::new()
        .post(w.app.url("/broadcasting/auth"))
        .form(&[("socket_id", "1.2"), ("channel_name", own.as_str())])
        .header("origin", w.app.url(""))
        .send()
        .await
        .expect("auth");
    assert_eq!(res.status().as_u16(), 401);
    w.app.stop().await;
}

#[tokio::test]
async fn a_forged_signature_is_refused_and_the_channel_not_joined() {
    let w = world().await;
    let keys = keys(&w.app).await;
    let (mut ws, socket_id) = connect(&w.app, &keys.key).await;
    let channel = format!("private-user.{}", w.user.id);
    // Signed for another socket, and signed with another secret.
    let other_socket = keys.log_channel_auth("1.1", &channel);
    // What any holder of the app secret (a Laravel app) can sign.
    let app_secret = keys.channel_auth(&socket_id, &channel, None);
    let forged = AppKeys::new(
        keys.app_id.clone(),
        keys.key.clone(),
        "not-the-secret".into(),
    )
    .channel_auth(&socket_id, &channel, None);
    // All a holder of the app secret can make of Lockstep's own signing:
    // nothing (its key is the server's own, not derived from the secret).
    let from_app_secret = AppKeys::new(
        keys.app_id.clone(),
        keys.key.clone(),
        keys.secret().to_string(),
    )
    .log_channel_auth(&socket_id, &channel);
    assert_ne!(from_app_secret, keys.log_channel_auth(&socket_id, &channel));
    for auth in [
        other_socket,
        forged,
        app_secret,
        from_app_secret,
        String::new(),
    ] {
        send(
            &mut ws,
            json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}),
        )
        .await;
        let err = next_frame(&mut ws).await;
        assert_eq!(err["event"], "pusher:error");
        assert_eq!(err["data"]["code"], 4009);
        let sub_err = next_frame(&mut ws).await;
        assert_eq!(sub_err["event"], "pusher:subscription_error");
        assert_eq!(sub_err["channel"], channel.as_str());
    }
    // Not joined: an open's envelopes never arrive; the next frame is the
    // pong for the ping sent after the open.
    let _ = open(&w).await;
    send(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(next_frame(&mut ws).await["event"], "pusher:pong");
    w.app.stop().await;
}

#[tokio::test]
async fn an_opens_lifecycle_arrives_live_as_envelopes() {
    let w = world().await;
    let keys = keys(&w.app).await;
    let (mut ws, socket_id) = connect(&w.app, &keys.key).await;
    let channel = subscribe_user(&w, &mut ws, &socket_id, None).await;
    let command_id = open(&w).await;
    let mut statuses = Vec::new();
    let mut last_seq = 0;
    while statuses.len() < 2 {
        let frame = next_frame(&mut ws).await;
        assert_eq!(frame["channel"], channel.as_str());
        let e = envelope(&frame);
        assert_eq!(frame["event"], e["event"]);
        assert_eq!(e["meta"]["replay"], false);
        assert!(e["seq"].as_i64().expect("seq") > last_seq, "in order");
        last_seq = e["seq"].as_i64().expect("seq");
        if e["event"] == "CompartmentOpenStatusUpdated" {
            assert_eq!(e["data"]["command_id"], command_id.to_string());
            statuses.push(e["data"]["status"].as_str().expect("status").to_string());
        }
    }
    assert_eq!(statuses, ["accepted", "sent"]);
    w.app.stop().await;
}

/// `X-Socket-ID` spares the request's own connection the envelopes the
/// request causes ("to others"), and only those: the same connection gets
/// what follows (the reactor's `sent`) without a gap closing it; another
/// connection, and a replay elsewhere, get everything.
#[tokio::test]
async fn x_socket_id_spares_the_requests_own_connection() {
    let w = world().await;
    let keys = keys(&w.app).await;
    let (mut own, own_id) = connect(&w.app, &keys.key).await;
    let (mut other, other_id) = connect(&w.app, &keys.key).await;
    subscribe_user(&w, &mut own, &own_id, None).await;
    subscribe_user(&w, &mut other, &other_id, None).await;
    let client = reqwest::Client::new();
    let url = w
        .app
        .url(&format!("/api/v1/compartments/{}/open", w.compartment));
    let bad = client
        .post(&url)
        .bearer_auth(&w.user_token)
        .header("x-socket-id", "not-a-socket")
        .send()
        .await
        .expect("open");
    assert_eq!(
        bad.status().as_u16(),
        400,
        "a malformed X-Socket-ID is refused"
    );
    let res = client
        .post(&url)
        .bearer_auth(&w.user_token)
        .header("x-socket-id", &own_id)
        .send()
        .await
        .expect("open");
    assert_eq!(res.status().as_u16(), 202);
    let statuses = |frames: &[Value]| -> Vec<String> {
        frames
            .iter()
            .map(envelope)
            .map(|e| e["data"]["status"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let mut theirs = Vec::new();
    while theirs.len() < 2 {
        theirs.push(next_frame(&mut other).await);
    }
    assert_eq!(statuses(&theirs), ["accepted", "sent"]);
    let sent = next_frame(&mut own).await;
    assert_eq!(
        statuses(std::slice::from_ref(&sent)),
        ["sent"],
        "own connection: no accepted"
    );
    assert_eq!(envelope(&sent)["seq"], envelope(&theirs[1])["seq"]);
    // Still subscribed (no gap closed it): the next open, without the
    // header, arrives whole.
    open(&w).await;
    let next = envelope(&next_frame(&mut own).await);
    assert_eq!(next["data"]["status"], "accepted");
    // Its `sent` too, so nothing more is on its way live.
    let next = envelope(&next_frame(&mut own).await);
    assert_eq!(next["data"]["status"], "sent");
    // A replay to the same connection spares it as well.
    let spared = envelope(&theirs[0])["seq"].as_i64().expect("seq");
    subscribe_user(&w, &mut own, &own_id, Some(spared - 1)).await;
    let replayed = envelope(&next_frame(&mut own).await);
    assert_eq!(
        (
            replayed["seq"].as_i64(),
            replayed["meta"]["replay"].as_bool()
        ),
        (Some(spared + 1), Some(true)),
        "the replay skips the spared envelope"
    );
    // A replay on a new connection has the spared envelope too.
    let (mut late, late_id) = connect(&w.app, &keys.key).await;
    subscribe_user(&w, &mut late, &late_id, Some(0)).await;
    let mut expected = 1;
    while expected <= spared {
        let e = envelope(&next_frame(&mut late).await);
        assert_eq!(e["seq"].as_i64(), Some(expected), "every seq, in order");
        if expected == spared {
            assert_eq!(e["data"]["status"], "accepted");
        }
        expected += 1;
    }
    w.app.stop().await;
}

/// Resume racing with appends: every seq of the channel exactly once, in
/// order, the first ones replayed, then live.
#[tokio::test]
async fn a_resume_racing_with_appends_gets_every_seq_once_in_order() {
    let w = world().await;
    let keys = keys(&w.app).await;
    for _ in 0..5 {
        open(&w).await;
    }
    // A subscriber already follows the channel live, so live reads run
    // while the second one catches up; its first read is held 300 ms, so
    // they certainly do.
    lockstep_server::hub::registry::CATCH_UP_DELAY_MS
        .store(300, std::sync::atomic::Ordering::Relaxed);
    let (mut first, first_id) = connect(&w.app, &keys.key).await;
    subscribe_user(&w, &mut first, &first_id, None).await;
    let (mut ws, socket_id) = connect(&w.app, &keys.key).await;
    // Opens keep landing while the subscriber catches up.
    let appending = {
        let services = w.app.services.clone();
        let user = w.user.clone();
        let compartment = w.compartment;
        tokio::spawn(async move {
            let caller = Caller::new(
                user.clone(),
                lockstep_core::eventstore::events::Actor::User { id: user.id },
            );
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                opens::request_open(
                    &services,
                    &caller,
                    OpenCommandInput {
                        compartment_id: compartment,
                        ..Default::default()
                    },
                    now_ms(),
                )
                .await
                .expect("open");
            }
        })
    };
    let channel = subscribe_user(&w, &mut ws, &socket_id, Some(0)).await;
    appending.await.expect("appends");
    lockstep_server::hub::registry::CATCH_UP_DELAY_MS
        .store(0, std::sync::atomic::Ordering::Relaxed);
    let head = channels::head(&w.app.services.db, &channel.parse().expect("a channel"))
        .await
        .expect("head");
    let mut seqs = Vec::new();
    let mut replayed = 0;
    while seqs.last().copied().unwrap_or(0) < head {
        let e = envelope(&next_frame(&mut ws).await);
        if e["meta"]["replay"] == true {
            replayed += 1;
        }
        seqs.push(e["seq"].as_i64().expect("seq"));
    }
    assert_eq!(
        seqs,
        (1..=head).collect::<Vec<_>>(),
        "every seq once, in order"
    );
    assert!(replayed >= 10, "the first ones were replayed ({replayed})");
    w.app.stop().await;
}

#[tokio::test]
async fn a_resume_from_a_pruned_seq_gets_a_reset() {
    let w = world().await;
    let keys = keys(&w.app).await;
    open(&w).await;
    open(&w).await;
    // Everything so far is pruned.
    channels::prune(&w.app.services.db, now_ms() + 1)
        .await
        .expect("prune");
    let (mut ws, socket_id) = connect(&w.app, &keys.key).await;
    let channel = subscribe_user(&w, &mut ws, &socket_id, Some(1)).await;
    let reset = next_frame(&mut ws).await;
    assert_eq!(reset["event"], "lockstep:reset");
    assert_eq!(reset["channel"], channel.as_str());
    // Then live again.
    open(&w).await;
    let e = envelope(&next_frame(&mut ws).await);
    assert_eq!(e["meta"]["replay"], false);
    w.app.stop().await;
}

/// Signs a Pusher HTTP API request as the `pusher` libraries do: query
/// `auth_key`, `auth_timestamp`, `auth_version`, `body_md5` (and extra
/// params), sorted; signature over `METHOD\nPATH\nquery`.
pub(crate) fn signed_url(
    app: &TestApp,
    keys: &AppKeys,
    method: &str,
    path: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> String {
    use md5::{Digest, Md5};
    let mut params: Vec<(String, String)> = vec![
        ("auth_key".into(), keys.key.clone()),
        ("auth_timestamp".into(), (now_ms() / 1000).to_string()),
        ("auth_version".into(), "1.0".into()),
    ];
    if !body.is_empty() {
        params.push(("body_md5".into(), hex::encode(Md5::digest(body))));
    }
    for (k, v) in extra {
        params.push((k.to_string(), v.to_string()));
    }
    params.sort();
    let qs = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let signature = keys.sign(&format!("{method}\n{path}\n{qs}"));
    app.url(&format!("{path}?{qs}&auth_signature={signature}"))
}

pub(crate) async fn publish(
    app: &TestApp,
    keys: &AppKeys,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let text = body.to_string();
    let res = reqwest::Client::new()
        .post(signed_url(app, keys, "POST", path, &text, &[]))
        .header("content-type", "application/json")
        .body(text)
        .send()
        .await
        .expect("publish");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_http_api_publishes_to_public_and_private_channels_signed_as_pusher_signs() {
    let (app, _db) = spawn_app().await;
    let keys = keys(&app).await;
    let (mut a, a_id) = connect(&app, &keys.key).await;
    let (mut b, b_id) = connect(&app, &keys.key).await;
    for ws in [&mut a, &mut b] {
        send(
            ws,
            json!({"event": "pusher:subscribe", "data": {"channel": "orders", "auth": ""}}),
        )
        .await;
        assert_eq!(
            next_frame(ws).await["event"],
            "pusher_internal:subscription_succeeded"
        );
    }
    // Another app's private channel (a Laravel app's), signed with the keys.
    let private = "private-App.Models.User.1";
    let auth = keys.channel_auth(&a_id, private, None);
    send(
        &mut a,
        json!({"event": "pusher:subscribe", "data": {"channel": private, "auth": auth}}),
    )
    .await;
    assert_eq!(
        next_frame(&mut a).await["event"],
        "pusher_internal:subscription_succeeded"
    );

    let events = format!("/apps/{}/events", keys.app_id);
    // To both channels, excluding socket b ("to others").
    let (status, body) = publish(
        &app,
        &keys,
        &events,
        &json!({"name": "App\\Events\\OrderShipped", "channels": ["orders", private],
                "data": "{\"id\":7}", "socket_id": b_id}),
    )
    .await;
    assert_eq!((status, body), (200, json!({})));
    for channel in ["orders", private] {
        let f = next_frame(&mut a).await;
        assert_eq!(f["event"], "App\\Events\\OrderShipped");
        assert_eq!(f["channel"], channel);
        assert_eq!(
            f["data"], "{\"id\":7}",
            "data passed on unchanged, as a string"
        );
    }
    // b was excluded: its next frame is the pong of a later ping.
    send(&mut b, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(next_frame(&mut b).await["event"], "pusher:pong");
    // A batch reaches b too (no exclusion), `channel` singular.
    let (status, _) = publish(
        &app,
        &keys,
        &format!("/apps/{}/batch_events", keys.app_id),
        &json!({"batch": [{"name": "one", "channel": "orders", "data": "1"},
                           {"name": "two", "channel": "orders", "data": "2"}]}),
    )
    .await;
    assert_eq!(status, 200);
    for ws in [&mut a, &mut b] {
        assert_eq!(next_frame(ws).await["event"], "one");
        assert_eq!(next_frame(ws).await["event"], "two");
    }

    // The occupied channels, with how many follow each.
    let res: Value = reqwest::get(signed_url(
        &app,
        &keys,
        "GET",
        &format!("/apps/{}/channels", keys.app_id),
        "",
        &[("info", "subscription_count")],
    ))
    .await
    .expect("channels")
    .json()
    .await
    .expect("json");
    assert_eq!(res["channels"]["orders"]["subscription_count"], 2, "{res}");
    let res: Value = reqwest::get(signed_url(
        &app,
        &keys,
        "GET",
        &format!("/apps/{}/channels/nobody-here", keys.app_id),
        "",
        &[],
    ))
    .await
    .expect("channel")
    .json()
    .await
    .expect("json");
    assert_eq!(res, json!({"occupied": false}));

    // Refused: a bad signature (401), an unknown app (404), Lockstep's own
    // channels (403), data over 10 KB (413), a malformed body or an
    // oversize batch (400). Nothing of them reaches a subscriber.
    let event = json!({"name": "x", "channels": ["orders"], "data": "1"}).to_string();
    let forged = AppKeys::new(keys.app_id.clone(), keys.key.clone(), "wrong".into());
    let res = reqwest::Client::new()
        .post(signed_url(&app, &forged, "POST", &events, &event, &[]))
        .body(event.clone())
        .send()
        .await
        .expect("forged");
    assert_eq!(res.status().as_u16(), 401);
    let other_app = AppKeys::new("999".into(), keys.key.clone(), keys.secret().into());
    let res = reqwest::Client::new()
        .post(signed_url(
            &app,
            &other_app,
            "POST",
            "/apps/999/events",
            &event,
            &[],
        ))
        .body(event)
        .send()
        .await
        .expect("other app");
    assert_eq!(res.status().as_u16(), 404);
    let lockstep_channel = format!("private-user.{}", Uuid::now_v7());
    for (body, status) in [
        (
            json!({"name": "x", "channels": [lockstep_channel], "data": "1"}),
            403,
        ),
        (
            json!({"name": "x", "channels": ["orders"], "data": "e".repeat(11 * 1024)}),
            413,
        ),
        (json!({"name": "x", "data": "1"}), 400),
        (json!({"nothing": true}), 400),
    ] {
        assert_eq!(
            publish(&app, &keys, &events, &body).await.0,
            status,
            "{body}"
        );
    }
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"name": "x", "channel": "orders", "data": i.to_string()}))
        .collect();
    let (status, _) = publish(
        &app,
        &keys,
        &format!("/apps/{}/batch_events", keys.app_id),
        &json!({"batch": eleven}),
    )
    .await;
    assert_eq!(status, 400);
    send(&mut a, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(
        next_frame(&mut a).await["event"],
        "pusher:pong",
        "nothing refused was delivered"
    );
    app.stop().await;
}

/// A replay longer than a connection's queue arrives whole and in order:
/// the catch-up waits for the client instead of overflowing.
#[tokio::test]
async fn a_replay_longer_than_the_queue_arrives_whole() {
    let db = lockstep_core::testing::fresh_database().await;
    let mut config = lockstep_server::ServeConfig::for_tests(&db.url, db.dir.clone());
    config.hub_queue = 32;
    let w = world_on(start(config).await, db).await;
    let keys = keys(&w.app).await;
    // Two envelopes per open on the user's channel (accepted, sent).
    for _ in 0..60 {
        open(&w).await;
    }
    let channel: lockstep_core::eventstore::channels::Channel =
        format!("private-user.{}", w.user.id)
            .parse()
            .expect("channel");
    let head = channels::head(&w.app.services.db, &channel)
        .await
        .expect("head");
    assert!(head > 100, "{head} envelopes, over three times the queue");
    let (mut ws, socket_id) = connect(&w.app, &keys.key).await;
    subscribe_user(&w, &mut ws, &socket_id, Some(0)).await;
    let mut expected = 1;
    while expected <= head {
        let e = envelope(&next_frame(&mut ws).await);
        assert_eq!(e["seq"].as_i64(), Some(expected));
        expected += 1;
    }
    w.app.stop().await;
}

/// Subscribing again (or after unsubscribing) while a catch-up runs
/// leaves one live subscription, not none.
#[tokio::test]
async fn subscribing_again_during_a_catch_up_keeps_the_subscription() {
    let w = world().await;
    let keys = keys(&w.app).await;
    for _ in 0..50 {
        open(&w).await;
    }
    let (mut ws, socket_id) = connect(&w.app, &keys.key).await;
    let channel = format!("private-user.{}", w.user.id);
    let auth = keys.log_channel_auth(&socket_id, &channel);
    let subscribe =
        json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "seq": 0}});
    send(&mut ws, subscribe.clone()).await;
    send(
        &mut ws,
        json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}),
    )
    .await;
    send(&mut ws, subscribe.clone()).await;
    send(&mut ws, subscribe).await;
    // Whatever replays come (a replaced catch-up may have sent part of
    // one), an open's envelope arrives (replayed if the last catch-up read
    // after it), and then a later open's arrive live.
    // Each time the latest open shows up replayed, open again: once the
    // last catch-up is done, one arrives live (a lost subscription would
    // time out here).
    let mut latest = open(&w).await;
    let mut opens = 1;
    loop {
        let frame = next_frame(&mut ws).await;
        if frame["event"] != "CompartmentOpenStatusUpdated" {
            continue;
        }
        let e = envelope(&frame);
        if e["data"]["command_id"] != latest.to_string() {
            continue;
        }
        if e["meta"]["replay"] == false {
            break;
        }
        assert!(opens < 20, "no envelope arrived live after {opens} opens");
        latest = open(&w).await;
        opens += 1;
    }
    w.app.stop().await;
}

/// Tenant isolation over the hub: users and admins of two tenants against
/// every kind of Lockstep channel of both, through `/broadcasting/auth`,
/// a subscribe signed with the app secret (what a Laravel app holding it
/// could forge), a subscribe with another socket's signature, and
/// `events/since`. Allowed exactly where `channels::authorize` says so;
/// zero leaks.
#[tokio::test]
async fn no_channel_of_another_tenant_or_user_leaks_through_the_hub() {
    // Four subscribes per channel and connection: over the default rate.
    let _db = lockstep_core::testing::fresh_database().await;
    let mut config = lockstep_server::ServeConfig::for_tests(&_db.url, _db.dir.clone());
    config.hub_rate_limit = 0;
    let app = start(config).await;
    let keys = keys(&app).await;
    let admin_a =
        lockstep_core::identity::accounts::find_user_by_email(&app.services.db, ADMIN_EMAIL)
            .await
            .expect("q")
            .expect("admin");
    let user_a = add_user(&app, "a1@lockstep.test", Role::User, "Default").await;
    let other_a = add_user(&app, "a2@lockstep.test", Role::User, "Default").await;
    let admin_b = add_user(&app, "admin@b.test", Role::Admin, "Tenant B").await;
    let user_b = add_user(&app, "b1@b.test", Role::User, "Tenant B").await;
    let bank_of = |admin: lockstep_core::identity::accounts::User, serial: &'static str| {
        let services = app.services.clone();
        async move {
            let caller = Caller::new(
                admin.clone(),
                lockstep_core::eventstore::events::Actor::User { id: admin.id },
            );
            lockers::register_bank(
                &services,
                &caller,
                NewBank {
                    serial: serial.into(),
                    name: serial.into(),
                    location: None,
                    compartments: vec![NewCompartment {
                        number: 1,
                        size: "small".into(),
                        label: None,
                    }],
                },
            )
            .await
            .expect("bank")
            .id
        }
    };
    let bank_a = bank_of(admin_a.clone(), "ISO-A").await;
    let bank_b = bank_of(admin_b.clone(), "ISO-B").await;
    let (ta, tb) = (admin_a.tenant_id, admin_b.tenant_id);
    // (channel, who may read it)
    let channels_and_readers: Vec<(String, Vec<Uuid>)> = vec![
        (
            format!("private-user.{}", user_a.id),
            vec![user_a.id, admin_a.id],
        ),
        (
            format!("private-user.{}", other_a.id),
            vec![other_a.id, admin_a.id],
        ),
        (
            format!("private-user.{}", user_b.id),
            vec![user_b.id, admin_b.id],
        ),
        (format!("private-tenant.{ta}.lockers"), vec![admin_a.id]),
        (
            format!("private-tenant.{ta}.open-requests"),
            vec![admin_a.id],
        ),
        (format!("private-tenant.{tb}.lockers"), vec![admin_b.id]),
        (
            format!("private-tenant.{tb}.open-requests"),
            vec![admin_b.id],
        ),
        (format!("private-locker-bank.{bank_a}"), vec![admin_a.id]),
        (format!("private-locker-bank.{bank_b}"), vec![admin_b.id]),
        (format!("presence-locker-bank.{bank_a}"), vec![admin_a.id]),
        (format!("presence-locker-bank.{bank_b}"), vec![admin_b.id]),
        (
            format!("presence-record.locker-bank.{bank_b}"),
            vec![admin_b.id],
        ),
        (
            format!("presence-record.user.{}", user_a.id),
            vec![admin_a.id],
        ),
        (
            format!("presence-record.user.{}", user_b.id),
            vec![admin_b.id],
        ),
    ];
    let people = [&admin_a, &user_a, &other_a, &admin_b, &user_b];
    let mut checked = 0;
    for person in people {
        let token = token_of(&app, &person.email).await;
        let (mut ws, socket_id) = connect(&app, &keys.key).await;
        for (channel, readers) in &channels_and_readers {
            let may = readers.contains(&person.id);
            let (status, body) = auth(&app, &token, &socket_id, channel).await;
            assert_eq!(
                status == 200,
                may,
                "{} auth {channel}: {status}",
                person.email
            );
            let presence = channel.starts_with("presence-");
            let since = reqwest::Client::new()
                .get(app.url(&format!("/api/v1/events/since?channel={channel}&seq=0")))
                .bearer_auth(&token)
                .send()
                .await
                .expect("since")
                .status()
                .as_u16();
            assert_eq!(
                since == 200,
                may && !presence,
                "{} since {channel}: {since}",
                person.email
            );
            // Forged subscribes never join: the app secret's signature, the
            // signature of another socket, and (presence) another member
            // than the one signed.
            let member =
                json!({"user_id": person.id.to_string(), "user_info": {"name": "x"}}).to_string();
            let data = presence.then_some(member.as_str());
            let mut forgeries = vec![
                (keys.channel_auth(&socket_id, channel, data), data),
                (keys.lockstep_channel_auth("1.1", channel, data), data),
            ];
            // The real signature with another member claimed (someone
            // else's id).
            let impostor =
                json!({"user_id": Uuid::now_v7().to_string(), "user_info": {"name": "x"}})
                    .to_string();
            if let (true, Some(auth)) = (presence, body["auth"].as_str()) {
                forgeries.push((auth.to_string(), Some(impostor.as_str())));
            }
            for (forged, data) in forgeries {
                send(&mut ws, json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": forged, "channel_data": data}})).await;
                assert_eq!(next_frame(&mut ws).await["data"]["code"], 4009, "{channel}");
                assert_eq!(
                    next_frame(&mut ws).await["event"],
                    "pusher:subscription_error"
                );
            }
            if may {
                send(&mut ws, json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": body["auth"], "channel_data": body["channel_data"]}})).await;
                let ok = next_frame(&mut ws).await;
                assert_eq!(
                    ok["event"], "pusher_internal:subscription_succeeded",
                    "{ok}"
                );
                assert_eq!(ok["channel"], channel.as_str());
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 70);
    app.stop().await;
}

/// A client that falls silent is pinged, and closed with 4201 when it
/// does not answer (pusher-js then reconnects at once); one that answers
/// stays.
#[tokio::test]
async fn a_silent_client_is_pinged_then_closed_with_4201() {
    let db = lockstep_core::testing::fresh_database().await;
    let mut config = lockstep_server::ServeConfig::for_tests(&db.url, db.dir.clone());
    config.hub_activity_timeout_secs = 1;
    let app = start(config).await;
    let keys = keys(&app).await;
    let url = format!("ws://{}/app/{}?protocol=7", app.addr, keys.key);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let hello = next_frame(&mut ws).await;
    let data: Value = serde_json::from_str(hello["data"].as_str().expect("string")).expect("json");
    assert_eq!(data["activity_timeout"], 1);
    // Silent: the hub pings; answered, it stays.
    assert_eq!(next_frame(&mut ws).await["event"], "pusher:ping");
    send(&mut ws, json!({"event": "pusher:pong", "data": {}})).await;
    assert_eq!(
        next_frame(&mut ws).await["event"],
        "pusher:ping",
        "pinged again, not closed"
    );
    // Not answered: an error frame, then a close with 4201.
    let err = next_frame(&mut ws).await;
    assert_eq!(err["data"]["code"], 4201);
    let close = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("in time");
    match close {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4201),
        other => panic!("expected a close with 4201, got {other:?}"),
    }
    app.stop().await;
}
