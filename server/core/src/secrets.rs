//! Secrets the server makes for itself on first use and keeps in the
//! database (`server_secrets`), so every process of a cluster and every
//! restart sees the same value.

use sqlx::Row;

use crate::{
    db::{Db, ExecuteWrite},
    error::CoreResult,
};

/// The secret `name`, made with `make` the first time it is asked for.
pub async fn get_or_create(
    db: &Db,
    name: &str,
    make: impl FnOnce() -> String,
) -> CoreResult<String> {
    sqlx::query(
        "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(make())
    .execute_write(db)
    .await?;
    let row = sqlx::query("SELECT value FROM server_secrets WHERE name = $1")
        .bind(name)
        .fetch_one(&db.pool)
        .await?;
    Ok(row.try_get("value")?)
}
