//! The `lockstep` binary itself: subcommands and exit codes.

use std::process::Command;

use lockstep_core::testing::fresh_database;

use crate::helpers::*;

fn lockstep(db_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(args)
        .env("DATABASE_URL", db_url)
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
