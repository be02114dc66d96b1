//! Storage tests; they run on SQLite, and on PostgreSQL when
//! `LOCKSTEP_TEST_DATABASE_URL` is set (as `.ci/run` does).

use lockstep_core::{
    db::Db,
    identity::accounts::{self, NewUser, Role},
    identity::session_store::DbSessionStore,
    identity::tokens::{authenticate_token, create_token, revoke_token, Abilities, Ability},
    testing::fresh_database,
    CoreError,
};
use sqlx::Row;
use tower_sessions::{
    session::{Id, Record},
    session_store::{ExpiredDeletion, SessionStore},
};

fn new_user(email: &str, role: Role, tenant: &str) -> NewUser {
    NewUser {
        email: email.into(),
        name: None,
        role,
        tenant_name: tenant.into(),
        password: "long-enough-password".into(),
    }
}

#[tokio::test]
async fn migrations_apply_and_are_idempotent() {
    let t = fresh_database().await;
    let db = Db::open(&t.url).await.expect("open and migrate");
    db.migrate().await.expect("second run is a no-op");
    for table in [
        "tenants",
        "users",
        "api_tokens",
        "sessions",
        "_sqlx_migrations",
    ] {
        let n: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("table {table} missing: {e}"))
            .try_get("n")
            .expect("count");
        if table == "_sqlx_migrations" {
            assert!(n >= 1, "migrations recorded");
        } else {
            assert_eq!(n, 0, "{table} starts empty");
        }
    }
    assert!(db.ping().await);
    db.pool.close().await;
    assert!(!db.ping().await, "a closed pool is not ready");
}

#[tokio::test]
async fn users_authenticate_and_emails_are_unique() {
    let t = fresh_database().await;
    let db = Db::open(&t.url).await.expect("db");
    let ada = accounts::add_user(&db, new_user("Ada@Example.com", Role::Admin, "Acme"))
        .await
        .expect("add");
    assert_eq!(ada.email, "ada@example.com");
    let dup = accounts::add_user(&db, new_user("ada@example.com", Role::User, "Acme")).await;
    assert!(matches!(dup, Err(CoreError::Conflict(_))), "{dup:?}");
    let short = accounts::add_user(
        &db,
        NewUser {
            password: "short".into(),
            ..new_user("b@example.com", Role::User, "Acme")
        },
    )
    .await;
    assert!(matches!(short, Err(CoreError::Invalid(_))));

    let ok = accounts::authenticate(&db, " ADA@example.com", "long-enough-password")
        .await
        .expect("query");
    assert_eq!(ok.map(|u| u.id), Some(ada.id));
    assert!(
        accounts::authenticate(&db, "ada@example.com", "wrong-password")
            .await
            .expect("query")
            .is_none()
    );
    assert!(
        accounts::authenticate(&db, "nobody@example.com", "long-enough-password")
            .await
            .expect("query")
            .is_none()
    );
    assert_eq!(accounts::count_admins(&db).await.expect("count"), 1);
}

#[tokio::test]
async fn tenants_keep_their_users_apart() {
    let t = fresh_database().await;
    let db = Db::open(&t.url).await.expect("db");
    let a = accounts::add_user(&db, new_user("a@x.io", Role::Admin, "A"))
        .await
        .expect("a");
    accounts::add_user(&db, new_user("a2@x.io", Role::User, "A"))
        .await
        .expect("a2");
    let b = accounts::add_user(&db, new_user("b@x.io", Role::Admin, "B"))
        .await
        .expect("b");
    assert_ne!(a.tenant_id, b.tenant_id);
    let in_a: Vec<_> = accounts::list_users(&db, a.tenant_id)
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.email)
        .collect();
    assert_eq!(in_a, vec!["a2@x.io", "a@x.io"]);
}

#[tokio::test]
async fn tokens_are_stored_hashed_and_can_be_revoked() {
    let t = fresh_database().await;
    let db = Db::open(&t.url).await.expect("db");
    accounts::add_user(&db, new_user("u@x.io", Role::User, "A"))
        .await
        .expect("user");
    let abilities = Abilities::parse_list("compartment.open").expect("abilities");
    let token = create_token(&db, "u@x.io", "phone", &abilities)
        .await
        .expect("token");

    let stored: String = sqlx::query("SELECT token_hash FROM api_tokens")
        .fetch_one(&db.pool)
        .await
        .expect("row")
        .try_get("token_hash")
        .expect("hash");
    assert_ne!(stored, token.secret, "the secret itself is never stored");

    let grant = authenticate_token(&db, &token.secret)
        .await
        .expect("q")
        .expect("valid");
    assert!(grant.abilities.contains(Ability::CompartmentOpen));
    assert!(!grant.abilities.contains(Ability::LockerRead));
    let mut forged = token.secret.clone();
    forged.pop();
    forged.push('Z');
    if forged != token.secret {
        assert!(authenticate_token(&db, &forged).await.expect("q").is_none());
    }
    revoke_token(&db, token.id).await.expect("revoke");
    assert!(authenticate_token(&db, &token.secret)
        .await
        .expect("q")
        .is_none());

    let refused = create_token(
        &db,
        "u@x.io",
        "x",
        &Abilities::parse_list("user.write").expect("parse"),
    )
    .await;
    assert!(
        matches!(refused, Err(CoreError::Invalid(_))),
        "a user cannot hold user.write"
    );
}

#[tokio::test]
async fn session_records_round_trip_and_expire() {
    let t = fresh_database().await;
    let db = Db::open(&t.url).await.expect("db");
    let store = DbSessionStore::new(db.clone());
    let mut record = Record {
        id: Id::default(),
        data: [("user_id".to_string(), serde_json::json!("abc"))].into(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    store.create(&mut record).await.expect("create");
    let loaded = store
        .load(&record.id)
        .await
        .expect("load")
        .expect("present");
    assert_eq!(loaded.data, record.data);

    record.data.insert("k".into(), serde_json::json!(1));
    store.save(&record).await.expect("save");
    assert_eq!(
        store
            .load(&record.id)
            .await
            .expect("load")
            .expect("present")
            .data
            .len(),
        2
    );

    let mut expired = Record {
        id: Id::default(),
        data: Default::default(),
        expiry_date: time::OffsetDateTime::now_utc() - time::Duration::seconds(1),
    };
    store.create(&mut expired).await.expect("create");
    assert!(
        store.load(&expired.id).await.expect("load").is_none(),
        "expired is invisible"
    );
    store.delete_expired().await.expect("sweep");
    let left: i64 = sqlx::query("SELECT COUNT(*) AS n FROM sessions")
        .fetch_one(&db.pool)
        .await
        .expect("count")
        .try_get("n")
        .expect("n");
    assert_eq!(left, 1);

    store.delete(&record.id).await.expect("delete");
    assert!(store.load(&record.id).await.expect("load").is_none());
}
