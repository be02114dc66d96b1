//! API tokens for scripts and devices, and the abilities they carry.
//!
//! A token is `lst_` followed by 40 random base62 characters. Only its
//! SHA-256 is stored (a token has 238 bits of entropy, so a slow hash adds
//! nothing), together with the abilities it was created with. A request
//! made with a token may do what *both* the token's abilities and its
//! user's role allow: an `*` token of a `user` is still no admin.

use std::{collections::BTreeSet, fmt, str::FromStr};

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use crate::{
    db::Db,
    db::ExecuteWrite,
    error::{CoreError, CoreResult},
    identity::accounts::{find_user_by_email, parse_uuid, user_from_row, Role, User},
    now_ms,
};

const TOKEN_PREFIX: &str = "lst_";
const TOKEN_RANDOM_LEN: usize = 40;

/// What a request may do. `All` (`*`) stands for every ability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Ability {
    #[serde(rename = "*")]
    All,
    #[serde(rename = "profile.read")]
    ProfileRead,
    #[serde(rename = "user.read")]
    UserRead,
    #[serde(rename = "user.write")]
    UserWrite,
    #[serde(rename = "locker.read")]
    LockerRead,
    #[serde(rename = "locker.write")]
    LockerWrite,
    #[serde(rename = "grant.write")]
    GrantWrite,
    #[serde(rename = "compartment.read")]
    CompartmentRead,
    #[serde(rename = "compartment.open")]
    CompartmentOpen,
    #[serde(rename = "events.read")]
    EventsRead,
}

impl Ability {
    pub const ALL: [Ability; 10] = [
        Ability::All,
        Ability::ProfileRead,
        Ability::UserRead,
        Ability::UserWrite,
        Ability::LockerRead,
        Ability::LockerWrite,
        Ability::GrantWrite,
        Ability::CompartmentRead,
        Ability::CompartmentOpen,
        Ability::EventsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Ability::All => "*",
            Ability::ProfileRead => "profile.read",
            Ability::UserRead => "user.read",
            Ability::UserWrite => "user.write",
            Ability::LockerRead => "locker.read",
            Ability::LockerWrite => "locker.write",
            Ability::GrantWrite => "grant.write",
            Ability::CompartmentRead => "compartment.read",
            Ability::CompartmentOpen => "compartment.open",
            Ability::EventsRead => "events.read",
        }
    }

    /// Whether a role may ever hold this ability.
    pub fn allowed_for(self, role: Role) -> bool {
        match role {
            Role::Admin => true,
            Role::User => matches!(
                self,
                Ability::ProfileRead
                    | Ability::CompartmentRead
                    | Ability::CompartmentOpen
                    | Ability::EventsRead
            ),
        }
    }
}

impl fmt::Display for Ability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Ability {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ability::ALL
            .into_iter()
            .find(|a| a.as_str() == s.trim())
            .ok_or_else(|| {
                let known: Vec<_> = Ability::ALL.iter().map(|a| a.as_str()).collect();
                CoreError::Invalid(format!(
                    "unknown ability {s:?}; known abilities: {}",
                    known.join(", ")
                ))
            })
    }
}

/// A set of abilities, written as a comma-separated list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Abilities(pub BTreeSet<Ability>);

impl Abilities {
    pub fn parse_list(list: &str) -> CoreResult<Self> {
        let set = list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(str::parse)
            .collect::<CoreResult<BTreeSet<_>>>()?;
        if set.is_empty() {
            return Err(CoreError::Invalid(
                "a token needs at least one ability".into(),
            ));
        }
        Ok(Abilities(set))
    }

    pub fn contains(&self, ability: Ability) -> bool {
        self.0.contains(&Ability::All) || self.0.contains(&ability)
    }

