//! The hub's presence channels (members once per user, added and removed,
//! the HTTP API's users and user counts, Lockstep's own presence channels
//! signed by `/broadcasting/auth`), client events, and the per-connection
//! limits on inbound messages.

use futures_util::SinkExt;
use lockstep_core::{
    identity::accounts::{find_user_by_email, Role},
    identity::caller::Caller,
    lockers::{self, NewBank, NewCompartment},
};
use lockstep_server::hub::AppKeys;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::hub::{auth, connect, keys, next_frame, publish, send, signed_url, token_of, Ws};

/// Joins a presence channel an app signed (the app secret) as `user_id`;
/// returns the `subscription_succeeded` data.
async fn join(ws: &mut Ws, keys: &AppKeys, socket_id: &str, channel: &str, user_id: &str) -> Value {
    let channel_data =
        json!({"user_id": user_id, "user_info": {"name": format!("N{user_id}")}}).to_string();
    let auth = keys.channel_auth(socket_id, channel, Some(&channel_data));
    send(
        ws,
        json!({"event": "pusher:subscribe",
               "data": {"channel": channel, "auth": auth, "channel_data": channel_data}}),
    )
    .await;
    let ok = next_frame(ws).await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    assert_eq!(ok["channel"], channel);
    serde_json::from_str(ok["data"].as_str().expect("data is a string")).expect("json")
}

