//! The admin panel's and the end-user app's server functions against the
//! tenant boundary: an admin of one tenant gets "not found" for every id
//! of another (and changes nothing there); a `user` session gets no admin
//! data at all.

use std::sync::Arc;

use lockstep_core::{
    eventstore::events::Actor,
    identity::{
        accounts::{find_user_by_email, Role, User},
        caller::Caller,
    },
    lockers::{self, NewBank, NewCompartment},
    now_ms, opens,
};
use reqwest::cookie::Jar;

use crate::helpers::*;

/// Calls a server function as the browser does (form-encoded).
async fn call(
    app: &TestApp,
    client: &reqwest::Client,
    name: &str,
    args: &[(&str, &str)],
) -> (u16, String) {
    let res = client
        .post(app.url(&format!("/sfn/{name}")))
        .header("Origin", app.origin())
        .header("Accept", "application/json")
        .form(args)
        .send()
        .await
        .expect("server fn");
    (res.status().as_u16(), res.text().await.unwrap_or_default())
}

/// A bank of one compartment, and an override open on it.
async fn bank_and_command(app: &TestApp, admin: &User, serial: &str) -> (String, String, String) {
    let caller = Caller::new(admin.clone(), Actor::User { id: admin.id });
    let bank = lockers::register_bank(
        &app.services,
        &caller,
        NewBank {
            serial: serial.into(),
            name: format!("{serial} hall"),
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
    let compartment = bank.compartments[0].id;
    let decision = opens::request_open(
        &app.services,
        &caller,
        opens::OpenCommandInput {
            compartment_id: compartment,
            override_: true,
            reason: Some("setup".into()),
            ..Default::default()
        },
        now_ms(),
    )
    .await
    .expect("open");
    (
        bank.id.to_string(),
        compartment.to_string(),
        decision.command_id.to_string(),
    )
}

#[tokio::test]
async fn page_functions_answer_not_found_for_another_tenants_ids_and_nothing_to_a_user() {
    let (app, _db) = spawn_app().await;
    let admin_a = find_user_by_email(&app.services.db, ADMIN_EMAIL)
        .await
        .expect("q")
        .expect("admin");
    let admin_b = add_user(&app, "admin@b.test", Role::Admin, "Tenant B").await;
    add_user(
        &app,
        "uma@lockstep.test",
        Role::User,
        &tenant_name(&app, &admin_a).await,
    )
    .await;
    let (bank_a, comp_a, cmd_a) = bank_and_command(&app, &admin_a, "PAGE-A").await;
    let (bank_b, comp_b, cmd_b) = bank_and_command(&app, &admin_b, "PAGE-B").await;
    let b_id = admin_b.id.to_string();
    let grant_b = lockers::grant_access(
        &app.services,
        &Caller::new(admin_b.clone(), Actor::User { id: admin_b.id }),
        comp_b.parse().expect("id"),
        "admin@b.test",
        None,
        None,
    )
    .await
    .expect("grant in b")
    .id
    .to_string();

    let admin = browser(Arc::new(Jar::default()));
    login(&app, &admin, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    // Its own tenant's ids work...
    assert_eq!(
        call(&app, &admin, "bank_page", &[("bank_id", &bank_a)])
            .await
            .0,
        200
    );
    assert_eq!(
        call(&app, &admin, "command_timeline", &[("command_id", &cmd_a)])
            .await
            .0,
        200
    );
    // ...another tenant's are not found, exactly as ids that do not exist.
    for (name, args) in [
        ("bank_page", vec![("bank_id", bank_b.as_str())]),
        ("provisioning_progress", vec![("bank_id", bank_b.as_str())]),
        ("command_timeline", vec![("command_id", cmd_b.as_str())]),
        (
            "admin_open",
            vec![("compartment_id", comp_b.as_str()), ("reason", "x")],
        ),
        (
            "decommission_bank",
            vec![("bank_id", bank_b.as_str()), ("reason", "x")],
        ),
        (
            "bank_page",
            vec![("bank_id", "019aa6f4-0000-7000-8000-000000000000")],
        ),
        ("bank_page", vec![("bank_id", "not-an-id")]),
        (
            "grant_compartment",
            vec![
                ("compartment_id", comp_b.as_str()),
                ("user_email", "uma@lockstep.test"),
                ("valid_from", ""),
                ("valid_until", ""),
            ],
        ),
        (
            "revoke_grant",
            vec![("compartment_id", comp_b.as_str()), ("grant_id", &grant_b)],
        ),
        (
            "set_user_role",
            vec![("user_id", &b_id), ("role", "user"), ("version", "1")],
        ),
        (
            "set_user_disabled",
            vec![("user_id", &b_id), ("disabled", "true"), ("version", "1")],
        ),
    ] {
        let (status, body) = call(&app, &admin, name, &args).await;
        assert_eq!(status, 404, "{name} {args:?}: {body}");
        assert!(!body.contains("PAGE-B"), "{name}: {body}");
    }
    // Nothing happened in tenant B: one command, the bank in service.
    let (_, total_b) = opens::history(
        &app.services,
        admin_b.tenant_id,
        &opens::HistoryFilter {
            page: 1,
            per_page: 10,
            ..Default::default()
        },
    )
    .await
    .expect("history");
    assert_eq!(total_b, 1);
    let b = lockers::get_bank(
        &app.services,
        admin_b.tenant_id,
        bank_b.parse().expect("id"),
    )
    .await
    .expect("q")
    .expect("bank b");
    assert_ne!(b.state, "decommissioned");
    let b_grants = lockers::list_grants(
        &app.services,
        admin_b.tenant_id,
        comp_b.parse().expect("id"),
    )
    .await
    .expect("grants");
    assert_eq!(b_grants.len(), 1);
    assert!(b_grants[0].revoked_at.is_none());
    let still_b = find_user_by_email(&app.services.db, "admin@b.test")
        .await
        .expect("q")
        .expect("admin b is still enabled");
    assert_eq!(still_b.role, Role::Admin);
    // Filtering the history by another tenant's bank finds nothing of it.
    let (status, body) = call(&app, &admin, "command_history", &[("bank", &bank_b)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""total":0"#), "{body}");
    assert!(!body.contains(&cmd_b), "{body}");
    for name in [
        "admin_dashboard",
        "bank_list",
        "command_history",
        "provisioning_overview",
        "admin_overview",
        "my_notifications",
    ] {
        let (status, body) = call(&app, &admin, name, &[]).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert!(
            !body.contains("PAGE-B") && !body.contains(&cmd_b),
            "{name}: {body}"
        );
    }

    // A user of tenant A: none of the admin functions, not even its own
    // tenant's data.
    let user = browser(Arc::new(Jar::default()));
    login(&app, &user, "uma@lockstep.test", USER_PASSWORD).await;
    let (status, body) = call(
        &app,
        &admin,
        "access_overview",
        &[("include_revoked", "true")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("PAGE-B") && !body.contains(&comp_b) && !body.contains("admin@b.test"),
        "{body}"
    );
    for (name, args) in [
        ("access_overview", vec![("include_revoked", "false")]),
        (
            "grant_compartment",
            vec![
                ("compartment_id", comp_a.as_str()),
                ("user_email", "uma@lockstep.test"),
                ("valid_from", ""),
                ("valid_until", ""),
            ],
        ),
        (
            "create_user",
            vec![("email", "new@lockstep.test"), ("role", "admin")],
        ),
        ("my_notifications", vec![]),
        ("admin_frame", vec![]),
        ("admin_dashboard", vec![]),
        ("admin_overview", vec![]),
        ("bank_list", vec![]),
        ("bank_page", vec![("bank_id", bank_a.as_str())]),
        ("command_history", vec![]),
        ("provisioning_overview", vec![]),
        ("provisioning_progress", vec![("bank_id", bank_a.as_str())]),
        ("create_provisioning_key", vec![("name", "k")]),
        (
            "preregister_bank",
            vec![("serial", "X-1"), ("name", "x"), ("compartments", "1")],
        ),
        ("command_timeline", vec![("command_id", cmd_a.as_str())]),
        (
            "admin_open",
            vec![("compartment_id", comp_a.as_str()), ("reason", "x")],
        ),
        (
            "decommission_bank",
            vec![("bank_id", bank_a.as_str()), ("reason", "x")],
        ),
    ] {
        let (status, body) = call(&app, &user, name, &args).await;
        assert_eq!(status, 403, "{name}: {body}");
        assert!(
            !body.contains("PAGE-A") && !body.contains(&cmd_a) && !body.contains(&bank_a),
            "{name}: {body}"
        );
    }
    // And the rendered pages carry none of it either.
    for path in [
        "/admin",
        "/admin/banks",
        "/admin/commands",
        "/admin/access",
        "/admin/users",
    ] {
        let res = user.get(app.url(path)).send().await.expect("get");
        assert_eq!(res.status(), 403, "{path}");
        let html = res.text().await.unwrap_or_default();
        assert!(!html.contains("PAGE-A") && !html.contains(&cmd_a), "{path}");
    }
    app.stop().await;
}

async fn tenant_name(app: &TestApp, user: &User) -> String {
    lockstep_core::identity::accounts::find_tenant(&app.services.db, user.tenant_id)
        .await
        .expect("q")
        .expect("tenant")
        .name
}

/// The admin's email → the user's id, through the page function.
fn id_in_overview(body: &str, email: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).expect("json");
    v["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["email"] == email)
        .and_then(|u| u["id"].as_str())
        .expect("listed")
        .to_string()
}

#[tokio::test]
async fn an_admin_creates_an_account_sets_its_role_and_disables_it() {
    let (app, _db) = spawn_app().await;
    let admin = browser(Arc::new(Jar::default()));
    login(&app, &admin, ADMIN_EMAIL, ADMIN_PASSWORD).await;

    let (status, body) = call(
        &app,
        &admin,
        "create_user",
        &[
            ("email", "Nia@Lockstep.test"),
            ("name", "Nia"),
            ("role", "user"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(created["email"], "nia@lockstep.test");
    let password = created["password"].as_str().expect("password").to_string();
    // The same email again is a conflict, a bad role is refused.
    let (status, _) = call(
        &app,
        &admin,
        "create_user",
        &[("email", "nia@lockstep.test"), ("role", "user")],
    )
    .await;
    assert_eq!(status, 409);
    let (status, body) = call(
        &app,
        &admin,
        "create_user",
        &[("email", "x@lockstep.test"), ("role", "root")],
    )
    .await;
    assert_eq!(status, 422, "{body}");

    // The new user signs in with the generated password: a user, no admin.
    let nia = browser(Arc::new(Jar::default()));
    assert_eq!(
        login(&app, &nia, "nia@lockstep.test", &password)
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(call(&app, &nia, "admin_frame", &[]).await.0, 403);

    let (_, overview) = call(&app, &admin, "admin_overview", &[]).await;
    let nia_id = id_in_overview(&overview, "nia@lockstep.test");
    let admin_id = id_in_overview(&overview, ADMIN_EMAIL);

    // Made an admin: the same session may now read the panel.
    let (status, body) = call(
        &app,
        &admin,
        "set_user_role",
        &[("user_id", &nia_id), ("role", "admin"), ("version", "1")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(call(&app, &nia, "admin_frame", &[]).await.0, 200);
    // Made on the version before that change: refused, nothing written.
    let (status, body) = call(
        &app,
        &admin,
        "set_user_role",
        &[("user_id", &nia_id), ("role", "user"), ("version", "1")],
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let stale: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(stale["Stale"]["version"], 2, "{body}");
    assert_eq!(
        stale["Stale"]["fields"],
        serde_json::json!(["role"]),
        "{body}"
    );
    assert_eq!(call(&app, &nia, "admin_frame", &[]).await.0, 200);

    // An admin cannot demote or disable themselves.
    for (name, args) in [
        (
            "set_user_role",
            [
                ("user_id", admin_id.as_str()),
                ("role", "user"),
                ("version", "1"),
            ],
        ),
        (
            "set_user_disabled",
            [
                ("user_id", admin_id.as_str()),
                ("disabled", "true"),
                ("version", "1"),
            ],
        ),
    ] {
        let (status, body) = call(&app, &admin, name, &args).await;
        assert_eq!(status, 422, "{name}: {body}");
    }

    // Disabled: the open session is nobody's, signing in fails, and the
    // overview says so.
    let (status, body) = call(
        &app,
        &admin,
        "set_user_disabled",
        &[("user_id", &nia_id), ("disabled", "true"), ("version", "2")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(call(&app, &nia, "admin_frame", &[]).await.0, 401);
    assert_eq!(me_status(&app, &nia).await, 401);
    let again = browser(Arc::new(Jar::default()));
    assert_eq!(
        login(&app, &again, "nia@lockstep.test", &password)
            .await
            .status()
            .as_u16(),
        401
    );
    let (_, overview) = call(&app, &admin, "admin_overview", &[]).await;
    assert!(
        overview
            .contains(r#""email":"nia@lockstep.test","name":"Nia","role":"admin","disabled":true"#),
        "{overview}"
    );

    // Enabled again: signing in works.
    call(
        &app,
        &admin,
        "set_user_disabled",
        &[
            ("user_id", &nia_id),
            ("disabled", "false"),
            ("version", "3"),
        ],
    )
    .await;
    assert_eq!(
        login(&app, &again, "nia@lockstep.test", &password)
            .await
            .status()
            .as_u16(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn grants_are_made_with_a_window_listed_and_revoked_from_the_access_page() {
    let (app, _db) = spawn_app().await;
    let admin_user = find_user_by_email(&app.services.db, ADMIN_EMAIL)
        .await
        .expect("q")
        .expect("admin");
    let tenant = tenant_name(&app, &admin_user).await;
    add_user(&app, "gus@lockstep.test", Role::User, &tenant).await;
    let (_, comp, _) = bank_and_command(&app, &admin_user, "ACCESS-1").await;
    let admin = browser(Arc::new(Jar::default()));
    login(&app, &admin, ADMIN_EMAIL, ADMIN_PASSWORD).await;

    let grant = |from: &'static str, until: &'static str| {
        let (admin, app, comp) = (&admin, &app, comp.clone());
        async move {
            call(
                app,
                admin,
                "grant_compartment",
                &[
                    ("compartment_id", comp.as_str()),
                    ("user_email", "gus@lockstep.test"),
                    ("valid_from", from),
                    ("valid_until", until),
                ],
            )
            .await
        }
    };
    // A malformed time and a window ending before it starts are refused.
    assert_eq!(grant("tomorrow", "").await.0, 422);
    assert_eq!(grant("2030-01-02T10:00", "2030-01-01T10:00").await.0, 422);
    let (status, body) = grant("2099-01-01T08:30", "2099-01-02T08:30").await;
    assert_eq!(status, 200, "{body}");
    let grant_id: String = serde_json::from_str(&body).expect("id");

    let (status, body) = call(
        &app,
        &admin,
        "access_overview",
        &[("include_revoked", "false")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let g = &v["grants"][0];
    assert_eq!(g["id"], grant_id.as_str());
    assert_eq!(g["user_email"], "gus@lockstep.test");
    assert_eq!(g["place"], "ACCESS-1 hall · #1");
    assert_eq!(g["state"], "scheduled");
    // 2099-01-01T08:30 UTC.
    assert_eq!(g["valid_from"], 4_070_939_400_000_i64);
    assert!(v["users"]
        .as_array()
        .expect("users")
        .iter()
        .any(|u| u == "gus@lockstep.test"));

    let (status, body) = call(
        &app,
        &admin,
        "revoke_grant",
        &[("compartment_id", comp.as_str()), ("grant_id", &grant_id)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = call(
        &app,
        &admin,
        "access_overview",
        &[("include_revoked", "false")],
    )
    .await;
    assert!(body.contains(r#""grants":[]"#), "{body}");
    let (_, body) = call(
        &app,
        &admin,
        "access_overview",
        &[("include_revoked", "true")],
    )
    .await;
    assert!(body.contains(r#""state":"revoked""#), "{body}");
    // Revoking it again: not found (nothing left to revoke).
    let (status, _) = call(
        &app,
        &admin,
        "revoke_grant",
        &[("compartment_id", comp.as_str()), ("grant_id", &grant_id)],
    )
    .await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn the_notification_list_counts_the_admins_ended_commands_until_marked_read() {
    let (app, _db) = spawn_app().await;
    let admin_user = find_user_by_email(&app.services.db, ADMIN_EMAIL)
        .await
        .expect("q")
        .expect("admin");
    let admin = browser(Arc::new(Jar::default()));
    login(&app, &admin, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let unread = |body: &str| -> i64 {
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        v["unread"].as_i64().expect("unread")
    };
    let (status, body) = call(&app, &admin, "my_notifications", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(unread(&body), 0);

    // Two of the admin's commands end: two unread, newest first.
    let mut ended = Vec::new();
    for serial in ["NOTE-1", "NOTE-2"] {
        let (_, _, cmd) = bank_and_command(&app, &admin_user, serial).await;
        opens::record_result(
            &app.services,
            cmd.parse().expect("id"),
            true,
            None,
            now_ms(),
        )
        .await
        .expect("result");
        ended.push(cmd);
    }
    let (_, body) = call(&app, &admin, "my_notifications", &[]).await;
    assert_eq!(unread(&body), 2, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i["unread"] == true));
    let newest = items[0]["ended_at"].as_i64().expect("ended_at");
    let (status, body) = call(&app, &admin, "unread_notifications", &[]).await;
    assert_eq!((status, body.as_str()), (200, "2"));

    // Marked read up to the newest shown: none unread; the frame agrees.
    let (status, body) = call(
        &app,
        &admin,
        "mark_notifications_read",
        &[("until", &newest.to_string())],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = call(&app, &admin, "my_notifications", &[]).await;
    assert_eq!(unread(&body), 0, "{body}");
    let (_, frame) = call(&app, &admin, "admin_frame", &[]).await;
    assert!(frame.contains(r#""unread":0"#), "{frame}");
    // Marking an older time does not bring them back.
    call(&app, &admin, "mark_notifications_read", &[("until", "1")]).await;
    assert_eq!(
        unread(&call(&app, &admin, "my_notifications", &[]).await.1),
        0
    );

    // One more ends: one unread.
    let (_, _, cmd) = bank_and_command(&app, &admin_user, "NOTE-3").await;
    opens::record_result(
        &app.services,
        cmd.parse().expect("id"),
        false,
        Some("jam".into()),
        now_ms() + 5,
    )
    .await
    .expect("result");
    let (_, body) = call(&app, &admin, "my_notifications", &[]).await;
    assert_eq!(unread(&body), 1, "{body}");
    assert!(
        body.contains(&cmd) && body.contains(r#""status":"failed""#),
        "{body}"
    );
    app.stop().await;
}

/// Calls a server function that takes JSON (the record editor's save).
async fn call_json(
    app: &TestApp,
    client: &reqwest::Client,
    name: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let res = client
        .post(app.url(&format!("/sfn/{name}")))
        .header("Origin", app.origin())
        .header("Accept", "application/json")
        .json(&body)
        .send()
        .await
        .expect("server fn");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// The record editor's functions: a form read with its version and
/// channels; a save on it answers the next version; a save on an old one
/// is refused with the stored values and who changed which fields; bad
/// fields and another tenant's records are refused, nothing written.
#[tokio::test]
async fn the_record_editor_reads_saves_and_refuses_stale_versions_with_the_stored_values() {
    use serde_json::json;
    let (app, _db) = spawn_app().await;
    let admin_a = find_user_by_email(&app.services.db, ADMIN_EMAIL)
        .await
        .expect("q")
        .expect("admin");
    let admin_b = add_user(&app, "admin@rec-b.test", Role::Admin, "Tenant RB").await;
    let (bank, compartment, _) = bank_and_command(&app, &admin_a, "REC-A").await;
    let (bank_b, _, _) = bank_and_command(&app, &admin_b, "REC-B").await;
    let admin = browser(Arc::new(Jar::default()));
    login(&app, &admin, ADMIN_EMAIL, ADMIN_PASSWORD).await;

    let (status, body) = call(
        &app,
        &admin,
        "read_record",
        &[("record_type", "locker-bank"), ("record_id", &bank)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let form: serde_json::Value = serde_json::from_str(&body).expect("json");
    let version = form["version"].as_i64().expect("version");
    assert_eq!(form["values"][0], json!(["name", "REC-A hall"]));
    assert_eq!(
        form["channel"],
        format!("private-record.locker-bank.{bank}")
    );
    assert_eq!(
        form["presence"],
        format!("presence-record.locker-bank.{bank}")
    );

    let save = |version: i64, values: serde_json::Value| json!({"record_type": "locker-bank", "record_id": bank, "version": version, "values": values});
    let (status, saved) = call_json(
        &app,
        &admin,
        "save_record",
        save(version, json!([["location", "Hall 2"]])),
    )
    .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["version"], version + 1);
    assert_eq!(saved["values"][1], json!(["location", "Hall 2"]));
    assert_eq!(saved["updated_by"], admin_a.name.as_str());

    // On the version before: 409, the stored values to compare with.
    let (status, stale) = call_json(
        &app,
        &admin,
        "save_record",
        save(version, json!([["notes", "mine"]])),
    )
    .await;
    assert_eq!(status, 409, "{stale}");
    assert_eq!(stale["Stale"]["version"], version + 1);
    assert_eq!(stale["Stale"]["fields"], json!(["location"]));
    assert_eq!(stale["Stale"]["updated_by"], admin_a.name.as_str());
    assert_eq!(stale["Stale"]["values"][1], json!(["location", "Hall 2"]));
    assert_eq!(
        stale["Stale"]["values"][2],
        json!(["notes", ""]),
        "nothing written"
    );

    // A field the record does not have, a bad size: 422, nothing written.
    let (status, body) = call_json(
        &app,
        &admin,
        "save_record",
        save(version + 1, json!([["serial", "X"]])),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = call_json(
        &app,
        &admin,
        "save_record",
        json!({"record_type": "compartment", "record_id": compartment, "version": 1, "values": [["size", "huge"]]}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    // Another tenant's record, an unknown type: not found.
    let (status, _) = call_json(
        &app,
        &admin,
        "save_record",
        json!({"record_type": "locker-bank", "record_id": bank_b, "version": 1, "values": [["name", "x"]]}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &app,
        &admin,
        "read_record",
        &[("record_type", "locker-bank"), ("record_id", &bank_b)],
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &app,
        &admin,
        "read_record",
        &[("record_type", "spaceship"), ("record_id", &bank)],
    )
    .await;
    assert_eq!(status, 404);
    let b = lockers::get_bank(
        &app.services,
        admin_b.tenant_id,
        bank_b.parse().expect("id"),
    )
    .await
    .expect("q")
    .expect("bank b");
    assert_eq!(b.name, "REC-B hall", "another tenant's bank is untouched");
}