    pub fn to_list(&self) -> String {
        self.0
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A token as the API sees it after authenticating one.
#[derive(Clone, Debug)]
pub struct TokenGrant {
    pub token_id: Uuid,
    pub user: User,
    pub abilities: Abilities,
}

/// A newly created token: `secret` is shown once and never stored.
#[derive(Clone, Debug)]
pub struct NewToken {
    pub id: Uuid,
    pub secret: String,
}

pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether two secrets are equal, in time that does not depend on where
/// they differ (both are hashed to equal-length digests first).
pub fn same_secret(given: &str, expected: &str) -> bool {
    same_digest(&hash_token(given), &hash_token(expected))
}

/// Constant-time equality of two hex digests.
pub fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn generate_secret() -> String {
    random_secret(TOKEN_PREFIX, TOKEN_RANDOM_LEN)
}

/// `prefix` and `len` random base62 characters from the OS generator.
pub fn random_secret(prefix: &str, len: usize) -> String {
    const BASE62: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::rngs::OsRng;
    let random: String = (0..len)
        .map(|_| BASE62[rng.gen_range(0..BASE62.len())] as char)
        .collect();
    format!("{prefix}{random}")
}

/// Creates a token for the user with this email. Abilities the user's role
/// can never hold are refused here rather than silently ignored later.
pub async fn create_token(
    db: &Db,
    email: &str,
    name: &str,
    abilities: &Abilities,
) -> CoreResult<NewToken> {
    let name = crate::text::check_text("token name", name, crate::text::NAME_MAX)?;
    let user = find_user_by_email(db, email)
        .await?
        .ok_or_else(|| CoreError::Invalid(format!("no user with email {email:?}")))?;
    if let Some(bad) = abilities
        .0
        .iter()
        .find(|a| **a != Ability::All && !a.allowed_for(user.role))
    {
        return Err(CoreError::Invalid(format!(
            "a {} cannot hold the ability {bad}",
            user.role
        )));
    }
    let token = NewToken {
        id: Uuid::now_v7(),
        secret: generate_secret(),
    };
    sqlx::query(
        "INSERT INTO api_tokens (id, user_id, name, token_hash, abilities, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(token.id.to_string())
    .bind(user.id.to_string())
    .bind(&name)
    .bind(hash_token(&token.secret))
    .bind(abilities.to_list())
    .bind(now_ms())
    .execute_write(db)
    .await?;
    Ok(token)
}

/// How stale `last_used_at` may get before a request refreshes it.
pub const LAST_USED_PRECISION_MS: i64 = 60_000;

/// The grant behind a bearer secret, or `None` when it is unknown, revoked
/// or malformed.
pub async fn authenticate_token(db: &Db, secret: &str) -> CoreResult<Option<TokenGrant>> {
    if !secret.starts_with(TOKEN_PREFIX) || secret.len() != TOKEN_PREFIX.len() + TOKEN_RANDOM_LEN {
        return Ok(None);
    }
    // The token and its (enabled) user in one read.
    let row = sqlx::query(
        "SELECT t.id AS token_id, t.abilities, t.last_used_at, \
         u.id, u.tenant_id, u.email, u.name, u.role \
         FROM api_tokens t JOIN users u ON u.id = t.user_id \
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND u.disabled_at IS NULL",
    )
    .bind(hash_token(secret))
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let token_id = parse_uuid(&row.try_get::<String, _>("token_id")?)?;
    let abilities = Abilities::parse_list(&row.try_get::<String, _>("abilities")?)?;
    let user = user_from_row(&row)?;
    // `last_used_at` is kept to the minute: a busy token does not write on
    // every request.
    let now = now_ms();
    let last_used: Option<i64> = row.try_get("last_used_at")?;
    if last_used.is_none_or(|t| now - t >= LAST_USED_PRECISION_MS) {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(token_id.to_string())
            .execute_write(db)
            .await?;
    }
    Ok(Some(TokenGrant {
        token_id,
        user,
        abilities,
    }))
}

pub async fn revoke_token(db: &Db, token_id: Uuid) -> CoreResult<()> {
    let done =
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(token_id.to_string())
            .execute_write(db)
            .await?;
    if done.rows_affected() == 0 {
        return Err(CoreError::NotFound);
    }
    Ok(())
}

/// A token as its owner and their admins see it (never the secret).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    /// Comma-separated, as given at creation (`*`: all the role allows).
    pub abilities: String,
    pub created_at: i64,
    /// To the minute.
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// The caller's own tokens; an admin sees every token of their tenant.
pub async fn list_tokens(
    db: &Db,
    caller: &crate::identity::caller::Caller,
) -> CoreResult<Vec<TokenView>> {
    let rows = sqlx::query(
        "SELECT t.id, t.user_id, t.name, t.abilities, t.created_at, t.last_used_at, t.revoked_at \
         FROM api_tokens t JOIN users u ON u.id = t.user_id \
         WHERE (t.user_id = $1 OR ($2 = 1 AND u.tenant_id = $3)) ORDER BY t.created_at, t.id",
    )
    .bind(caller.user.id.to_string())
    .bind(i64::from(caller.is_admin()))
    .bind(caller.user.tenant_id.to_string())
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TokenView {
                id: parse_uuid(&r.try_get::<String, _>("id")?)?,
                user_id: parse_uuid(&r.try_get::<String, _>("user_id")?)?,
                name: r.try_get("name")?,
                abilities: r.try_get("abilities")?,
                created_at: r.try_get("created_at")?,
                last_used_at: r.try_get("last_used_at")?,
                revoked_at: r.try_get("revoked_at")?,
            })
        })
        .collect()
}