/// A signed GET of the Pusher HTTP API.
async fn api_get(
    app: &TestApp,
    keys: &AppKeys,
    path: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let res = reqwest::get(signed_url(app, keys, "GET", path, "", extra))
        .await
        .expect("get");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Publishes `marker` on `channel` (an app channel) and returns once `ws`
/// has it: whatever the registry queued for `ws` before is read first.
/// `also` (the channel's other subscribers) must get it next as well.
async fn next_is_marker(
    app: &TestApp,
    keys: &AppKeys,
    ws: &mut Ws,
    also: Vec<&mut Ws>,
    channel: &str,
    marker: &str,
) {
    let (status, _) = publish(
        app,
        keys,
        &format!("/apps/{}/events", keys.app_id),
        &json!({"name": "marker", "channel": channel, "data": marker}),
    )
    .await;
    assert_eq!(status, 200);
    for ws in std::iter::once(ws).chain(also) {
        let f = next_frame(ws).await;
        assert_eq!(
            (f["event"].as_str(), f["data"].as_str()),
            (Some("marker"), Some(marker)),
            "{f}"
        );
    }
}

fn data_of(frame: &Value) -> Value {
    serde_json::from_str(frame["data"].as_str().expect("data is a string")).expect("json")
}

#[tokio::test]
async fn presence_members_come_and_go_once_per_user() {
    let (app, _db) = spawn_app().await;
    let keys = keys(&app).await;
    let room = "presence-room.1";
    let (mut a1, a1_id) = connect(&app, &keys.key).await;
    let here = join(&mut a1, &keys, &a1_id, room, "7").await;
    assert_eq!(here["presence"]["count"], 1);
    assert_eq!(here["presence"]["ids"], json!(["7"]));
    assert_eq!(here["presence"]["hash"]["7"], json!({"name": "N7"}));

    // A second tab of the same user: still one member, nobody told.
    let (mut a2, a2_id) = connect(&app, &keys.key).await;
    let here = join(&mut a2, &keys, &a2_id, room, "7").await;
    assert_eq!(here["presence"]["count"], 1);
    next_is_marker(&app, &keys, &mut a1, vec![&mut a2], room, "no one new").await;

    // Another user: the others hear of them; they see both.
    let (mut b, b_id) = connect(&app, &keys.key).await;
    let here = join(&mut b, &keys, &b_id, room, "8").await;
    assert_eq!(here["presence"]["count"], 2);
    for ws in [&mut a1, &mut a2] {
        let added = next_frame(ws).await;
        assert_eq!(added["event"], "pusher_internal:member_added");
        assert_eq!(added["channel"], room);
        assert_eq!(
            data_of(&added),
            json!({"user_id": "8", "user_info": {"name": "N8"}})
        );
    }

    // The same member subscribing again: the list again, nobody told
    // (no member_removed/member_added flapping).
    let again = join(&mut a2, &keys, &a2_id, room, "7").await;
    assert_eq!(again["presence"]["count"], 2);
    next_is_marker(
        &app,
        &keys,
        &mut b,
        vec![&mut a1, &mut a2],
        room,
        "no flapping",
    )
    .await;

    // The HTTP API: each user once, user counts on presence listings only.
    let (status, users) = api_get(
        &app,
        &keys,
        &format!("/apps/{}/channels/{room}/users", keys.app_id),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let mut ids: Vec<&str> = users["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["id"].as_str())
        .collect();
    ids.sort();
    assert_eq!(ids, ["7", "8"]);
    let channels = format!("/apps/{}/channels", keys.app_id);
    let (status, listed) = api_get(
        &app,
        &keys,
        &channels,
        &[("filter_by_prefix", "presence-"), ("info", "user_count")],
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["channels"][room]["user_count"], 2);
    let (status, _) = api_get(&app, &keys, &channels, &[("info", "user_count")]).await;
    assert_eq!(status, 400, "user_count without the presence- prefix");
    let (status, one) = api_get(
        &app,
        &keys,
        &format!("{channels}/{room}"),
        &[("info", "user_count,subscription_count")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            one["user_count"].as_i64(),
            one["subscription_count"].as_i64()
        ),
        (Some(2), Some(3))
    );

    // One of user 7's tabs goes: nobody is told; the other goes: they are.
    a1.close(None).await.expect("close");
    let count = || async {
        api_get(
            &app,
            &keys,
            &format!("{channels}/{room}"),
            &[("info", "subscription_count")],
        )
        .await
        .1["subscription_count"]
            .as_i64()
    };
    // Polled (no event says the hub has seen the close), within 10 s.
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while count().await != Some(2) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the closed tab left in time");
    next_is_marker(&app, &keys, &mut b, vec![&mut a2], room, "7 is still here").await;
    a2.send(tokio_tungstenite::tungstenite::Message::Close(None))
        .await
        .expect("close");
    let removed = next_frame(&mut b).await;
    assert_eq!(
        removed["event"], "pusher_internal:member_removed",
        "{removed}"
    );
    assert_eq!(data_of(&removed), json!({"user_id": "7"}));
    app.stop().await;
}

#[tokio::test]
async fn a_presence_subscribe_needs_a_signed_member() {
    let (app, _db) = spawn_app().await;
    let keys = keys(&app).await;
    let (mut ws, socket_id) = connect(&app, &keys.key).await;
    let room = "presence-room.2";
    let signed = json!({"user_id": "1"}).to_string();
    let auth = keys.channel_auth(&socket_id, room, Some(&signed));
    // Another member than the one signed: a bad signature.
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": room, "auth": auth,
        "channel_data": json!({"user_id": "2"}).to_string()}}),
    )
    .await;
    assert_eq!(next_frame(&mut ws).await["data"]["code"], 4009);
    assert_eq!(
        next_frame(&mut ws).await["event"],
        "pusher:subscription_error"
    );
    // Signed, but no user_id: refused with a reason.
    let bare = json!({"user_info": {}}).to_string();
    let auth = keys.channel_auth(&socket_id, room, Some(&bare));
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": room, "auth": auth,
        "channel_data": bare}}),
    )
    .await;
    let refused = next_frame(&mut ws).await;
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
    assert_eq!(refused["data"]["status"], 400);
    // A numeric user_id (as Laravel sends it) is a member.
    let numeric = json!({"user_id": 42, "user_info": {"name": "Ann"}}).to_string();
    let auth = keys.channel_auth(&socket_id, room, Some(&numeric));
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": room, "auth": auth,
        "channel_data": numeric}}),
    )
    .await;
    let ok = next_frame(&mut ws).await;
    assert_eq!(data_of(&ok)["presence"]["ids"], json!(["42"]));
    app.stop().await;
}

