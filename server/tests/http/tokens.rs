//! Bearer tokens and their abilities on the API.

use lockstep_core::{
    identity::accounts::Role,
    identity::tokens::{create_token, revoke_token, Abilities},
};
use serde_json::Value;

use crate::helpers::*;

async fn token(app: &TestApp, email: &str, abilities: &str) -> (uuid::Uuid, String) {
    let t = create_token(
        &app.services.db,
        email,
        "test",
        &Abilities::parse_list(abilities).expect("abilities"),
    )
    .await
    .expect("token");
    (t.id, t.secret)
}

async fn get(app: &TestApp, path: &str, bearer: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .get(app.url(path))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn token_abilities_are_enforced() {
    let (app, _db) = spawn_app().await;
    add_user(&app, "ursula@lockstep.test", Role::User, "Default").await;
    add_user(&app, "other-admin@lockstep.test", Role::Admin, "Other").await;

    let (_, locker_only) = token(&app, ADMIN_EMAIL, "locker.read").await;
    let (status, body) = get(&app, "/api/v1/users", &locker_only).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "missing_ability");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("user.read"));

    let (_, user_read) = token(&app, ADMIN_EMAIL, "user.read").await;
    let (status, body) = get(&app, "/api/v1/users", &user_read).await;
    assert_eq!(status, 200);
    let emails: Vec<_> = body
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|u| u["email"].as_str())
        .collect();
    assert_eq!(
        emails,
        vec![ADMIN_EMAIL, "ursula@lockstep.test"],
        "own tenant only"
    );

    // `*` on a user's token is still bounded by the user's role.
    let (_, user_star) = token(&app, "ursula@lockstep.test", "*").await;
    assert_eq!(get(&app, "/api/v1/users", &user_star).await.0, 403);
    let (status, me) = get(&app, "/api/v1/me", &user_star).await;
    assert_eq!(status, 200);
    assert_eq!(me["role"], "user");

    let (_, open_only) = token(&app, "ursula@lockstep.test", "compartment.open").await;
    assert_eq!(
        get(&app, "/api/v1/me", &open_only).await.0,
        403,
        "needs profile.read"
    );
    app.stop().await;
}

#[tokio::test]
async fn forged_malformed_and_revoked_tokens_are_refused() {
    let (app, _db) = spawn_app().await;
    let (id, secret) = token(&app, ADMIN_EMAIL, "*").await;
    assert_eq!(get(&app, "/api/v1/me", &secret).await.0, 200);
    let invalid_before = rejections(&app, "invalid_token").await;

    let forged = format!("lst_{}", "A".repeat(40));
    let (status, body) = get(&app, "/api/v1/me", &forged).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_token");
    assert_eq!(get(&app, "/api/v1/me", "garbage").await.0, 401);

    let res = reqwest::Client::new()
        .get(app.url("/api/v1/me"))
        .header("Authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401);

    revoke_token(&app.services.db, id).await.expect("revoke");
    assert_eq!(get(&app, "/api/v1/me", &secret).await.0, 401);

    assert!(
        rejections(&app, "invalid_token").await >= invalid_before + 4,
        "the forged, the garbage, the Basic and the revoked token were each counted"
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_api_paths_get_the_json_error_shape() {
    let (app, _db) = spawn_app().await;
    let res = reqwest::get(app.url("/api/v1/nope")).await.expect("get");
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_found");
    app.stop().await;
}

async fn delete(app: &TestApp, path: &str, bearer: &str) -> u16 {
    reqwest::Client::new()
        .delete(app.url(path))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// `GET /tokens` lists the caller's own tokens (an admin's: the tenant's),
/// `DELETE /tokens/{id}` revokes one and it stops working at once; nobody
/// reaches another user's token or another tenant's.
#[tokio::test]
async fn tokens_are_listed_and_revoked_by_their_owner_and_their_admin() {
    let (app, _db) = spawn_app().await;
    add_user(&app, "uma@lockstep.test", Role::User, "Default").await;
    add_user(&app, "ola@lockstep.test", Role::User, "Default").await;
    add_user(&app, "eve@other.test", Role::Admin, "Other").await;
    let (_, admin) = token(&app, ADMIN_EMAIL, "*").await;
    let (uma_id, uma) = token(&app, "uma@lockstep.test", "profile.read").await;
    let (uma2_id, uma2) = token(&app, "uma@lockstep.test", "profile.read").await;
    let (ola_id, ola) = token(&app, "ola@lockstep.test", "profile.read").await;
    let (_, eve) = token(&app, "eve@other.test", "*").await;

    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|t| t["id"].as_str().expect("id").to_string())
            .collect()
    };
    let (status, mine) = get(&app, "/api/v1/tokens", &uma).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(ids(&mine), vec![uma_id.to_string(), uma2_id.to_string()]);
    assert!(
        mine[0].get("secret").is_none() && mine[0].get("token_hash").is_none(),
        "{mine}"
    );
    let (_, all) = get(&app, "/api/v1/tokens", &admin).await;
    assert!(ids(&all).contains(&ola_id.to_string()), "{all}");
    let (_, others) = get(&app, "/api/v1/tokens", &eve).await;
    assert!(!ids(&others).contains(&uma_id.to_string()), "{others}");

    // Not Uma's to revoke, nor another tenant's admin's.
    assert_eq!(
        delete(&app, &format!("/api/v1/tokens/{ola_id}"), &uma).await,
        404
    );
    assert_eq!(
        delete(&app, &format!("/api/v1/tokens/{uma_id}"), &eve).await,
        404
    );
    assert_eq!(get(&app, "/api/v1/me", &ola).await.0, 200);
    // Her own: revoked, and refused from then on; a second revoke is a 404.
    assert_eq!(
        delete(&app, &format!("/api/v1/tokens/{uma2_id}"), &uma).await,
        204
    );
    assert_eq!(get(&app, "/api/v1/me", &uma2).await.0, 401);
    assert_eq!(
        delete(&app, &format!("/api/v1/tokens/{uma2_id}"), &uma).await,
        404
    );
    // Her admin revokes Ola's.
    assert_eq!(
        delete(&app, &format!("/api/v1/tokens/{ola_id}"), &admin).await,
        204
    );
    assert_eq!(get(&app, "/api/v1/me", &ola).await.0, 401);
    let (_, after) = get(&app, "/api/v1/tokens", &uma).await;
    assert!(after[1]["revoked_at"].is_number(), "{after}");
    app.stop().await;
}
