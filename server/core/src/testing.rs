//! Fresh databases for tests: a SQLite file in its own temporary directory,
//! or, when `LOCKSTEP_TEST_DATABASE_URL` names a PostgreSQL server, a new
//! database with a random name on it. The same tests run on both.

use std::path::PathBuf;

use sqlx::{any::AnyConnectOptions, ConnectOptions, Connection};
use uuid::Uuid;

/// A database that exists for one test; a SQLite directory is removed on drop.
pub struct TestDb {
    pub url: String,
    pub dir: PathBuf,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TestDb {
    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres")
    }
}

/// A new, empty database (not yet migrated).
pub async fn fresh_database() -> TestDb {
    let dir = std::env::temp_dir().join(format!("lockstep-test-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    match std::env::var("LOCKSTEP_TEST_DATABASE_URL") {
        Ok(base) if base.starts_with("postgres") => {
            sqlx::any::install_default_drivers();
            let name = format!("lockstep_test_{}", Uuid::new_v4().simple());
            let base = base.trim_end_matches('/');
            let admin_url = format!("{base}/postgres");
            let mut conn = admin_url
                .parse::<AnyConnectOptions>()
                .expect("LOCKSTEP_TEST_DATABASE_URL is a valid URL")
                .connect()
                .await
                .expect("connect to the PostgreSQL server named by LOCKSTEP_TEST_DATABASE_URL");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create a test database");
            let _ = conn.close().await;
            TestDb {
                url: format!("{base}/{name}"),
                dir,
            }
        }
        _ => TestDb {
            url: format!("sqlite://{}?mode=rwc", dir.join("test.db").display()),
            dir,
        },
    }
}

/// A user for tests (password `long-enough-password`), in `tenant`.
pub async fn add_user(
    db: &crate::db::Db,
    email: &str,
    role: crate::identity::accounts::Role,
    tenant: &str,
) -> crate::identity::accounts::User {
    crate::identity::accounts::add_user(
        db,
        crate::identity::accounts::NewUser {
            email: email.into(),
            name: None,
            role,
            tenant_name: tenant.into(),
            password: "long-enough-password".into(),
        },
    )
    .await
    .expect("test user")
}
