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
    for (name, args) in [
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
    for path in ["/admin", "/admin/banks", "/admin/commands"] {
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