/// Revokes one of the caller's own tokens, or (an admin) one of their
/// tenant's; anyone else's is `NotFound`, as is one already revoked.
pub async fn revoke_token_of(
    db: &Db,
    caller: &crate::identity::caller::Caller,
    token_id: Uuid,
) -> CoreResult<()> {
    // One statement: the token is revoked only if this caller may see it.
    let done = sqlx::query(
        "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
         AND (user_id = $3 OR ($4 = 1 AND user_id IN (SELECT id FROM users WHERE tenant_id = $5)))",
    )
    .bind(now_ms())
    .bind(token_id.to_string())
    .bind(caller.user.id.to_string())
    .bind(i64::from(caller.is_admin()))
    .bind(caller.user.tenant_id.to_string())
    .execute_write(db)
    .await?;
    if done.rows_affected() == 0 {
        return Err(CoreError::NotFound);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ability_lists_parse_and_reject_unknowns() {
        let a = Abilities::parse_list("compartment.open, locker.read").expect("valid");
        assert!(a.contains(Ability::LockerRead));
        assert!(!a.contains(Ability::UserRead));
        assert_eq!(a.to_list(), "locker.read,compartment.open");
        assert!(Abilities::parse_list("locker.read,launch.missiles").is_err());
        assert!(Abilities::parse_list(" , ").is_err());
        assert!(Abilities::parse_list("*")
            .expect("star")
            .contains(Ability::UserWrite));
    }

    #[test]
    fn secrets_are_distinct_and_well_formed() {
        let a = generate_secret();
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + TOKEN_RANDOM_LEN);
        assert_ne!(a, generate_secret());
        assert_eq!(hash_token(&a).len(), 64);
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(same_secret(
            "lockstep-provisioning",
            "lockstep-provisioning"
        ));
        assert!(!same_secret(
            "lockstep-provisioning",
            "lockstep-provisioninG"
        ));
        assert!(!same_secret("", "x"));
    }

    #[test]
    fn users_never_hold_admin_abilities() {
        assert!(!Ability::UserRead.allowed_for(Role::User));
        assert!(Ability::CompartmentOpen.allowed_for(Role::User));
        assert!(Ability::UserWrite.allowed_for(Role::Admin));
    }
}
