//! The `lockstep` binary itself: subcommands and exit codes.

use std::process::Command;

use lockstep_core::testing::fresh_database;

use crate::helpers::*;

fn lockstep(db_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("LOCKSTEP_MQTT", "off")
        .env("LOCKSTEP_DATA_DIR", std::env::temp_dir())
        .output()
        .expect("run lockstep")
}

#[tokio::test]
async fn cli_creates_users_and_tokens_the_api_accepts() {
    let db = fresh_database().await;
    let out = lockstep(&db.url, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = lockstep(
        &db.url,
        &[
            "user",
            "add",
            "--email",
            "cli@lockstep.test",
            "--role",
            "user",
            "--tenant",
            "Acme",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("password: "),
        "generated password shown"
    );

    let out = lockstep(
        &db.url,
        &[
            "token",
            "create",
            "--email",
            "cli@lockstep.test",
            "--abilities",
            "profile.read,compartment.open",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let secret = stdout
        .lines()
        .last()
        .expect("a last line")
        .trim()
        .to_string();
    assert!(secret.starts_with("lst_"), "{stdout}");

    let app = spawn_on(&db).await;
    let res = reqwest::Client::new()
        .get(app.url("/api/v1/me"))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("me");
    assert_eq!(res.status(), 200);
    let me: serde_json::Value = res.json().await.expect("json");
    assert_eq!(me["email"], "cli@lockstep.test");

    // `token revoke` with the id `token create` printed: refused at once.
    let id = stdout
        .split_whitespace()
        .nth(1)
        .expect("token <id> for …")
        .to_string();
    let out = lockstep(&db.url, &["token", "revoke", "--id", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res = reqwest::Client::new()
        .get(app.url("/api/v1/me"))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("me");
    assert_eq!(res.status(), 401);
    let again = lockstep(&db.url, &["token", "revoke", "--id", &id]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not revoked already"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    app.stop().await;
}

#[tokio::test]
async fn cli_errors_are_sentences_with_a_failing_exit_code() {
    let db = fresh_database().await;
    let out = lockstep(
        &db.url,
        &[
            "token",
            "create",
            "--email",
            "x@y.z",
            "--abilities",
            "launch.missiles",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: unknown ability \"launch.missiles\""),
        "{err}"
    );
    assert!(!err.contains("panicked"));

    let out = lockstep("postgres://127.0.0.1:1/none", &["migrate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect to the database"), "{err}");
    assert!(!err.contains("panicked"));

    let out = lockstep(
        &db.url,
        &[
            "user",
            "add",
            "--email",
            "bad",
            "--role",
            "user",
            "--password",
            "long-enough-pw",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an email address"));
}

#[tokio::test]
async fn cli_replay_rebuilds_read_models_and_refuses_unknown_projectors() {
    let db = fresh_database().await;
    let app = spawn_on(&db).await;
    let admin =
        lockstep_core::identity::accounts::find_user_by_email(&app.services.db, ADMIN_EMAIL)
            .await
            .expect("q")
            .expect("admin");
    let caller = lockstep_core::identity::caller::Caller::new(
        admin.clone(),
        lockstep_core::eventstore::events::Actor::User { id: admin.id },
    );
    lockstep_core::lockers::register_bank(
        &app.services,
        &caller,
        lockstep_core::lockers::NewBank {
            serial: "CLI-1".into(),
            name: "Cli".into(),
            location: None,
            compartments: vec![lockstep_core::lockers::NewCompartment {
                number: 1,
                size: "small".into(),
                label: None,
            }],
        },
    )
    .await
    .expect("bank");
    sqlx::query("DELETE FROM compartments")
        .execute(&app.services.db.pool)
        .await
        .expect("damage the read model");
    app.stop().await;

    let out = lockstep(&db.url, &["replay", "--projector", "locker_banks"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("replayed 1 events"));
    let check = lockstep_core::db::Db::open(&db.url).await.expect("db");
    let bank = lockstep_core::lockers::list_banks(
        &lockstep_core::Services::new(check, Default::default()),
        admin.tenant_id,
    )
    .await
    .expect("banks");
    assert_eq!(bank[0].compartments.len(), 1, "the compartment is back");

    let out = lockstep(&db.url, &["replay", "--projector", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown projector"));
}

#[tokio::test]
async fn cli_resets_a_banks_provisioning() {
    let (app, db) = spawn_app().await;
    let admin =
        lockstep_core::identity::accounts::find_user_by_email(&app.services.db, ADMIN_EMAIL)
            .await
            .expect("q")
            .expect("admin");
    let caller = lockstep_core::identity::caller::Caller::new(
        admin.clone(),
        lockstep_core::eventstore::events::Actor::User { id: admin.id },
    );
    let bank = lockstep_core::lockers::register_bank(
        &app.services,
        &caller,
        lockstep_core::lockers::NewBank {
            serial: "CLI-RESET-1".into(),
            name: "Lobby".into(),
            location: None,
            compartments: vec![lockstep_core::lockers::NewCompartment {
                number: 1,
                size: "small".into(),
                label: None,
            }],
        },
    )
    .await
    .expect("bank");
    lockstep_core::provisioning::decommission(&app.services, &caller, bank.id, "moved")
        .await
        .expect("decommission");
    let args = |serial: &'static str| {
        [
            "locker",
            "reset-provisioning",
            "--serial",
            serial,
            "--email",
            ADMIN_EMAIL,
            "--reason",
            "back in service",
        ]
    };
    let out = lockstep(&db.url, &args("CLI-RESET-1"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now = lockstep_core::lockers::get_bank(&app.services, admin.tenant_id, bank.id)
        .await
        .expect("q")
        .expect("bank");
    assert_eq!(now.state, "registered");
    // Nothing left to reset, and an unknown serial: a sentence and a failing exit.
    let again = lockstep(&db.url, &args("CLI-RESET-1"));
    assert!(!again.status.success());
    let unknown = lockstep(&db.url, &args("CLI-NOPE"));
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no locker bank with serial"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    app.stop().await;
}

/// `lockstep pusher-credentials` prints the app the running server uses:
/// its key is the one `/broadcasting/auth` answers with, and its secret
/// signs the HTTP API; Lockstep's own channels it cannot sign.
#[tokio::test]
async fn cli_prints_the_pusher_credentials_the_server_uses() {
    let db = fresh_database().await;
    let app = spawn_on(&db).await;
    let out = lockstep(&db.url, &["pusher-credentials"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .to_string()
    };
    let keys = lockstep_server::hub::AppKeys::new(
        value("PUSHER_APP_ID"),
        value("PUSHER_APP_KEY"),
        value("PUSHER_APP_SECRET"),
    );
    let token = lockstep_core::identity::tokens::create_token(
        &app.services.db,
        ADMIN_EMAIL,
        "cli",
        &lockstep_core::identity::tokens::Abilities::parse_list("*").expect("abilities"),
    )
    .await
    .expect("token")
    .secret;
    let admin =
        lockstep_core::identity::accounts::find_user_by_email(&app.services.db, ADMIN_EMAIL)
            .await
            .expect("q")
            .expect("admin");
    let channel = format!("private-user.{}", admin.id);
    let body: serde_json::Value = reqwest::Client::new()
        .post(app.url("/broadcasting/auth"))
        .bearer_auth(token)
        .form(&[("socket_id", "1.2"), ("channel_name", channel.as_str())])
        .send()
        .await
        .expect("auth")
        .json()
        .await
        .expect("json");
    // The server answers with the printed key; it signs its own channels
    // with a key of its own, which the printed secret cannot make.
    let auth = body["auth"].as_str().expect("auth");
    assert!(auth.starts_with(&format!("{}:", keys.key)), "{auth}");
    assert_ne!(auth, keys.log_channel_auth("1.2", &channel));
    // What the printed credentials are for: signing the HTTP API (and an
    // app's own channels) as the server checks them.
    let (status, answer) = crate::hub::publish(
        &app,
        &keys,
        &format!("/apps/{}/events", keys.app_id),
        &serde_json::json!({"name": "e", "channel": "orders", "data": "{}"}),
    )
    .await;
    assert_eq!((status, answer), (200, serde_json::json!({})));
    app.stop().await;
}
