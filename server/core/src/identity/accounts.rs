//! Tenants (operators of lockers), users and their roles.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use crate::{
    db::Db,
    db::ExecuteWrite,
    error::{CoreError, CoreResult},
    identity::password::{dummy_hash, hash_password, verify_password, MIN_PASSWORD_LEN},
    now_ms,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "user" => Ok(Role::User),
            other => Err(CoreError::Invalid(format!(
                "role must be admin or user, not {other:?}"
            ))),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
}

/// What `add_user` needs.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    pub tenant_name: String,
    pub password: String,
}

/// An email address, trimmed and lower-cased, with a minimal shape check.
pub fn normalize_email(email: &str) -> CoreResult<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && matches!(email.split_once('@'), Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if valid {
        Ok(email)
    } else {
        Err(CoreError::Invalid(format!(
            "{email:?} is not an email address"
        )))
    }
}

pub(crate) fn parse_uuid(s: &str) -> CoreResult<Uuid> {
    Uuid::parse_str(s).map_err(|_| CoreError::Invalid(format!("stored id {s:?} is not a UUID")))
}

pub(crate) fn user_from_row(row: &sqlx::any::AnyRow) -> CoreResult<User> {
    Ok(User {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        tenant_id: parse_uuid(&row.try_get::<String, _>("tenant_id")?)?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: row.try_get::<String, _>("role")?.parse()?,
    })
}

/// The tenant with this name, created if it does not exist yet.
pub async fn ensure_tenant(db: &Db, name: &str) -> CoreResult<Tenant> {
    let name = crate::text::check_text("tenant name", name, crate::text::NAME_MAX)?;
    let name = name.as_str();
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(id.to_string())
    .bind(name)
    .bind(now_ms())
    .execute_write(db)
    .await?;
    let row = sqlx::query("SELECT id, name FROM tenants WHERE name = $1")
        .bind(name)
        .fetch_one(&db.pool)
        .await?;
    Ok(Tenant {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        name: row.try_get("name")?,
    })
}

/// Creates a user in the named tenant (creating the tenant if needed).
pub async fn add_user(db: &Db, new: NewUser) -> CoreResult<User> {
    // Checked before the tenant is created for it.
    normalize_email(&new.email)?;
    check_password(&new.password)?;
    let tenant = ensure_tenant(db, &new.tenant_name).await?;
    insert_user(
        db,
        tenant.id,
        &new.email,
        new.name.as_deref(),
        new.role,
        &new.password,
    )
    .await
}