/// `presence-locker-bank.{id}`: `/broadcasting/auth` names the member
/// (`user_id`, `user_info.name`) and signs it with the server's own key;
/// the app secret cannot join it, and its users are listed.
#[tokio::test]
async fn a_banks_presence_channel_shows_the_admins_watching_it() {
    let (app, _db) = spawn_app().await;
    let keys = keys(&app).await;
    let admin = find_user_by_email(&app.services.db, ADMIN_EMAIL)
        .await
        .expect("q")
        .expect("admin");
    let caller = Caller::new(
        admin.clone(),
        lockstep_core::eventstore::events::Actor::User { id: admin.id },
    );
    let bank = lockers::register_bank(
        &app.services,
        &caller,
        NewBank {
            serial: "PRES-1".into(),
            name: "Presence".into(),
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
    let channel = format!("presence-locker-bank.{}", bank.id);
    let token = token_of(&app, ADMIN_EMAIL).await;
    let (mut ws, socket_id) = connect(&app, &keys.key).await;
    let (status, body) = auth(&app, &token, &socket_id, &channel).await;
    assert_eq!(status, 200, "{body}");
    let channel_data = body["channel_data"]
        .as_str()
        .expect("channel_data")
        .to_string();
    let member: Value = serde_json::from_str(&channel_data).expect("json");
    assert_eq!(member["user_id"], admin.id.to_string());
    assert_eq!(member["user_info"]["name"], admin.name.as_str());
    // The app secret's signature of the same member does not open it.
    let forged = keys.channel_auth(&socket_id, &channel, Some(&channel_data));
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": forged,
        "channel_data": channel_data}}),
    )
    .await;
    assert_eq!(next_frame(&mut ws).await["data"]["code"], 4009);
    assert_eq!(
        next_frame(&mut ws).await["event"],
        "pusher:subscription_error"
    );
    send(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": body["auth"],
        "channel_data": channel_data}}),
    )
    .await;
    let ok = next_frame(&mut ws).await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    assert_eq!(
        data_of(&ok)["presence"]["ids"],
        json!([admin.id.to_string()])
    );
    let (_, users) = api_get(
        &app,
        &keys,
        &format!("/apps/{}/channels/{channel}/users", keys.app_id),
        &[],
    )
    .await;
    assert_eq!(users, json!({"users": [{"id": admin.id.to_string()}]}));
    // Lockstep's presence channels are not the HTTP API's to write.
    let (status, _) = publish(
        &app,
        &keys,
        &format!("/apps/{}/events", keys.app_id),
        &json!({"name": "x", "channel": channel, "data": "{}"}),
    )
    .await;
    assert_eq!(status, 403);
    // A user (not an admin) is refused the bank's presence, and a record's.
    add_user(&app, "pres-user@lockstep.test", Role::User, "Default").await;
    let user_token = token_of(&app, "pres-user@lockstep.test").await;
    for refused in [
        channel.clone(),
        format!("presence-record.locker-bank.{}", bank.id),
    ] {
        let (status, _) = auth(&app, &user_token, &socket_id, &refused).await;
        assert_eq!(status, 403, "{refused}");
    }
    let (status, _) = auth(
        &app,
        &token,
        &socket_id,
        &format!("presence-record.compartment.{}", bank.compartments[0].id),
    )
    .await;
    assert_eq!(status, 200, "an admin edits their tenant's compartment");
    app.stop().await;
}

async fn client_event_app(enabled: bool) -> (TestApp, lockstep_core::testing::TestDb) {
    let db = lockstep_core::testing::fresh_database().await;
    let mut config = lockstep_server::ServeConfig::for_tests(&db.url, db.dir.clone());
    config.pusher_client_events = enabled;
    (start(config).await, db)
}

