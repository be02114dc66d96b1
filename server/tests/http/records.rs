//! The version guard on a locker bank's details over HTTP: `ETag`,
//! `If-Match` (428 without, 400 malformed), 409 with who changed which
//! fields and nothing written, `RecordUpdated` on the record's channel and
//! the tenant's list channel, and who may read those.

use lockstep_core::{
    eventstore::channels::{self, Channel},
    identity::accounts::{find_user_by_email, Role},
    records::RecordType,
};
use reqwest::{Client, Method};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;
use crate::open_flow::{call, token};

/// A PATCH with an optional `If-Match`: status, `ETag`, body.
async fn patch(
    app: &TestApp,
    path: &str,
    bearer: &str,
    if_match: Option<&str>,
    body: Value,
) -> (u16, Option<String>, Value) {
    let mut req = Client::new()
        .patch(app.url(path))
        .bearer_auth(bearer)
        .json(&body);
    if let Some(v) = if_match {
        req = req.header("If-Match", v);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let etag = res
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = res.text().await.expect("body");
    (
        status,
        etag,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn new_bank(app: &TestApp, admin: &str) -> (String, String) {
    let (status, bank) = call(
        app,
        Method::POST,
        "/api/v1/locker-banks",
        admin,
        Some(json!({
            "serial": "LB-REC-1", "name": "Lobby", "location": "Ground floor",
            "compartments": [{"number": 1, "size": "small"}]
        })),
    )
    .await;
    assert_eq!(status, 201, "{bank}");
    assert_eq!(bank["version"], 1, "{bank}");
    let id = bank["id"].as_str().expect("id").to_string();
    (id.clone(), format!("/api/v1/locker-banks/{id}"))
}

#[tokio::test]
async fn a_stale_bank_edit_is_refused_with_who_changed_what_and_writes_nothing() {
    let (app, _db) = spawn_app().await;
    add_user(&app, "bob@lockstep.test", Role::Admin, "Default").await;
    let alice = token(&app, ADMIN_EMAIL, "*").await;
    let bob = token(&app, "bob@lockstep.test", "*").await;
    let alice_user = find_user_by_email(&app.services.db, ADMIN_EMAIL)
        .await
        .expect("db")
        .expect("alice");
    let (id, path) = new_bank(&app, &alice).await;

    // The record's ETag is its version.
    let res = Client::new()
        .get(app.url(&path))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("get");
    assert_eq!(res.headers()["etag"], "\"1\"");

    // No version: 428, nothing written.
    let (status, _, body) = patch(&app, &path, &bob, None, json!({"name": "Hall"})).await;
    assert_eq!(status, 428, "{body}");
    assert_eq!(body["error"]["code"], "version_required");
    let (status, _, body) = patch(&app, &path, &bob, Some("*"), json!({"name": "Hall"})).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (428, json!("version_required"))
    );
    for bad in ["1", "\"one\"", "\"0\""] {
        let (status, _, body) = patch(&app, &path, &bob, Some(bad), json!({"name": "Hall"})).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // Alice edits version 1: version 2.
    let (status, etag, bank) = patch(
        &app,
        &path,
        &alice,
        Some("\"1\""),
        json!({"name": "Main lobby", "location": null}),
    )
    .await;
    assert_eq!(status, 200, "{bank}");
    assert_eq!(etag.as_deref(), Some("\"2\""));
    assert_eq!(
        (&bank["name"], &bank["location"], &bank["version"]),
        (&json!("Main lobby"), &Value::Null, &json!(2))
    );

    // Bob, still on version 1, edits the notes: 409 naming Alice, the
    // fields she changed, and the current version; his notes are not kept.
    let (status, _, body) = patch(
        &app,
        &path,
        &bob,
        Some("\"1\""),
        json!({"notes": "Door 3 sticks"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "stale_version");
    let conflict = &body["conflict"];
    assert_eq!(conflict["record_type"], "locker-bank");
    assert_eq!(conflict["record_id"], id.as_str());
    assert_eq!(conflict["your_version"], 1);
    assert_eq!(conflict["current_version"], 2);
    assert_eq!(conflict["fields"], json!(["name", "location"]));
    assert_eq!(conflict["updated_by"]["id"], alice_user.id.to_string());
    assert_eq!(conflict["updated_by"]["name"], alice_user.name.as_str());
    assert!(conflict["updated_at"].as_i64().is_some(), "{conflict}");
    let (_, stored) = call(&app, Method::GET, &path, &alice, None).await;
    assert_eq!(
        (&stored["notes"], &stored["version"]),
        (&Value::Null, &json!(2))
    );

    // On the current version it goes through.
    let (status, etag, bank) = patch(
        &app,
        &path,
        &bob,
        Some("\"2\""),
        json!({"notes": "Door 3 sticks"}),
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"3\"")), "{bank}");
    assert_eq!(bank["name"], "Main lobby", "Alice's edit is kept");

    // An edit that changes nothing writes nothing.
    let (status, etag, _) = patch(
        &app,
        &path,
        &bob,
        Some("\"3\""),
        json!({"name": " Main lobby "}),
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"3\"")));

    // The version endpoint, for editors that poll.
    let (status, v) = call(
        &app,
        Method::GET,
        &format!("/api/v1/records/locker-bank/{id}/version"),
        &alice,
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["version"], 3);
    let bob_user = find_user_by_email(&app.services.db, "bob@lockstep.test")
        .await
        .expect("db")
        .expect("bob");
    assert_eq!(v["updated_by"]["id"], bob_user.id.to_string());
    assert_eq!(v["updated_by"]["name"], bob_user.name.as_str());
}

#[tokio::test]
async fn bank_edits_refuse_bad_bodies_other_tenants_and_users() {
    let (app, _db) = spawn_app().await;
    add_user(&app, "eve@other.test", Role::Admin, "Other").await;
    add_user(&app, "uma@lockstep.test", Role::User, "Default").await;
    let admin = token(&app, ADMIN_EMAIL, "*").await;
    let eve = token(&app, "eve@other.test", "*").await;
    let uma = token(&app, "uma@lockstep.test", "profile.read").await;
    let (id, path) = new_bank(&app, &admin).await;

    let (status, _, body) =
        patch(&app, &path, &admin, Some("\"1\""), json!({"colour": "red"})).await;
    assert_eq!(status, 422, "{body}");
    let (status, _, body) = patch(&app, &path, &admin, Some("\"1\""), json!({"name": ""})).await;
    assert_eq!(status, 422, "{body}");
    // A NUL would make PostgreSQL fail the write (a 500): refused first.
    let (status, _, body) = patch(
        &app,
        &path,
        &admin,
        Some("\"1\""),
        json!({"notes": "a\u{0}b"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, _, body) = patch(
        &app,
        &path,
        &admin,
        Some("\"1\""),
        json!({"notes": "x".repeat(2001)}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, _, _) = patch(&app, &path, &eve, Some("\"1\""), json!({"name": "Mine"})).await;
    assert_eq!(status, 404, "another tenant's bank does not exist for Eve");
    let (status, _, _) = patch(&app, &path, &uma, Some("\"1\""), json!({"name": "Mine"})).await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &app,
        Method::GET,
        &format!("/api/v1/records/locker-bank/{id}/version"),
        &eve,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, stored) = call(&app, Method::GET, &path, &admin, None).await;
    assert_eq!(
        (&stored["name"], &stored["version"]),
        (&json!("Lobby"), &json!(1))
    );
}

#[tokio::test]
async fn an_edit_is_broadcast_as_record_updated_and_other_bank_events_do_not_make_it_stale() {
    let (app, _db) = spawn_app().await;
    add_user(&app, "eve@other.test", Role::Admin, "Other").await;
    add_user(&app, "uma@lockstep.test", Role::User, "Default").await;
    let admin = token(&app, ADMIN_EMAIL, "*").await;
    let (id, path) = new_bank(&app, &admin).await;
    let bank_id: Uuid = id.parse().expect("uuid");
    let admin_user = find_user_by_email(&app.services.db, ADMIN_EMAIL)
        .await
        .expect("db")
        .expect("admin");
    let record = Channel::Record(RecordType::LockerBank, bank_id);
    let list = Channel::TenantLockers(admin_user.tenant_id);
    let list_head = channels::head(&app.services.db, &list).await.expect("head");

    let (status, _, _) = patch(
        &app,
        &path,
        &admin,
        Some("\"1\""),
        json!({"notes": "Key in the office"}),
    )
    .await;
    assert_eq!(status, 200);
    let on_record = channels::since(&app.services.db, &record, 0, 100)
        .await
        .expect("since")
        .events;
    assert_eq!(on_record.len(), 1);
    let env = &on_record[0];
    assert_eq!(env.event, "RecordUpdated");
    assert_eq!(env.seq, 1);
    assert_eq!(env.data["record_type"], "locker-bank");
    assert_eq!(env.data["version"], 2);
    assert_eq!(env.data["fields"], json!(["notes"]));
    assert_eq!(env.data["updated_by"]["id"], admin_user.id.to_string());
    assert!(
        serde_json::to_string(env).expect("json").len() < 1024,
        "an envelope names fields, never values"
    );
    assert!(!env.data.to_string().contains("Key in the office"));
    let on_list = channels::since(&app.services.db, &list, list_head, 100)
        .await
        .expect("since")
        .events;
    assert_eq!(
        on_list.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["RecordUpdated"]
    );

    // Another event on the same bank (decommissioning) leaves the version
    // of its details alone: an edit on version 2 still goes through.
    let (status, body) = call(
        &app,
        Method::POST,
        &format!("{path}/decommission"),
        &admin,
        Some(json!({"reason": "moving"})),
    )
    .await;
    assert!(status < 300, "{status} {body}");
    let (status, etag, _) = patch(
        &app,
        &path,
        &admin,
        Some("\"2\""),
        json!({"name": "Old lobby"}),
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"3\"")));

    // Who may read the record's channel: its tenant's admins only.
    let db = &app.services.db;
    let eve = find_user_by_email(db, "eve@other.test")
        .await
        .expect("db")
        .expect("eve");
    let uma = find_user_by_email(db, "uma@lockstep.test")
        .await
        .expect("db")
        .expect("uma");
    assert!(channels::authorize(db, &admin_user, &record)
        .await
        .expect("auth"));
    assert!(!channels::authorize(db, &eve, &record).await.expect("auth"));
    assert!(!channels::authorize(db, &uma, &record).await.expect("auth"));
    let nowhere = Channel::Record(RecordType::LockerBank, Uuid::now_v7());
    assert!(!channels::authorize(db, &admin_user, &nowhere)
        .await
        .expect("auth"));
}

#[tokio::test]
async fn compartments_are_edited_under_the_same_guard() {
    let (app, _db) = spawn_app().await;
    add_user(&app, "bob@lockstep.test", Role::Admin, "Default").await;
    add_user(&app, "uma@lockstep.test", Role::User, "Default").await;
    let alice = token(&app, ADMIN_EMAIL, "*").await;
    let bob = token(&app, "bob@lockstep.test", "*").await;
    let (bank_id, bank_path) = new_bank(&app, &alice).await;
    let (_, bank) = call(&app, Method::GET, &bank_path, &alice, None).await;
    let cid = bank["compartments"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let path = format!("/api/v1/compartments/{cid}");
    let res = Client::new()
        .get(app.url(&path))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("get");
    assert_eq!(res.headers()["etag"], "\"1\"");
    let bank_channel = Channel::LockerBank(bank_id.parse().expect("uuid"));
    let bank_head = channels::head(&app.services.db, &bank_channel)
        .await
        .expect("head");

    let (status, etag, c) = patch(
        &app,
        &path,
        &alice,
        Some("\"1\""),
        json!({"label": "Parcels"}),
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"2\"")), "{c}");
    assert_eq!(c["label"], "Parcels");

    // A grant is an event on the compartment's stream, not an edit: Bob's
    // edit on version 2 still goes through after it.
    let (status, grant) = call(
        &app,
        Method::POST,
        &format!("/api/v1/compartments/{cid}/grants"),
        &alice,
        Some(json!({"user_email": "uma@lockstep.test"})),
    )
    .await;
    assert_eq!(status, 201, "{grant}");
    let (status, _, body) = patch(&app, &path, &bob, Some("\"1\""), json!({"size": "large"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["conflict"]["fields"], json!(["label"]));
    assert_eq!(body["conflict"]["record_type"], "compartment");
    let (status, _, body) = patch(&app, &path, &bob, Some("\"2\""), json!({"size": "huge"})).await;
    assert_eq!(status, 422, "{body}");
    let (status, etag, c) = patch(
        &app,
        &path,
        &bob,
        Some("\"2\""),
        json!({"size": "large", "label": null}),
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"3\"")), "{c}");
    assert_eq!((&c["size"], &c["label"]), (&json!("large"), &Value::Null));

    // The bank page's channel hears both edits, after the grant.
    let events: Vec<String> = channels::since(&app.services.db, &bank_channel, bank_head, 100)
        .await
        .expect("since")
        .events
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(events, ["RecordUpdated", "AccessGranted", "RecordUpdated"]);

    let (status, v) = call(
        &app,
        Method::GET,
        &format!("/api/v1/records/compartment/{cid}/version"),
        &alice,
        None,
    )
    .await;
    assert_eq!((status, &v["version"]), (200, &json!(3)), "{v}");
    let (status, _) = call(
        &app,
        Method::GET,
        "/api/v1/records/widget/x/version",
        &alice,
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn accounts_are_edited_under_the_same_guard_and_broadcast_to_the_tenants_admins() {
    let (app, _db) = spawn_app().await;
    add_user(&app, "bob@lockstep.test", Role::Admin, "Default").await;
    let nia = add_user(&app, "nia@lockstep.test", Role::User, "Default").await;
    let alice = token(&app, ADMIN_EMAIL, "*").await;
    let bob = token(&app, "bob@lockstep.test", "*").await;
    let alice_user = find_user_by_email(&app.services.db, ADMIN_EMAIL)
        .await
        .expect("db")
        .expect("alice");
    let path = format!("/api/v1/users/{}", nia.id);
    let list = Channel::TenantUsers(alice_user.tenant_id);
    let record = Channel::Record(RecordType::User, nia.id);

    let (status, _, body) = patch(&app, &path, &alice, None, json!({"role": "admin"})).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (428, json!("version_required"))
    );
    let (status, etag, body) =
        patch(&app, &path, &alice, Some("\"1\""), json!({"role": "admin"})).await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"2\"")), "{body}");
    assert_eq!(
        (&body["role"], &body["version"]),
        (&json!("admin"), &json!(2))
    );

    let (status, _, body) =
        patch(&app, &path, &bob, Some("\"1\""), json!({"disabled": true})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["conflict"]["fields"], json!(["role"]));
    assert_eq!(
        body["conflict"]["updated_by"]["id"],
        alice_user.id.to_string()
    );
    let (_, stored) = call(&app, Method::GET, &path, &alice, None).await;
    assert_eq!(stored["disabled"], false, "the stale edit wrote nothing");

    let (status, _, body) = patch(&app, &path, &bob, Some("\"2\""), json!({"role": "root"})).await;
    assert_eq!(status, 422, "{body}");
    let (status, _, body) = patch(
        &app,
        &path,
        &bob,
        Some("\"2\""),
        json!({"disabled": true, "name": "Nia N."}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["disabled"], &body["name"], &body["version"]),
        (&json!(true), &json!("Nia N."), &json!(3))
    );

    // Self: a new name is fine; a role or the disabled flag is not.
    let me = format!("/api/v1/users/{}", alice_user.id);
    let (status, _, body) = patch(&app, &me, &alice, Some("\"1\""), json!({"role": "user"})).await;
    assert_eq!(status, 422, "{body}");
    let (status, _, body) = patch(
        &app,
        &me,
        &alice,
        Some("\"1\""),
        json!({"name": "Alice A."}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Each edit is one RecordUpdated on the account's channel and the
    // tenant's users channel, readable by the tenant's admins only.
    let names = |events: Vec<lockstep_core::eventstore::channels::Envelope>| {
        events
            .into_iter()
            .map(|e| e.data["fields"].clone())
            .collect::<Vec<_>>()
    };
    let db = &app.services.db;
    let on_record = channels::since(db, &record, 0, 100)
        .await
        .expect("since")
        .events;
    assert_eq!(
        names(on_record),
        [json!(["role"]), json!(["name", "disabled"])]
    );
    let on_list = channels::since(db, &list, 0, 100)
        .await
        .expect("since")
        .events;
    assert_eq!(on_list.len(), 3, "two edits of Nia, one of Alice");
    assert!(channels::authorize(db, &alice_user, &list)
        .await
        .expect("auth"));
    let nia_now = find_user_by_email(db, "nia@lockstep.test")
        .await
        .expect("db");
    assert!(nia_now.is_none(), "a disabled account resolves to nobody");
    let uma = add_user(&app, "uma@lockstep.test", Role::User, "Default").await;
    assert!(!channels::authorize(db, &uma, &list).await.expect("auth"));
    assert!(!channels::authorize(db, &uma, &record).await.expect("auth"));
}

#[tokio::test]
async fn a_grants_window_is_edited_under_the_guard_and_holds_from_the_next_open() {
    let (app, _db) = spawn_app().await;
    add_user(&app, "bob@lockstep.test", Role::Admin, "Default").await;
    let uma_user = add_user(&app, "uma@lockstep.test", Role::User, "Default").await;
    let alice = token(&app, ADMIN_EMAIL, "*").await;
    let bob = token(&app, "bob@lockstep.test", "*").await;
    let uma = token(
        &app,
        "uma@lockstep.test",
        "compartment.read,compartment.open",
    )
    .await;
    let (_, bank_path) = new_bank(&app, &alice).await;
    let (_, bank) = call(&app, Method::GET, &bank_path, &alice, None).await;
    let cid = bank["compartments"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (status, grant) = call(
        &app,
        Method::POST,
        &format!("/api/v1/compartments/{cid}/grants"),
        &alice,
        Some(json!({"user_email": "uma@lockstep.test"})),
    )
    .await;
    assert_eq!(status, 201, "{grant}");
    assert_eq!(grant["version"], 1);
    let gid = grant["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/grants/{gid}");
    let user_channel = Channel::User(uma_user.id);
    let user_head = channels::head(&app.services.db, &user_channel)
        .await
        .expect("head");

    // The window now ends in the past: Uma's next open is refused for it.
    let ended = lockstep_core::now_ms() - 60_000;
    let (status, etag, g) = patch(
        &app,
        &path,
        &alice,
        Some("\"1\""),
        json!({"valid_until": ended}),
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"2\"")), "{g}");
    assert_eq!(g["valid_until"], ended);
    let (status, denied) = call(
        &app,
        Method::POST,
        &format!("/api/v1/compartments/{cid}/open"),
        &uma,
        None,
    )
    .await;
    assert_eq!(status, 403, "{denied}");
    assert_eq!(denied["reason"], "access_expired");

    // Bob, on version 1: refused, the window stays Alice's.
    let (status, _, body) = patch(
        &app,
        &path,
        &bob,
        Some("\"1\""),
        json!({"valid_from": ended - 1}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["conflict"]["fields"], json!(["valid_until"]));
    assert_eq!(body["conflict"]["record_type"], "grant");
    // A window that ends before it starts is refused.
    let (status, _, body) = patch(
        &app,
        &path,
        &bob,
        Some("\"2\""),
        json!({"valid_from": ended + 1}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    // Open-ended again: Uma may open.
    let (status, etag, _) = patch(
        &app,
        &path,
        &bob,
        Some("\"2\""),
        json!({"valid_until": null}),
    )
    .await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"3\"")));
    let (status, accepted) = call(
        &app,
        Method::POST,
        &format!("/api/v1/compartments/{cid}/open"),
        &uma,
        None,
    )
    .await;
    assert!(status < 300, "{status} {accepted}");

    // Uma's own channel hears both edits.
    let heard: Vec<Value> = channels::since(&app.services.db, &user_channel, user_head, 100)
        .await
        .expect("since")
        .events
        .into_iter()
        .filter(|e| e.event == "RecordUpdated")
        .map(|e| e.data["version"].clone())
        .collect();
    assert_eq!(heard, [json!(2), json!(3)]);

    // A revoked grant is not edited.
    let (status, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/compartments/{cid}/grants/{gid}"),
        &alice,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _, body) = patch(
        &app,
        &path,
        &alice,
        Some("\"3\""),
        json!({"valid_until": ended}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, v) = call(
        &app,
        Method::GET,
        &format!("/api/v1/records/grant/{gid}/version"),
        &alice,
        None,
    )
    .await;
    assert_eq!((status, &v["version"]), (200, &json!(3)), "{v}");
}

/// POSTs a CSV import.
async fn import(app: &TestApp, bank_path: &str, bearer: &str, csv: String) -> (u16, Value) {
    let res = Client::new()
        .post(app.url(&format!("{bank_path}/compartments/import")))
        .bearer_auth(bearer)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("import");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn an_import_of_200_compartments_is_one_summary_envelope_not_200() {
    let (app, _db) = spawn_app().await;
    add_user(&app, "eve@other.test", Role::Admin, "Other").await;
    let admin = token(&app, ADMIN_EMAIL, "*").await;
    let eve = token(&app, "eve@other.test", "*").await;
    let (bank_id, bank_path) = new_bank(&app, &admin).await;
    let admin_user = find_user_by_email(&app.services.db, ADMIN_EMAIL)
        .await
        .expect("db")
        .expect("admin");
    let db = &app.services.db;
    let list = Channel::TenantLockers(admin_user.tenant_id);
    let bank_channel = Channel::LockerBank(bank_id.parse().expect("uuid"));
    let (list_head, bank_head) = (
        channels::head(db, &list).await.expect("head"),
        channels::head(db, &bank_channel).await.expect("head"),
    );

    // Refused whole, naming the row; nothing written.
    let (status, body) = import(
        &app,
        &bank_path,
        &admin,
        "number,size,label\n2,small,\n3,huge,\n".into(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("row 3"),
        "{body}"
    );
    let (status, body) = import(
        &app,
        &bank_path,
        &admin,
        "number,size\n2,small\n2,large\n".into(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = import(&app, &bank_path, &admin, "colour\nred\n".into()).await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = import(&app, &bank_path, &eve, "number,size\n2,small\n".into()).await;
    assert_eq!(status, 404, "another tenant's bank");
    assert_eq!(channels::head(db, &list).await.expect("head"), list_head);

    // Number 1 exists (its label changes); 2..=200 are new.
    let mut csv = String::from("number,size,label\n1,small,Returns\n");
    for n in 2..=200 {
        csv.push_str(&format!("{n},medium,Shelf {n}\n"));
    }
    let (status, summary) = import(&app, &bank_path, &admin, csv).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary, json!({"added": 199, "updated": 1, "unchanged": 0}));
    let (_, bank) = call(&app, Method::GET, &bank_path, &admin, None).await;
    let compartments = bank["compartments"].as_array().expect("compartments");
    assert_eq!(compartments.len(), 200);
    assert_eq!(
        (&compartments[0]["label"], &compartments[0]["version"]),
        (&json!("Returns"), &json!(2))
    );
    assert_eq!(compartments[199]["label"], "Shelf 200");

    // One envelope on the list channel and one on the bank's, not 200.
    for (channel, head) in [(&list, list_head), (&bank_channel, bank_head)] {
        let events = channels::since(db, channel, head, 1000)
            .await
            .expect("since")
            .events;
        assert_eq!(events.len(), 1, "{channel}: {events:?}");
        assert_eq!(events[0].event, "RecordsImported");
        assert_eq!(events[0].data["added"], 199);
        assert_eq!(events[0].data["record_type"], "compartment");
    }

    // The import was an edit of compartment 1: an editor still on
    // version 1 meets the 409, naming the label.
    let c1 = compartments[0]["id"].as_str().expect("id");
    let (status, _, body) = patch(
        &app,
        &format!("/api/v1/compartments/{c1}"),
        &admin,
        Some("\"1\""),
        json!({"size": "large"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["conflict"]["fields"], json!(["label"]));

    // The same file again changes nothing.
    let (status, summary) = import(
        &app,
        &bank_path,
        &admin,
        "number,size,label\n1,small,Returns\n".into(),
    )
    .await;
    assert_eq!(
        (status, summary),
        (200, json!({"added": 0, "updated": 0, "unchanged": 1}))
    );
}

#[tokio::test]
async fn a_polling_tab_is_not_returned_the_echo_of_its_own_edit() {
    let (app, _db) = spawn_app().await;
    let admin = token(&app, ADMIN_EMAIL, "*").await;
    let (id, path) = new_bank(&app, &admin).await;
    let res = Client::new()
        .patch(app.url(&path))
        .bearer_auth(&admin)
        .header("If-Match", "\"1\"")
        .header("X-Tab-ID", "tab-editing-1")
        .json(&json!({"notes": "mine"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(res.status().as_u16(), 200);
    let poll = |tab: Option<&'static str>| {
        let mut req = Client::new()
            .get(app.url(&format!(
                "/api/v1/events/since?channel=private-record.locker-bank.{id}&seq=0"
            )))
            .bearer_auth(&admin);
        if let Some(t) = tab {
            req = req.header("X-Tab-ID", t);
        }
        async move {
            let res = req.send().await.expect("poll");
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, own) = poll(Some("tab-editing-1")).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(
        (&own["seq"], own["events"].as_array().map(Vec::len)),
        (&json!(1), Some(0))
    );
    let (_, other) = poll(Some("tab-watching-2")).await;
    assert_eq!(other["events"][0]["event"], "RecordUpdated");
    let (_, anyone) = poll(None).await;
    assert_eq!(anyone["events"].as_array().map(Vec::len), Some(1));
    let (status, bad) = poll(Some("x")).await;
    assert_eq!(status, 400, "{bad}");
}