fn check_password(password: &str) -> CoreResult<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(CoreError::Invalid(format!(
            "password must have at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

async fn insert_user(
    db: &Db,
    tenant_id: Uuid,
    email: &str,
    name: Option<&str>,
    role: Role,
    password: &str,
) -> CoreResult<User> {
    let email = normalize_email(email)?;
    check_password(password)?;
    let name = crate::text::check_optional_text("name", name, crate::text::NAME_MAX)?
        .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_string());
    let password = password.to_string();
    // Argon2 is slow on purpose: off the async workers.
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| CoreError::Hashing(e.to_string()))??;
    let user = User {
        id: Uuid::now_v7(),
        tenant_id,
        email,
        name,
        role,
    };
    let inserted = sqlx::query(
        "INSERT INTO users (id, tenant_id, email, name, role, password_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(user.id.to_string())
    .bind(user.tenant_id.to_string())
    .bind(&user.email)
    .bind(&user.name)
    .bind(user.role.as_str())
    .bind(hash)
    .bind(now_ms())
    .execute_write(db)
    .await;
    match inserted {
        Ok(_) => Ok(user),
        Err(e) if CoreError::is_unique_violation(&e) => Err(CoreError::Conflict(format!(
            "a user with email {} already exists",
            user.email
        ))),
        Err(e) => Err(e.into()),
    }
}

pub async fn find_tenant(db: &Db, id: Uuid) -> CoreResult<Option<Tenant>> {
    let row = sqlx::query("SELECT id, name FROM tenants WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&db.pool)
        .await?;
    row.map(|row| {
        Ok(Tenant {
            id: parse_uuid(&row.try_get::<String, _>("id")?)?,
            name: row.try_get("name")?,
        })
    })
    .transpose()
}

/// The enabled user with this id (a disabled one is as good as gone: its
/// session and tokens resolve to nobody).
pub async fn find_user(db: &Db, id: Uuid) -> CoreResult<Option<User>> {
    let row = sqlx::query(
        "SELECT id, tenant_id, email, name, role FROM users WHERE id = $1 AND disabled_at IS NULL",
    )
    .bind(id.to_string())
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref().map(user_from_row).transpose()
}

pub async fn find_user_by_email(db: &Db, email: &str) -> CoreResult<Option<User>> {
    let Ok(email) = normalize_email(email) else {
        return Ok(None);
    };
    let row = sqlx::query("SELECT id, tenant_id, email, name, role FROM users WHERE email = $1 AND disabled_at IS NULL")
        .bind(email)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

/// The users of one tenant, by email.
pub async fn list_users(db: &Db, tenant_id: Uuid) -> CoreResult<Vec<User>> {
    let rows = sqlx::query(
        "SELECT id, tenant_id, email, name, role FROM users WHERE tenant_id = $1 ORDER BY email",
    )
    .bind(tenant_id.to_string())
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(user_from_row).collect()
}

pub async fn count_admins(db: &Db) -> CoreResult<i64> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = 'admin'")
        .fetch_one(&db.pool)
        .await?;
    Ok(row.try_get("n")?)
}

/// The user whose email and password match, or `None`. Takes the same time
/// whether or not the email exists.
pub async fn authenticate(db: &Db, email: &str, password: &str) -> CoreResult<Option<User>> {
    let row = match normalize_email(email) {
        Ok(email) => {
            sqlx::query(
                "SELECT id, tenant_id, email, name, role, password_hash FROM users \
             WHERE email = $1 AND disabled_at IS NULL",
            )
            .bind(email)
            .fetch_optional(&db.pool)
            .await?
        }
        Err(_) => None,
    };
    let hash = match &row {
        Some(row) => row.try_get::<String, _>("password_hash")?,
        None => dummy_hash().to_string(),
    };
    let password = password.to_string();
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    match (ok, row) {
        (true, Some(row)) => Ok(Some(user_from_row(&row)?)),
        _ => Ok(None),
    }
}

/// One account as its tenant's admins see it, disabled ones included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub user: User,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
    /// The version of the editable fields (name, role, disabled): what an
    /// edit names (see `records::edit_user`).
    pub version: i64,
}

const ACCOUNT_COLUMNS: &str = "id, tenant_id, email, name, role, disabled_at, created_at, version";

fn account_from_row(row: &sqlx::any::AnyRow) -> CoreResult<Account> {
    Ok(Account {
        user: user_from_row(row)?,
        disabled_at: row.try_get("disabled_at")?,
        created_at: row.try_get("created_at")?,
        version: row.try_get("version")?,
    })
}

/// Every account of a tenant, by email.
pub async fn list_accounts(db: &Db, tenant_id: Uuid) -> CoreResult<Vec<Account>> {
    let rows = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY email"
    ))
    .bind(tenant_id.to_string())
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(account_from_row).collect()
}

/// One account of a tenant, disabled or not.
pub async fn find_account(db: &Db, tenant_id: Uuid, id: Uuid) -> CoreResult<Option<Account>> {
    sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM users WHERE id = $1 AND tenant_id = $2"
    ))
    .bind(id.to_string())
    .bind(tenant_id.to_string())
    .fetch_optional(&db.pool)
    .await?
    .as_ref()
    .map(account_from_row)
    .transpose()
}

/// An admin creates an account in their own tenant.
pub async fn create_account(
    db: &Db,
    admin: &User,
    email: &str,
    name: Option<&str>,
    role: Role,
    password: &str,
) -> CoreResult<User> {
    require_admin(admin)?;
    insert_user(db, admin.tenant_id, email, name, role, password).await
}

fn require_admin(user: &User) -> CoreResult<()> {
    if user.role == Role::Admin {
        Ok(())
    } else {
        Err(CoreError::Forbidden("only admins manage accounts".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            normalize_email("  Ada@Example.COM ").ok().as_deref(),
            Some("ada@example.com")
        );
        assert!(normalize_email("no-at-sign").is_err());
        assert!(normalize_email("@example.com").is_err());
        assert!(normalize_email("a@b@c").is_err());
    }

    #[test]
    fn roles_parse_strictly() {
        assert_eq!("admin".parse::<Role>().ok(), Some(Role::Admin));
        assert!("root".parse::<Role>().is_err());
    }
}