async fn subscribe_private(ws: &mut Ws, keys: &AppKeys, socket_id: &str, channel: &str) {
    let auth = keys.channel_auth(socket_id, channel, None);
    send(
        ws,
        json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}),
    )
    .await;
    assert_eq!(
        next_frame(ws).await["event"],
        "pusher_internal:subscription_succeeded"
    );
}

#[tokio::test]
async fn client_events_reach_the_other_subscribers_of_private_and_presence_channels() {
    let (app, _db) = client_event_app(true).await;
    let keys = keys(&app).await;
    let (mut a, a_id) = connect(&app, &keys.key).await;
    let (mut b, b_id) = connect(&app, &keys.key).await;
    let chat = "private-chat.1";
    subscribe_private(&mut a, &keys, &a_id, chat).await;
    subscribe_private(&mut b, &keys, &b_id, chat).await;
    send(
        &mut a,
        json!({"event": "client-typing", "channel": chat, "data": {"who": "a"}}),
    )
    .await;
    let got = next_frame(&mut b).await;
    assert_eq!(got["event"], "client-typing");
    assert_eq!(got["channel"], chat);
    assert_eq!(
        got["data"],
        json!({"who": "a"}),
        "data as the sender wrote it"
    );
    // A frame near the 10 KB limit (over the 4 KiB read buffer) whole.
    let big = "b".repeat(9 * 1024);
    send(
        &mut a,
        json!({"event": "client-big", "channel": chat, "data": {"text": big}}),
    )
    .await;
    let got = next_frame(&mut b).await;
    assert_eq!(got["data"]["text"].as_str(), Some(big.as_str()));
    // Never echoed to the sender.
    next_is_marker(&app, &keys, &mut a, vec![&mut b], chat, "after typing").await;

    // On a presence channel, with the sender's user_id.
    let room = "presence-room.3";
    join(&mut a, &keys, &a_id, room, "1").await;
    join(&mut b, &keys, &b_id, room, "2").await;
    assert_eq!(
        next_frame(&mut a).await["event"],
        "pusher_internal:member_added"
    );
    send(
        &mut b,
        json!({"event": "client-wave", "channel": room, "data": {}}),
    )
    .await;
    let got = next_frame(&mut a).await;
    assert_eq!(
        (got["event"].as_str(), got["user_id"].as_str()),
        (Some("client-wave"), Some("2")),
        "{got}"
    );

    // Refused, with an error to the sender and nothing delivered: a public
    // channel, a channel not joined, a Lockstep log channel.
    send(
        &mut a,
        json!({"event": "pusher:subscribe", "data": {"channel": "lobby"}}),
    )
    .await;
    assert_eq!(
        next_frame(&mut a).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    send(
        &mut b,
        json!({"event": "pusher:subscribe", "data": {"channel": "lobby"}}),
    )
    .await;
    assert_eq!(
        next_frame(&mut b).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let user_channel = format!("private-user.{}", uuid::Uuid::now_v7());
    for (channel, reason) in [
        ("lobby", "hub_client_event_public"),
        ("private-chat.2", "hub_client_event_not_subscribed"),
        (user_channel.as_str(), "hub_client_event_log_channel"),
    ] {
        let before = rejections(&app, reason).await;
        send(
            &mut a,
            json!({"event": "client-x", "channel": channel, "data": {}}),
        )
        .await;
        let error = next_frame(&mut a).await;
        assert_eq!(
            (error["event"].as_str(), error["data"]["code"].as_i64()),
            (Some("pusher:error"), Some(4301)),
            "{channel}: {error}"
        );
        assert!(rejections(&app, reason).await > before, "{reason} counted");
    }
    next_is_marker(
        &app,
        &keys,
        &mut b,
        vec![&mut a],
        "lobby",
        "nothing refused reached b",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn client_events_are_refused_unless_enabled() {
    let (app, _db) = client_event_app(false).await;
    let keys = keys(&app).await;
    let (mut a, a_id) = connect(&app, &keys.key).await;
    let (mut b, b_id) = connect(&app, &keys.key).await;
    subscribe_private(&mut a, &keys, &a_id, "private-chat.1").await;
    subscribe_private(&mut b, &keys, &b_id, "private-chat.1").await;
    send(
        &mut a,
        json!({"event": "client-typing", "channel": "private-chat.1", "data": {}}),
    )
    .await;
    let error = next_frame(&mut a).await;
    assert_eq!(error["data"]["code"], 4301, "{error}");
    next_is_marker(
        &app,
        &keys,
        &mut b,
        vec![&mut a],
        "private-chat.1",
        "nothing relayed",
    )
    .await;
    app.stop().await;
}

/// Over the inbound rate, messages are refused (4301) and counted; pings
/// still answer; another connection is untouched. An overlong event name
/// is refused too.
#[tokio::test]
async fn the_inbound_rate_limit_refuses_the_excess_of_one_connection_only() {
    let db = lockstep_core::testing::fresh_database().await;
    let mut config = lockstep_server::ServeConfig::for_tests(&db.url, db.dir.clone());
    config.hub_rate_limit = 5;
    config.hub_rate_window_secs = 3600;
    let app = start(config).await;
    let keys = keys(&app).await;
    let (mut a, _) = connect(&app, &keys.key).await;
    let (mut b, _) = connect(&app, &keys.key).await;
    let before = rejections(&app, "hub_rate_limited").await;
    // Subscribes have their own budget (twice the channel limit): twelve
    // pass a message rate of five.
    for i in 0..12 {
        send(
            &mut a,
            json!({"event": "pusher:subscribe", "data": {"channel": format!("c{i}")}}),
        )
        .await;
        assert_eq!(
            next_frame(&mut a).await["event"],
            "pusher_internal:subscription_succeeded"
        );
    }
    // Five other messages pass (client events are off: each gets that
    // refusal), the sixth is over the rate.
    for _ in 0..5 {
        send(
            &mut a,
            json!({"event": "client-x", "channel": "private-x", "data": {}}),
        )
        .await;
        let refused = next_frame(&mut a).await;
        assert_eq!(
            refused["data"]["message"],
            "client events are not enabled on this server"
        );
    }
    send(
        &mut a,
        json!({"event": "client-x", "channel": "private-x", "data": {}}),
    )
    .await;
    let refused = next_frame(&mut a).await;
    assert_eq!(
        (
            refused["event"].as_str(),
            refused["data"]["code"].as_i64(),
            refused["data"]["message"].as_str()
        ),
        (
            Some("pusher:error"),
            Some(4301),
            Some("too many messages; slow down")
        ),
        "{refused}"
    );
    assert_eq!(rejections(&app, "hub_rate_limited").await, before + 1);
    send(&mut a, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(next_frame(&mut a).await["event"], "pusher:pong");
    // The subscribe budget runs out too (200 here): the next subscribe
    // gets its channel's subscription_error, and is not joined.
    for _ in 12..200 {
        send(
            &mut a,
            json!({"event": "pusher:subscribe", "data": {"channel": "c0"}}),
        )
        .await;
        assert_eq!(
            next_frame(&mut a).await["event"],
            "pusher_internal:subscription_succeeded"
        );
    }
    send(
        &mut a,
        json!({"event": "pusher:subscribe", "data": {"channel": "c5b"}}),
    )
    .await;
    let refused = next_frame(&mut a).await;
    assert_eq!(
        (refused["event"].as_str(), refused["channel"].as_str()),
        (Some("pusher:subscription_error"), Some("c5b")),
        "{refused}"
    );
    // c5b was never joined: a publish to it reaches nobody on `a` (its
    // next frame is the one from c0).
    let events = format!("/apps/{}/events", keys.app_id);
    publish(
        &app,
        &keys,
        &events,
        &json!({"name": "e", "channel": "c5b", "data": "5"}),
    )
    .await;
    publish(
        &app,
        &keys,
        &events,
        &json!({"name": "e", "channel": "c0", "data": "0"}),
    )
    .await;
    assert_eq!(next_frame(&mut a).await["channel"], "c0");
    // Another connection is not limited by a's traffic.
    let name_limit = "x".repeat(201);
    send(&mut b, json!({"event": name_limit, "data": {}})).await;
    let refused = next_frame(&mut b).await;
    assert_eq!(refused["data"]["code"], 4301, "{refused}");
    send(
        &mut b,
        json!({"event": "pusher:subscribe", "data": {"channel": "c0"}}),
    )
    .await;
    assert_eq!(
        next_frame(&mut b).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    app.stop().await;
}

/// A receiver of webhooks: answers `failures` requests with 503, then 200;
/// every request's (signature header, key header, body) goes to the
/// channel.
pub(crate) async fn webhook_receiver(
    failures: usize,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, String, String, u16)>,
) {
    use axum::{http::HeaderMap, routing::post, Router};
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let seen = Arc::new(AtomicUsize::new(0));
    let router = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let (tx, seen) = (tx.clone(), seen.clone());
            async move {
                let status = if seen.fetch_add(1, Ordering::SeqCst) < failures {
                    503
                } else {
                    200
                };
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                let _ = tx.send((
                    header("x-pusher-signature"),
                    header("x-pusher-key"),
                    body,
                    status,
                ));
                axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}/hook"), rx)
}

pub(crate) type Hooks = tokio::sync::mpsc::UnboundedReceiver<(String, String, String, u16)>;

pub(crate) async fn next_hook(hooks: &mut Hooks) -> (String, String, String, u16) {
    tokio::time::timeout(std::time::Duration::from_secs(15), hooks.recv())
        .await
        .expect("a webhook in time")
        .expect("receiver open")
}

/// Webhooks: occupancy and members, batched as Pusher batches them,
/// signed with the app secret, and retried through the outbox when the
/// receiver fails.
#[tokio::test]
async fn webhooks_report_occupancy_and_members_signed_and_retried() {
    let (url, mut hooks) = webhook_receiver(1).await;
    let db = lockstep_core::testing::fresh_database().await;
    let mut config = lockstep_server::ServeConfig::for_tests(&db.url, db.dir.clone());
    config.pusher_webhook_urls = Some(format!(" {url} ,"));
    let app = start(config).await;
    let keys = keys(&app).await;
    let (mut ws, socket_id) = connect(&app, &keys.key).await;
    join(&mut ws, &keys, &socket_id, "presence-room.9", "5").await;
    let (signature, key, body, status) = next_hook(&mut hooks).await;
    assert_eq!(status, 503, "the first delivery fails");
    assert_eq!(key, keys.key);
    assert_eq!(
        signature,
        keys.sign(&body),
        "signed: HMAC-SHA256(secret, body)"
    );
    let (_, _, again, status) = next_hook(&mut hooks).await;
    assert_eq!(
        (status, again.as_str()),
        (200, body.as_str()),
        "retried, the same batch"
    );
    let batch: Value = serde_json::from_str(&body).expect("json");
    assert!(batch["time_ms"].as_i64().is_some_and(|t| t > 0));
    assert_eq!(
        batch["events"],
        json!([
            {"name": "channel_occupied", "channel": "presence-room.9"},
            {"name": "member_added", "channel": "presence-room.9", "user_id": "5"},
        ])
    );
    ws.close(None).await.expect("close");
    let (_, _, body, _) = next_hook(&mut hooks).await;
    let batch: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        batch["events"],
        json!([
            {"name": "member_removed", "channel": "presence-room.9", "user_id": "5"},
            {"name": "channel_vacated", "channel": "presence-room.9"},
        ])
    );
    app.stop().await;
}

#[tokio::test]
async fn a_presence_channel_refused_as_full_does_not_count_against_the_channel_limit() {
    let (app, _db) = spawn_app().await;
    let keys = keys(&app).await;
    let room = "presence-full.1";
    let limits = lockstep_server::hub::Limits::default();
    // The room fills up: one member per connection.
    let mut members = Vec::new();
    for i in 0..limits.max_presence_members {
        let (mut ws, id) = connect(&app, &keys.key).await;
        join(&mut ws, &keys, &id, room, &format!("u{i}")).await;
        members.push(ws);
    }
    let (mut late, late_id) = connect(&app, &keys.key).await;
    let channel_data = json!({"user_id": "late", "user_info": {"name": "Late"}}).to_string();
    let auth = keys.channel_auth(&late_id, room, Some(&channel_data));
    send(
        &mut late,
        json!({"event": "pusher:subscribe",
               "data": {"channel": room, "auth": auth, "channel_data": channel_data}}),
    )
    .await;
    let refused = next_frame(&mut late).await;
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
    assert_eq!(refused["channel"], room);
    assert_eq!(refused["data"]["type"], "LimitReached", "{refused}");
    // The refused room is not one of the connection's channels: it can
    // still join its full allowance of others.
    for i in 0..limits.max_channels {
        let channel = format!("public-{i}");
        send(
            &mut late,
            json!({"event": "pusher:subscribe", "data": {"channel": channel}}),
        )
        .await;
        let ok = next_frame(&mut late).await;
        assert_eq!(
            (ok["event"].as_str(), ok["channel"].as_str()),
            (
                Some("pusher_internal:subscription_succeeded"),
                Some(channel.as_str())
            ),
            "channel {i} of {}: {ok}",
            limits.max_channels
        );
    }
    app.stop().await;
}

/// The record editors' "editing" mark is relayed on a record's presence
/// channel even with client events off (the default); any other client
/// event there is still refused.
#[tokio::test]
async fn the_editing_mark_is_relayed_on_a_records_presence_channel() {
    let (app, _db) = client_event_app(false).await;
    let keys = keys(&app).await;
    let admin = find_user_by_email(&app.services.db, ADMIN_EMAIL)
        .await
        .expect("q")
        .expect("admin");
    let channel = format!("presence-record.user.{}", admin.id);
    let token = token_of(&app, ADMIN_EMAIL).await;
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let (mut ws, socket_id) = connect(&app, &keys.key).await;
        let (status, body) = auth(&app, &token, &socket_id, &channel).await;
        assert_eq!(status, 200, "{body}");
        send(
            &mut ws,
            json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": body["auth"],
            "channel_data": body["channel_data"]}}),
        )
        .await;
        let ok = next_frame(&mut ws).await;
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "{ok}"
        );
        sockets.push(ws);
    }
    let (mut a, mut b) = (sockets.remove(0), sockets.remove(0));
    // Anything but the mark is refused, not relayed.
    send(
        &mut a,
        json!({"event": "client-editing", "channel": channel, "data": {"note": "hi"}}),
    )
    .await;
    assert_eq!(next_frame(&mut a).await["data"]["code"], 4301);
    send(
        &mut a,
        json!({"event": "client-editing", "channel": channel, "data": {"editing": true, "note": "hi"}}),
    )
    .await;
    let got = next_frame(&mut b).await;
    assert_eq!(
        (got["event"].as_str(), got["user_id"].as_str()),
        (Some("client-editing"), Some(admin.id.to_string().as_str())),
        "{got}"
    );
    assert_eq!(got["data"], json!({"editing": true}));
    let before = rejections(&app, "hub_client_event_disabled").await;
    send(
        &mut a,
        json!({"event": "client-other", "channel": channel, "data": {}}),
    )
    .await;
    let error = next_frame(&mut a).await;
    assert_eq!(error["data"]["code"], 4301, "{error}");
    assert!(rejections(&app, "hub_client_event_disabled").await > before);
    app.stop().await;
}
